# Configuration validation, the run table and named helpers. No rules here.
import json

from snakemake.utils import validate

from tailstudy import study as tstudy
from tailstudy.io import UserError, write_tsv

try:
    validate(config, "../schemas/config.schema.yaml")
except WorkflowError as e:
    err = e.__context__  # the jsonschema ValidationError
    if not hasattr(err, "absolute_path"):
        raise
    where = ".".join(str(p) for p in err.absolute_path) or "top level"
    raise WorkflowError(f"config error at {where}: {err.message}") from None
try:
    tstudy.check(config)
    RUNS = tstudy.expand(config)
except UserError as e:
    raise WorkflowError(f"config error: {e}") from None

DATASETS = sorted(config["datasets"])
VARIANTS = sorted(config["variants"])
FIGURES = sorted(config["figures"])
STUDIES = sorted(config["studies"])


def _alternation(names):
    return "|".join(sorted(names))


wildcard_constraints:
    dataset=_alternation(DATASETS),
    variant=_alternation(VARIANTS),
    run=_alternation(RUNS.runs),
    study=_alternation(STUDIES),
    fig=_alternation(FIGURES),


def spec_of(wildcards):
    """The resolved spec a step reads (its slice of the config, nothing more)."""
    kind, name = wildcards.kind, wildcards.name
    if kind == "datasets":
        return {"name": name, "dataset": config["datasets"][name], "world": config.get("world")}
    if kind == "variants":
        return {"name": name, "variant": config["variants"][name]}
    if kind == "figures":
        return {"name": name, **config["figures"][name]}
    if kind == "claims":
        return {"claims": config.get("claims", [])}
    raise WorkflowError(f"unknown spec kind {kind}")


def spec_json(wildcards):
    return json.dumps(spec_of(wildcards), indent=2, sort_keys=True) + "\n"


def variant_dataset(wildcards):
    return f"results/data/{config['variants'][wildcards.variant]['dataset']}/manifest.json"


def run_config(wildcards):
    return RUNS.runs[wildcards.run].to_json()


def run_cfg(wildcards):
    return RUNS.runs[wildcards.run]


def train_inputs(wildcards):
    cfg = run_cfg(wildcards)
    inputs = {
        "config": f"results/runs/{cfg.run_id}/config.json",
        "index": f"results/variants/{cfg.variant}/index.parquet",
        "dataset": f"results/data/{cfg.dataset}/manifest.json",
    }
    dep = RUNS.depends.get(cfg.run_id)
    if dep:
        inputs["text"] = f"results/runs/{dep}/model.pt"
    return inputs


def text_checkpoint_arg(wildcards, input):
    return f"--text-checkpoint {input.text}" if "text" in input.keys() else ""


def eval_inputs(wildcards):
    cfg = run_cfg(wildcards)
    return {
        "config": f"results/runs/{cfg.run_id}/config.json",
        "model": f"results/runs/{cfg.run_id}/model.pt",
        "dataset": f"results/data/{cfg.eval_dataset}/manifest.json",
        "counts": f"results/variants/{cfg.variant}/counts.tsv",
    }


def train_runtime(wildcards, attempt):
    """Minutes; grows with each retry so a preempted or slow job gets more time."""
    return 60 * attempt


def study_evals(wildcards):
    return expand("results/eval/{run}/summary.json", run=RUNS.studies[wildcards.study])


def figure_tables(wildcards):
    spec = config["figures"][wildcards.fig]
    return expand("results/tables/{study}.tsv", study=spec["studies"])


def figure_evals(wildcards):
    runs = tstudy.figure_runs(config, RUNS, wildcards.fig)
    return expand("results/eval/{run}/per_class.tsv", run=runs)


def claims_tables(wildcards):
    studies = sorted({c["study"] for c in config.get("claims", [])})
    return expand("results/tables/{study}.tsv", study=studies)


def all_figure_files():
    return expand("results/figures/{fig}.{ext}", fig=FIGURES, ext=["pdf", "png", "csv"])
