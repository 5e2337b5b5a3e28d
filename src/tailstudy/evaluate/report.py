"""Evaluation outputs: ``summary.json`` (run factors + statistics, and the ``job`` that computed
them: SLURM job id or null, host), ``per_class.tsv``, ``confusion.npz`` — the contract the
collection and figure steps read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy import jobinfo
from tailstudy.config import RunConfig
from tailstudy.io import atomic_path, write_json


def write_eval(out: str | Path, cfg: RunConfig, summary: dict, arrays: dict, classes) -> None:
    out = Path(out)
    per_class = pd.DataFrame(
        {
            "label": classes["label"].to_numpy(),
            "wnid": classes["wnid"].to_numpy(),
            "name": classes["name"].to_numpy(),
            "freq": arrays["freq"],
            "acc": arrays["acc"],
            "pred": arrays["pred"],
        }
    )
    with atomic_path(out / "per_class.tsv") as tmp:
        per_class.to_csv(tmp, sep="\t", index=False)
    with atomic_path(out / "confusion.npz", suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, confusion=arrays["confusion"])
    write_json(
        out / "summary.json",
        {
            "run_id": cfg.run_id,
            "factors": cfg.factors,
            "eval_dataset": cfg.eval_dataset,
            **summary,
            "job": jobinfo.current(),
        },
    )
