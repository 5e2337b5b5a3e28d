"""Figs. 3 and 19: caption descriptiveness (CLIP) and vocabulary size (SL).

(a) x = ρ(freq, acc), y = ρ(freq, #pred); (b) x = ρ(freq, acc), y = top-1. CLIP points (•) are
coloured by caption type (template captions in orange shades, natural-language captions in green
shades); SL points (✖) in blue shades by vocabulary size. Each point is the mean over seeds; lines
are least-squares fits for SL (dashed), CLIP-template and CLIP-natural.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

STATS = ["rho_acc", "rho_pred", "top1"]


def series(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds for every (objective, variant, recipe) arm, with a display label."""
    keys = [
        "objective",
        "variant",
        "recipe",
        "variant_label",
        "recipe_label",
        "caption_kind",
        "vocab_size",
    ]
    g = table.groupby(keys, dropna=False)
    out = g[STATS].mean().reset_index()
    out["n_seeds"] = g.size().to_numpy()
    out["group"] = np.where(
        out["objective"] == "sl",
        "SL",
        np.where(out["caption_kind"] == "template", "CLIP template", "CLIP natural"),
    )
    out["label"] = np.where(
        out["objective"] == "sl", "SL " + out["recipe_label"], out["variant_label"]
    )
    return out.sort_values(["group", "vocab_size", "label"]).reset_index(drop=True)


def _fit(ax, x, y, **kw):
    if len(x) >= 2 and np.ptp(x) > 0:
        a, b = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 10)
        ax.plot(xs, a * xs + b, **kw)


def plot(table: pd.DataFrame, spec: dict, eval_root):
    import matplotlib.pyplot as plt

    data = series(table)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    clip_t = data[data["group"] == "CLIP template"]
    clip_n = data[data["group"] == "CLIP natural"]
    sl = data[data["group"] == "SL"].sort_values("vocab_size", key=lambda s: s.replace(0, 10**9))
    oranges = sns.color_palette("Oranges", len(clip_t) + 2)[2:]
    greens = sns.color_palette("Greens", len(clip_n) + 2)[2:]
    blues = sns.color_palette("Blues", len(sl) + 2)[2:]
    for ax, ystat, title in zip(
        axes, ["rho_pred", "top1"], ["(a) corr. freq vs #pred", "(b) top-1 accuracy"], strict=True
    ):
        for df, colors, marker in ((clip_t, oranges, "o"), (clip_n, greens, "o"), (sl, blues, "X")):
            for (_, row), c in zip(df.iterrows(), colors, strict=True):
                ax.scatter(
                    row["rho_acc"],
                    row[ystat],
                    color=c,
                    marker=marker,
                    s=60,
                    edgecolor="k",
                    linewidth=0.4,
                    label=row["label"],
                    zorder=3,
                )
        _fit(ax, sl["rho_acc"].to_numpy(), sl[ystat].to_numpy(), color="tab:blue", ls="--", lw=1)
        _fit(ax, clip_t["rho_acc"].to_numpy(), clip_t[ystat].to_numpy(), color="tab:orange", lw=1)
        _fit(ax, clip_n["rho_acc"].to_numpy(), clip_n[ystat].to_numpy(), color="tab:green", lw=1)
        ax.set_xlabel("corr. freq vs acc (Spearman)")
        ax.set_ylabel("corr. freq vs #pred (Spearman)" if ystat == "rho_pred" else "top-1")
        ax.set_title(title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8
    )
    fig.tight_layout()
    return fig, data
