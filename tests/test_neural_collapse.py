"""Neural-collapse metrics (METHODS §5.4) against a direct C×D×D implementation and on hand-made
geometry."""

import numpy as np
import pytest

from tailstudy.evaluate.metrics import FLOAT32_PINV_RTOL, NC_KEYS, neural_collapse
from tailstudy.io import UserError


def direct(h, y, w, rtol):
    """§5.4 written out: the C×D×D tensor of per-class Σ_W, Tr(Σ_W^(c) pinv(Σ_B)) by matmul."""
    h, w = np.asarray(h, np.float64), np.asarray(w, np.float64)
    n, d = h.shape
    c = w.shape[1]
    mu = np.stack([h[y == k].mean(0) for k in range(c)])
    sw = np.zeros((c, d, d))
    for k in range(c):
        z = h[y == k] - mu[k]
        sw[k] = z.T @ z
    sw /= n
    mc = mu - mu.mean(0)
    sb = mc.T @ mc / c
    tr = np.trace(sw @ np.linalg.pinv(sb, rtol=rtol, hermitian=True), axis1=1, axis2=2)

    def margins(v):
        v = v / np.linalg.norm(v, axis=0)
        g = v.T @ v + 1 / (c - 1)
        np.fill_diagonal(g, 0)
        return np.abs(g).sum(1) / (c - 1), np.abs(g).max(1)

    (m, mnn), (wa, wnn) = margins(mc.T), margins(w)
    return {"nc1": tr, "nc2_M": m, "nc2nn_M": mnn, "nc2_W": wa, "nc2nn_W": wnn}


def make(c, d, sizes, seed=0, noise=0.5, dtype=np.float32):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(c, d)) + 3.0  # far from the origin: centring matters
    y = np.repeat(np.arange(c), sizes)
    h = means[y] + noise * rng.normal(size=(len(y), d)) * rng.uniform(0.2, 2, size=c)[y, None]
    return h.astype(dtype), y, rng.normal(size=(d, c))


def simplex_etf(c, d, seed=0):
    """D×C columns of unit norm with pairwise cosine -1/(C-1), randomly rotated into D dims."""
    e = np.eye(c) - np.ones((c, c)) / c
    e *= np.sqrt(c / (c - 1))
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, c)))
    return q @ e


@pytest.mark.parametrize(
    ("c", "d", "sizes"),
    [
        (7, 12, [5, 1, 9, 3, 20, 2, 6]),  # D > C-1: Σ_B singular, a class with one sample
        (20, 8, 6),  # D < C-1: Σ_B of full rank
        (30, 30, 4),
    ],
)
def test_agrees_with_direct_implementation(c, d, sizes):
    h, y, w = make(c, d, sizes)
    rtol = d * FLOAT32_PINV_RTOL
    ref = direct(h, y, w, rtol)
    got = neural_collapse(h, y, w, chunk=7)  # chunks split classes
    assert set(got) == set(NC_KEYS)
    for k in NC_KEYS:
        assert got[k].dtype == np.float64 and got[k].shape == (c,)
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-6, atol=1e-12, err_msg=k)
    # order of the rows does not matter, nor the chunking
    perm = np.random.default_rng(1).permutation(len(y))
    again = neural_collapse(h[perm], y[perm], w, chunk=1000)
    for k in NC_KEYS:
        np.testing.assert_allclose(again[k], got[k], rtol=1e-10, err_msg=k)
    if isinstance(sizes, list):
        assert got["nc1"][1] == 0.0  # one sample: no within-class scatter
    # NC1 is the per-class split of Tr(Σ_W Σ_B†)/C
    assert got["nc1"].mean() > 0


def test_nc1_scales_with_within_class_spread():
    h, y, w = make(10, 16, 8, noise=0.0)
    assert np.abs(neural_collapse(h, y, w)["nc1"]).max() < 1e-10  # collapsed onto class means
    h, y, w = make(10, 16, 8, dtype=np.float64)
    mu = np.stack([h[y == k].mean(0) for k in range(10)])
    # the same class means, deviations from them scaled by 10: Σ_W × 100, Σ_B unchanged
    small = neural_collapse(mu[y] + 0.1 * (h - mu[y]), y, w)["nc1"]
    large = neural_collapse(mu[y] + 1.0 * (h - mu[y]), y, w)["nc1"]
    assert small.min() > 0
    np.testing.assert_allclose(large / small, 100, rtol=1e-8)


def test_simplex_etf_has_zero_nc2():
    c, d = 10, 32
    etf = simplex_etf(c, d)
    rng = np.random.default_rng(0)
    offset = rng.normal(size=d) * 5  # μ_G away from the origin: NC2_M centres, NC2_W does not
    means = 4.0 * etf.T + offset
    noise = rng.normal(size=(c, 3, d))
    h = np.concatenate([means[:, None] + noise, means[:, None] - noise], 1).reshape(-1, d)
    y = np.repeat(np.arange(c), 6)
    nc = neural_collapse(h, y, etf)
    for k in ("nc2_M", "nc2nn_M", "nc2_W", "nc2nn_W"):
        assert np.abs(nc[k]).max() < 1e-12, k
    assert nc["nc1"].min() > 0.01  # noisy samples: not collapsed within classes
    # an uncentred, shifted ETF is no longer one; nor are random directions
    assert neural_collapse(h, y, etf + offset[:, None])["nc2_W"].min() > 0.05
    assert neural_collapse(h, y, rng.normal(size=(d, c)))["nc2_W"].min() > 0.05


def test_classes_without_samples_are_nan_and_left_out():
    h, y, w = make(6, 10, [4, 0, 5, 3, 0, 6])
    got = neural_collapse(h, y, w)
    keep = np.array([0, 2, 3, 5])
    ref = direct(h, np.searchsorted(keep, y), w[:, keep], 10 * FLOAT32_PINV_RTOL)
    for k in ("nc1", "nc2_M", "nc2nn_M"):
        assert np.isnan(got[k][[1, 4]]).all(), k
        np.testing.assert_allclose(got[k][keep], ref[k], rtol=1e-6, err_msg=k)
    full_w = direct(*make(6, 10, 3)[:2], w, 1e-6)  # nc2_W uses every column of W
    np.testing.assert_allclose(got["nc2_W"], full_w["nc2_W"], rtol=1e-12)


def test_default_cutoff_is_torch_pinv_on_float32():
    """The study inverted a float32 Σ_B with torch.linalg.pinv's default cutoff."""
    torch = pytest.importorskip("torch")
    c, d = 12, 40
    h, y, w = make(c, d, 10, seed=3)
    # one class-mean direction far weaker than the others: its Σ_B eigenvalue falls ×1e-6, below
    # the float32 cutoff (D·eps = 4.8e-6 of the largest) though far above float64 round-off
    h = h.astype(np.float64)
    mu = np.stack([h[y == k].mean(0) for k in range(c)])
    u = np.linalg.svd(mu - mu.mean(0), full_matrices=False)[2][-2]  # [-1] is the null space
    h -= np.outer((mu - mu.mean(0))[y] @ u, u) * (1 - 1e-3)  # the means move, the scatter stays
    ht = torch.from_numpy(h).float()
    yt = torch.from_numpy(y)
    mut = torch.stack([ht[yt == k].mean(0) for k in range(c)])
    mc = mut - mut.mean(0)
    inv = torch.linalg.pinv(mc.T @ mc / c)
    nc1_torch = torch.stack(
        [((ht[yt == k] - mut[k]) @ inv * (ht[yt == k] - mut[k])).sum() for k in range(c)]
    ) / len(yt)
    got = neural_collapse(h, y, w)["nc1"]
    np.testing.assert_allclose(got, nc1_torch.double().numpy(), rtol=2e-3)
    kept_all = neural_collapse(h, y, w, rtol=1e-12)["nc1"]
    assert kept_all.mean() > 10 * got.mean()  # the weak direction dominates when inverted


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.zeros((4, 3)), np.zeros(4, int), np.ones((3, 1))), "at least 2 classes"),
        ((np.zeros((4, 3)), np.zeros(4, int), np.ones((3, 5))), "samples of at least 2 classes"),
        (
            (np.zeros((4, 3)), np.array([0, 1, 2, 5]), np.ones((3, 5))),
            r"labels must lie in \[0, 5\)",
        ),
        ((np.zeros((4, 3)), np.zeros(3, int), np.ones((3, 5))), "4 integers"),
        (
            (np.zeros((4, 3)), np.array([0, 1, 0, 1]), np.ones((5, 3))),
            "pass an SL head .* transposed",
        ),
        ((np.full((4, 3), np.nan), np.array([0, 1, 0, 1]), np.ones((3, 2))), "NaN"),
        ((np.eye(4, 3), np.array([0, 1, 0, 1]), np.zeros((3, 2))), "class vectors .* zero"),
    ],
)
def test_bad_input_is_rejected_in_one_line(args, message):
    with pytest.raises(UserError, match=message):
        neural_collapse(*args)
