"""Gather a study's evaluation summaries into one tidy table (one row per run).

A run's row holds its factors and the statistics of its default evaluation set (top-1, the
correlations with its training frequencies, the mean neural-collapse metrics and their
correlations, a trim's head/tail accuracy); each further evaluation set of the run (e.g.
ImageNetV2) adds its statistics as ``<dataset>.<statistic>`` columns.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tailstudy.io import UserError, atomic_path, read_json

NOT_STATISTICS = ("factors", "run_id", "job", "eval_dataset", "eval_default")


def collect(study: str, eval_dirs: list[Path], out: str | Path) -> pd.DataFrame:
    rows: dict[str, dict] = {}
    further: list[dict] = []
    for d in eval_dirs:
        s = read_json(Path(d) / "summary.json")
        stats = {k: v for k, v in s.items() if k not in NOT_STATISTICS}
        if not s.get("eval_default", True):
            further.append({"run_id": s["run_id"], "dataset": s["eval_dataset"], **stats})
            continue
        if s["run_id"] in rows:
            raise UserError(f"study {study}: run {s['run_id']} has two default evaluations")
        rows[s["run_id"]] = {
            "study": study,
            "run_id": s["run_id"],
            **s["factors"],
            "eval_dataset": s.get("eval_dataset", ""),
            **stats,
        }
    for f in further:
        if f["run_id"] not in rows:
            raise UserError(
                f"study {study}: run {f['run_id']} has an evaluation on {f['dataset']} "
                "but none on its default evaluation set"
            )
        stats = {k: v for k, v in f.items() if k not in ("run_id", "dataset")}
        rows[f["run_id"]].update({f"{f['dataset']}.{k}": v for k, v in stats.items()})
    if not rows:
        raise UserError(f"study {study} has no evaluated runs")
    table = pd.DataFrame(list(rows.values())).sort_values("run_id").reset_index(drop=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table


def read_table(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", keep_default_na=False, na_values=["", "nan", "NaN"])
