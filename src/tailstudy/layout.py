"""The results/ layout, named once: the workflow's rules and the package read these patterns.

Each is a path relative to the workflow's working directory, with ``{wildcards}`` in
Snakemake's syntax (the rules use them as they are; the package fills them with ``path``).
What each file holds is described in ``results/README.md``; logs and benchmarks are named by
their rules (``results/logs/{rule}/...``, ``results/benchmarks/{rule}/...``).
"""

from __future__ import annotations

from pathlib import Path

RESULTS = "results"

RUN_TABLE = f"{RESULTS}/run_table.tsv"
STUDY_RUNS = f"{RESULTS}/study_runs.tsv"
SPEC = f"{RESULTS}/specs/{{kind}}/{{name}}.json"

DATASET = f"{RESULTS}/data/{{dataset}}"
DATASET_INDEX = f"{DATASET}/index.parquet"
DATASET_CLASSES = f"{DATASET}/classes.tsv"
DATASET_MANIFEST = f"{DATASET}/manifest.json"

SOURCES = f"{RESULTS}/sources/{{dataset}}"
LEMMAS = f"{SOURCES}/lemmas.tsv"
LAIONET_LABEL = f"{SOURCES}/label/{{part}}.parquet"
LAIONET_SIMILARITY = f"{SOURCES}/similarity/{{part}}.parquet"
CLS_MATCH = f"{SOURCES}/match/{{part}}.parquet"

DOWNLOADS = f"{RESULTS}/downloads/{{dataset}}"
DOWNLOAD_URLS = f"{DOWNLOADS}/urls.parquet"
DOWNLOAD_SHARD = f"{DOWNLOADS}/{{shard}}"
DOWNLOAD_STATS = f"{DOWNLOAD_SHARD}/stats.json"
DOWNLOAD_MANIFEST = f"{DOWNLOADS}/manifest.json"

VARIANT = f"{RESULTS}/variants/{{variant}}"
VARIANT_INDEX = f"{VARIANT}/index.parquet"
VARIANT_CLASSES = f"{VARIANT}/classes.tsv"
VARIANT_COUNTS = f"{VARIANT}/counts.tsv"
VARIANT_MANIFEST = f"{VARIANT}/manifest.json"

FREQ = f"{RESULTS}/freq"
NLTK_DATA = f"{FREQ}/nltk_data"
WORDNET_READY = f"{FREQ}/wordnet.ok"
FREQ_TABLE = f"{FREQ}/{{corpus}}/{{concepts}}_ori.tsv"
FREQ_TABLE_SORTED = f"{FREQ}/{{corpus}}/{{concepts}}.tsv"
FREQ_SHARD = f"{FREQ}/{{corpus}}/{{concepts}}/shards/{{shard}}_ori.tsv"

RUN = f"{RESULTS}/runs/{{run}}"
RUN_CONFIG = f"{RUN}/config.json"
RUN_MODEL = f"{RUN}/model.pt"
RUN_TRAIN_LOG = f"{RUN}/train_log.jsonl"
RUN_CKPT = f"{RUN}/ckpt"

EVAL_ROOT = f"{RESULTS}/eval"
EVAL = f"{EVAL_ROOT}/{{run}}/{{dataset}}"  # one folder per (run, evaluation set)
EVAL_SUMMARY = f"{EVAL}/summary.json"
EVAL_PER_CLASS = f"{EVAL}/per_class.tsv"
EVAL_METRICS = f"{EVAL}/metrics.npz"  # tailstudy.evaluate.outputs: the METHODS §5.5 contract

CACHE = f"{RESULTS}/cache"
TEXT_CACHE = f"{CACHE}/text/{{encoder}}"  # a frozen language model's caption states, by captions

PROBE_ROOT = f"{RESULTS}/probe"
PROBE_FEATURES = f"{PROBE_ROOT}/{{run}}/features"  # <dataset>-<split>.npz, once per run
PROBE_FEATURE = f"{PROBE_FEATURES}/{{dataset}}-{{split}}.npz"
PROBE_RESULT = f"{PROBE_ROOT}/{{run}}/{{dataset}}.json"
PROBE_TABLE = f"{RESULTS}/tables/probe/{{study}}.tsv"

STUDY_TABLE = f"{RESULTS}/tables/{{study}}.tsv"
FIGURE = f"{RESULTS}/figures/{{fig}}"  # .pdf, .png, .csv
FIGURE_EXTS = ("pdf", "png", "csv")
CLAIMS = f"{RESULTS}/claims.tsv"
COMPARE = f"{RESULTS}/compare_to_paper"  # .tsv, .html: the paper's numbers beside ours


def path(pattern: str, **wildcards) -> str:
    """A pattern with its wildcards filled (every one must be given)."""
    return pattern.format(**wildcards)


def eval_file(pattern: str, eval_root, **wildcards) -> Path:
    """A file of an evaluation folder (``EVAL_PER_CLASS``, ``EVAL_METRICS``) under ``eval_root``
    instead of ``EVAL_ROOT`` (the figures read evaluations from where they are told)."""
    rel = Path(pattern).relative_to(EVAL_ROOT)
    return Path(eval_root) / path(str(rel), **wildcards)
