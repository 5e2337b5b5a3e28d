"""What the workflow's rules ask of the config, answered once: plain functions, no Snakemake.

``Pipeline(config)`` checks a schema-validated config's cross-references (one line on the first
error), expands the run table, and answers the rules: the spec a step reads, the inputs and
command-line arguments of each step, the resources of training and evaluation jobs, the caption
shards a corpus is counted in, and the download settings of each URL dataset. The rules in
``workflow/rules/*.smk`` only wire these answers to wildcards; paths come from
``tailstudy.layout``. The schema has filled every default before this runs, so no default is
repeated here.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex

from tailstudy import cost, study
from tailstudy import layout as L
from tailstudy.acquire.download import merged_settings, shard_names
from tailstudy.analysis.claims import claim_tests
from tailstudy.config import RunConfig
from tailstudy.data.spec import variant_refs
from tailstudy.evaluate.probe import MEAN as PROBE_STATISTIC
from tailstudy.evaluate.probe import SPLITS as PROBE_SPLITS
from tailstudy.figures.kinds import ORDERED_KEYS, PROBES, kind_of
from tailstudy.freq import plan as freq_plan
from tailstudy.io import UserError

# Resources of training and evaluation jobs. Rules declare only portable resources (gpu,
# cpus_per_gpu, mem_mb, runtime in minutes); partitions and accounts live in profiles/slurm,
# which may override any of these (set-threads, set-resources; expressions may use `attempt`).
CPUS_PER_GPU = 8  # CPU threads per GPU of a GPU job (host-side augmentation, tokenising)
MAX_RUNTIME = 24 * 60  # minutes: a common partition limit; profiles/slurm may raise it

PROBE_OBJECTIVE = "dino"  # runs evaluated by linear probes on the transfer sets (METHODS §5.7)

EMBEDDED_SOURCES = ("embedded",)
LOCAL_SOURCES = ("image-folder", "imagenet-captions", "transfer")
URL_SOURCES = ("laionet", "cls", "birdsnap")
TRANSFER_SOURCES = ("transfer", "birdsnap")  # linear-probe transfer sets (METHODS §1.4)


def replaces_default_config(loaded: list[str], cli: dict, replaced: bool, default: str) -> bool:
    """Whether the command line's config is a whole study that must replace the default one.

    Snakemake merges ``--configfile`` files over the Snakefile's ``configfile`` (``default``,
    when found in the working directory) unless ``--replace-workflow-config`` is given; the jobs
    it submits to a cluster are started without that flag. A config whose ``scale`` differs
    from the default's (paper.yaml over the embedded config.yaml) is a different study: merged,
    it would mix the two studies' datasets. ``loaded``: the config files Snakemake read;
    ``cli``: what the command line set (its config files and ``--config``).
    """
    if replaced or not cli.get("scale") or default not in loaded:
        return False
    import yaml

    with open(default) as f:
        base = (yaml.safe_load(f) or {}).get("scale")
    return cli["scale"] != base


class Pipeline:
    """The config's answers for the rules (construct after schema validation)."""

    def __init__(self, config: dict):
        study.check(config)
        freq_plan.check(config)
        self.config = config
        self.runs = study.expand(config)
        cost.check(config, self.runs.runs)
        self.freq = config.get("frequency", {})
        self.datasets = sorted(config["datasets"])
        self.variants = sorted(config["variants"])
        self.figures = sorted(config["figures"])
        self.studies = sorted(config["studies"])
        self.corpora = sorted(self.freq.get("corpora", {}))
        self.concept_sets = sorted(self.freq.get("concept_sets", {}))
        self.download = {
            d: merged_settings(config.get("download"), config["datasets"][d].get("download"))
            for d in self.datasets_of(*URL_SOURCES)
        }
        self._shards: dict[str, dict] = {}
        self.probe = config.get("probe") or {}
        self.probe_datasets = list(self.probe.get("datasets", []))
        self.probe_studies, self.eval_studies = self._split_studies()
        self.probe_runs = sorted(r for s in self.probe_studies for r in self.runs.studies[s])

    def _split_studies(self) -> tuple[list[str], list[str]]:
        """Studies of DINO runs (evaluated by linear probes on the transfer sets) and the others
        (evaluated on the evaluation set); a study mixing them, or probes without transfer sets,
        is one line."""
        probe, ev = [], []
        for s in self.studies:
            kinds = {self.runs.runs[r].objective == PROBE_OBJECTIVE for r in self.runs.studies[s]}
            if len(kinds) > 1:
                raise UserError(
                    f"study {s} mixes {PROBE_OBJECTIVE} runs (linear probes) with other runs "
                    "(zero-shot / prototype evaluation); split it in two"
                )
            (probe if kinds == {True} else ev).append(s)
        for d in self.probe_datasets:
            ds = self.config["datasets"].get(d)
            if ds is None:
                raise UserError(f"probe.datasets names unknown dataset {d!r}")
            if not (ds["source"] in TRANSFER_SOURCES or ds.get("probe")):
                raise UserError(
                    f"probe.datasets: dataset {d} is not a transfer set (source: transfer or birdsnap, or "
                    "an embedded dataset with a probe task)"
                )
        if probe and not self.probe_datasets:
            raise UserError(f"studies {', '.join(probe)} train DINO runs: list probe.datasets")
        for fig, spec in self.config["figures"].items():
            if kind_of(spec, fig).source == PROBES:
                bad = [st for st in spec.get("studies", []) if st not in probe]
                if bad:
                    raise UserError(f"figure {fig} ({spec['plot']}) needs DINO studies, not {bad}")
                extra = [d for d in spec.get("datasets", []) if d not in self.probe_datasets]
                if extra:
                    raise UserError(f"figure {fig}: datasets {extra} are not in probe.datasets")
        for c in self.config.get("claims", []):
            stats = {t["statistic"] for t in claim_tests(c)}
            if (stats == {PROBE_STATISTIC}) != (c["study"] in probe) or (
                PROBE_STATISTIC in stats and len(stats) > 1
            ):
                raise UserError(
                    f"claim {c['id']}: statistic {PROBE_STATISTIC} is that of DINO studies "
                    "(linear probes) and only theirs"
                )
        return probe, ev

    def datasets_of(self, *sources: str) -> list[str]:
        return sorted(n for n, d in self.config["datasets"].items() if d["source"] in sources)

    # --- specs: what a step reads of the config --------------------------------------------

    def spec(self, kind: str, name: str) -> dict:
        """The resolved spec a step reads (its slice of the config, nothing more)."""
        config = self.config
        if kind == "datasets":
            ds = config["datasets"][name]
            spec = {"name": name, "dataset": ds}
            if ds["source"] == "embedded":
                spec["world"] = config.get("world")
            return spec
        if kind == "downloads":
            return {"name": name, "download": self.download[name]}
        if kind == "variants":  # how runs of it are evaluated is no part of building it
            spec = config["variants"][name]
            return {"name": name, "variant": {k: v for k, v in spec.items() if k != "evaluation"}}
        if kind == "figures":
            spec = config["figures"][name]
            corpora = self.freq.get("corpora", {})
            used = {c: corpora[c] for c in freq_plan.figure_corpora(spec)}
            if kind_of(spec, name).source == PROBES:
                spec = {
                    **spec,
                    "probe_datasets": self.probe_datasets,
                    "dataset_labels": self.probe.get("labels", {}),
                    "paper_datasets": self.probe.get("paper_names", {}),
                }
            orders = {k: list(spec[k]) for k in ORDERED_KEYS if spec.get(k)}
            if orders:  # series / panel / legend order (spec files have sorted keys)
                spec = {**spec, "key_order": orders}
            return {"name": name, **spec, **({"corpus_specs": used} if used else {})}
        if kind == "claims":
            return {"claims": config.get("claims", [])}
        if kind == "compare":
            return self.compare_spec()
        raise UserError(f"unknown spec kind {kind}")

    def spec_json(self, kind: str, name: str) -> str:
        return json.dumps(self.spec(kind, name), indent=2, sort_keys=True) + "\n"

    # --- datasets and variants -------------------------------------------------------------

    def variant_inputs(self, variant: str) -> dict[str, str]:
        """The variant's spec, the dataset it indexes, and for a match the counts it follows
        (and their label space) and its supplement."""
        refs = variant_refs(self.config, variant)
        inputs = {
            "spec": L.path(L.SPEC, kind="variants", name=variant),
            "dataset": L.path(L.DATASET_MANIFEST, dataset=refs.dataset),
        }
        if refs.counts_of:
            kind, ref = refs.counts_of
            if kind == "variant":
                inputs["counts_of"] = L.path(L.VARIANT_INDEX, variant=ref)
                inputs["counts_of_classes"] = L.path(L.VARIANT_CLASSES, variant=ref)
            else:
                inputs["counts_of"] = L.path(L.DATASET_INDEX, dataset=ref)
        if refs.supplement:
            inputs["supplement"] = L.path(L.DATASET_MANIFEST, dataset=refs.supplement)
        return inputs

    def variant_args(self, variant: str) -> str:
        """``--counts-of`` and ``--supplement`` folders of a match variant."""
        inputs = self.variant_inputs(variant)
        return " ".join(
            f"--{key.replace('_', '-')} {shlex.quote(os.path.dirname(inputs[key]))}"
            for key in ("counts_of", "supplement")
            if key in inputs
        )

    def run_datasets(self, cfg: RunConfig) -> list[str]:
        """Manifests of the datasets a run's images come from (a supplemented variant: two)."""
        refs = variant_refs(self.config, cfg.variant)
        names = [refs.dataset, *([refs.supplement] if refs.supplement else [])]
        return [L.path(L.DATASET_MANIFEST, dataset=d) for d in names]

    # --- runs: training and evaluation -------------------------------------------------------

    def run(self, run: str) -> RunConfig:
        return self.runs.runs[run]

    def run_config_json(self, run: str) -> str:
        return self.run(run).to_json()

    def train_inputs(self, run: str) -> dict:
        cfg = self.run(run)
        inputs = {
            "config": L.path(L.RUN_CONFIG, run=run),
            "index": L.path(L.VARIANT_INDEX, variant=cfg.variant),
            "classes": L.path(L.VARIANT_CLASSES, variant=cfg.variant),
            "dataset": self.run_datasets(cfg),
        }
        dep = self.runs.depends.get(run)
        if dep:
            inputs["text"] = L.path(L.RUN_MODEL, run=dep)
        return inputs

    def text_cache_arg(self, run: str) -> str:
        """``--text-cache`` of a run with a frozen language-model text tower: the folder its
        caption states are kept in, shared by the runs of that encoder."""
        cfg = self.run(run)
        if not (cfg.text_source or {}).get("hf_model"):
            return ""
        folder = L.path(L.TEXT_CACHE, encoder=cfg.recipe.text_encoder)
        return f"--text-cache {shlex.quote(folder)}"

    def text_checkpoint_arg(self, run: str) -> str:
        text = self.train_inputs(run).get("text")
        return f"--text-checkpoint {text}" if text else ""

    def loader_args(self, run: str) -> str:
        """How ``train`` and ``evaluate`` read the run's splits (tailstudy.cost.loader_args)."""
        return cost.loader_args(self.config, self.run(run))

    def eval_sets(self, run: str) -> list[str]:
        """A run's evaluation datasets, its default one first (``study.eval_sets``)."""
        return study.eval_sets(self.config, self.run(run))

    def eval_summaries(self, run: str) -> list[str]:
        return [L.path(L.EVAL_SUMMARY, run=run, dataset=d) for d in self.eval_sets(run)]

    def eval_inputs(self, run: str, dataset: str) -> dict[str, str]:
        """What the (run, evaluation set) job reads; the variant's manifest names a trim's tail."""
        cfg = self.run(run)
        if dataset not in self.eval_sets(run):
            raise UserError(
                f"run {run} is not evaluated on {dataset}; its evaluation sets: "
                + ", ".join(self.eval_sets(run))
            )
        return {
            "config": L.path(L.RUN_CONFIG, run=run),
            "model": L.path(L.RUN_MODEL, run=run),
            "dataset": L.path(L.DATASET_MANIFEST, dataset=dataset),
            "counts": L.path(L.VARIANT_COUNTS, variant=cfg.variant),
            "classes": L.path(L.VARIANT_CLASSES, variant=cfg.variant),
            "manifest": L.path(L.VARIANT_MANIFEST, variant=cfg.variant),
        }

    def gpus(self, run: str) -> int:
        """GPUs a run trains on: its recipe's ``gpus`` (0 = CPU)."""
        return self.run(run).recipe.gpus

    def eval_gpus(self, run: str) -> int:
        """Evaluation of a GPU run takes one GPU; of a CPU run none."""
        return min(1, self.gpus(run))

    def train_threads(self, run: str) -> int:
        """CPU runs: one thread per training process (two 1-thread runs side by side beat one
        2-thread run); GPU runs: CPUS_PER_GPU per GPU."""
        return self.gpus(run) * CPUS_PER_GPU or self.run(run).recipe.processes

    def eval_threads(self, run: str) -> int:
        return self.eval_gpus(run) * CPUS_PER_GPU or 1

    def cpus_per_gpu(self, run: str, threads: int) -> int:
        """The job's threads spread over its GPUs (``--cpus-per-gpu``; CPU jobs use threads)."""
        return max(1, threads // max(1, self.gpus(run)))

    def train_mem_mb(self, run: str) -> int:
        """Host memory from what the job holds (tailstudy.cost: workers, queued batches, model,
        in-memory images of a small split)."""
        return cost.train_mem_mb(self.config, self.run(run))

    def eval_mem_mb(self, run: str, dataset: str) -> int:
        return cost.eval_mem_mb(self.config, self.run(run), dataset)

    def train_runtime(self, run: str, attempt: int) -> int:
        """Minutes: rows × epochs ÷ the config's throughput, × safety + start-up (tailstudy.cost),
        growing with each attempt: a job that hit its time limit, was preempted or was cancelled
        resumes from its checkpoint, so every attempt moves the run forward."""
        base = cost.time_limit_min(self.config, cost.train_cost(self.config, self.run(run)))
        return min(base * attempt, MAX_RUNTIME)

    def eval_runtime(self, run: str, dataset: str, attempt: int) -> int:
        base = cost.time_limit_min(self.config, cost.eval_cost(self.config, self.run(run), dataset))
        return min(base * attempt, MAX_RUNTIME)

    # --- linear probes of DINO runs (METHODS §5.7) ----------------------------------------

    def probe_feature_mem_mb(self, run: str) -> int:
        """Feature extraction reads the transfer sets one by one: the largest one's memory."""
        return max(cost.eval_mem_mb(self.config, self.run(run), d) for d in self.probe_datasets)

    def probe_feature_runtime(self, run: str, attempt: int) -> int:
        """Minutes: every transfer set's images through the run's encoder (as an evaluation)."""
        cfg = self.run(run)
        hours = sum(cost.eval_cost(self.config, cfg, d).hours for d in self.probe_datasets)
        extraction = dataclasses.replace(cost.eval_cost(self.config, cfg), hours=hours)
        return min(cost.time_limit_min(self.config, extraction) * attempt, MAX_RUNTIME)

    def probe_feature_inputs(self, run: str) -> dict:
        return {
            "config": L.path(L.RUN_CONFIG, run=run),
            "model": L.path(L.RUN_MODEL, run=run),
            "datasets": [L.path(L.DATASET_MANIFEST, dataset=d) for d in self.probe_datasets],
        }

    def probe_feature_files(self, run: str) -> list[str]:
        return [
            L.path(L.PROBE_FEATURE, run=run, dataset=d, split=s)
            for d in self.probe_datasets
            for s in PROBE_SPLITS
        ]

    def probe_feature_args(self, run: str) -> str:
        return " ".join(
            f"--dataset {shlex.quote(d + '=' + L.path(L.DATASET, dataset=d))}"
            for d in self.probe_datasets
        )

    def probe_inputs(self, run: str, dataset: str) -> dict:
        if run not in self.probe_runs or dataset not in self.probe_datasets:
            raise UserError(f"no linear probe of run {run} on dataset {dataset}")
        return {
            "config": L.path(L.RUN_CONFIG, run=run),
            "dataset": L.path(L.DATASET_MANIFEST, dataset=dataset),
            "features": [
                L.path(L.PROBE_FEATURE, run=run, dataset=dataset, split=s) for s in PROBE_SPLITS
            ],
        }

    def probe_max_iter(self) -> int:
        return self.probe["max_iter"]

    def study_probes(self, name: str) -> list[str]:
        return [
            L.path(L.PROBE_RESULT, run=r, dataset=d)
            for r in self.runs.studies[name]
            for d in self.probe_datasets
        ]

    def study_table(self, name: str) -> str:
        """A study's table: probe results for DINO studies, evaluations for the others."""
        table = L.PROBE_TABLE if name in self.probe_studies else L.STUDY_TABLE
        return L.path(table, study=name)

    # --- studies, figures, claims ----------------------------------------------------------

    def study_evals(self, name: str) -> list[str]:
        """Every evaluation summary of the study's runs (each run's default set gives its row,
        the others further columns)."""
        if name in self.probe_studies:
            raise UserError(f"study {name} holds DINO runs: its table is results/tables/probe/")
        return [p for r in self.runs.studies[name] for p in self.eval_summaries(r)]

    def figure_tables(self, fig: str) -> list[str]:
        studies = self.config["figures"][fig].get("studies", [])
        return [self.study_table(s) for s in studies]

    def figure_evals(self, fig: str) -> list[str]:
        runs = study.figure_runs(self.config, self.runs, fig)
        return [L.path(L.EVAL_PER_CLASS, run=r, dataset=self.run(r).eval_dataset) for r in runs]

    def figure_freq(self, fig: str) -> list[str]:
        return sorted(set(freq_plan.figure_tables(self.config, fig).values()))

    def figure_freq_args(self, fig: str) -> str:
        tables = freq_plan.figure_tables(self.config, fig)
        return " ".join(f"--freq {shlex.quote(f'{k}={v}')}" for k, v in tables.items())

    def claims_tables(self) -> list[str]:
        studies = sorted({c["study"] for c in self.config.get("claims", [])})
        return [self.study_table(s) for s in studies]

    # --- the paper comparison ----------------------------------------------------------------

    def compare_spec(self) -> dict:
        """What ``compare_to_paper.tsv`` reads: the scale, the corpora counted from published
        tables, this config's CSV of each figure the paper prints numbers of (by
        ``paper_label``), and which of the paper config's variants this config builds."""
        from tailstudy.analysis.compare import FIGURE_FILES, published_labels
        from tailstudy.analysis.paper import SIZES

        results = L.RESULTS + "/"
        labelled = {
            spec["paper_label"]: L.path(L.FIGURE, fig=name).removeprefix(results) + ".csv"
            for name, spec in sorted(self.config["figures"].items())
            if spec.get("paper_label") in FIGURE_FILES
        }
        return {
            "scale": self.config["scale"],
            "published": sorted(published_labels(self.config)),
            "figures": labelled,
            "variants": {v: v for v in SIZES if v in self.config.get("variants", {})},
        }

    def compare_inputs(self) -> list[str]:
        """The figure CSVs and variant manifests ``compare_to_paper.tsv`` reads."""
        spec = self.compare_spec()
        return [
            *(f"{L.RESULTS}/{f}" for f in spec["figures"].values()),
            *(L.path(L.VARIANT_MANIFEST, variant=v) for v in spec["variants"].values()),
        ]

    def figure_files(self) -> list[str]:
        return [f"{L.path(L.FIGURE, fig=f)}.{ext}" for f in self.figures for ext in L.FIGURE_EXTS]

    def freq_tables(self) -> list[str]:
        return [
            freq_plan.table_path(self.config, c, cs)
            for c, cs in freq_plan.needed_tables(self.config)
        ]

    # --- frequency: caption shards and concept sets ----------------------------------------

    def corpus_shards(self, corpus: str) -> dict:
        """A corpus's counting shards, resolved (globs expanded) only when a job needs them,
        so a corpus whose files are not there yet stops only the jobs that read it."""
        if corpus not in self._shards:
            self._shards[corpus] = freq_plan.shards(self.config, corpus)
        return self._shards[corpus]

    def shard(self, corpus: str, shard: str) -> freq_plan.Shard:
        shards = self.corpus_shards(corpus)
        if shard not in shards:
            raise UserError(f"corpus {corpus} has no shard {shard}")
        return shards[shard]

    def shard_args(self, corpus: str, shard: str) -> str:
        s = self.shard(corpus, shard)
        if s.kind == "datacard":
            return f"--datacard {shlex.quote(s.path)}"
        header = "" if s.header else " --no-header"
        return f"--captions {shlex.quote(s.path)} --column {shlex.quote(s.column)}{header}"

    def concept_files(self, concepts: str) -> dict[str, str]:
        """The class-name and synonym files of a concept set: inputs, so an edit recounts."""
        spec = self.freq["concept_sets"][concepts] or {}
        return {k: spec[k] for k in ("class_names", "synonyms") if spec.get(k)}

    def concept_args(self, concepts: str) -> str:
        args = f"--concepts {concepts}"
        for key, path in self.concept_files(concepts).items():
            args += f" --{key.replace('_', '-')} {shlex.quote(path)}"
        return args

    def keep_digits_arg(self) -> str:
        return "--keep-digits" if self.freq.get("keep_digits") else ""

    def corpus_shard_tables(self, corpus: str, concepts: str) -> list[str]:
        if corpus not in {c for c, _ in freq_plan.needed_tables(self.config)}:
            raise UserError(
                f"corpus {corpus} is not counted: no figure reads it for any concept set"
            )
        return [
            L.path(L.FREQ_SHARD, corpus=corpus, concepts=concepts, shard=s)
            for s in sorted(self.corpus_shards(corpus))
        ]

    # --- real data acquisition -------------------------------------------------------------

    def local_sources(self, dataset: str) -> dict[str, str]:
        """The local files and folders a folder-based dataset reads (its inputs in the DAG)."""
        ds = self.config["datasets"][dataset]
        if ds["source"] in ("image-folder", "transfer"):
            return {"root": ds["root"]}
        return {"captions_json": ds["captions_json"], "imagenet_train": ds["imagenet_train"]}

    def birdsnap_release(self, dataset: str) -> dict[str, str]:
        """The lists of Birdsnap's release that its URL table and splits are read from."""
        root = self.config["datasets"][dataset]["root"]
        return {
            key: os.path.join(root, f"{key}.txt") for key in ("images", "species", "test_images")
        }

    def metadata_parts(self, dataset: str) -> list[str]:
        """Part ids (00000, 00001, ...) of a dataset's metadata files, in list order."""
        return [f"{i:05d}" for i in range(len(self.config["datasets"][dataset]["metadata"]))]

    def metadata_file(self, dataset: str, part: str) -> str:
        files = self.config["datasets"][dataset]["metadata"]
        if int(part) >= len(files):
            raise UserError(f"dataset {dataset} has no metadata part {part}")
        return files[int(part)]

    def part_files(self, pattern: str, dataset: str) -> list[str]:
        """``pattern`` (e.g. layout.LAIONET_SIMILARITY) for every metadata part of a dataset."""
        return [L.path(pattern, dataset=dataset, part=p) for p in self.metadata_parts(dataset)]

    def laionet_encoder(self, dataset: str) -> str:
        return json.dumps(self.config["datasets"][dataset]["text_encoder"], sort_keys=True)

    def laionet_batch_size(self, dataset: str) -> int:
        return self.config["datasets"][dataset]["batch_size"]

    def laionet_label_args(self, dataset: str) -> str:
        ds = self.config["datasets"][dataset]
        return " ".join(
            f"--{k.replace('_', '-')} {shlex.quote(str(ds[k]))}"
            for k in ("url_column", "caption_column", "nsfw_column")
        )

    def laionet_filter_args(self, dataset: str) -> str:
        ds = self.config["datasets"][dataset]
        keep = " ".join(shlex.quote(t) for t in ds["nsfw_keep"])
        return f"--threshold {float(ds['threshold'])!r} --nsfw-keep {keep}"

    def cls_match_args(self, dataset: str) -> str:
        ds = self.config["datasets"][dataset]
        args = f"--url-column {shlex.quote(ds['url_column'])}"
        args += f" --caption-column {shlex.quote(ds['caption_column'])}"
        return args + ("" if ds["header"] else " --no-header")

    def download_shards(self, dataset: str) -> list[str]:
        names = shard_names(self.download[dataset]["url_shards"])
        return [L.path(L.DOWNLOAD_STATS, dataset=dataset, shard=s) for s in names]

    def download_processes(self, dataset: str) -> int:
        return self.download[dataset]["processes"]
