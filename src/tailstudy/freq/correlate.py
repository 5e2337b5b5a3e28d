"""Pairwise Spearman correlation of frequency tables, aligned by class name."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.freq.sources import align_by_name, read_table
from tailstudy.io import UserError, atomic_path


def spearman_matrix(
    tables: Sequence[tuple[str, list[str], np.ndarray]], intersect: bool = False
) -> pd.DataFrame:
    """Square matrix of Spearman's rho (``scipy.stats.spearmanr``: average ranks for ties, NaN
    for a constant table) between tables ``(label, names, counts)``, rows/columns = labels."""
    from scipy.stats import spearmanr

    labels = [t[0] for t in tables]
    if len(set(labels)) != len(labels):
        raise UserError("table labels must be unique")
    _, m = align_by_name(tables, intersect=intersect)
    k = len(tables)
    rho = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            a, b = m[:, i], m[:, j]
            constant = np.ptp(a) == 0 or np.ptp(b) == 0
            rho[i, j] = rho[j, i] = math.nan if constant else float(spearmanr(a, b).statistic)
        if np.ptp(m[:, i]) == 0:
            rho[i, i] = math.nan
    return pd.DataFrame(rho, index=labels, columns=labels)


def read_labelled_tables(specs: Sequence[str]) -> list[tuple[str, list[str], np.ndarray]]:
    """``NAME=PATH`` arguments -> ``(NAME, names, counts)``."""
    out = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            raise UserError(f"expected NAME=TABLE, got {spec!r}")
        out.append((label, *read_table(path)))
    return out


def write_matrix(path: str | Path, df: pd.DataFrame) -> None:
    """Square TSV: header row and first column hold the labels (top-left cell empty)."""
    lines = ["\t".join(["", *df.columns])]
    for label, row in df.iterrows():
        lines.append("\t".join([str(label), *(repr(float(v)) for v in row)]))
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
