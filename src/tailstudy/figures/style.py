"""Shared plot style."""

from __future__ import annotations


def apply_style() -> None:
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def legend_right(fig, axes) -> None:
    """One legend for the whole figure, right of the panels: every labelled series of ``axes``
    once, in the order first drawn; then the layout tightened."""
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(
        handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8
    )
    fig.tight_layout()
