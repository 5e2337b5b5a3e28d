"""The engine's batch pieces: byte buffer, word spans, caption of a position, word look-up."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailstudy.freq.engine import (
    PAD,
    WordIndex,
    _caption_of,
    normalise_text,
    text_buffer,
    word_spans,
)

PIECES = [
    "dog",
    "DOG",
    "Sea-Lion",
    "İstanbul",
    "KİLİM",
    "\u212aelvin",
    "x\u212a\u212ay",
    "\u212a",
    "İ",
    "café",
    "日本",
    "😀",
    "1950s",
    "b52",
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\x00",
    "\x15",
    "\x19x",
    "-",
    "a",
    "Z",
    "\u0130\u212a",
    "ΣΑΣ",
    "\ud800",
]
captions = st.one_of(
    st.lists(st.sampled_from(PIECES), max_size=6).map("".join),
    st.text(max_size=12),
    st.none(),
)


def buffer_words(texts, keep_digits, kind):
    """Per caption, the words the batch pieces find (via text_buffer, word_spans, _caption_of)."""
    items = [t.encode("utf-8", "surrogatepass") if isinstance(t, str) else None for t in texts]
    arr = pa.array(items, kind)
    buf, starts = text_buffer(arr, keep_digits)
    assert (buf[:PAD] == 32).all() and (buf[-PAD:] == 32).all()
    start, end = word_spans(buf, keep_digits)
    cap = _caption_of(starts, start, len(buf))
    out = [[] for _ in texts]
    for c, s, e in zip(cap.tolist(), start.tolist(), end.tolist(), strict=True):
        out[c].append(buf[s:e].tobytes().decode("ascii"))
    return out


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(captions, max_size=12),
    keep_digits=st.booleans(),
    kind=st.sampled_from([pa.binary(), pa.large_binary()]),
)
def test_buffer_words_are_normalised_words(texts, keep_digits, kind):
    want = [normalise_text(t, keep_digits).split() for t in texts]
    assert buffer_words(texts, keep_digits, kind) == want


def test_buffer_of_strings_sliced_and_empty():
    texts = ["A dog", None, "", "İ\u212aelvin goose", "x", "Kelvin\u212a", "end"]
    arr = pa.array(texts, pa.string()).slice(1, 5)
    buf, starts = text_buffer(arr)
    start, end = word_spans(buf)
    cap = _caption_of(starts, start, len(buf))
    got = [(c, buf[s:e].tobytes()) for c, s, e in zip(cap, start, end, strict=True)]
    assert got == [(2, b"i"), (2, b"kelvin"), (2, b"goose"), (3, b"x"), (4, b"kelvink")]
    buf, starts = text_buffer(pa.array([], pa.large_string()))
    assert len(starts) == 0 and len(word_spans(buf)[0]) == 0


def test_caption_of_many_empty_captions():
    """Dozens of captions start inside one 8-byte chunk: the step-back loop finds the right one."""
    texts = [""] * 40 + ["a"] + [""] * 30 + ["bc d"] + [""] * 9
    assert buffer_words(texts, False, pa.large_binary()) == [t.split() for t in texts]


def spans_of(words: list[bytes], seps: list[bytes]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    text = b" " * PAD + b"".join(w + s for w, s in zip(words, seps, strict=True)) + b" " * PAD
    buf = np.frombuffer(text, dtype=np.uint8)
    start, end = word_spans(buf, keep_digits=True)
    return buf, start, end


def check_find(index: WordIndex, words: list[str]) -> int:
    """``index.find`` on ``words`` separated by random spaces equals set membership."""
    rng = random.Random(len(words))
    buf, start, end = spans_of(
        [w.encode() for w in words], [b" " * rng.randint(1, 3) for _ in words]
    )
    assert len(start) == len(words)  # words are runs of [a-z0-9]
    at, entry = index.find(buf, start, end)
    listed = {w: i for i, w in enumerate(index.words)}
    want = [(i, listed[w]) for i, w in enumerate(words) if w in listed]
    assert sorted(zip(at.tolist(), entry.tolist(), strict=True)) == want
    return len(want)


def near_misses(word: str) -> list[str]:
    """Same length and same first and last 8 bytes (when long), one letter off, one longer."""
    mid = len(word) // 2
    other = "b" if word[mid] == "a" else "a"
    misses = [word[:mid] + other + word[mid + 1 :], word + "s", word[:-1], "x" + word]
    return [m for m in misses if m]


WORDS = [
    "a",
    "dog",
    "dogs",
    "goose",
    "geese",
    "sunglass",
    "sunglasses",
    "abcdefgh",
    "abcdefghi",
    "abcdefghabcdefgh",
    "abcdefghxabcdefgh",
    "abcdefghxxabcdefgh",
    "thisisaverylongwordindeed",
    "thisisaverylongwordinbeed",
    "b52",
    "3d",
    "0",
]


@pytest.mark.parametrize("table_bits", [None, 3, 1])
def test_word_index_is_exact(table_bits):
    """Listed words are found and nothing else is, also with a table of 2-8 slots, where
    nearly every span meets a chain of several listed words."""
    index = WordIndex(WORDS, table_bits=table_bits)
    if table_bits == 1:
        assert (index._next != len(WORDS)).sum() == len(WORDS) - 2  # two chains hold all
    rng = random.Random(str(table_bits))
    corpus = WORDS + [m for w in WORDS for m in near_misses(w)]
    corpus += ["".join(rng.choices("abcdefghs", k=rng.randint(1, 20))) for _ in range(3000)]
    rng.shuffle(corpus)
    assert check_find(index, corpus) >= len(WORDS)
    # a listed word as the first and as the last word of the buffer
    assert check_find(index, ["sunglasses", "dog", "thisisaverylongwordindeed"]) == 3


def test_word_index_random_lists():
    rng = random.Random(0)
    for n in (0, 1, 2, 5, 100, 4000):
        words = sorted({"".join(rng.choices("abcdez019", k=rng.randint(1, 24))) for _ in range(n)})
        index = WordIndex(words, seed=n)
        corpus = words + [
            "".join(rng.choices("abcdez019", k=rng.randint(1, 24))) for _ in range(2000)
        ]
        rng.shuffle(corpus)
        assert check_find(index, corpus) >= len(words)


def test_word_index_no_words_and_empty_buffer():
    buf, start, end = spans_of([], [])
    at, entry = WordIndex(["dog"]).find(buf, start, end)
    assert len(at) == len(entry) == 0
    assert check_find(WordIndex([]), ["dog", "cat"]) == 0


def test_word_index_rejects_bad_lists():
    for words in (["dog", "dog"], [""], ["Dog"], ["sea lion"], ["café"]):
        with pytest.raises(ValueError):
            WordIndex(words)
