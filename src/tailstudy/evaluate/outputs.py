"""The per-(run, evaluation set) metrics of METHODS §5.5: ``metrics.npz`` and its JSON summary.

``metrics.npz`` holds ``confusion`` (C×C, true × predicted), ``acc``, ``pred``, ``nc1``,
``nc2_M``, ``nc2nn_M``, ``nc2_W``, ``nc2nn_W`` (length C, evaluation-class order), ``top1`` and
``top5`` (fractions), and ``freq``, the frequency vector the summary correlates with (the run's
training-set counts of the evaluation classes). acc, pred and top1 are derived from the
confusion matrix here, so they always agree with it. Evaluations of trained runs also keep
``class_vectors`` (C×D, the classifier's class vectors the NC metrics used, float16: Fig. 9a's
affinity) and, for a trimmed-tail run, ``tail`` (the positions of T_N among the evaluation
classes, rarest first: Fig. 9b's order)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tailstudy.evaluate.metrics import NC_KEYS, head_tail_accuracy, per_class, spearman, summarize
from tailstudy.io import UserError, atomic_path, write_json

PER_CLASS_KEYS = ("acc", "pred", *NC_KEYS, "freq")
METRICS_KEYS = ("confusion", *PER_CLASS_KEYS, "top1", "top5")
OPTIONAL_KEYS = ("class_vectors", "tail")


def metrics_arrays(confusion, top5: float, nc: dict, freq, class_vectors=None, tail=None) -> dict:
    """The contents of ``metrics.npz``, checked: ``nc`` is :func:`neural_collapse`'s mapping;
    ``class_vectors`` (C×D) and ``tail`` (positions of T_N, rarest first) are kept when given."""
    confusion = np.asarray(confusion)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise UserError(f"the confusion matrix must be C×C, got shape {confusion.shape}")
    c = len(confusion)
    if not 0.0 <= float(top5) <= 1.0:
        raise UserError(f"top5 is a fraction of the evaluation samples, got {top5}")
    missing = [k for k in NC_KEYS if k not in nc]
    if missing:
        raise UserError(f"neural-collapse metrics lack {', '.join(missing)}")
    pc = per_class(confusion)
    out = {
        "confusion": confusion.astype(np.int64),
        "acc": pc["acc"],
        "pred": pc["pred"],
        **{k: np.asarray(nc[k], dtype=np.float64) for k in NC_KEYS},
        "freq": np.asarray(freq),
        "top1": np.float64(np.nanmean(pc["acc"])),
        "top5": np.float64(top5),
    }
    bad = [k for k in PER_CLASS_KEYS if out[k].shape != (c,)]
    if bad:
        raise UserError(
            f"{', '.join(bad)} must have one value per class ({c}, the confusion matrix's), got "
            + ", ".join(str(out[k].shape) for k in bad)
        )
    if class_vectors is not None:
        vectors = np.asarray(class_vectors)
        if vectors.ndim != 2 or len(vectors) != c:
            raise UserError(f"class_vectors must be C×D with C = {c}, got shape {vectors.shape}")
        out["class_vectors"] = vectors.astype(np.float16)
    if tail is not None:
        tail = np.asarray(tail, dtype=np.int64)
        if len(tail) and (tail.min() < 0 or tail.max() >= c or len(set(tail)) != len(tail)):
            raise UserError(f"tail must be distinct class positions below {c}, got {tail}")
        out["tail"] = tail
    return out


def metrics_summary(arrays: dict, tail=None) -> dict:
    """Top-1, top-5, the correlations of ``summarize`` against ``freq``, each NC metric's mean
    over classes (Figs. 5c/d) and its Spearman ρ with freq and with acc (§5.3, Fig. 7); with
    ``tail`` (labels of T_N), the head & mid and tail accuracies of §5.6."""
    freq, acc = arrays["freq"], arrays["acc"]
    out = summarize(arrays["confusion"], freq)
    out["top5"] = float(arrays["top5"])
    for k in NC_KEYS:
        v = np.asarray(arrays[k], dtype=np.float64)
        out[f"mean_{k}"] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
        out[f"rho_freq_{k}"] = spearman(freq, v)
        out[f"rho_acc_{k}"] = spearman(acc, v)
    if tail is not None:
        split = head_tail_accuracy(acc, tail)
        out["acc_head_mid"], out["acc_tail"] = split["head_mid"], split["tail"]
    return out


def write_metrics(
    npz_path: str | Path,
    summary_path: str | Path,
    *,
    confusion,
    top5: float,
    nc: dict,
    freq,
    tail=None,
    extra: dict | None = None,
) -> dict:
    """Write ``metrics.npz`` and the JSON summary (with ``extra`` keys, e.g. the run's id and
    factors, added); each file appears complete or not at all. Returns the summary."""
    arrays = metrics_arrays(confusion, top5, nc, freq)
    summary = {**(extra or {}), **metrics_summary(arrays, tail)}
    save_arrays(npz_path, arrays)
    write_json(summary_path, summary)
    return summary


def save_arrays(npz_path: str | Path, arrays: dict) -> None:
    """Write :func:`metrics_arrays`'s contents as ``metrics.npz`` (complete or not at all)."""
    with atomic_path(npz_path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        keys = [*METRICS_KEYS, *(k for k in OPTIONAL_KEYS if k in arrays)]
        np.savez_compressed(f, **{k: arrays[k] for k in keys})


def read_metrics(npz_path: str | Path) -> dict:
    """``metrics.npz`` as a dict of arrays (``top1`` and ``top5`` as floats)."""
    try:
        with np.load(npz_path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise UserError(f"missing file {npz_path}: run the evaluation that writes it") from None
    except (ValueError, OSError) as e:
        raise UserError(f"{npz_path} is not a readable .npz ({e}); delete it and rerun") from None
    missing = [k for k in METRICS_KEYS if k not in data]
    if missing:
        raise UserError(
            f"{npz_path} lacks {', '.join(missing)}: it predates this format; rerun its evaluation"
        )
    data["top1"], data["top5"] = float(data["top1"]), float(data["top5"])
    return data
