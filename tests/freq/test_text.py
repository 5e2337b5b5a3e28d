"""Step 1 and 2 of the engine's proof: characters and words (see tailstudy.freq.engine)."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tailstudy.freq.engine import SPECIAL_CHARS, byte_table, normalise_text
from tailstudy.freq.reference import NON_ALNUM, NON_LETTERS


def reference_text(s: str, keep_digits: bool) -> str:
    return (NON_ALNUM if keep_digits else NON_LETTERS).sub(" ", s.lower())


def test_special_chars_are_all_non_ascii_chars_that_lower_to_ascii_alnum():
    """Scan every code point: only SPECIAL_CHARS lower-case to something with [a-z0-9]."""
    chars = [chr(c) for c in range(128, 0x110000) if not 0xD800 <= c < 0xE000]
    lowered = "\x00".join(chars).lower().split("\x00")
    assert len(lowered) == len(chars)
    alnum = re.compile(r"[a-zA-Z0-9]")
    found = {
        c: reference_text(lo, True)
        for c, lo in zip(chars, lowered, strict=True)
        if alnum.search(lo)
    }
    assert found == SPECIAL_CHARS
    # and what they become is the same with digits dropped (no digits involved)
    assert {c: reference_text(c, False) for c in found} == SPECIAL_CHARS


@pytest.mark.parametrize("keep_digits", [False, True])
def test_byte_table(keep_digits):
    table = byte_table(keep_digits)
    keep = set(string.ascii_lowercase + " " + (string.digits if keep_digits else ""))
    for b in range(256):
        c = chr(b)
        if c in string.ascii_uppercase:
            assert table[b] == ord(c.lower())
        elif c in keep:
            assert table[b] == b
        else:
            assert table[b] == ord(" ")


CASES = [
    "Hello, World! 123abc",
    "İstanbul \u212aelvin K9 KİLİM",
    "tab\tnew\nline\r\x00nul",
    "café naïve Ünïcödé 日本語 😀 Σίσυφος ΣΑΣ",
    "man-eater U-boat 3D 1950s",
    "",
]


@pytest.mark.parametrize("keep_digits", [False, True])
@pytest.mark.parametrize("text", CASES)
def test_normalise_text_cases(text, keep_digits):
    assert normalise_text(text, keep_digits).split() == reference_text(text, keep_digits).split()
    assert set(normalise_text(text, keep_digits)) <= set(
        string.ascii_lowercase + string.digits + " "
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60), st.booleans())
def test_normalise_text_random(text, keep_digits):
    assert normalise_text(text, keep_digits).split() == reference_text(text, keep_digits).split()


def test_normalise_text_non_strings():
    assert normalise_text(None) == ""
    assert normalise_text(float("nan")) == ""


def test_lone_surrogates():
    assert normalise_text("a\ud800b").split() == reference_text("a\ud800b", False).split()


@pytest.fixture(scope="module")
def tokenize():
    nltk = pytest.importorskip("nltk")
    return lambda s: nltk.word_tokenize(s, preserve_line=True)


WORDS = [
    "cannot",
    "gimme",
    "gonna",
    "gotta",
    "lemme",
    "wanna",
    "can",
    "not",
    "wan",
    "na",
    "dog",
    "x",
    "a1",
    "2cannot",
    "cannot2",
    "gonnaa",
    "wannabe",
]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(WORDS) | st.text("abcdgmnot0 ", min_size=1, max_size=8), max_size=8),
    st.text(" ", max_size=3),
)
def test_tokenizer_is_word_local(tokenize, words, pad):
    """On text of [a-z0-9 ] NLTK's tokens are the concatenation of each word's tokens."""
    text = pad + " ".join(words) + pad
    assert tokenize(text) == [t for w in text.split() for t in tokenize(w)]


def test_contractions_split(tokenize):
    assert tokenize("i cannot wanna") == ["i", "can", "not", "wan", "na"]
    assert tokenize("wanna") == ["wan", "na"]
