"""Shared plot style."""

from __future__ import annotations


def apply_style() -> None:
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
