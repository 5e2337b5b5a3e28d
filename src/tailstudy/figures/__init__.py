"""Figure registry: ``plot`` name in config → function drawing it from the study tables.

Every figure is written as PDF and PNG with the CSV of the plotted numbers beside it.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tailstudy.analysis.collect import read_table
from tailstudy.io import UserError, atomic_path


def _registry():
    from tailstudy.figures import descriptiveness, pearson_spearman

    return {"descriptiveness": descriptiveness.plot, "pearson-spearman": pearson_spearman.plot}


def render(spec: dict, tables: list[Path], eval_root: Path, out_pdf: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from tailstudy.figures.style import apply_style

    apply_style()
    registry = _registry()
    if spec["plot"] not in registry:
        raise UserError(f"unknown plot {spec['plot']!r}; known: {', '.join(sorted(registry))}")
    table = pd.concat([read_table(t) for t in tables], ignore_index=True)
    fig, data = registry[spec["plot"]](table, spec, Path(eval_root))
    fig.suptitle(spec["paper_label"], y=1.02)
    out_pdf = Path(out_pdf)
    with atomic_path(out_pdf, suffix=".pdf") as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight")
    with atomic_path(out_pdf.with_suffix(".png"), suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    with atomic_path(out_pdf.with_suffix(".csv")) as tmp:
        data.to_csv(tmp, index=False, float_format="%.5g")
