"""Fig. 5: training-set scale and text encoder.

x = the training set's size (rows, log axis); panels (a) top-1, (b) ρ(freq, acc), (c) mean NC1,
(d) mean NC2_M of the default evaluation set. CLIP runs are lines coloured by text-tower mode
(the recipe's label); SL runs are ✖ in the colour of the CLIP mode with the same label (e.g.
a frozen CLIP head), black otherwise, dashed where several sizes. Each point is the mean over
the seeds its arm has at every size; the x ticks are the sizes trained on.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.ticker import NullLocator

from tailstudy.figures.style import legend_right
from tailstudy.io import UserError

PANELS = (
    ("top1", "(a) top-1"),
    ("rho_acc", "(b) corr. freq vs acc"),
    ("mean_nc1", "(c) mean NC1"),
    ("mean_nc2_M", "(d) mean NC2$_M$"),
)


def _common_seeds(table: pd.DataFrame) -> pd.DataFrame:
    """The runs of each (objective, recipe) arm whose seed the arm has at every training size,
    so that a line compares like with like (an arm with more seeds at its end points, as for a
    claim, is drawn over the seeds all its points share)."""
    kept = []
    for arm, runs in table.groupby(["objective", "recipe"], dropna=False, sort=False):
        common = set.intersection(*(set(g["seed"]) for _, g in runs.groupby("n_train")))
        if not common:
            raise UserError(f"scale plot: arm {arm} has no seed shared by all its training sizes")
        kept.append(runs[runs["seed"].isin(common)])
    return pd.concat(kept)


def series(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every (objective, recipe, training size) arm (the seeds the arm has
    at every size)."""
    stats = [s for s, _ in PANELS]
    missing = [c for c in ("n_train", *stats) if c not in table.columns]
    if missing:
        raise UserError(
            f"the scale plot needs {', '.join(missing)} in the study table: "
            "re-run the evaluations of its runs"
        )
    keys = ["objective", "recipe", "recipe_label", "n_train"]
    g = _common_seeds(table).groupby(keys, dropna=False)
    out = g[stats].mean().reset_index()
    out["n_seeds"] = g.size().to_numpy()
    return out.sort_values(["objective", "recipe", "n_train"]).reset_index(drop=True)


def _size(n: float) -> str:
    """A tick label for a training-set size: 3.26M, 407k, 776."""
    if n >= 1e6:
        return f"{n / 1e6:.3g}M"
    return f"{n / 1e3:.3g}k" if n >= 1e4 else f"{n:.0f}"


def plot(table: pd.DataFrame, spec: dict, eval_root):
    import matplotlib.pyplot as plt

    data = series(table)
    clip = data[data["objective"] != "sl"]
    sl = data[data["objective"] == "sl"]
    modes = list(dict.fromkeys(clip["recipe_label"]))
    colours = dict(zip(modes, sns.color_palette("tab10", len(modes)), strict=True))
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.6))
    for ax, (stat, title) in zip(axes, PANELS, strict=True):
        for mode in modes:
            d = clip[clip["recipe_label"] == mode]
            ax.plot(d["n_train"], d[stat], marker="o", color=colours[mode], label=f"CLIP {mode}")
        for label, d in sl.groupby("recipe_label", sort=False):
            ax.plot(
                d["n_train"],
                d[stat],
                marker="X",
                ms=9,
                color=colours.get(label, "k"),
                ls="--" if len(d) > 1 else "none",
                label=f"SL {label}",
            )
        ax.set_xscale("log")
        sizes = sorted(data["n_train"].unique())
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(sizes, [_size(n) for n in sizes], rotation=45 if len(sizes) > 4 else 0)
        ax.set_xlabel("training-set size (images)")
        ax.set_title(title)
    legend_right(fig, axes[:1])
    return fig, data
