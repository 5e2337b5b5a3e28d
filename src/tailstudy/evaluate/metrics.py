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


# --- neural collapse (METHODS §5.4) ------------------------------------------------------------

NC_KEYS = ("nc1", "nc2_M", "nc2_W", "nc2nn_M", "nc2nn_W")
FLOAT32_PINV_RTOL = float(np.finfo(np.float32).eps)  # times D: torch.linalg.pinv's default cutoff


def neural_collapse(
    features, labels, class_vectors, *, rtol: float | None = None, chunk: int = 2048
) -> dict[str, np.ndarray]:
    """Per-class neural-collapse metrics, exactly as METHODS §5.4 defines them.

    ``features`` (N×D) are the un-normalised image features, ``labels`` (N) their classes in
    ``[0, C)`` and ``class_vectors`` the D×C classifier W (CLIP's zero-shot matrix, an SL head
    transposed), C being its number of columns::

        μ_c = mean of class c's features        μ_G = mean_c μ_c (of class means, not samples)
        Σ_W^(c) = (1/N) Σ_{y_i=c} (h_i-μ_c)(h_i-μ_c)ᵀ      (the total N, for every class)
        Σ_B = (1/C) Σ_c (μ_c-μ_G)(μ_c-μ_G)ᵀ
        nc1_c = Tr(Σ_W^(c) pinv(Σ_B))
        margins(V): G = VᵀV + 1/(C-1), diag(G) = 0; nc2_c = Σ_{c'≠c}|G[c,c']|/(C-1),
                    nc2nn_c = max_{c'≠c}|G[c,c']|
        nc2_M, nc2nn_M = margins of the L2-normalised centred class means μ_c-μ_G
        nc2_W, nc2nn_W = margins of the L2-normalised columns of W (not centred)

    Returns float64 arrays of length C. Nothing of size C×D×D or N×D is built: Σ_B = MᵀM/C with
    M the C×D centred means, so an SVD of M gives pinv(Σ_B) = L Lᵀ with L = V_k diag(√C/s_k), and
    nc1_c = Σ_{y_i=c} ‖(h_i-μ_c)ᵀL‖² / N is accumulated over chunks of ``chunk`` rows (memory
    O(D² + CD), time O(N·D·rank)). Features are read in float32 or float64 and computed in
    float64.

    ``rtol``: singular values of Σ_B at or below ``rtol`` × the largest are treated as zero by
    the pseudo-inverse. The default, D × float32 eps, is ``torch.linalg.pinv``'s default cutoff
    for the float32 D×D Σ_B the study's code inverts; Σ_B has rank at most C-1, so for C ≤ D it
    is always singular and the cutoff decides which directions count.

    A class with one sample has Σ_W^(c) = 0, hence nc1_c = 0. A class with no sample has no mean:
    its nc1, nc2_M and nc2nn_M are NaN, and μ_G, Σ_B and the class-mean margins (with their
    1/(C'-1) shift) are taken over the C' classes that have samples (the study's code, written
    for balanced evaluation sets, would turn every value into NaN); nc2_W still uses all C
    columns of W.
    """
    h = np.asarray(features)
    y = np.asarray(labels)
    w = np.asarray(class_vectors, dtype=np.float64)
    if h.ndim != 2 or not np.issubdtype(h.dtype, np.floating):
        raise UserError(f"features must be an N×D float array, got shape {h.shape} {h.dtype}")
    n, d = h.shape
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise UserError(
            f"labels must be {n} integers (one per feature row), got {y.shape} {y.dtype}"
        )
    if w.ndim != 2 or w.shape[0] != d:
        raise UserError(
            f"class_vectors must be D×C with D = {d} (the feature size), got shape {w.shape}; "
            "pass an SL head (C×D) transposed"
        )
    c = w.shape[1]
    if c < 2:
        raise UserError(f"neural-collapse metrics need at least 2 classes, got {c}")
    if n and (y.min() < 0 or y.max() >= c):
        raise UserError(f"labels must lie in [0, {c}) (the columns of W), got {y.min()}..{y.max()}")
    counts = np.bincount(y, minlength=c)
    present = counts > 0
    cp = int(present.sum())
    if cp < 2:
        raise UserError(f"neural-collapse metrics need samples of at least 2 classes, got {cp}")
    order = np.argsort(y, kind="stable")

    def chunks():
        for s in range(0, n, chunk):
            idx = order[s : s + chunk]
            yc = y[idx]
            hc = h[idx].astype(np.float64)
            if not np.isfinite(hc).all():
                raise UserError(
                    "features contain NaN or infinite values: check the model's outputs"
                )
            starts = np.flatnonzero(np.r_[True, yc[1:] != yc[:-1]])
            yield yc, hc, starts

    sums = np.zeros((c, d))
    for yc, hc, starts in chunks():
        sums[yc[starts]] += np.add.reduceat(hc, starts, axis=0)
    means = sums[present] / counts[present, None]
    centred = means - means.mean(0)  # μ_c - μ_G over the classes with samples

    # pinv(Σ_B) from the SVD of the centred means (= u diag(s) vt): Σ_B = vtᵀ diag(s²/C') vt
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    lam = s**2 / cp
    cutoff = (d * FLOAT32_PINV_RTOL if rtol is None else rtol) * (lam[0] if len(lam) else 0.0)
    keep = lam > cutoff
    proj = vt[keep].T / np.sqrt(lam[keep])  # D×k, pinv(Σ_B) = proj @ proj.T
    full_means = np.zeros((c, d))
    full_means[present] = means
    nc1 = np.zeros(c)
    for yc, hc, _ in chunks():
        hc -= full_means[yc]
        z = hc @ proj
        nc1 += np.bincount(yc, np.einsum("ij,ij->i", z, z), minlength=c)
    nc1 /= n

    out = {"nc1": np.where(present, nc1, np.nan)}
    m_all, m_nn = _margins(_unit_columns(centred.T, "centred class mean"))
    for key, vals in (("nc2_M", m_all), ("nc2nn_M", m_nn)):
        out[key] = np.full(c, np.nan)
        out[key][present] = vals
    out["nc2_W"], out["nc2nn_W"] = _margins(_unit_columns(w, "class vector"))
    return {k: out[k] for k in NC_KEYS}


def _unit_columns(v: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(v, axis=0)
    bad = np.flatnonzero(~(norms > 0) | ~np.isfinite(norms))
    if len(bad):
        raise UserError(
            f"{len(bad)} {what}s (column {bad[0]} first) are zero or not finite: "
            "they have no direction; check the model's outputs"
        )
    return v / norms


def _margins(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, max) over c' ≠ c of |cos(v_c, v_c') + 1/(C-1)| for unit columns v (D×C)."""
    c = v.shape[1]
    g = np.abs(v.T @ v + 1.0 / (c - 1))
    np.fill_diagonal(g, 0.0)
    return g.sum(1) / (c - 1), g.max(1)


# --- head / tail (METHODS §5.6) -------------------------------------------------------------------


def head_tail_accuracy(acc, tail) -> dict[str, float]:
    """Mean per-class accuracy over the tail classes ``tail`` (labels, e.g. the trim's T_N) and
    over every other class ("head & mid"); classes without evaluation samples (NaN) are skipped."""
    acc = np.asarray(acc, dtype=np.float64)
    tail = np.asarray(tail)
    if tail.ndim != 1 or not np.issubdtype(tail.dtype, np.integer):
        raise UserError(f"tail must be a list of class labels, got {tail.dtype} shape {tail.shape}")
    if len(tail) and (tail.min() < 0 or tail.max() >= len(acc)):
        raise UserError(f"tail labels must lie in [0, {len(acc)}), got {tail.min()}..{tail.max()}")
    if len(np.unique(tail)) != len(tail):
        raise UserError("tail labels repeat a class: give each tail class once")
    is_tail = np.zeros(len(acc), dtype=bool)
    is_tail[tail] = True
    return {"head_mid": _nanmean(acc[~is_tail]), "tail": _nanmean(acc[is_tail])}


def _nanmean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")
