"""Fig. 8: extreme tail trimming.

Panels (a) 1-shot head & mid, (b) 1-shot tail, (c) 0-shot head & mid, (d) 0-shot tail: x = mean
per-class accuracy over the classes of that part (METHODS §5.6; the tail is the trim's T_N),
y = N, the number of trimmed classes (log axis). One series per (objective, recipe): CLIP as
dots, SL as crosses; random-init text towers / heads dashed. Each point is the mean over seeds.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns

from tailstudy.figures.style import legend_right
from tailstudy.io import UserError

PANELS = (
    (1, "acc_head_mid", "(a) 1-shot, head & mid"),
    (1, "acc_tail", "(b) 1-shot, tail"),
    (0, "acc_head_mid", "(c) 0-shot, head & mid"),
    (0, "acc_tail", "(d) 0-shot, tail"),
)


def series(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of every (objective, recipe, N, ceil) arm."""
    need = ["tail_n", "tail_ceil", "acc_head_mid", "acc_tail"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise UserError(
            f"the tail-trim plot needs {', '.join(missing)} in the study table: its runs must "
            "train on trimmed variants (trim: {tail, ceil}) and be evaluated"
        )
    table = table.dropna(subset=["tail_n", "tail_ceil"])
    keys = ["objective", "recipe", "recipe_label", "tail_n", "tail_ceil"]
    g = table.groupby(keys, dropna=False)
    out = g[["acc_head_mid", "acc_tail"]].mean().reset_index()
    out["n_seeds"] = g.size().to_numpy()
    out["series"] = out["objective"].str.upper() + " " + out["recipe_label"]
    return out.sort_values(["objective", "recipe", "tail_ceil", "tail_n"]).reset_index(drop=True)


def plot(table: pd.DataFrame, spec: dict, eval_root):
    import matplotlib.pyplot as plt

    data = series(table)
    names = list(dict.fromkeys(data["series"]))
    colours = dict(zip(names, sns.color_palette("tab10", len(names)), strict=True))
    fig, axes = plt.subplots(1, len(PANELS), figsize=(4 * len(PANELS), 3.6), sharey=True)
    for ax, (ceil, stat, title) in zip(axes, PANELS, strict=True):
        part = data[data["tail_ceil"] == ceil]
        for name in names:
            d = part[part["series"] == name]
            if d.empty:
                continue
            row = d.iloc[0]
            random_init = "rand" in str(row["recipe_label"]).lower()
            ax.plot(
                d[stat],
                d["tail_n"],
                marker="X" if row["objective"] == "sl" else "o",
                ls="--" if random_init else "-",
                color=colours[name],
                label=name,
            )
        ax.set_yscale("log")
        ax.set_xlabel("top-1 (mean per-class accuracy)")
        ax.set_title(title)
    axes[0].set_ylabel("N (trimmed classes)")
    legend_right(fig, axes)  # every series once, whichever panel drew it
    return fig, data
