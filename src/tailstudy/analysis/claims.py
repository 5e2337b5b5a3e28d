"""Claims: statistics of arm a compared with arm b, seed by seed (results/claims.tsv).

A claim names a study, two arms (run filters) and one or more tests, each a statistic with the
direction expected of a relative to b: ``statistic`` + ``expect`` for one test, or
``tests: [{statistic, expect}, ...]`` for several (e.g. higher top-1 *and* lower ρ(freq, acc)).
A claim holds when every test holds for *every* seed the two arms share — the same training
budget and settings for both arms, nothing special-cased. The table has one row per claim, test
and seed (``holds``), and ``claim_holds`` for the claim as a whole.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tailstudy.analysis.collect import read_table
from tailstudy.io import UserError, atomic_path

COLUMNS = ["claim", "text", "statistic", "expect", "seed", "a", "b", "holds", "claim_holds"]


def select(table: pd.DataFrame, flt: dict) -> pd.DataFrame:
    mask = pd.Series(True, index=table.index)
    for k, v in flt.items():
        mask &= table[k].astype(str) == str(v)
    return table[mask]


def claim_tests(claim: dict) -> list[dict]:
    """The (statistic, expect) tests of a claim, whichever form it is written in."""
    if "tests" in claim:
        return claim["tests"]
    return [{"statistic": claim["statistic"], "expect": claim["expect"]}]


def _arm(df: pd.DataFrame, claim: dict, arm: str, statistic: str) -> pd.Series:
    runs = select(df, claim[arm])
    if statistic not in runs.columns:
        raise UserError(f"claim {claim['id']}: the study table has no statistic {statistic!r}")
    values = runs.set_index("seed")[statistic]
    if values.index.duplicated().any():
        raise UserError(f"claim {claim['id']}: arm {arm} matches several runs per seed; narrow it")
    return values


def check_claims(claims: list[dict], studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every claim against the study tables (by study name): one row per claim, test and seed."""
    rows = []
    for c in claims:
        if c["study"] not in studies:
            raise UserError(f"claim {c['id']}: no table for study {c['study']}")
        df = studies[c["study"]]
        for test in claim_tests(c):
            stat, expect = test["statistic"], test["expect"]
            a, b = _arm(df, c, "a", stat), _arm(df, c, "b", stat)
            seeds = sorted(set(a.index) & set(b.index))
            if not seeds:
                raise UserError(f"claim {c['id']}: the arms share no seed in study {c['study']}")
            for s in seeds:
                diff = a[s] - b[s]
                rows.append(
                    {
                        "claim": c["id"],
                        "text": c["text"],
                        "statistic": stat,
                        "expect": f"a {'>' if expect == 'greater' else '<'} b",
                        "seed": s,
                        "a": a[s],
                        "b": b[s],
                        "holds": bool(diff > 0 if expect == "greater" else diff < 0),
                    }
                )
    res = pd.DataFrame(rows, columns=COLUMNS[:-1])
    res["claim_holds"] = res.groupby("claim")["holds"].transform("all").astype(bool)
    return res


def evaluate_claims(claims: list[dict], tables: list[Path], out: str | Path) -> pd.DataFrame:
    studies = {}
    for t in tables:
        df = read_table(t)
        studies[df["study"].iloc[0]] = df
    res = check_claims(claims, studies)
    with atomic_path(out) as tmp:
        res.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    return res
