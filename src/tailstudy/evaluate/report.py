"""The outputs of one (run, evaluation set) job, in its folder ``results/eval/{run}/{dataset}/``:
``metrics.npz`` (METHODS §5.5, ``tailstudy.evaluate.outputs``), ``per_class.tsv`` (one row per
evaluation class: freq, acc, #pred and the neural-collapse metrics) and ``summary.json`` (the
run's factors, the evaluation set and whether it is the run's default one, the statistics
against the run's own training frequencies, and the ``job`` that computed them: SLURM job id
or null, host) — the contract the collection and figure steps read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tailstudy import jobinfo
from tailstudy import layout as L
from tailstudy.config import RunConfig
from tailstudy.evaluate.outputs import PER_CLASS_KEYS, save_arrays
from tailstudy.io import atomic_path, write_json


def write_eval(
    out: str | Path,
    cfg: RunConfig,
    summary: dict,
    arrays: dict,
    classes,
    dataset: str | None = None,
) -> None:
    """``dataset``: the evaluation set's name (default: the run's default one)."""
    out = Path(out)
    dataset = dataset or cfg.eval_dataset
    per_class = pd.DataFrame(
        {
            "label": classes["label"].to_numpy(),
            "wnid": classes["wnid"].to_numpy(),
            "name": classes["name"].to_numpy(),
            **{k: arrays[k] for k in PER_CLASS_KEYS},
        }
    )
    per_class = per_class[["label", "wnid", "name", "freq", "acc", "pred", *PER_CLASS_KEYS[2:-1]]]
    with atomic_path(out / Path(L.EVAL_PER_CLASS).name) as tmp:
        per_class.to_csv(tmp, sep="\t", index=False)
    save_arrays(out / Path(L.EVAL_METRICS).name, arrays)
    write_json(
        out / Path(L.EVAL_SUMMARY).name,
        {
            "run_id": cfg.run_id,
            "factors": cfg.factors,
            "eval_dataset": dataset,
            "eval_default": dataset == cfg.eval_dataset,
            **summary,
            "job": jobinfo.current(),
        },
    )
