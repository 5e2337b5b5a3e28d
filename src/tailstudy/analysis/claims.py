"""Claims: a statistic of arm a compared with arm b, seed by seed (results/claims.tsv).

A claim holds when the expected direction holds for *every* seed of the study — the same training
budget and settings for both arms, nothing special-cased.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tailstudy.analysis.collect import read_table
from tailstudy.io import UserError, atomic_path


def select(table: pd.DataFrame, flt: dict) -> pd.DataFrame:
    mask = pd.Series(True, index=table.index)
    for k, v in flt.items():
        mask &= table[k].astype(str) == str(v)
    return table[mask]


def evaluate_claims(claims: list[dict], tables: list[Path], out: str | Path) -> pd.DataFrame:
    studies = {}
    for t in tables:
        df = read_table(t)
        studies[df["study"].iloc[0]] = df
    rows = []
    for c in claims:
        if c["study"] not in studies:
            raise UserError(f"claim {c['id']}: no table for study {c['study']}")
        df = studies[c["study"]]
        a = select(df, c["a"]).set_index("seed")[c["statistic"]]
        b = select(df, c["b"]).set_index("seed")[c["statistic"]]
        if a.index.duplicated().any() or b.index.duplicated().any():
            raise UserError(f"claim {c['id']}: an arm matches several runs per seed; narrow it")
        seeds = sorted(set(a.index) & set(b.index))
        if not seeds:
            raise UserError(f"claim {c['id']}: the arms share no seed in study {c['study']}")
        for s in seeds:
            diff = a[s] - b[s]
            ok = diff > 0 if c["expect"] == "greater" else diff < 0
            rows.append(
                {
                    "claim": c["id"],
                    "text": c["text"],
                    "statistic": c["statistic"],
                    "expect": f"a {'>' if c['expect'] == 'greater' else '<'} b",
                    "seed": s,
                    "a": a[s],
                    "b": b[s],
                    "holds": bool(ok),
                }
            )
    res = pd.DataFrame(rows)
    res["claim_holds"] = res.groupby("claim")["holds"].transform("all")
    with atomic_path(out) as tmp:
        res.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    return res
