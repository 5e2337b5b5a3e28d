"""Per-class statistics and correlations with class frequency (pure numpy/scipy)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from tailstudy.io import UserError


def train_positions(train_wnids, eval_wnids, run_id: str = "the run") -> np.ndarray:
    """For each evaluation class (in order), its label in the training label space, by wnid.

    Every evaluation class must be a training class (an SL head has no row for any other)."""
    where = {w: i for i, w in enumerate(train_wnids)}
    missing = [w for w in eval_wnids if w not in where]
    if missing:
        raise UserError(
            f"{len(missing)} evaluation classes (e.g. {', '.join(missing[:3])}) are not among the "
            f"{len(where)} classes {run_id} was trained on: evaluate on a subset of its classes"
        )
    return np.array([where[w] for w in eval_wnids], dtype=np.int64)


def confusion_matrix(targets: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """M[t, p] = number of samples of true class t predicted as p."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(targets), np.asarray(preds)), 1)
    return m


def per_class(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """acc_c = M[c,c]/Σ_p M[c,p] (NaN for classes without samples); pred_c = Σ_t M[t,c]."""
    support = confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(support > 0, np.diag(confusion) / support, np.nan)
    return {"acc": acc, "pred": confusion.sum(0).astype(np.int64), "support": support}


def spearman(x, y) -> float:
    """Spearman ρ with average ranks for ties; NaN pairs are dropped."""
    x, y = _finite_pairs(x, y)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def pearson(x, y) -> float:
    x, y = _finite_pairs(x, y)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(stats.pearsonr(x, y).statistic)


def pearson_log(freq, y) -> float:
    """Pearson r on log10(f + 1) (zero counts kept)."""
    return pearson(np.log10(np.asarray(freq, dtype=float) + 1), y)


def _finite_pairs(x, y):
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def summarize(confusion: np.ndarray, freq: np.ndarray, top5_correct: int | None = None) -> dict:
    """Top-1 (mean per-class accuracy over classes with samples) and every correlation."""
    pc = per_class(confusion)
    acc, pred = pc["acc"], pc["pred"].astype(float)
    out = {
        "n_samples": int(confusion.sum()),
        "top1": float(np.nanmean(acc)),
        "top1_micro": float(np.trace(confusion) / max(1, confusion.sum())),
        "rho_acc": spearman(freq, acc),
        "rho_pred": spearman(freq, pred),
        "pearson_acc": pearson(freq, acc),
        "pearson_pred": pearson(freq, pred),
        "pearson_log_acc": pearson_log(freq, acc),
        "pearson_log_pred": pearson_log(freq, pred),
    }
    if top5_correct is not None:
        out["top5_micro"] = top5_correct / max(1, confusion.sum())
    return out
