# Configuration validation, the run table and named helpers. No rules here.
import json
import os
import shlex

from snakemake.utils import validate

from tailstudy import cost as tcost
from tailstudy import study as tstudy
from tailstudy.acquire.download import merged_settings, shard_names
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
    tcost.check(config, RUNS.runs)
    FREQ = config.get("frequency", {})
    CORPORA = sorted(FREQ.get("corpora", {}))
except UserError as e:
    raise WorkflowError(f"config error: {e}") from None

DATASETS = sorted(config["datasets"])


def _datasets_of(*kinds):
    return sorted(n for n, d in config["datasets"].items() if d["source"] in kinds)


EMBEDDED_DATASETS = _datasets_of("embedded")
LOCAL_DATASETS = _datasets_of("image-folder", "imagenet-captions", "transfer")
LAIONET_DATASETS = _datasets_of("laionet")
CLS_DATASETS = _datasets_of("cls")
URL_DATASETS = sorted(LAIONET_DATASETS + CLS_DATASETS)
try:
    DOWNLOAD = {
        d: merged_settings(config.get("download"), config["datasets"][d].get("download"))
        for d in URL_DATASETS
    }
except UserError as e:
    raise WorkflowError(f"config error: {e}") from None
VARIANTS = sorted(config["variants"])
FIGURES = sorted(config["figures"])
STUDIES = sorted(config["studies"])


def _alternation(names):
    return "|".join(sorted(names))


def only(names):
    """A wildcard pattern matching exactly these names (nothing when there are none)."""
    return _alternation(names) or "(?!)"


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
        ds = config["datasets"][name]
        spec = {"name": name, "dataset": ds}
        if ds["source"] == "embedded":
            spec["world"] = config.get("world")
        return spec
    if kind == "downloads":
        return {"name": name, "download": DOWNLOAD[name]}
    if kind == "variants":  # how runs of it are evaluated is no part of building it
        spec = config["variants"][name]
        return {"name": name, "variant": {k: v for k, v in spec.items() if k != "evaluation"}}
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


def variant_inputs(wildcards):
    """The dataset a variant indexes, and for a match the counts it follows and its supplement."""
    spec = config["variants"][wildcards.variant]
    inputs = {
        "spec": f"results/specs/variants/{wildcards.variant}.json",
        "dataset": f"results/data/{spec['dataset']}/manifest.json",
    }
    match = spec.get("match")
    if match:
        of = match["counts_of"]
        if "variant" in of:
            inputs["counts_of"] = f"results/variants/{of['variant']}/index.parquet"
            inputs["counts_of_classes"] = f"results/variants/{of['variant']}/classes.tsv"
        else:
            inputs["counts_of"] = f"results/data/{of['dataset']}/index.parquet"
        if match.get("supplement"):
            inputs["supplement"] = f"results/data/{match['supplement']}/manifest.json"
    return inputs


def variant_args(wildcards, input):
    args = []
    if "counts_of" in input.keys():
        args.append(f"--counts-of {shlex.quote(os.path.dirname(input.counts_of))}")
    if "supplement" in input.keys():
        args.append(f"--supplement {shlex.quote(os.path.dirname(input.supplement))}")
    return " ".join(args)


def run_datasets(cfg):
    """Manifests of the datasets a run's images come from (a supplemented variant: two)."""
    spec = config["variants"][cfg.variant]
    names = [spec["dataset"]]
    if (spec.get("match") or {}).get("supplement"):
        names.append(spec["match"]["supplement"])
    return [f"results/data/{d}/manifest.json" for d in names]


def run_config(wildcards):
    return RUNS.runs[wildcards.run].to_json()


def run_cfg(wildcards):
    return RUNS.runs[wildcards.run]


def train_inputs(wildcards):
    cfg = run_cfg(wildcards)
    inputs = {
        "config": f"results/runs/{cfg.run_id}/config.json",
        "index": f"results/variants/{cfg.variant}/index.parquet",
        "classes": f"results/variants/{cfg.variant}/classes.tsv",
        "dataset": run_datasets(cfg),
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
        "classes": f"results/variants/{cfg.variant}/classes.tsv",
    }


# Resources of training and evaluation jobs. Rules declare only portable resources (gpu,
# cpus_per_gpu, mem_mb, runtime in minutes); partitions and accounts live in profiles/slurm,
# which may override any of these (set-threads, set-resources; expressions may use `attempt`).
CPUS_PER_GPU = 8  # CPU threads per GPU of a GPU job (host-side augmentation, tokenising)
MAX_RUNTIME = 24 * 60  # minutes: a common partition limit; profiles/slurm may raise it


def run_gpus(wildcards):
    """GPUs a run trains on: its recipe's `gpus` (0 = CPU)."""
    return RUNS.runs[wildcards.run].recipe.gpus


def eval_gpus(wildcards):
    """Evaluation of a GPU run takes one GPU; of a CPU run none."""
    return min(1, run_gpus(wildcards))


def train_threads(wildcards):
    """CPU runs: one thread per training process (two 1-thread runs side by side beat one
    2-thread run); GPU runs: CPUS_PER_GPU per GPU."""
    return run_gpus(wildcards) * CPUS_PER_GPU or run_cfg(wildcards).recipe.processes


def eval_threads(wildcards):
    return eval_gpus(wildcards) * CPUS_PER_GPU or 1


def cpus_per_gpu(wildcards, threads):
    """The job's threads spread over its GPUs (`--cpus-per-gpu`; CPU jobs use `threads`)."""
    return max(1, threads // max(1, run_gpus(wildcards)))


def eval_cpus_per_gpu(wildcards, threads):
    return threads


def train_mem_mb(wildcards):
    """Host memory from what the job holds (tailstudy.cost: workers, queued batches, model,
    in-memory images of a small split)."""
    return tcost.train_mem_mb(config, run_cfg(wildcards))


def eval_mem_mb(wildcards):
    return tcost.eval_mem_mb(config, run_cfg(wildcards))


def train_runtime(wildcards, attempt):
    """Minutes: rows × epochs ÷ the config's throughput, × safety + start-up (tailstudy.cost),
    growing with each attempt: a job that hit its time limit, was preempted or was cancelled
    resumes from its checkpoint, so every attempt moves the run forward."""
    cfg = run_cfg(wildcards)
    base = tcost.time_limit_min(config, tcost.train_cost(config, cfg))
    return min(base * attempt, MAX_RUNTIME)


def eval_runtime(wildcards, attempt):
    cfg = run_cfg(wildcards)
    base = tcost.time_limit_min(config, tcost.eval_cost(config, cfg))
    return min(base * attempt, MAX_RUNTIME)


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


# --- real data acquisition ----------------------------------------------------------------------


def local_sources(wildcards):
    """The local files and folders a folder-based dataset reads (its inputs in the DAG)."""
    ds = config["datasets"][wildcards.dataset]
    if ds["source"] in ("image-folder", "transfer"):
        return {"root": ds["root"]}
    return {"captions_json": ds["captions_json"], "imagenet_train": ds["imagenet_train"]}


def metadata_parts(dataset):
    """Part ids (00000, 00001, ...) of a dataset's metadata files, in list order."""
    return [f"{i:05d}" for i in range(len(config["datasets"][dataset]["metadata"]))]


def metadata_file(wildcards):
    files = config["datasets"][wildcards.dataset]["metadata"]
    i = int(wildcards.part)
    if i >= len(files):
        raise WorkflowError(f"dataset {wildcards.dataset} has no metadata part {wildcards.part}")
    return files[i]


def laionet_parts(wildcards):
    return expand(
        "results/sources/{dataset}/similarity/{part}.parquet",
        dataset=wildcards.dataset,
        part=metadata_parts(wildcards.dataset),
    )


def cls_parts(wildcards):
    return expand(
        "results/sources/{dataset}/match/{part}.parquet",
        dataset=wildcards.dataset,
        part=metadata_parts(wildcards.dataset),
    )


def laionet_encoder(wildcards):
    return json.dumps(config["datasets"][wildcards.dataset]["text_encoder"], sort_keys=True)


def laionet_label_args(wildcards):
    ds = config["datasets"][wildcards.dataset]
    return " ".join(
        f"--{k.replace('_', '-')} {shlex.quote(str(ds.get(k, d)))}"
        for k, d in (("url_column", "URL"), ("caption_column", "TEXT"), ("nsfw_column", "NSFW"))
    )


def laionet_filter_args(wildcards):
    ds = config["datasets"][wildcards.dataset]
    keep = " ".join(shlex.quote(t) for t in ds.get("nsfw_keep", ["UNLIKELY"]))
    return f"--threshold {float(ds.get('threshold', 0.7))!r} --nsfw-keep {keep}"


def cls_match_args(wildcards):
    ds = config["datasets"][wildcards.dataset]
    args = f"--url-column {shlex.quote(ds['url_column'])}"
    args += f" --caption-column {shlex.quote(ds['caption_column'])}"
    return args + ("" if ds.get("header", True) else " --no-header")


def download_shards(wildcards):
    return expand(
        "results/downloads/{dataset}/{shard}/stats.json",
        dataset=wildcards.dataset,
        shard=shard_names(DOWNLOAD[wildcards.dataset]["url_shards"]),
    )


def download_processes(wildcards):
    return DOWNLOAD[wildcards.dataset]["processes"]
