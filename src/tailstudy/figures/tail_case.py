"""Fig. 9: the zero-shot-tail case study (SL on IN-Caps with the 50 rarest classes trimmed to 0).

(a) Classifier affinity (METHODS §5.9) of the series named in ``affinity`` (default: the first
two, random-init and frozen CLIP heads): the cosine matrix of 50 head classes drawn with seed 42
followed by the trimmed tail, rarest last (heatmap, vmin -0.15, vmax 1). (b) Per tail class, in
descending order of their frequency before the trim: accuracy × 100 (left) and number of
predictions (right) of every selected series, bars side by side.

Each series is the lowest-seed run its filter selects; the class vectors, the tail and the
per-class numbers come from that run's ``metrics.npz`` (``class_vectors``, ``tail``, ``acc``,
``pred``, ``freq``). The CSV holds panel (a)'s matrices (``row``, ``col``, ``cosine``: positions
in the evaluation classes) and panel (b)'s bars (``tail_rank``, ``class``, ``acc``, ``pred``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy import layout as L
from tailstudy.evaluate.auxiliary import classifier_affinity
from tailstudy.evaluate.outputs import read_metrics
from tailstudy.figures.kinds import series_runs
from tailstudy.io import UserError

COLOURS = ("0.55", "tab:green", "tab:blue", "tab:orange", "tab:purple")  # paper: grey, green, blue


def metrics_path(eval_root, run: str, dataset: str) -> Path:
    """``metrics.npz`` of a run's evaluation on ``dataset`` under ``eval_root``."""
    return L.eval_file(L.EVAL_METRICS, eval_root, run=run, dataset=dataset)


def _series(table: pd.DataFrame, spec: dict, eval_root) -> dict[str, tuple[str, dict]]:
    out = {}
    for label, (run, dataset) in series_runs(table, spec).items():
        m = read_metrics(metrics_path(eval_root, run, dataset))
        if "class_vectors" not in m:
            raise UserError(
                f"figure series {label}: {run}'s metrics.npz has no class_vectors: it predates "
                "them; rerun its evaluation"
            )
        if "tail" not in m:
            raise UserError(
                f"figure series {label}: {run} is not a trimmed-tail run (its metrics.npz has no "
                "tail): select a trim variant"
            )
        out[label] = (run, m)
    tails = {label: m["tail"].tolist() for label, (_, m) in out.items()}
    if len({tuple(t) for t in tails.values()}) > 1:
        raise UserError(f"the selected runs were trimmed to different tails: {tails}")
    return out


def plot(table: pd.DataFrame, spec: dict, eval_root):
    import matplotlib.pyplot as plt

    series = _series(table, spec, eval_root)
    affinity = spec.get("affinity") or list(series)[:2]
    unknown = [a for a in affinity if a not in series]
    if unknown:
        raise UserError(f"affinity names {unknown}, which are not series of select")
    n_head = int(spec.get("n_head", 50))
    frames = []
    fig, axes = plt.subplots(
        1, len(affinity) + 2, figsize=(4.2 * (len(affinity) + 2), 4.2), squeeze=False
    )
    axes = axes[0]
    for ax, label in zip(axes, affinity, strict=False):
        run, m = series[label]
        a = classifier_affinity(
            m["class_vectors"], m["freq"], len(m["tail"]), n_head, seed=42, tail=m["tail"]
        )
        n = len(a["classes"])
        frames.append(
            pd.DataFrame(
                {
                    "panel": "a",
                    "series": label,
                    "run_id": run,
                    "row": np.repeat(a["classes"], n),
                    "col": np.tile(a["classes"], n),
                    "cosine": a["affinity"].ravel(),
                }
            )
        )
        im = ax.imshow(a["affinity"], vmin=-0.15, vmax=1, cmap="viridis")
        ax.axhline(n_head - 0.5, color="w", lw=0.8)
        ax.axvline(n_head - 0.5, color="w", lw=0.8)
        ax.set_title(f"(a) {label}", fontsize=10)
        ax.set_xlabel(f"{n_head} head classes, then the tail (rarest last)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[len(affinity) - 1], fraction=0.046)
    bars = []
    for label, (run, m) in series.items():
        order = m["tail"][::-1]  # descending frequency before the trim
        bars.append(
            pd.DataFrame(
                {
                    "panel": "b",
                    "series": label,
                    "run_id": run,
                    "tail_rank": np.arange(len(order)),
                    "class": order,
                    "acc": m["acc"][order],
                    "pred": m["pred"][order],
                }
            )
        )
    bars = pd.concat(bars, ignore_index=True)
    for ax, stat, scale, title in (
        (axes[-2], "acc", 100.0, "(b) tail accuracy × 100"),
        (axes[-1], "pred", 1.0, "(b) tail # predictions"),
    ):
        width = 0.9 / len(series)  # the series side by side within each class
        for i, (label, d) in enumerate(bars.groupby("series", sort=False)):
            x = d["tail_rank"] + (i - (len(series) - 1) / 2) * width
            ax.bar(x, d[stat] * scale, width=width, color=COLOURS[i % len(COLOURS)], label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("tail class (descending frequency before the trim)")
    axes[-1].legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig, pd.concat([*frames, bars], ignore_index=True)
