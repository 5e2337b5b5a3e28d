# Wiring: the config validated, then the package's answers (tailstudy.pipeline) bound to the
# rules' wildcards. Paths come from tailstudy.layout. No rules and no logic here.
import copy

from snakemake.utils import validate

from tailstudy import layout as L
from tailstudy.io import UserError, write_tsv
from tailstudy.pipeline import (
    LOCAL_SOURCES,
    PROBE_SPLITS,
    URL_SOURCES,
    Pipeline,
    replaces_default_config,
)

_CLI_CONFIG = workflow.config_settings.overwrite_config
if replaces_default_config(
    workflow.configfiles,
    _CLI_CONFIG,
    workflow.config_settings.replace_workflow_config,
    "config.yaml",
):
    logger.info(f"config: scale {_CLI_CONFIG['scale']} from --configfile replaces config.yaml")
    config.clear()
    config.update(copy.deepcopy(_CLI_CONFIG))
try:
    validate(config, "../schemas/config.schema.yaml")  # also fills the schema's defaults
except WorkflowError as e:
    err = e.__context__  # the jsonschema ValidationError
    if not hasattr(err, "absolute_path"):
        raise
    where = ".".join(str(p) for p in err.absolute_path) or "top level"
    raise WorkflowError(f"config error at {where}: {err.message}") from None
try:
    P = Pipeline(config)
except UserError as e:
    raise WorkflowError(f"config error: {e}") from None


def by(method, *wildcards):
    """An input or params function: ``method`` of the pipeline on these wildcards' values; an
    input error stops with one line."""

    def answer(wc):
        try:
            return method(*(wc[w] for w in wildcards))
        except UserError as e:
            raise WorkflowError(f"config error: {e}") from None

    return answer


def only(names):
    """A wildcard pattern matching exactly these names (nothing when there are none)."""
    return "|".join(sorted(names)) or "(?!)"


wildcard_constraints:
    dataset=only(P.datasets),
    variant=only(P.variants),
    run=only(P.runs.runs),
    study=only(P.studies),
    split=only(PROBE_SPLITS),
    fig=only(P.figures),
    corpus=only(P.corpora),
    concepts=only(P.concept_sets),
    shard=r"[A-Za-z0-9._-]+",
