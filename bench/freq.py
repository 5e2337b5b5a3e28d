"""Benchmark of caption matching: reference vs engine vs a bare lower-case-and-split pass.

    python bench/freq.py [--n 1000000] [--ref-sample 5000] [--workers N] [--nltk-data DIR]

Generates ``--n`` synthetic web-style captions (class names and WordNet synonyms of ImageNet,
plurals, negative words, hyphens, digits, case, punctuation, non-ASCII text, long-tail noise
words drawn from WordNet's noun list with a Zipf law, and random product codes), then prints:

* the reference implementation's captions/s on a random subsample (``--ref-sample``);
* the engine's captions/s on one core, from Arrow text in memory (first pass, and a second pass
  whose phrase anchors were re-picked from the token frequencies seen), and from a Python list
  (includes the conversion to Arrow);
* the engine end to end from Parquet shards, with 1 worker and with ``--workers`` workers
  (pool started and WordNet loaded before the clock starts);
* the bare pass ``for s in captions: s.lower().split()`` over the same captions;
* the ratios and the goals (>= 1M captions/s per core, >= 100x the reference per core, within
  5x of the bare pass).

It asserts that the reference and the engine agree on the subsample and that every engine run
gives the same counts over the whole corpus.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NOISE_TEXT = (
    "the a of and in with for on at to from by new free best sale high quality photo image stock "
    "vintage modern white black red blue green yellow brown gray pink small large big little old "
    "beautiful cute happy funny man woman girl boy people family home house garden kitchen room "
    "wall art print poster canvas design style fashion dress shirt shoes bag watch ring gold "
    "silver wood metal glass paper card gift christmas summer winter spring autumn day night sun "
    "sky tree flower water beach sea mountain city street road car truck bike dog cat bird fish "
    "horse food cake coffee tea wine beer table chair bed sofa lamp light view landscape "
    "background texture pattern vector illustration icon logo set collection size pcs lot kit "
    "cannot gonna wanna gotta gimme lemme leaves species mice geese children women men feet teeth"
)
NOISE = NOISE_TEXT.split()
PUNCT = [
    " ",
    " ",
    " ",
    " ",
    ", ",
    " - ",
    " | ",
    ": ",
    "! ",
    " & ",
    " / ",
    "... ",
    " (",
    ") ",
    "'s ",
]
ODD = ["café", "naïve", "Ünïcödé", "日本語", "😀", "İstanbul", "\u212aelvin", "Ω", "–", "“quoted”"]


def make_captions(n: int, concepts, seed: int = 0) -> list[str]:
    """``n`` synthetic captions mixing class phrases, synonyms, negatives and noise."""
    from nltk.corpus import wordnet as wn

    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    phrases = [p for c in concepts.classes for p in c.phrases]
    negatives = sorted({n for c in concepts.classes for n in c.negatives})
    lemmas = sorted(wn.all_lemma_names("n"))
    nrng.shuffle(lemmas)
    tail = [x.replace("_", rng.choice([" ", "-", ""])) for x in lemmas[:60000]]
    zipf = iter(np.minimum(nrng.zipf(1.15, size=20 * n), len(tail)) - 1)
    lengths = np.clip(nrng.lognormal(2.1, 0.55, n).astype(int), 1, 60)

    def word() -> str:
        r = rng.random()
        if r < 0.55:
            return rng.choice(NOISE)
        if r < 0.93:
            return tail[next(zipf)]
        if r < 0.97:
            return "".join(rng.choices("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", k=rng.randint(3, 10)))
        return str(rng.randint(0, 5000)) + rng.choice(["", "pcs", "s", "x", "cm", "mm"])

    def phrase() -> str:
        p = rng.choice(phrases)
        r = rng.random()
        if r < 0.3:
            p = p + ("es" if p.endswith(("s", "x", "ch", "sh")) else "s")
        elif r < 0.4:
            p = p.replace(" ", "-")
        elif r < 0.5:
            p = p.title()
        elif r < 0.55:
            p = p.upper()
        return p

    out = []
    for k in range(n):
        parts = []
        for _ in range(lengths[k]):
            r = rng.random()
            if r < 0.08:
                parts.append(phrase())
            elif r < 0.10:
                parts.append(rng.choice(negatives))
            elif r < 0.11:
                parts.append(rng.choice(ODD))
            else:
                parts.append(word())
            parts.append(rng.choice(PUNCT))
        s = "".join(parts).strip()
        if rng.random() < 0.2:
            s = s.capitalize()
        out.append(s)
    return out


def _spin(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def parallelism(workers: int, n: int = 5_000_000) -> float:
    """How many cores' worth of pure-Python work ``workers`` processes get here (ideal:
    ``workers``): a control for the all-cores figures."""
    import multiprocessing as mp

    t = time.perf_counter()
    _spin(n)
    one = time.perf_counter() - t
    with mp.get_context("spawn").Pool(workers) as pool:
        pool.map(_spin, [10] * workers)
        t = time.perf_counter()
        pool.map(_spin, [n] * workers)
        many = time.perf_counter() - t
    return workers * one / many


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="captions (default 1,000,000)")
    ap.add_argument("--ref-sample", type=int, default=5000, help="captions for the reference")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="workers for 'all cores'")
    ap.add_argument("--concepts", default="imagenet")
    ap.add_argument("--nltk-data", type=Path, help="NLTK data folder (default: a temp folder)")
    ap.add_argument("--shards", type=int, default=4, help="Parquet shards for the end-to-end runs")
    a = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tailstudy.freq import Matcher, ensure_wordnet, load_concept_set, load_lemmatizer
    from tailstudy.freq.count import ParallelCounter
    from tailstudy.freq.reference import reference_counts

    tmp = tempfile.TemporaryDirectory(prefix="freq-bench-")
    nltk_data = str(ensure_wordnet(a.nltk_data or Path(tmp.name) / "nltk_data"))
    lemmatize = load_lemmatizer(nltk_data)
    concepts = load_concept_set(a.concepts)

    t = time.perf_counter()
    captions = make_captions(a.n, concepts)
    chars = sum(map(len, captions))
    print(
        f"corpus: {a.n:,} captions, {chars / a.n:.1f} characters and "
        f"{sum(len(s.split()) for s in captions[:100_000]) / min(a.n, 100_000):.1f} words "
        f"per caption on average (generated in {time.perf_counter() - t:.1f} s)"
    )
    print(
        f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"pyarrow {pa.__version__}, numpy {np.__version__}"
    )

    # bare pass
    t = time.perf_counter()
    for s in captions:
        s.lower().split()
    bare = rate(a.n, time.perf_counter() - t)

    # engine, one core, Arrow in memory
    arr = pa.array(captions, pa.large_string())
    m = Matcher(concepts, lemmatize)
    t = time.perf_counter()
    counts_cold = m.count(arr)
    cold = rate(a.n, time.perf_counter() - t)
    t = time.perf_counter()
    counts = m.count(arr)
    warm = rate(a.n, time.perf_counter() - t)
    t = time.perf_counter()
    counts_list = m.count(captions)
    from_list = rate(a.n, time.perf_counter() - t)
    assert np.array_equal(counts, counts_cold) and np.array_equal(counts, counts_list)

    # reference on a subsample, compared with the engine there
    idx = random.Random(1).sample(range(a.n), min(a.ref_sample, a.n))
    sample = [captions[i] for i in idx]
    reference_counts(sample[:50], concepts, lemmatize)  # compile the NLTK regexes once
    t = time.perf_counter()
    ref_counts = reference_counts(sample, concepts, lemmatize)
    ref = rate(len(sample), time.perf_counter() - t)
    assert np.array_equal(ref_counts, m.count(sample)), "engine and reference disagree"

    # end to end from Parquet shards: 1 worker and all workers
    shard_dir = Path(tmp.name) / "shards"
    shard_dir.mkdir()
    per = -(-a.n // a.shards)
    for k in range(a.shards):
        table = pa.table({"TEXT": arr.slice(k * per, per)})
        pq.write_table(table, shard_dir / f"part-{k:05d}.parquet", row_group_size=65_536)
    results = {}
    for workers in sorted({1, a.workers}):
        with ParallelCounter(concepts, workers=workers, nltk_data=nltk_data) as counter:
            t = time.perf_counter()
            res = counter.count([shard_dir], "TEXT")
            results[workers] = rate(res.n_texts, time.perf_counter() - t)
        assert res.n_texts == a.n and np.array_equal(res.counts, counts), "parallel run differs"

    control = parallelism(a.workers) if a.workers > 1 else 1.0
    e1 = warm
    print()
    print(f"{'pass':58s} {'captions/s':>14s}")
    rows = [
        (f"reference (NLTK, per caption; {len(sample):,}-caption subsample)", ref),
        ("bare pass: s.lower().split() per caption", bare),
        ("engine, 1 core, Arrow in memory, first pass", cold),
        ("engine, 1 core, Arrow in memory, second pass", warm),
        ("engine, 1 core, from a Python list (incl. -> Arrow)", from_list),
    ]
    rows += [(f"engine end to end from Parquet, {w} worker(s)", r) for w, r in results.items()]
    for label, r in rows:
        print(f"{label:58s} {r:14,.0f}")
    print()
    print(
        f"engine (1 core) / reference    = {e1 / ref:8.1f}x   goal >= 100x: "
        f"{'met' if e1 / ref >= 100 else 'MISSED'}"
    )
    print(
        f"bare pass / engine (1 core)    = {bare / e1:8.2f}x   goal <= 5x: "
        f"{'met' if bare / e1 <= 5 else 'MISSED'}"
    )
    print(
        f"engine captions/s, 1 core     = {e1:8,.0f}    goal >= 1,000,000: "
        f"{'met' if e1 >= 1e6 else 'MISSED'}"
    )
    wmax = max(results)
    print(
        f"parallel speed-up ({wmax} workers vs 1, end to end) = {results[wmax] / results[1]:.2f}x "
        f"(control: {wmax} processes of a pure-Python loop get {control:.2f}x one process here)"
    )
    print(
        f"counts identical: reference = engine on the subsample ({int(ref_counts.sum()):,} "
        f"matches); all engine runs agree on the full corpus ({int(counts.sum()):,} matches, "
        f"{int((counts > 0).sum())}/{len(counts)} classes non-zero)"
    )
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
