# Configuration validation, the run table and named helpers. No rules here.
import json
import shlex

from snakemake.utils import validate

from tailstudy import study as tstudy
from tailstudy.freq import plan as freq_plan
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
    freq_plan.check(config)
    RUNS = tstudy.expand(config)
    FREQ = config.get("frequency", {})
    CORPORA = sorted(FREQ.get("corpora", {}))
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
    corpus=_alternation(CORPORA) or "(?!)",
    concepts=_alternation(FREQ.get("concept_sets", {})) or "(?!)",
    shard=r"[A-Za-z0-9._-]+",


def spec_of(wildcards):
    """The resolved spec a step reads (its slice of the config, nothing more)."""
    kind, name = wildcards.kind, wildcards.name
    if kind == "datasets":
        return {"name": name, "dataset": config["datasets"][name], "world": config.get("world")}
    if kind == "variants":
        return {"name": name, "variant": config["variants"][name]}
    if kind == "figures":
        spec = config["figures"][name]
        corpora = FREQ.get("corpora", {})
        used = {c: corpora[c] for c in freq_plan.figure_corpora(spec)}
        return {"name": name, **spec, **({"corpus_specs": used} if used else {})}
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
    return expand("results/tables/{study}.tsv", study=spec.get("studies", []))


def figure_evals(wildcards):
    runs = tstudy.figure_runs(config, RUNS, wildcards.fig)
    return expand("results/eval/{run}/per_class.tsv", run=runs)


def figure_freq(wildcards):
    return sorted(set(freq_plan.figure_tables(config, wildcards.fig).values()))


def figure_freq_args(wildcards):
    tables = freq_plan.figure_tables(config, wildcards.fig)
    return " ".join(f"--freq {shlex.quote(f'{k}={v}')}" for k, v in tables.items())


_SHARDS = {}


def corpus_shards(corpus):
    """A corpus's counting shards, resolved (globs expanded) only when a job needs them, so a
    corpus whose files are not there yet stops only the jobs that read it."""
    if corpus not in _SHARDS:
        try:
            _SHARDS[corpus] = freq_plan.shards(config, corpus)
        except UserError as e:
            raise WorkflowError(f"config error: {e}") from None
    return _SHARDS[corpus]


def shard_of(wildcards):
    shards = corpus_shards(wildcards.corpus)
    if wildcards.shard not in shards:
        raise WorkflowError(f"corpus {wildcards.corpus} has no shard {wildcards.shard}")
    return shards[wildcards.shard]


def shard_source(wildcards):
    return shard_of(wildcards).path


def shard_args(wildcards):
    s = shard_of(wildcards)
    if s.kind == "datacard":
        return f"--datacard {shlex.quote(s.path)}"
    header = "" if s.header else " --no-header"
    return f"--captions {shlex.quote(s.path)} --column {shlex.quote(s.column)}{header}"


def concept_files(wildcards):
    """The class-name and synonym files of a concept set: inputs, so an edit recounts."""
    spec = FREQ["concept_sets"][wildcards.concepts] or {}
    return {k: spec[k] for k in ("class_names", "synonyms") if spec.get(k)}


def concept_args(wildcards):
    args = f"--concepts {wildcards.concepts}"
    for key, path in concept_files(wildcards).items():
        args += f" --{key.replace('_', '-')} {shlex.quote(path)}"
    return args


def corpus_shard_tables(wildcards):
    if wildcards.corpus not in {c for c, _ in freq_plan.needed_tables(config)}:
        raise WorkflowError(
            f"corpus {wildcards.corpus} is not counted: no figure reads it for any concept set"
        )
    return expand(
        "results/freq/{corpus}/{concepts}/shards/{shard}_ori.tsv",
        corpus=wildcards.corpus,
        concepts=wildcards.concepts,
        shard=sorted(corpus_shards(wildcards.corpus)),
    )


def claims_tables(wildcards):
    studies = sorted({c["study"] for c in config.get("claims", [])})
    return expand("results/tables/{study}.tsv", study=studies)


def all_freq_tables():
    return [freq_plan.table_path(config, c, cs) for c, cs in freq_plan.needed_tables(config)]


def all_figure_files():
    return expand("results/figures/{fig}.{ext}", fig=FIGURES, ext=["pdf", "png", "csv"])
