"""Reference semantics of caption matching (METHODS §2.2–2.5), written to be obviously correct.

This is the authors' procedure, caption by caption and class by class, with NLTK doing the
tokenising and lemmatising. It is slow (tens of microseconds per caption); it exists to define
the counts and to test :mod:`tailstudy.freq.engine` against.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from tailstudy.freq.conceptsets import ConceptSet

#: Characters removed (turned into spaces) after lower-casing: the authors' code drops digits.
NON_LETTERS = re.compile(r"[^a-zA-Z ]")
#: The paper's variant keeps (ASCII) digits.
NON_ALNUM = re.compile(r"[^a-zA-Z0-9 ]")


def norm(s: object, lemmatize: Callable[[str], str], keep_digits: bool = False) -> list[str]:
    """Lemmatised tokens of ``s`` (§2.2); anything that is not a ``str`` (None, NaN) gives ``[]``.

    ``lemmatize`` is NLTK's ``WordNetLemmatizer().lemmatize`` (see
    :func:`tailstudy.freq.wordnet.load_lemmatizer`). The text holds only letters, digits and
    spaces when it reaches the tokeniser, so ``word_tokenize`` sees a single sentence and
    ``preserve_line=True`` (no punkt model needed) gives the same tokens.
    """
    from nltk.tokenize import word_tokenize

    if not isinstance(s, str):
        return []
    s = s.lower()
    s = (NON_ALNUM if keep_digits else NON_LETTERS).sub(" ", s)
    return [lemmatize(t) for t in word_tokenize(s, preserve_line=True)]


def match(tokens: set[str], phrases: list[list[str]], negatives: list[list[str]]) -> bool:
    """§2.5: no token of any negative phrase, and all tokens of at least one phrase."""
    if any(w in tokens for n in negatives for w in n):
        return False
    return any(all(w in tokens for w in p) for p in phrases)


def compile_queries(
    concepts: ConceptSet, lemmatize: Callable[[str], str], keep_digits: bool = False
) -> list[tuple[list[list[str]], list[list[str]]]]:
    """Per class: the token lists of its phrases and of its negative phrases."""
    queries = []
    for c in concepts.classes:
        phrases = [norm(p, lemmatize, keep_digits) for p in c.phrases]
        if any(not p for p in phrases):
            raise ValueError(f"class {c.name!r} has a phrase without words: it would match all")
        queries.append((phrases, [norm(n, lemmatize, keep_digits) for n in c.negatives]))
    return queries


def reference_matches(
    texts: Iterable[object],
    concepts: ConceptSet,
    lemmatize: Callable[[str], str],
    keep_digits: bool = False,
) -> Iterator[list[int]]:
    """For each text, the (label-ordered) indices of the classes it matches."""
    queries = compile_queries(concepts, lemmatize, keep_digits)
    for text in texts:
        tokens = set(norm(text, lemmatize, keep_digits))
        yield [
            k for k, (phrases, negatives) in enumerate(queries) if match(tokens, phrases, negatives)
        ]


def reference_counts(
    texts: Iterable[object],
    concepts: ConceptSet,
    lemmatize: Callable[[str], str],
    weights: Sequence[int] | None = None,
    keep_digits: bool = False,
) -> np.ndarray:
    """Per-class counts (int64, label order): the number of texts (or the sum of their
    ``weights``, for MetaCLIP datacard entries) that match each class."""
    texts = list(texts)
    weights = [1] * len(texts) if weights is None else list(weights)
    if len(weights) != len(texts):
        raise ValueError("texts and weights differ in length")
    counts = np.zeros(len(concepts), dtype=np.int64)
    for classes, w in zip(
        reference_matches(texts, concepts, lemmatize, keep_digits), weights, strict=True
    ):
        counts[classes] += w
    return counts
