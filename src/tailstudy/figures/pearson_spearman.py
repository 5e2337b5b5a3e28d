"""Fig. 11: Pearson (linear) vs Spearman correlation of per-class accuracy and number of
predictions with training-set class frequency, for the selected SL and CLIP runs.

Each selected series uses its lowest-seed run; panels show per-class points against frequency
(linear axis, or log with ``log_frequency`` as in Fig. 11b/c) with Pearson r, Pearson r on
log10(f+1), and Spearman ρ in the title.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tailstudy import layout as L
from tailstudy.evaluate.metrics import pearson, pearson_log, spearman
from tailstudy.figures.kinds import series_runs
from tailstudy.io import UserError


def per_class_path(eval_root, run: str, dataset: str) -> Path:
    """``per_class.tsv`` of a run's evaluation on ``dataset`` under ``eval_root``
    (``layout.EVAL_PER_CLASS``)."""
    return L.eval_file(L.EVAL_PER_CLASS, eval_root, run=run, dataset=dataset)


def plot(table: pd.DataFrame, spec: dict, eval_root):
    import matplotlib.pyplot as plt

    chosen = series_runs(table, spec)
    if not chosen:
        raise UserError("the pearson-spearman plot needs a 'select' block naming its series")
    frames = []
    for label, (run, dataset) in chosen.items():
        pc = pd.read_csv(per_class_path(eval_root, run, dataset), sep="\t")
        pc.insert(0, "series", label)
        pc.insert(1, "run_id", run)
        frames.append(pc)
    data = pd.concat(frames, ignore_index=True)
    stats_rows = []
    fig, axes = plt.subplots(2, len(chosen), figsize=(4.2 * len(chosen), 7), squeeze=False)
    for j, label in enumerate(chosen):
        d = data[data["series"] == label]
        for i, stat in enumerate(["acc", "pred"]):
            r, rl, rho = (
                pearson(d["freq"], d[stat]),
                pearson_log(d["freq"], d[stat]),
                spearman(d["freq"], d[stat]),
            )
            stats_rows.append(
                {"series": label, "stat": stat, "pearson": r, "pearson_log": rl, "spearman": rho}
            )
            ax = axes[i, j]
            ax.scatter(
                d["freq"],
                d[stat],
                s=12,
                alpha=0.7,
                color="tab:blue" if label.upper().startswith("SL") else "tab:orange",
            )
            ax.set_title(
                f"{label} {'acc' if stat == 'acc' else '#pred'}\n"
                f"Pearson {r:.2f} · log {rl:.2f} · Spearman {rho:.2f}",
                fontsize=9,
            )
            if spec.get("log_frequency"):
                ax.set_xscale("symlog", linthresh=1)
            ax.set_xlabel("training-set class frequency")
            ax.set_ylabel("per-class accuracy" if stat == "acc" else "# predictions")
    fig.tight_layout()
    st = pd.DataFrame(stats_rows)
    wide = st.pivot(index="series", columns="stat", values=["pearson", "pearson_log", "spearman"])
    wide.columns = [f"{a}_{b}" for a, b in wide.columns]
    data = data.merge(wide.reset_index(), on="series")
    return fig, data
