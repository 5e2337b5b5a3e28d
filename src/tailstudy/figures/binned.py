"""Fig. 15: per-class statistics binned by training-set class frequency on a log scale.

One panel per (per-class statistic, series), statistics outer (``per_class``, default acc and
pred; Fig. 15a: SL acc, CLIP acc, SL #pred, CLIP #pred). The classes of the series' run are
binned by frequency (``[0, 1)`` for zero counts, then ``per_decade`` bins per power of ten,
``analysis.stats.binned``), and each bin is drawn as the mean ± standard deviation of the
statistic over its classes. A series is the lowest-seed run its
``select`` filter matches, read from that run's ``per_class.tsv`` on its default evaluation set.

``pending`` names series that no run of this workflow gives yet (e.g. the paper's CLIP panel,
a CLIP pre-trained elsewhere): their panels are drawn empty with the note, and the CSV has one
row per (statistic, series) saying so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tailstudy import layout as L
from tailstudy.analysis.stats import binned, decade_edges
from tailstudy.figures.kinds import ordered, series_runs
from tailstudy.io import UserError

NAMES = {"acc": "accuracy", "pred": "# predictions"}


def _edge(v: float) -> str:
    k = np.log10(v) if v > 0 else None
    if k is not None and float(k).is_integer() and k >= 3:
        return f"$10^{{{int(k)}}}$"
    return f"{v:.3g}"


def _bin_label(low: float, high: float) -> str:
    """``0`` for the zero-count bin, else ``low–high`` (powers of ten from 1000 as 10^k)."""
    return "0" if high <= 1 else f"{_edge(low)}–{_edge(high)}"


def series(table: pd.DataFrame, spec: dict, eval_root) -> pd.DataFrame:
    """One row per (series, statistic, bin): n, mean and std; pending series one row each."""
    chosen = series_runs(table, spec)
    stats = spec.get("per_class") or ["acc", "pred"]
    per_decade = int(spec.get("per_decade", 1))
    frames = []
    for label, (run, dataset) in chosen.items():
        per_class = L.eval_file(L.EVAL_PER_CLASS, eval_root, run=run, dataset=dataset)
        pc = pd.read_csv(per_class, sep="\t")
        missing = [s for s in ("freq", *stats) if s not in pc.columns]
        if missing:
            raise UserError(f"figure series {label}: {run}'s per_class.tsv lacks {missing}")
        edges = decade_edges(pc["freq"].to_numpy(), per_decade)
        for stat in stats:
            b = binned(pc["freq"].to_numpy(), pc[stat].to_numpy(), edges)
            b.insert(0, "series", label)
            b.insert(1, "run_id", run)
            b.insert(2, "statistic", stat)
            frames.append(b)
    for label, note in ordered(spec, "pending").items():
        if label in chosen:
            raise UserError(f"figure series {label} is both selected and pending")
        for stat in stats:
            frames.append(pd.DataFrame([{"series": label, "statistic": stat, "note": note}]))
    if not frames:
        raise UserError("the binned plot needs a 'select' block naming its series")
    return pd.concat(frames, ignore_index=True)


def plot(table: pd.DataFrame, spec: dict, eval_root):
    import matplotlib.pyplot as plt

    data = series(table, spec, eval_root)
    stats = list(dict.fromkeys(data["statistic"]))
    labels = list(dict.fromkeys(data["series"]))
    panels = [(s, lab) for s in stats for lab in labels]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.4), squeeze=False)
    for ax, (stat, label) in zip(axes[0], panels, strict=True):
        d = data[(data["series"] == label) & (data["statistic"] == stat)]
        ax.set_title(f"{label} {NAMES.get(stat, stat)}", fontsize=10)
        if "note" in d.columns and d["note"].notna().any():
            note = d["note"].iloc[0]
            ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True, transform=ax.transAxes)
            ax.set_xticks([])
            continue
        d = d[d["n"] > 0]
        x = np.arange(len(d))
        ax.errorbar(x, d["mean"], yerr=d["std"], marker="o", capsize=3)
        bins = zip(d["bin_low"], d["bin_high"], strict=True)
        ax.set_xticks(x, [_bin_label(lo, hi) for lo, hi in bins])
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_xlabel("class frequency (log bins)")
    fig.tight_layout()
    return fig, data
