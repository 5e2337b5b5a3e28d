"""Benchmark of the neural-collapse metrics: tailstudy's implementation vs the direct C×D×D way.

    python bench/nc.py [--classes 1000] [--dim 1024] [--per-class 50] [--direct-classes 50]
                       [--threads 1]

Generates float32 features of N = classes × per-class samples (Gaussian classes around random
means, a different spread per class) and a random D×C classifier, then times, on ``--threads``
BLAS threads, with the peak of numpy allocations during the call (tracemalloc; the input
features excluded):

* ``tailstudy.evaluate.metrics.neural_collapse`` on the whole problem;
* the direct implementation of METHODS §5.4 as the study coded it: class means, Σ_B, its
  pseudo-inverse (``np.linalg.pinv``, same cutoff), the C×D×D tensor of per-class Σ_W^(c) and
  ``Tr(Σ_W^(c) · pinv(Σ_B))`` by a D×D matmul per class. The shared part (means, Σ_B, pinv,
  margins) runs on the whole problem; the per-class part (the tensor and its traces) runs on
  ``--direct-classes`` evenly spaced classes and is scaled by classes / direct-classes, in time
  and in memory (its cost is the same for every class of equal size).

It prints both, the ratio, and the largest relative difference of every metric over the classes
the direct way computed. Goals: >= 10x faster, O(D²) memory, <= 1e-4 relative difference.
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=1000)
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--per-class", type=int, default=50)
    ap.add_argument("--direct-classes", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)  # before numpy loads its BLAS

    import tracemalloc

    import numpy as np

    from tailstudy.evaluate.metrics import FLOAT32_PINV_RTOL, NC_KEYS, neural_collapse

    c, d, k = args.classes, args.dim, args.per_class
    n = c * k
    rng = np.random.default_rng(args.seed)
    means = rng.normal(size=(c, d)).astype(np.float32) + 1.0
    y = np.repeat(np.arange(c), k)
    spread = rng.uniform(0.3, 1.5, size=c).astype(np.float32)
    h = means[y] + spread[y, None] * rng.standard_normal((n, d), dtype=np.float32)
    w = rng.normal(size=(d, c)).astype(np.float32)
    rtol = d * FLOAT32_PINV_RTOL
    print(
        f"C={c} D={d} N={n:,} float32 features ({h.nbytes / 2**20:.0f} MiB), "
        f"{args.threads} BLAS thread(s), numpy {np.__version__}",
        flush=True,
    )

    def measured(fn):
        tracemalloc.start()
        t, cpu = time.perf_counter(), time.process_time()
        out = fn()
        dt, dcpu = time.perf_counter() - t, time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return out, (dt, dcpu), peak

    fast, t_fast, m_fast = measured(lambda: neural_collapse(h, y, w))
    print(f"tailstudy      : {_t(t_fast)}  peak {m_fast / 2**20:8.1f} MiB", flush=True)

    def shared():
        h64 = h.astype(np.float64)  # the direct way holds the features in float64 too
        mu = np.stack([h64[y == j].mean(0) for j in range(c)])
        mc = mu - mu.mean(0)
        inv = np.linalg.pinv(mc.T @ mc / c, rtol=rtol)

        def margins(v):
            v = v / np.linalg.norm(v, axis=0)
            g = v.T @ v + 1 / (c - 1)
            np.fill_diagonal(g, 0)
            return np.abs(g).sum(1) / (c - 1), np.abs(g).max(1)

        (m, mnn), (wa, wnn) = margins(mc.T), margins(w.astype(np.float64))
        return h64, mu, inv, {"nc2_M": m, "nc2nn_M": mnn, "nc2_W": wa, "nc2nn_W": wnn}

    (h64, mu, inv, ref), t_shared, m_shared = measured(shared)
    sub = np.linspace(0, c - 1, args.direct_classes).round().astype(int)

    def per_class(h64, mu):
        sw = np.zeros((len(sub), d, d))  # the C×D×D tensor, for the classes in `sub`
        for i, j in enumerate(sub):
            z = h64[y == j] - mu[j]
            sw[i] = z.T @ z
        sw /= n
        return np.trace(sw @ inv, axis1=1, axis2=2)

    nc1_sub, t_sub, m_sub = measured(lambda: per_class(h64, mu))
    scale = c / len(sub)
    t_direct = tuple(a + b * scale for a, b in zip(t_shared, t_sub, strict=True))
    m_direct = m_shared + m_sub * scale
    print(
        f"direct shared  : {_t(t_shared)}  peak {m_shared / 2**20:8.1f} MiB  (all {c} classes)\n"
        f"direct tensor  : {_t(t_sub)}  peak {m_sub / 2**20:8.1f} MiB  ({len(sub)} classes, "
        f"to be scaled x{scale:g})\n"
        f"direct (scaled): {_t(t_direct)}  peak {m_direct / 2**30:8.2f} GiB",
        flush=True,
    )
    ref["nc1"] = np.full(c, np.nan)
    ref["nc1"][sub] = nc1_sub
    worst = 0.0
    for key in NC_KEYS:
        got, want = fast[key], ref[key]
        ok = np.isfinite(want)
        rel = float(np.max(np.abs(got[ok] - want[ok]) / np.abs(want[ok])))
        worst = max(worst, rel)
        print(f"max relative difference {key:8s}: {rel:.2e} over {int(ok.sum())} classes")
    speed = min(t_direct[0] / t_fast[0], t_direct[1] / t_fast[1])
    print(
        f"speed-up {t_direct[0] / t_fast[0]:.1f}x wall, {t_direct[1] / t_fast[1]:.1f}x CPU "
        f"(goal >= 10x): {'met' if speed >= 10 else 'NOT met'}\n"
        f"memory {m_fast / 2**20:.1f} MiB = {m_fast / (8 * d * d):.1f} float64 D×D matrices "
        f"(direct: {m_direct / (8 * d * d):.0f})\n"
        f"max relative difference {worst:.1e} (goal <= 1e-4): {'met' if worst <= 1e-4 else 'NOT met'}"
    )
    return 0 if speed >= 10 and worst <= 1e-4 else 1


def _t(t: tuple[float, float]) -> str:
    return f"{t[0]:8.2f} s wall {t[1]:8.2f} s CPU"


if __name__ == "__main__":
    sys.exit(main())
