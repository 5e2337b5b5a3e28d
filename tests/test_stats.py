"""Statistics over models and classes, and the t-SNE of class centres."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from tailstudy.analysis import stats
from tailstudy.analysis.tsne import class_centres, tsne_2d
from tailstudy.io import UserError

# Spearman correlations of eight models, typed in by hand.
SAMPLE = np.array([0.12, 0.31, 0.08, 0.22, 0.41, 0.19, 0.27, 0.15])


def direct_percentile_interval(x, n_resamples, seed, confidence=0.95):
    """The percentile bootstrap written out: resample with replacement, take the quantiles."""
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, len(x), size=(n_resamples, len(x)))].mean(axis=1)
    a = (1 - confidence) / 2
    return np.quantile(means, a), np.quantile(means, 1 - a)


def test_bootstrap_matches_direct_resampling():
    mean, low, high = stats.bootstrap_ci(SAMPLE, n_resamples=20_000, seed=3)
    d_low, d_high = direct_percentile_interval(SAMPLE, 20_000, seed=11)
    assert mean == pytest.approx(SAMPLE.mean())
    # two independent Monte-Carlo estimates of the same quantiles
    assert low == pytest.approx(d_low, abs=0.006)
    assert high == pytest.approx(d_high, abs=0.006)
    # the interval of the mean is narrower than the data and holds the mean
    assert SAMPLE.min() < low < mean < high < SAMPLE.max()


def test_bootstrap_is_seeded_and_resamples_matter():
    a = stats.bootstrap_ci(SAMPLE, n_resamples=200, seed=0)
    assert a == stats.bootstrap_ci(SAMPLE, n_resamples=200, seed=0)
    assert a != stats.bootstrap_ci(SAMPLE, n_resamples=200, seed=1)
    wide = stats.bootstrap_ci(SAMPLE, n_resamples=2000, confidence=0.99, seed=0)
    narrow = stats.bootstrap_ci(SAMPLE, n_resamples=2000, confidence=0.5, seed=0)
    assert wide[1] < narrow[1] and narrow[2] < wide[2]


def test_bootstrap_degenerate_samples():
    assert stats.bootstrap_ci([0.4]) == (0.4, 0.4, 0.4)
    assert stats.bootstrap_ci([0.2, 0.2, 0.2]) == pytest.approx((0.2, 0.2, 0.2))
    assert all(np.isnan(v) for v in stats.bootstrap_ci([np.nan]))
    m, lo, hi = stats.bootstrap_ci([0.1, np.nan, 0.3], n_resamples=500)
    assert m == pytest.approx(0.2) and 0.1 <= lo <= hi <= 0.3
    with pytest.raises(UserError, match="resample"):
        stats.bootstrap_ci(SAMPLE, n_resamples=0)


def test_over_models_groups_and_counts():
    table = pd.DataFrame(
        {
            "corpus": ["A"] * 4 + ["B"] * 2,
            "rho_acc": [0.1, 0.2, 0.3, np.nan, 0.5, 0.7],
            "rho_pred": [0.0, 0.1, 0.2, 0.3, 0.4, 0.4],
        }
    )
    out = stats.over_models(table, ["corpus"], ["rho_acc", "rho_pred"], n_resamples=500, seed=0)
    assert len(out) == 4
    a = out[(out.corpus == "A") & (out.statistic == "rho_acc")].iloc[0]
    assert a.n == 3 and a["mean"] == pytest.approx(0.2)
    assert (a.ci_low, a.ci_high) == stats.bootstrap_ci([0.1, 0.2, 0.3], n_resamples=500)[1:]
    b = out[(out.corpus == "B") & (out.statistic == "rho_pred")].iloc[0]
    assert b.ci_low == b.ci_high == pytest.approx(0.4)
    # a group's interval does not depend on the other groups
    alone = stats.over_models(table[table.corpus == "B"], ["corpus"], ["rho_acc"], n_resamples=500)
    both = out[(out.corpus == "B") & (out.statistic == "rho_acc")]
    assert alone.ci_low.iloc[0] == both.ci_low.iloc[0]
    with pytest.raises(UserError, match="no column 'top1'"):
        stats.over_models(table, ["corpus"], ["top1"])


def test_nc_correlations():
    acc = np.array([0.9, 0.7, 0.5, 0.3, 0.1])
    freq = np.array([10, 30, 20, 50, 40])
    nc = {"nc2_W": np.array([5.0, 4, 3, 2, 1]), "nc1": np.array([1.0, 2, 3, 4, 5])}
    out = stats.nc_correlations(acc, freq, nc).set_index("metric")
    assert list(out.index) == ["nc1", "nc2_W"]  # the spec's order
    assert out.loc["nc1", "rho_acc"] == pytest.approx(-1.0)
    assert out.loc["nc2_W", "rho_acc"] == pytest.approx(1.0)
    assert out.loc["nc1", "rho_freq"] == pytest.approx(sps.spearmanr(freq, nc["nc1"])[0])
    with pytest.raises(UserError, match="nc1 has 2 classes"):
        stats.nc_correlations(acc, freq, {"nc1": np.ones(2)})


def test_binned_by_decade():
    freq = np.array([0, 0, 3, 7, 12, 50, 99, 100, 5000])
    y = np.array([1.0, 3.0, 2.0, 4.0, 5.0, 7.0, 9.0, 11.0, 20.0])
    out = stats.binned(freq, y)
    assert out.bin_low.tolist() == [0, 1, 10, 100, 1000]
    assert out.bin_high.tolist() == [1, 10, 100, 1000, 10000]
    assert out.n.tolist() == [2, 2, 3, 1, 1]
    assert out["mean"].tolist()[:3] == pytest.approx([2.0, 3.0, 7.0])
    assert out["std"].tolist()[:3] == pytest.approx([1.0, 1.0, np.std([5.0, 7.0, 9.0])])
    half = stats.binned(freq, y, per_decade=2)
    assert len(half) == 1 + 2 * 4 and half.n.sum() == len(freq)
    with pytest.raises(UserError, match="negative"):
        stats.binned(np.array([-1, 2]), np.array([0.0, 1.0]))


def test_class_centres():
    feats = np.array([[3.0, 0], [0, 2], [1, 0], [0, 5]])
    mu = class_centres(feats, np.array([0, 0, 1, 1]), 3)
    assert mu[0] == pytest.approx([0.5, 0.5]) and mu[1] == pytest.approx([0.5, 0.5])
    assert np.isnan(mu[2]).all()
    mu = class_centres(feats, np.array([0, 0, 1, 1]), 2, renormalise=True)
    assert np.linalg.norm(mu, axis=1) == pytest.approx([1, 1])


def test_tsne_shape_scaling_and_seed():
    rng = np.random.default_rng(0)
    # two well-separated groups of 20 "text centres" in 16 dimensions
    base = np.zeros((2, 16))
    base[0, 0], base[1, 1] = 1, 1
    x = np.repeat(base, 20, axis=0) + 0.05 * rng.standard_normal((40, 16))
    emb = tsne_2d(x, perplexity=10)
    assert emb.shape == (40, 2)
    assert emb.min(axis=0) == pytest.approx([0, 0]) and emb.max(axis=0) == pytest.approx([1, 1])
    np.testing.assert_array_equal(emb, tsne_2d(x, perplexity=10))
    # the groups stay apart: every point is nearer its own group's centre
    c0, c1 = emb[:20].mean(0), emb[20:].mean(0)
    d = np.linalg.norm(emb[:, None] - np.stack([c0, c1])[None], axis=2)
    assert (d.argmin(1) == np.repeat([0, 1], 20)).all()
    with pytest.raises(UserError, match="perplexity below 40"):
        tsne_2d(x, perplexity=40)
    with pytest.raises(UserError, match="NaN"):
        tsne_2d(np.full((50, 3), np.nan))
