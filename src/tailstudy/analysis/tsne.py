"""t-SNE of class centres (METHODS §5.9; Figs. 7b, 20).

Text centres are the rows of the zero-shot classifier (one L2-normalised, template-averaged
embedding per class); vision centres the mean of a class's L2-normalised image features,
re-normalised or not (Fig. 20b vs 20a). Both are embedded with scikit-learn's t-SNE under the
settings of §5.9 and min-max scaled to [0, 1] per axis.
"""

from __future__ import annotations

import numpy as np

from tailstudy.io import UserError


def class_centres(
    features: np.ndarray, labels: np.ndarray, num_classes: int, renormalise: bool = False
) -> np.ndarray:
    """``num_classes x D``: the mean of each class's L2-normalised features (NaN rows for
    classes without a sample); L2-normalised again with ``renormalise``."""
    h = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels)
    if h.ndim != 2 or len(h) != len(y):
        raise UserError(f"features {h.shape} and {len(y)} labels do not match")
    h = h / np.linalg.norm(h, axis=1, keepdims=True).clip(min=1e-12)
    sums = np.zeros((num_classes, h.shape[1]))
    np.add.at(sums, y, h)
    n = np.bincount(y, minlength=num_classes).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = sums / n[:, None]
    if renormalise:
        mu = mu / np.linalg.norm(mu, axis=1, keepdims=True).clip(min=1e-12)
    return mu


def tsne_2d(points: np.ndarray, *, perplexity: float = 30.0, seed: int = 0) -> np.ndarray:
    """``N x 2`` t-SNE of ``points`` (cosine metric, Barnes-Hut, random init, seeded), each
    axis min-max scaled to [0, 1]."""
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import minmax_scale

    x = np.asarray(points, dtype=np.float64)
    if x.ndim != 2:
        raise UserError(f"t-SNE needs a points x dimensions matrix, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise UserError("t-SNE input holds NaN or infinite values (a class without samples?)")
    if len(x) <= perplexity:
        raise UserError(
            f"t-SNE of {len(x)} points needs a perplexity below {len(x)}, got {perplexity}; "
            "lower the perplexity setting"
        )
    emb = TSNE(
        n_components=2,
        perplexity=perplexity,
        method="barnes_hut",
        metric="cosine",
        init="random",
        random_state=seed,
    ).fit_transform(x)
    return minmax_scale(emb, feature_range=(0, 1), axis=0)
