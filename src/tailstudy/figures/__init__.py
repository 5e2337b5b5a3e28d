"""Drawing figures: the ``plot`` kind of a spec (``tailstudy.figures.kinds``) → its function.

Run figures are drawn from study tables (and per-class evaluations); frequency figures from
frequency tables. Every figure is written as PDF and PNG with the CSV of the plotted numbers
beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.io import UserError, atomic_path


@dataclass
class FigureInputs:
    """What a plot reads: study tables, the evaluation root, frequency tables by key."""

    tables: list[Path] = field(default_factory=list)
    eval_root: Path = Path("results/eval")
    freq: dict[str, Path] = field(default_factory=dict)

    def study_table(self) -> pd.DataFrame:
        from tailstudy.analysis.collect import read_table

        if not self.tables:
            raise UserError("this plot needs study tables (--tables)")
        return pd.concat([read_table(t) for t in self.tables], ignore_index=True)

    def frequency(self, corpus: str, concepts: str) -> tuple[list[str], np.ndarray]:
        """Names and counts of ``corpus`` (``corpus@concepts``, or ``corpus@labels``)."""
        from tailstudy.freq.sources import read_table

        for key in (f"{corpus}@{concepts}", f"{corpus}@labels"):
            if key in self.freq:
                return read_table(self.freq[key])
        raise UserError(f"no frequency table for corpus {corpus} ({concepts}); pass --freq")


def drawer(plot: str):
    """The function drawing a kind: ``(inputs, spec) -> (figure, plotted numbers)``."""
    import importlib

    from tailstudy.figures.kinds import PROBES, RUNS, kind_of

    kind = kind_of({"plot": plot})
    module, name = kind.draw.split(":")
    fn = getattr(importlib.import_module(f"tailstudy.figures.{module}"), name)
    if kind.source in (RUNS, PROBES):
        return lambda inputs, spec: fn(inputs.study_table(), spec, inputs.eval_root)
    return fn


def render(spec: dict, inputs: FigureInputs, out_pdf: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tailstudy.figures.style import apply_style

    apply_style()
    fig, data = drawer(spec["plot"])(inputs, spec)
    fig.suptitle(spec["paper_label"], y=1.02)
    out_pdf = Path(out_pdf)
    with atomic_path(out_pdf, suffix=".pdf") as tmp:
        fig.savefig(tmp, format="pdf", bbox_inches="tight")
    with atomic_path(out_pdf.with_suffix(".png"), suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    with atomic_path(out_pdf.with_suffix(".csv")) as tmp:
        data.to_csv(tmp, index=False, float_format="%.5g")
    plt.close(fig)
