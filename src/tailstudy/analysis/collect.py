"""Gather a study's evaluation summaries into one tidy table (one row per run)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tailstudy.io import UserError, atomic_path, read_json


def collect(study: str, eval_dirs: list[Path], out: str | Path) -> pd.DataFrame:
    rows = []
    for d in eval_dirs:
        s = read_json(Path(d) / "summary.json")
        rows.append(
            {
                "study": study,
                "run_id": s["run_id"],
                **s["factors"],
                **{k: v for k, v in s.items() if k not in ("factors", "run_id", "job")},
            }
        )
    if not rows:
        raise UserError(f"study {study} has no evaluated runs")
    table = pd.DataFrame(rows).sort_values("run_id").reset_index(drop=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table


def read_table(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["", "nan", "NaN"])
