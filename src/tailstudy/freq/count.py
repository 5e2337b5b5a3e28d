"""Class frequencies of caption corpora and MetaCLIP datacards (METHODS §2.5–2.6).

Shards are counted independently (Parquet shards split further by row group when several
workers share few files) and the per-shard counts are added up. Workers are separate processes
(``spawn``), each with a copy of one :class:`~tailstudy.freq.engine.Matcher` built by the parent
(the copy needs no WordNet: all words that matter were lemmatised when it was built).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tailstudy.freq.conceptsets import ConceptSet
from tailstudy.freq.engine import Matcher
from tailstudy.freq.sources import (
    expand_paths,
    is_parquet,
    iter_caption_batches,
    parquet_row_groups,
    read_datacard,
)
from tailstudy.freq.wordnet import load_lemmatizer
from tailstudy.io import UserError

log = logging.getLogger(__name__)


@dataclass
class CountResult:
    """Per-class counts (label order) in total and per shard."""

    names: list[str]
    counts: np.ndarray
    per_shard: dict[str, np.ndarray] = field(default_factory=dict)
    n_texts: int = 0
    skipped_lines: int = 0


@dataclass(frozen=True)
class _Unit:
    """A piece of work: one shard, or some row groups of a Parquet shard."""

    path: str
    column: str
    header: bool = True
    row_groups: tuple[int, ...] | None = None


def make_matcher(
    concepts: ConceptSet, keep_digits: bool = False, nltk_data: str | None = None, **kw
) -> Matcher:
    """A :class:`Matcher` with NLTK's WordNet lemmatiser from ``nltk_data`` (or NLTK's path)."""
    lemmatize = load_lemmatizer(nltk_data)
    try:
        return Matcher(concepts, lemmatize, keep_digits=keep_digits, **kw)
    except (ValueError, RuntimeError) as e:  # an unusable query or NLTK version
        raise UserError(f"{concepts.name}: {e}") from None


_WORKER: dict = {}


def _init_worker(matcher: Matcher) -> None:
    _WORKER["matcher"] = matcher


def _count_unit(unit: _Unit) -> tuple[np.ndarray, int, int]:
    m: Matcher = _WORKER["matcher"]
    counts = np.zeros(m.n_classes, dtype=np.int64)
    n, skipped = 0, [0]
    for arr in iter_caption_batches(
        unit.path,
        unit.column,
        header=unit.header,
        batch_size=m.batch_size,
        row_groups=unit.row_groups,
        skipped=skipped,
    ):
        counts += m.count(arr)
        n += len(arr)
    return counts, n, skipped[0]


def _units(paths: list[Path], workers: int, column: str, header: bool) -> list[_Unit]:
    """One unit per shard; with several workers, Parquet shards are split by row group."""
    units = []
    for p in paths:
        n = parquet_row_groups(p) if workers > 1 and is_parquet(p) else 0
        if n > 1:
            units.extend(_Unit(str(p), column, header, (g,)) for g in range(n))
        else:
            units.append(_Unit(str(p), column, header))
    return units


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


class ParallelCounter:
    """A reusable pool of counting workers (or the current process when ``workers <= 1``).

    Use as a context manager; the workers start on entry.
    """

    def __init__(
        self,
        concepts: ConceptSet,
        *,
        workers: int = 1,
        keep_digits: bool = False,
        nltk_data: str | None = None,
        batch_size: int = 65_536,
    ):
        self.concepts = concepts
        self.workers = max(1, workers)
        # built once here; workers get a pickled copy (no WordNet needed there)
        self.matcher = make_matcher(concepts, keep_digits, nltk_data, batch_size=batch_size)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> ParallelCounter:
        if self.workers > 1:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=mp.get_context("spawn"),
                initializer=_init_worker,
                initargs=(self.matcher,),
            )
            # wait until every worker has started: start-up is then not part of the first count
            started: set[int] = set()
            while len(started) < self.workers:
                started.update(self._pool.map(_pid_after, [0.2] * self.workers))
        else:
            _init_worker(self.matcher)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def count(self, paths: Sequence[str | Path], column: str, header: bool = True) -> CountResult:
        """Count, per class, the captions of Parquet/TSV shards that match it (§2.5)."""
        files = expand_paths(paths)
        units = _units(files, self.workers, column, header)
        n_classes = len(self.concepts)
        result = CountResult(self.concepts.names, np.zeros(n_classes, dtype=np.int64))
        result.per_shard = {str(p): np.zeros(n_classes, dtype=np.int64) for p in files}
        outputs = (
            map(_count_unit, units) if self._pool is None else self._pool.map(_count_unit, units)
        )
        for unit, (counts, n, skipped) in zip(units, outputs, strict=True):
            result.per_shard[unit.path] += counts
            result.counts += counts
            result.n_texts += n
            result.skipped_lines += skipped
        log.info("counted %d captions from %d shards", result.n_texts, len(files))
        return result


def count_captions(
    paths: Sequence[str | Path],
    column: str,
    concepts: ConceptSet,
    *,
    workers: int = 1,
    keep_digits: bool = False,
    header: bool = True,
    nltk_data: str | None = None,
    batch_size: int = 65_536,
) -> CountResult:
    """Count, per class, the captions of Parquet/TSV shards that match it (§2.5)."""
    files = expand_paths(paths)  # fail on a missing shard before WordNet is loaded
    with ParallelCounter(
        concepts,
        workers=workers,
        keep_digits=keep_digits,
        nltk_data=nltk_data,
        batch_size=batch_size,
    ) as counter:
        return counter.count(files, column, header)


def count_datacard(
    path: str | Path,
    concepts: ConceptSet,
    *,
    keep_digits: bool = False,
    nltk_data: str | None = None,
) -> CountResult:
    """MetaCLIP: every datacard entry is matched like a caption and adds its count (§2.5)."""
    entries, weights = read_datacard(path)
    m = make_matcher(concepts, keep_digits, nltk_data)
    counts = m.count(entries, weights)
    return CountResult(concepts.names, counts, {str(path): counts}, len(entries))
