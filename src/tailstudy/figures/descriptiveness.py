"""Figs. 3 and 19: caption descriptiveness (CLIP) and vocabulary size (SL).

(a) x = ρ(freq, acc), y = ρ(freq, #pred); (b) x = ρ(freq, acc), y = top-1. CLIP points (•) are
coloured by caption type (template captions in orange shades, natural-language captions in green
shades, lightest to darkest from the least to the most descriptive variant as the figure's
``descriptiveness`` setting lists them); SL points (✖) in blue shades by vocabulary size. Each
point is the mean over seeds; lines are least-squares fits for SL (dashed), CLIP-template and
CLIP-natural. In (b) the natural-language fit uses only points with top-1 above the figure's
``fit_min_top1`` (METHODS §6.3). The CSV lists the points in drawing order with their ``color``
and ``in_top1_fit`` (whether the point enters its group's fit in (b)).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns

from tailstudy.figures.style import legend_right
from tailstudy.io import UserError

STATS = ["rho_acc", "rho_pred", "top1"]
FIT_MIN_TOP1 = 0.2  # METHODS §6.3: the natural-language fit of (b) uses points with top-1 > 20 %


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


def by_descriptiveness(
    natural: pd.DataFrame, order: list[str] | None, figure: str = ""
) -> pd.DataFrame:
    """Natural-language CLIP points from the least to the most descriptive variant, as ``order``
    (variant names) lists them; without an order, as they come."""
    if not order:
        return natural
    missing = sorted(set(natural["variant"]) - set(order))
    if missing:
        where = f"figure {figure}: " if figure else ""
        raise UserError(
            f"{where}natural-language variant(s) {', '.join(missing)} missing from descriptiveness"
        )
    rank = {v: i for i, v in enumerate(order)}
    return natural.sort_values("variant", key=lambda s: s.map(rank), kind="stable")


def mark_top1_fit(data: pd.DataFrame, min_top1: float) -> pd.DataFrame:
    """``in_top1_fit``: the point enters its group's fit in (b) — every SL and template point,
    natural-language points only with top-1 above ``min_top1``."""
    natural = data["group"] == "CLIP natural"
    return data.assign(in_top1_fit=~natural | (data["top1"] > min_top1))


def _fit(ax, x, y, **kw):
    if len(x) >= 2 and np.ptp(x) > 0:
        a, b = np.polyfit(x, y, 1)
        xs = np.linspace(x.min(), x.max(), 10)
        ax.plot(xs, a * xs + b, **kw)


def plot(table: pd.DataFrame, spec: dict, eval_root):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    data = mark_top1_fit(series(table), spec.get("fit_min_top1", FIT_MIN_TOP1))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    clip_t = data[data["group"] == "CLIP template"]
    clip_n = by_descriptiveness(
        data[data["group"] == "CLIP natural"], spec.get("descriptiveness"), spec.get("name", "")
    )
    sl = data[data["group"] == "SL"].sort_values("vocab_size", key=lambda s: s.replace(0, 10**9))
    oranges = sns.color_palette("Oranges", len(clip_t) + 2)[2:]
    greens = sns.color_palette("Greens", len(clip_n) + 2)[2:]
    blues = sns.color_palette("Blues", len(sl) + 2)[2:]
    drawn = pd.concat([clip_t, clip_n, sl], ignore_index=True)
    drawn["color"] = [to_hex(c) for c in oranges + greens + blues]
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
        for df, kw in (
            (sl, {"color": "tab:blue", "ls": "--"}),
            (clip_t, {"color": "tab:orange"}),
            (clip_n, {"color": "tab:green"}),
        ):
            if ystat == "top1":
                df = df[df["in_top1_fit"]]
            _fit(ax, df["rho_acc"].to_numpy(), df[ystat].to_numpy(), lw=1, **kw)
        ax.set_xlabel("corr. freq vs acc (Spearman)")
        ax.set_ylabel("corr. freq vs #pred (Spearman)" if ystat == "rho_pred" else "top-1")
        ax.set_title(title)
    legend_right(fig, axes[:1])
    return fig, drawn
