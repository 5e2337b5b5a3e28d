"""Frequency figures: Figs. 1a and 16 (ranked counts), 2 (label-count curves), 13 (Spearman
matrices), 21 (linear zoom grid) and Table 1's frequency column (tail classes).

Every table is aligned by class name, never by position. Classes are ranked by the ``rank_by``
corpus (descending count; ties keep label order).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tailstudy.freq.plan import figure_concept_sets
from tailstudy.freq.sources import align_by_name, sort_by_count
from tailstudy.io import UserError


def _label(spec: dict, corpus: str) -> str:
    return spec.get("corpus_specs", {}).get(corpus, {}).get("label", corpus)


def _aligned(inputs, spec: dict, corpora: list[str], concepts: str) -> tuple[list[str], np.ndarray]:
    """Class names and a ``classes x corpora`` count matrix, aligned by name."""
    tables = [(_label(spec, c), *inputs.frequency(c, concepts)) for c in corpora]
    return align_by_name(tables)


def _ranked(inputs, spec: dict, groups: list[list[str]]):
    """Corpora (``rank_by`` first), class names, the aligned count matrix, the class order by
    descending ``rank_by`` count (ties in label order) and a colour per corpus."""
    import seaborn as sns

    rank_by = spec["rank_by"]
    corpora = list(dict.fromkeys([rank_by, *(c for g in groups for c in g)]))
    names, m = _aligned(inputs, spec, corpora, figure_concept_sets(spec)[0])
    order = np.argsort(-m[:, 0], kind="stable")
    colours = dict(zip(corpora, sns.color_palette("tab10", len(corpora)), strict=True))
    return corpora, names, m, order, colours


def _smooth(y: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(y.astype(float), sigma) if sigma > 0 else y.astype(float)


def ranks(inputs, spec: dict):
    """Fig. 1a / Fig. 16: counts of each corpus over classes ranked by ``rank_by``; log y; raw
    (faint) plus Gaussian-smoothed curves, one panel per group in ``panels`` (top to bottom)."""
    import matplotlib.pyplot as plt

    panels, rank_by = spec["panels"], spec["rank_by"]
    sigma = float(spec.get("sigma", 3))
    corpora, names, m, order, colours = _ranked(inputs, spec, panels)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(8, 2.4 * len(panels)), sharex=True, squeeze=False
    )
    rows = []
    x = np.arange(len(names))
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        for corpus in panel:
            y = m[order, corpora.index(corpus)]
            smooth = y.astype(float) if corpus == rank_by else _smooth(y, sigma)
            c = colours[corpus]
            label = _label(spec, corpus)
            if corpus != rank_by:
                ax.plot(x, np.where(y > 0, y, np.nan), color=c, alpha=0.3, lw=0.8)
            ax.plot(x, np.where(smooth > 0, smooth, np.nan), color=c, lw=1.6, label=label)
            rows += [
                {
                    "panel": panels.index(panel),
                    "corpus": label,
                    "rank": int(r),
                    "class": names[order[r]],
                    "count": int(y[r]),
                    "smoothed": smooth[r],
                }
                for r in range(len(names))
            ]
        ax.set_yscale("log")
        ax.set_ylabel("count")
        ax.legend(frameon=False, fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel(f"classes ranked by {_label(spec, rank_by)} frequency")
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def label_curves(inputs, spec: dict):
    """Fig. 2: each corpus's counts sorted in descending order, filled; total and classes."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    corpora = spec["corpora"]
    concepts = figure_concept_sets(spec)[0]
    fig, axes = plt.subplots(1, len(corpora), figsize=(3.6 * len(corpora), 2.6), squeeze=False)
    palette = sns.color_palette("deep", len(corpora))
    rows = []
    for ax, corpus, colour in zip(axes[0], corpora, palette, strict=True):
        names, counts = inputs.frequency(corpus, concepts)
        names, counts = sort_by_count(names, np.asarray(counts))
        x = np.arange(len(counts))
        ax.fill_between(x, counts, color=colour, alpha=0.7, lw=0)
        ax.plot(x, counts, color=colour, lw=1)
        total, nonzero = int(counts.sum()), int((counts > 0).sum())
        ax.set_title(f"{_label(spec, corpus)}\n{total:,} / {nonzero} classes", fontsize=9)
        ax.set_xlabel("classes (sorted)")
        ax.set_ylim(bottom=0)
        rows += [
            {"corpus": _label(spec, corpus), "rank": i, "class": n, "count": int(c)}
            for i, (n, c) in enumerate(zip(names, counts, strict=True))
        ]
    axes[0, 0].set_ylabel("count")
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def correlation(inputs, spec: dict):
    """Fig. 13: lower-triangle Spearman matrices between corpora, one panel per concept set."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from tailstudy.freq.correlate import spearman_matrix

    corpora, sets = spec["corpora"], figure_concept_sets(spec)
    if len(corpora) < 2:
        raise UserError("a frequency-correlation figure needs at least two corpora")
    k = len(corpora)
    fig, axes = plt.subplots(
        1, len(sets), figsize=(1.1 * k * len(sets) + 1.5, 1.0 * k + 1), squeeze=False
    )
    rows = []
    for ax, cs in zip(axes[0], sets, strict=True):
        tables = [(_label(spec, c), *inputs.frequency(c, cs)) for c in corpora]
        rho = spearman_matrix(tables)
        mask = np.triu(np.ones_like(rho.to_numpy(), dtype=bool), k=1)
        sns.heatmap(
            rho,
            mask=mask,
            vmin=0,
            vmax=1,
            cmap="viridis",
            annot=True,
            fmt=".2f",
            square=True,
            cbar=False,
            ax=ax,
            annot_kws={"fontsize": 8},
        )
        ax.set_title(cs)
        ax.grid(False)
        ax.tick_params(axis="x", rotation=45)
        for i in range(k):
            for j in range(i):
                rows.append(
                    {
                        "concept_set": cs,
                        "a": rho.index[i],
                        "b": rho.columns[j],
                        "rho": float(rho.iat[i, j]),
                    }
                )
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def zoom(inputs, spec: dict):
    """Fig. 21: linear-scale zoom of the ranked counts: rows are bands of ``rank_by`` ranks,
    columns the corpus groups in ``pairs``; x = count, y = rank."""
    import matplotlib.pyplot as plt

    pairs = spec["pairs"]
    n_rows = int(spec.get("rows", 5))
    corpora, names, m, order, colours = _ranked(inputs, spec, pairs)
    bands = np.array_split(np.arange(len(names)), n_rows)
    fig, axes = plt.subplots(
        n_rows, len(pairs), figsize=(3.2 * len(pairs), 2.0 * n_rows), squeeze=False
    )
    rows = []
    for i, band in enumerate(bands):
        for j, pair in enumerate(pairs):
            ax = axes[i, j]
            for corpus in pair:
                y = m[order[band], corpora.index(corpus)]
                ax.plot(y, band, color=colours[corpus], lw=1, label=_label(spec, corpus))
                rows += [
                    {
                        "band": i,
                        "column": j,
                        "corpus": _label(spec, corpus),
                        "rank": int(r),
                        "class": names[order[r]],
                        "count": int(c),
                    }
                    for r, c in zip(band, y, strict=True)
                ]
            if len(band):
                ax.set_ylim(band[-1] + 0.5, band[0] - 0.5)
            if i == 0:
                ax.legend(frameon=False, fontsize=7)
            if j == 0:
                ax.set_ylabel("rank")
            if i == n_rows - 1:
                ax.set_xlabel("count")
    fig.tight_layout()
    return fig, pd.DataFrame(rows)


def tail_classes(inputs, spec: dict):
    """Table 1's frequency column: classes of the first corpus with a count below ``below``,
    in descending order of count (ties keep label order), drawn as a table."""
    import matplotlib.pyplot as plt

    corpus, below = spec["corpora"][0], int(spec.get("below", 10))
    names, counts = inputs.frequency(corpus, figure_concept_sets(spec)[0])
    names, counts = sort_by_count(names, np.asarray(counts))
    keep = counts < below
    data = pd.DataFrame({"class": np.asarray(names, dtype=object)[keep], "count": counts[keep]})
    fig, ax = plt.subplots(figsize=(4.5, 0.6 + 0.22 * max(len(data), 1)))
    ax.axis("off")
    summary = (
        f"{_label(spec, corpus)}: {len(data)} classes below {below}, "
        f"{int((counts < 5).sum())} below 5, {int((counts == 1).sum())} with 1, "
        f"{int((counts == 0).sum())} with 0"
    )
    ax.set_title(summary, fontsize=9)
    if len(data):
        table = ax.table(
            cellText=data.astype(str).to_numpy(),
            colLabels=["class", "count"],
            loc="upper center",
            cellLoc="left",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.auto_set_column_width([0, 1])
    else:
        ax.text(0.5, 0.5, f"no class below {below}", ha="center", va="center")
    data.insert(0, "corpus", _label(spec, corpus))
    return fig, data
