"""Auxiliary analyses of METHODS §5.9: classifier affinity (Fig. 9a) and intra-class image–image
similarity (Fig. 4a right). Pure numpy/pandas: the models that give heads and embeddings are the
caller's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tailstudy.data.variants import tail_classes
from tailstudy.io import UserError


def classifier_affinity(
    head, counts, n_tail: int = 50, n_head: int = 50, seed: int = 42, tail=None
) -> dict[str, np.ndarray]:
    """Cosine matrix of a sample of head classes followed by the tail classes (Fig. 9a).

    The C rows of ``head`` (C×D, e.g. an SL head) are ordered by ``counts`` descending, the
    reverse of T_N's stable ascending order, so the last ``n_tail`` rows are T_N (rarest last).
    ``n_head`` of the first C - n_tail rows are drawn without replacement by
    ``np.random.RandomState(seed).choice`` (the study's ``np.random.seed(42)``), kept in the
    order drawn, and the ``n_tail`` tail rows appended. Returns ``classes`` (the labels of the
    rows and columns, in that order) and ``affinity``, the cosine matrix of their L2-normalised
    rows.

    A trimmed run's counts no longer rank its tail (ceil 0 leaves them all 0): ``tail`` (T_N,
    rarest first, as the trim recorded it) then gives the tail and its order, ``n_tail`` is its
    length, and the other classes keep their order by ``counts``."""
    head = np.asarray(head, dtype=np.float64)
    counts = np.asarray(counts)
    if head.ndim != 2 or counts.shape != (len(head),):
        raise UserError(
            f"classifier affinity needs a C×D head and C counts, got {head.shape} and {counts.shape}"
        )
    c = len(head)
    if not (0 <= n_tail <= c and 0 <= n_head <= c - n_tail):
        raise UserError(
            f"cannot draw {n_head} head classes and {n_tail} tail classes from {c} classes"
        )
    order = tail_classes(counts, c)[::-1]
    if tail is not None:
        tail = np.asarray(tail, dtype=np.int64)
        if len(tail) != n_tail:
            raise UserError(f"the tail has {len(tail)} classes, not n_tail = {n_tail}")
        order = np.concatenate([order[~np.isin(order, tail)], tail[::-1]])
    pick = np.random.RandomState(seed).choice(c - n_tail, n_head, replace=False)
    classes = np.concatenate([order[pick], order[c - n_tail :]])
    rows = head[classes]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if not (norms > 0).all():
        raise UserError("a head row is zero: it has no direction; check the model's head")
    rows = rows / norms
    return {"classes": classes, "affinity": rows @ rows.T}


def first_per_class(labels, k: int = 100) -> np.ndarray:
    """Positions of the first ``k`` rows of each class, in row order (pandas
    ``groupby(label).head(k)``); rows labelled -1 (no class) are skipped."""
    labels = pd.Series(np.asarray(labels))
    labelled = labels[labels >= 0]
    return labelled.groupby(labelled).head(k).index.to_numpy()


def intra_class_similarities(embeddings, labels) -> np.ndarray:
    """For each class in label order, the full cosine Gram matrix of its L2-normalised
    ``embeddings`` (diagonal included), flattened and concatenated (float32)."""
    emb = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels)
    if emb.ndim != 2 or labels.shape != (len(emb),):
        raise UserError(
            f"need N×D embeddings and N labels, got shapes {emb.shape} and {labels.shape}"
        )
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if not (norms > 0).all():
        raise UserError("an image embedding is zero or not finite: check the encoder's outputs")
    emb = emb / norms
    out = []
    for c in np.unique(labels):
        e = emb[labels == c]
        out.append((e @ e.T).astype(np.float32).ravel())
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def similarity_density(
    similarities, bins: int = 60, lo: float = 0.1, hi: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Density histogram of the similarities ≥ ``lo`` over ``bins`` equal bins on [lo, hi]
    (Fig. 4a right). Round-off above ``hi`` (a diagonal's 1.0000001) counts in the last bin.
    Returns (density, bin edges); the density integrates to 1 over [lo, hi]."""
    s = np.asarray(similarities, dtype=np.float64).ravel()
    s = np.minimum(s[s >= lo], hi)
    if not len(s):
        raise UserError(f"no similarity is >= {lo}: nothing to draw")
    return np.histogram(s, bins=bins, range=(lo, hi), density=True)
