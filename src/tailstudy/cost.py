"""What a run costs, from the work itself: rows × epochs ÷ throughput, and the memory it holds.

Used for the SLURM time limits and memory of training and evaluation jobs
(``tailstudy.pipeline``) and by ``python -m tailstudy plan --cost``. Everything is computed from
the config alone, before any dataset is built:

* **rows** of a variant: ``sample.n`` / ``threshold.n`` when it says; ``sample.fraction`` × the
  dataset's rows; ``classes.subset`` imagenet100 → 1/10 of them; ``match`` → the rows of the set
  it follows; otherwise (``trim``, ``labelled``, caption variants) the dataset's rows, an upper
  bound. A dataset's rows: ``resources.rows.<dataset>`` in the config, else an embedded
  profile's ``n``.
* **time** of a training run: ``rows × epochs ÷ (images/s per device × devices)``, the
  images/s of its arch and objective from ``resources.throughput`` (per GPU, or per CPU process
  for a run with ``gpus: 0``); its job's limit is that × ``resources.safety`` + ``startup_min``.
  Evaluation: ``eval rows ÷ (throughput × eval_speedup)``, likewise.
* **memory** per process: ``base_mb`` + ``workers × worker_mb`` + the batches the workers have
  queued (``workers × prefetch × local batch`` float32 images of ``image_size``², pinned copies
  included) + the model's host copies (weights, gradients, two AdamW moments in the checkpoint:
  16 bytes a parameter) + the decoded images of a split small enough for memory (rows × side² ×
  3 bytes up to ``in_memory_max_mb``, side: the embedded world's image size, else the dataset's
  ``image_size``; larger splits stream and hold no images). There is no shuffle buffer: the
  streaming source is map-style (``tailstudy.data.stream``).

The same in-memory limit and worker count reach the jobs' command lines (``loader_args``), so
what a job holds is what its memory request counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tailstudy.config import RunConfig
from tailstudy.io import UserError

#: Defaults of the config's ``resources`` block (each key may be overridden there).
DEFAULTS = {
    # images/s per GPU (gpus > 0) or per CPU process (gpus: 0), training; by arch, then objective.
    "throughput": {},
    "safety": 1.5,
    "startup_min": 10,
    "eval_speedup": 3.0,  # forward only: evaluation images/s = training images/s × this
    "rows": {},
    "workers": 6,  # loader workers per training process on GPU jobs (CPU jobs: 0)
    "prefetch": 4,
    "base_mb": 3000,  # Python, torch, open_clip, CUDA context on the host
    "worker_mb": 800,
    "image_size": 224,
    "in_memory_max_mb": 2048,
    "params_m": {"RN50": 102.0, "RN-tiny": 2.0},
}


def settings(config: dict) -> dict:
    """The config's ``resources`` block over the defaults."""
    out = {**DEFAULTS, **(config.get("resources") or {})}
    out["params_m"] = {**DEFAULTS["params_m"], **out.get("params_m", {})}
    return out


def dataset_rows(config: dict, dataset: str) -> int:
    res = settings(config)
    if dataset in res["rows"]:
        return int(res["rows"][dataset])
    spec = config["datasets"][dataset]
    if spec.get("source") == "embedded":
        return int(spec["profile"]["n"])
    raise UserError(
        f"resources.rows has no entry for dataset {dataset}: give its expected row count so the "
        "cost of its runs can be planned"
    )


def variant_rows(config: dict, variant: str) -> int:
    """Expected rows of a variant (an upper bound where only the built index knows)."""
    v = config["variants"][variant]
    rows = dataset_rows(config, v["dataset"])
    if v.get("classes", {}).get("subset") == "imagenet100":
        rows = math.ceil(rows / 10)
    for stage in ("sample", "threshold"):
        s = v.get(stage) or {}
        if "n" in s:
            return int(s["n"])
        if "fraction" in s:
            return math.ceil(rows * float(s["fraction"]))
    match = v.get("match")
    if match:
        of = match["counts_of"]
        return (
            variant_rows(config, of["variant"])
            if "variant" in of
            else dataset_rows(config, of["dataset"])
        )
    return rows


def throughput(config: dict, cfg: RunConfig) -> float:
    """Training images/s of one device (GPU, or CPU process) for this run's arch and objective."""
    table = settings(config)["throughput"]
    try:
        return float(table[cfg.arch][cfg.objective])
    except KeyError:
        raise UserError(
            f"resources.throughput has no {cfg.arch}.{cfg.objective} entry (images/s per "
            f"{'GPU' if cfg.recipe.gpus else 'CPU process'}): add one to plan run {cfg.run_id}"
        ) from None


@dataclass(frozen=True)
class Cost:
    rows: int
    samples: int  # rows × epochs
    hours: float  # wall-clock hours of the run, without the safety factor
    devices: int  # GPUs (0: a CPU run)
    processes: int

    @property
    def device_hours(self) -> float:
        """GPU-hours (CPU runs: process-hours)."""
        return self.hours * max(self.devices, self.processes)


def train_cost(config: dict, cfg: RunConfig) -> Cost:
    rows = variant_rows(config, cfg.variant)
    samples = rows * cfg.recipe.epochs
    devices = cfg.recipe.gpus or cfg.recipe.processes
    hours = samples / (throughput(config, cfg) * devices) / 3600
    return Cost(rows, samples, hours, cfg.recipe.gpus, cfg.recipe.processes)


def eval_cost(config: dict, cfg: RunConfig, dataset: str | None = None) -> Cost:
    """The evaluation of run ``cfg`` on ``dataset`` (default: its default evaluation set)."""
    rows = dataset_rows(config, dataset or cfg.eval_dataset)
    speed = throughput(config, cfg) * settings(config)["eval_speedup"]
    return Cost(rows, rows, rows / speed / 3600, min(1, cfg.recipe.gpus), 1)


def time_limit_min(config: dict, cost: Cost) -> int:
    """Minutes a job asks for: the estimate × safety + start-up."""
    res = settings(config)
    return math.ceil(cost.hours * 60 * res["safety"] + res["startup_min"])


def _in_memory_mb(config: dict, dataset: str, rows: int) -> float:
    from tailstudy.data.stream import fits_in_memory, in_memory_mb

    spec = config["datasets"][dataset]
    if spec.get("source") == "embedded":
        side = int(config["world"]["image_size"])
    else:
        side = int(spec.get("image_size", 224))
    limit = settings(config)["in_memory_max_mb"]
    return in_memory_mb(rows, side) if fits_in_memory(rows, side, limit) else 0.0


def train_mem_mb(config: dict, cfg: RunConfig) -> int:
    """Host memory of a training job (all its processes)."""
    res = settings(config)
    rows = variant_rows(config, cfg.variant)
    workers = loader_workers(config, cfg)
    s = res["image_size"]
    batch_mb = cfg.recipe.local_batch_size * 3 * s * s * 4 / 2**20
    queued = workers * res["prefetch"] * batch_mb * 2 if workers else batch_mb * 2
    model = res["params_m"].get(cfg.arch, 0.0) * 1e6 * 16 / 2**20
    in_memory = _in_memory_mb(config, cfg.dataset, rows)
    per_process = res["base_mb"] + workers * res["worker_mb"] + queued + model + in_memory
    if (cfg.text_source or {}).get("hf_model"):  # a frozen language model's caption states:
        # the run's rows and the cache being rewritten, float16, at most LM_WIDTH wide
        per_process += 2 * rows * LM_WIDTH * 2 / 2**20
    return math.ceil(per_process * cfg.recipe.processes)


LM_WIDTH = 1024  # the widest pooled state of the language models in use (roberta-base: 768)


def eval_mem_mb(config: dict, cfg: RunConfig, dataset: str | None = None) -> int:
    res = settings(config)
    dataset = dataset or cfg.eval_dataset
    rows = dataset_rows(config, dataset)
    workers = loader_workers(config, cfg)
    s = res["image_size"]
    batch_mb = 256 * 3 * s * s * 4 / 2**20
    model = res["params_m"].get(cfg.arch, 0.0) * 1e6 * 4 / 2**20
    in_memory = _in_memory_mb(config, dataset, rows)
    return math.ceil(
        res["base_mb"]
        + workers * (res["worker_mb"] + res["prefetch"] * batch_mb)
        + model
        + in_memory
    )


def loader_workers(config: dict, cfg: RunConfig) -> int:
    """Loader workers per process of a run's jobs: ``resources.workers`` on GPU jobs, none on
    CPU jobs (their threads do the decoding)."""
    return int(settings(config)["workers"]) if cfg.recipe.gpus else 0


def loader_args(config: dict, cfg: RunConfig) -> str:
    """``tailstudy train`` / ``evaluate`` options that say how a run's splits are read: the
    in-memory limit and the loader workers the job's memory (``train_mem_mb``) counts."""
    limit = settings(config)["in_memory_max_mb"]
    return f"--in-memory-max-mb {limit:g} --workers {loader_workers(config, cfg)}"


def check(config: dict, runs: dict[str, RunConfig]) -> None:
    """Fail with one line if some run's cost cannot be planned (a throughput or row count
    missing)."""
    from tailstudy import study

    for cfg in runs.values():
        train_cost(config, cfg)
        for dataset in study.eval_sets(config, cfg):
            eval_cost(config, cfg, dataset)


def eval_device_hours(config: dict, cfg: RunConfig) -> float:
    """Device-hours of every evaluation of a run (each of its evaluation sets)."""
    from tailstudy import study

    return sum(eval_cost(config, cfg, d).device_hours for d in study.eval_sets(config, cfg))


def plan_table(config: dict) -> list[dict]:
    """One row per study and a total row: runs and device-hours (training + every evaluation).
    A run shared by studies counts in each study's row and once in the total."""
    from tailstudy import study

    table = study.expand(config)
    per_run = {}
    for rid, cfg in table.runs.items():
        per_run[rid] = (cfg, train_cost(config, cfg), eval_device_hours(config, cfg))

    def row(name: str, runs: list[str]) -> dict:
        gpu = [r for r in runs if per_run[r][0].recipe.gpus]
        return {
            "study": name,
            "runs": len(runs),
            "gpu_runs": len(gpu),
            "samples": sum(per_run[r][1].samples for r in runs),
            "gpu_hours": sum(per_run[r][1].device_hours + per_run[r][2] for r in gpu),
            "cpu_hours": sum(
                per_run[r][1].device_hours + per_run[r][2] for r in runs if r not in gpu
            ),
            "longest_run_h": max((per_run[r][1].hours for r in runs), default=0.0),
        }

    rows = [row(s, runs) for s, runs in table.studies.items()]
    rows.append(row("all (distinct runs)", list(table.runs)))
    return rows


def format_plan(config: dict) -> str:
    res = settings(config)
    rows = plan_table(config)
    head = f"{'study':<24} {'runs':>5} {'samples':>14} {'GPU-hours':>10} {'CPU-hours':>10} {'longest run':>12}"
    lines = [head, "-" * len(head)]
    for r in rows:
        if r is rows[-1]:
            lines.append("-" * len(head))
        lines.append(
            f"{r['study']:<24} {r['runs']:>5} {r['samples']:>14,} {r['gpu_hours']:>10,.1f} "
            f"{r['cpu_hours']:>10,.2f} {r['longest_run_h']:>10,.2f} h"
        )
    tp = ", ".join(
        f"{arch} {obj} {v:g}/s" for arch, d in res["throughput"].items() for obj, v in d.items()
    )
    lines.append(
        f"training: rows × epochs ÷ (images/s per device × devices); evaluation at "
        f"{res['eval_speedup']:g}× that; throughput table: {tp or 'none'}. Job time limits add "
        f"× {res['safety']:g} + {res['startup_min']} min (not in the hours above)."
    )
    return "\n".join(lines)
