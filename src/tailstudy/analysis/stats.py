"""Statistics over pretrained models and classes (METHODS §5.3, §6.3: Figs. 1b, 7a, 12, 15b).

* :func:`bootstrap_ci` / :func:`over_models`: the mean over models with a 95 % percentile
  bootstrap interval, as the figures draw it (scipy's ``bootstrap``, seeded, the number of
  resamples a parameter).
* :func:`nc_correlations`: Spearman of per-class accuracy and of class frequency with each
  per-class neural-collapse metric (Fig. 7a).
* :func:`binned`: mean and standard deviation of a per-class statistic within log-frequency
  bins (Fig. 15b; ``scipy.stats.binned_statistic``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from tailstudy.evaluate.metrics import spearman
from tailstudy.io import UserError

#: Per-class neural-collapse metrics of an evaluation (METHODS §5.4, §5.5), in Fig. 7a's order.
NC_METRICS = ("nc1", "nc2_M", "nc2_W", "nc2nn_M", "nc2nn_W")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap interval: ``(mean, low, high)``.

    NaN values are dropped. With one value the interval is that value; with none, all three are
    NaN. Resampling is seeded (``numpy.random.default_rng(seed)``), so a call is reproducible.
    """
    if n_resamples < 1:
        raise UserError(f"bootstrap needs at least one resample, got n_resamples={n_resamples}")
    if not 0 < confidence < 1:
        raise UserError(f"bootstrap confidence must lie in (0, 1), got {confidence}")
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) == 0:
        return (float("nan"),) * 3
    mean = float(x.mean())
    if len(x) == 1 or np.all(x == x[0]):
        return mean, mean, mean
    res = stats.bootstrap(
        (x,),
        np.mean,
        n_resamples=n_resamples,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)


def over_models(
    table: pd.DataFrame,
    by: Sequence[str],
    values: Sequence[str],
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Long table: per group of ``by`` and per column of ``values``, the number of models with a
    finite value (``n``), their ``mean`` and the bootstrap interval (``ci_low``, ``ci_high``).

    Every group is resampled with the same seed, so a group's interval does not depend on which
    other groups the table holds."""
    missing = [c for c in (*by, *values) if c not in table.columns]
    if missing:
        raise UserError(f"the model table has no column {missing[0]!r}")
    rows = []
    for key, group in table.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for col in values:
            x = group[col].to_numpy(dtype=float)
            mean, low, high = bootstrap_ci(
                x, n_resamples=n_resamples, confidence=confidence, seed=seed
            )
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "statistic": col,
                    "n": int(np.isfinite(x).sum()),
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(rows)


def nc_correlations(
    acc: np.ndarray, freq: np.ndarray, nc: Mapping[str, np.ndarray]
) -> pd.DataFrame:
    """Fig. 7a for one model: Spearman(acc, NC_c) and Spearman(freq, NC_c) over classes, one row
    per metric of :data:`NC_METRICS` present in ``nc`` (others in ``nc`` follow)."""
    acc, freq = np.asarray(acc, dtype=float), np.asarray(freq, dtype=float)
    if acc.shape != freq.shape:
        raise UserError(f"acc has {acc.size} classes but the frequency vector {freq.size}")
    names = [m for m in NC_METRICS if m in nc] + [m for m in nc if m not in NC_METRICS]
    if not names:
        raise UserError("no neural-collapse metric given (expected some of nc1, nc2_M, ...)")
    rows = []
    for m in names:
        v = np.asarray(nc[m], dtype=float)
        if v.shape != acc.shape:
            raise UserError(f"{m} has {v.size} classes but acc {acc.size}")
        rows.append({"metric": m, "rho_acc": spearman(acc, v), "rho_freq": spearman(freq, v)})
    return pd.DataFrame(rows)


def decade_edges(freq: np.ndarray, per_decade: int = 1) -> np.ndarray:
    """Bin edges for class frequencies: ``[0, 1)`` for zero counts, then ``per_decade`` bins
    per power of ten (``1, 10, 100, ...`` for one), up to the first edge above the largest."""
    f = np.asarray(freq, dtype=float)
    f = f[np.isfinite(f)]
    if len(f) == 0:
        raise UserError("no finite class frequency to bin")
    if (f < 0).any():
        raise UserError("class frequencies must not be negative")
    if per_decade < 1:
        raise UserError(f"per_decade must be at least 1, got {per_decade}")
    top = int(np.floor(np.log10(max(f.max(), 1.0)))) + 1
    return np.concatenate([[0.0], np.logspace(0, top, top * per_decade + 1)])


def binned(
    freq: np.ndarray, y: np.ndarray, edges: np.ndarray | None = None, per_decade: int = 1
) -> pd.DataFrame:
    """Fig. 15: per log-frequency bin (``[low, high)``, the last closed), the number of classes,
    the mean and the standard deviation (ddof 0) of ``y``. Empty bins are kept with ``n = 0``."""
    f, y = np.asarray(freq, dtype=float), np.asarray(y, dtype=float)
    if f.shape != y.shape:
        raise UserError(f"{f.size} frequencies but {y.size} values to bin")
    keep = np.isfinite(f) & np.isfinite(y)
    f, y = f[keep], y[keep]
    edges = decade_edges(f, per_decade) if edges is None else np.asarray(edges, dtype=float)
    out = {}
    for name in ("count", "mean", "std"):
        out[name] = stats.binned_statistic(f, y, statistic=name, bins=edges).statistic
    return pd.DataFrame(
        {
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "n": out["count"].astype(int),
            "mean": out["mean"],
            "std": out["std"],
        }
    )
