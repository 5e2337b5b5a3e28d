"""YFCC-15M-Cls and CC-12M-Cls (METHODS §3.7, Fang et al.'s recipe, case-insensitive).

For every ImageNet class ``c`` the pattern is ``\\b(<lemma 1>|<lemma 2>|...)\\b`` built from its
WordNet lemmas used as raw regular expressions; a caption belongs to ``c`` when the pattern is
found in it ignoring case (pandas ``str.contains(pattern, case=False)``, i.e. Python ``re``).
A caption matching k classes gives k rows, one per class. No similarity filtering.

Matching is exact to that definition; for speed, only the classes that a caption's words make
possible run their regex on it (``Matcher``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.acquire.metadata import iter_metadata, row_ids
from tailstudy.concepts import Concept, imagenet_concepts
from tailstudy.io import UserError, atomic_path

log = logging.getLogger(__name__)


def class_patterns(concepts: Sequence[Concept] | None = None) -> list[str]:
    """The raw regex of every class, in label order."""
    concepts = imagenet_concepts() if concepts is None else concepts
    return [r"\b(" + "|".join(c.lemmas) + r")\b" for c in concepts]


def match_reference(captions: Sequence[str | None], patterns: Sequence[str]) -> list[list[int]]:
    """Per class, the positions of the captions that match (pandas semantics; for tests)."""
    import warnings

    s = pd.Series(list(captions), dtype=object)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "has match groups": intended
        return [np.flatnonzero(s.str.contains(p, case=False, na=False)).tolist() for p in patterns]


#: Characters that Python's case-insensitive matching equates with an ASCII letter although
#: ``str.lower`` does not map them to it (sre's simple case folding and its special cases).
_FOLD = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_META = set(".^$*+?{}[]\\|()")
_WORD = re.compile(r"\w+")


class Matcher:
    """Exact class matching of captions (see the module docstring), fast.

    A match of ``\\b(L)\\b`` where lemma ``L`` starts with a word character and holds no regex
    metacharacter begins with a whole word of the caption equal, ignoring case, to the first
    word of ``L``. So each caption's words select the few candidate classes, and only those run
    their regex; lemmas that do not fit that shape make their class a candidate for every caption.
    """

    def __init__(self, lemma_lists: Sequence[Sequence[str]]):
        self.exact = [
            re.compile(r"\b(" + "|".join(ls) + r")\b", re.IGNORECASE) for ls in lemma_lists
        ]
        self.by_word: dict[str, set[int]] = {}
        always = set()
        for label, lemmas in enumerate(lemma_lists):
            for lemma in lemmas:
                first = _WORD.match(lemma.translate(_FOLD).lower())
                if first is None or _META & set(lemma):
                    always.add(label)
                else:
                    self.by_word.setdefault(first.group(), set()).add(label)
        self.always = sorted(always)

    @classmethod
    def for_imagenet(cls) -> Matcher:
        return cls([c.lemmas for c in imagenet_concepts()])

    def classes(self, caption: str | None) -> list[int]:
        """The labels whose pattern ``caption`` matches, ascending."""
        if not isinstance(caption, str):
            return []
        cand = set(self.always)
        for w in _WORD.findall(caption.translate(_FOLD).lower()):
            hit = self.by_word.get(w)
            if hit:
                cand |= hit
        return sorted(c for c in cand if self.exact[c].search(caption))

    def __call__(self, captions: Sequence[str | None]) -> list[np.ndarray]:
        """Per class, the positions (ascending) of the matching captions."""
        out: list[list[int]] = [[] for _ in self.exact]
        for i, caption in enumerate(captions):
            for c in self.classes(caption):
                out[c].append(i)
        return [np.asarray(x, dtype=np.int64) for x in out]


def match_part(
    path: str | Path,
    part: int,
    out: str | Path,
    *,
    url_column: str,
    caption_column: str,
    header: bool = True,
) -> dict:
    """Match one metadata file; write one row per (image, class): row_id, url, caption, label."""
    matcher = Matcher.for_imagenet()
    frames, start, t0 = [], 0, time.perf_counter()
    for batch in iter_metadata(path, {url_column: "url", caption_column: "caption"}, header=header):
        ids = row_ids(part, start, len(batch))
        start += len(batch)
        captions = [c if isinstance(c, str) else None for c in batch["caption"].tolist()]
        for label, pos in enumerate(matcher(captions)):
            if len(pos):
                rows = batch.iloc[pos][["url", "caption"]].copy()
                rows.insert(0, "row_id", ids[pos])
                rows["label"] = np.int32(label)
                frames.append(rows)
        log.info(
            "%s: %d rows matched (%.0f rows/s), %d (image, class) rows so far",
            path,
            start,
            start / max(time.perf_counter() - t0, 1e-9),
            sum(len(f) for f in frames),
        )
    if frames:
        df = pd.concat(frames, ignore_index=True).sort_values(["label", "row_id"], kind="stable")
    else:
        df = pd.DataFrame(
            {
                "row_id": pd.Series([], dtype=np.int64),
                "url": [],
                "caption": [],
                "label": pd.Series([], dtype=np.int32),
            }
        )
    with atomic_path(out, suffix=".parquet") as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False)
    return {
        "rows": start,
        "matches": len(df),
        "images": int(df["row_id"].nunique()),
        "classes": int(df["label"].nunique()),
    }


def collect_urls(paths: Iterable[str | Path]) -> tuple[pd.DataFrame, dict]:
    """One row per image (row_id, url, caption, labels: the classes it matched), by row id."""
    df = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    if df.empty:
        raise UserError("no caption matched any class; check the caption column")
    counts = {"rows": len(df), "classes": int(df["label"].nunique())}
    urls = (
        df.sort_values(["row_id", "label"])
        .groupby("row_id", sort=True)
        .agg(url=("url", "first"), caption=("caption", "first"), labels=("label", list))
        .reset_index()
    )
    counts["images"] = len(urls)
    return urls, counts
