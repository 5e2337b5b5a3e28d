"""DINO transfer: Fig. 10 (Δ of each arm's linear-probe score against the baseline, per
transfer set) and Table 2 (the scores, with the paper's beside them at paper scale).

Both read the probe tables of DINO studies (``tailstudy.evaluate.probe.collect``: one row per
run, ``probe_<dataset>`` columns and ``probe_mean``). An arm is a run filter of the spec's
``select`` (label -> filter; default: one arm per recipe); several seeds of an arm are
averaged. The transfer sets are drawn in the spec's ``datasets`` order (the paper's order of
the figure), labelled by ``dataset_labels``; "Avg" is the mean over all probed sets.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tailstudy.analysis.claims import select
from tailstudy.evaluate.probe import MEAN, PREFIX
from tailstudy.figures.kinds import ordered
from tailstudy.io import UserError

AVG = "Avg"


def _arms(table: pd.DataFrame, spec: dict) -> dict[str, dict]:
    chosen = ordered(spec)
    if chosen:
        return dict(chosen)
    return {
        str(label): {"recipe": recipe}
        for recipe, label in table.drop_duplicates("recipe")[["recipe", "recipe_label"]].values
    }


def _scores(table: pd.DataFrame, flt: dict, datasets: list[str], what: str) -> pd.Series:
    """Mean over the arm's seeds of each dataset's score, and Avg (the mean of probe_mean)."""
    rows = select(table, flt)
    if rows.empty:
        raise UserError(f"{what}: no run of the probe table matches {flt}")
    out = rows[[PREFIX + d for d in datasets]].mean()
    out.index = datasets
    out[AVG] = rows[MEAN].mean()
    return out


def _long(table: pd.DataFrame, spec: dict) -> tuple[list[str], dict[str, pd.Series], dict]:
    datasets = list(spec.get("datasets") or spec["probe_datasets"])
    labels = {d: spec.get("dataset_labels", {}).get(d, d) for d in datasets}
    arms = {a: _scores(table, f, datasets, f"arm {a}") for a, f in _arms(table, spec).items()}
    return datasets, arms, labels


def _colours(table: pd.DataFrame, spec: dict, arms: list[str]) -> dict:
    """As the paper's Fig. 10: arms subsampling the prototypes in blue shades, vanilla arms (all
    prototypes every iteration) in orange shades."""
    import matplotlib.pyplot as plt

    flt = _arms(table, spec)
    vanilla = {}
    for a in arms:
        rows = select(table, flt[a])
        vanilla[a] = "sample_num" in rows and bool((rows["sample_num"] == rows["prototypes"]).all())
    out = {}
    for is_vanilla, cmap in ((False, "Blues"), (True, "Oranges")):
        group = [a for a in arms if vanilla[a] == is_vanilla]
        shades = plt.get_cmap(cmap)(np.linspace(0.45, 0.9, max(len(group), 1)))
        out.update(zip(group, shades, strict=False))
    return out


def delta(table: pd.DataFrame, spec: dict, eval_root=None):
    """Fig. 10: grouped bars, one group per transfer set (and Avg), one bar per arm."""
    import matplotlib.pyplot as plt

    datasets, arms, labels = _long(table, spec)
    base = _scores(table, spec["baseline"], datasets, "baseline")
    arms = {a: s for a, s in arms.items() if not s.equals(base)}
    if not arms:
        raise UserError("probe-delta: no arm besides the baseline")
    cols = [*datasets, AVG]
    rows = [
        {"arm": a, "dataset": d, "label": labels.get(d, d), "delta": s[d] - base[d]}
        for a, s in arms.items()
        for d in cols
    ]
    data = pd.DataFrame(rows)
    x = np.arange(len(cols))
    width = 0.8 / len(arms)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * len(cols) * max(1, len(arms) / 3), 3.2))
    colours = _colours(table, spec, list(arms))
    for i, (a, s) in enumerate(arms.items()):
        ax.bar(
            x + (i - (len(arms) - 1) / 2) * width,
            [s[d] - base[d] for d in cols],
            width,
            label=a,
            color=colours[a],
        )
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, [labels.get(d, d) for d in cols], rotation=45, ha="right")
    ax.set_ylabel("Δ linear-probe score vs baseline")
    ax.legend(fontsize=7, frameon=False)
    return fig, data


def table(table: pd.DataFrame, spec: dict, eval_root=None):
    """Table 2: one row per arm, the score per transfer set and Avg; at paper scale the paper's
    value beside each (``paper_rows``: arm -> its Table 2 row, ``paper_datasets``: our
    dataset -> the paper's column)."""
    import matplotlib.pyplot as plt

    from tailstudy.analysis.paper import TABLE2

    datasets, arms, labels = _long(table, spec)
    paper_rows = spec.get("paper_rows") or {}
    paper_cols = {**(spec.get("paper_datasets") or {}), AVG: AVG}
    cols = [*datasets, AVG]
    rows = []
    for a, s in arms.items():
        ref = paper_rows.get(a)
        for d in cols:
            paper, col = np.nan, paper_cols.get(d)
            if ref is not None:
                pretrain, vocab = ref.rsplit("/", 1)
                paper = TABLE2.get((pretrain, int(vocab), col or ""), np.nan)
            rows.append(
                {
                    "arm": a,
                    "dataset": d,
                    "label": labels.get(d, d),
                    "score": s[d],
                    "paper": paper,
                    # the paper's cell this score stands beside (empty where none)
                    "paper_row": ref if ref is not None and col else None,
                    "paper_dataset": col if ref is not None else None,
                }
            )
    data = pd.DataFrame(rows)
    cells = []
    for a in arms:
        part = data[data["arm"] == a]
        cells.append(
            [a]
            + [
                f"{r.score:.1f}" + ("" if np.isnan(r.paper) else f" ({r.paper:.1f})")
                for r in part.itertuples()
            ]
        )
    fig, ax = plt.subplots(figsize=(1.6 + 0.75 * len(cols), 0.5 + 0.3 * len(cells)))
    ax.axis("off")
    t = ax.table(
        cellText=cells,
        colLabels=["", *[labels.get(d, d) for d in cols]],
        loc="center",
        cellLoc="center",
    )
    t.auto_set_font_size(False)
    t.set_fontsize(7)
    t.auto_set_column_width(list(range(len(cols) + 1)))
    if paper_rows:
        ax.set_title("linear-probe score (paper's in parentheses)", fontsize=8)
    return fig, data
