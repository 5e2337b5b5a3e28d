"""Property: the engine counts exactly what the reference counts, on random corpora."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tailstudy.freq.conceptsets import ClassQuery, ConceptSet
from tailstudy.freq.engine import Matcher
from tailstudy.freq.reference import reference_counts, reference_matches

VOCAB = [
    "dog",
    "dogs",
    "cat",
    "cats",
    "geese",
    "goose",
    "can",
    "opener",
    "tin",
    "cannot",
    "wanna",
    "wan",
    "na",
    "sea",
    "lion",
    "lions",
    "horse",
    "sorrel",
    "leaves",
    "leaf",
    "random",
    "access",
    "ram",
    "b52",
    "3d",
    "x",
]
NOISE = [
    "the",
    "a",
    "of",
    "photo",
    "Photo",
    "DOG",
    "Sea-Lion",
    "İstanbul",
    "\u212aat",
    "café",
    "日本",
    "😀",
    "1950s",
    "",
    "s",
]
SEPS = [" ", "  ", ", ", "-", "_", "/", "\t", "\n", "!", "'", "1", ""]

words = st.sampled_from(VOCAB + NOISE)
captions = st.one_of(
    st.builds(
        lambda ws, seps: "".join(w + s for w, s in zip(ws, seps, strict=False)),
        st.lists(words, max_size=8),
        st.lists(st.sampled_from(SEPS), min_size=8, max_size=8),
    ),
    st.text(max_size=20),
    st.none(),
)
phrase = st.lists(st.sampled_from(VOCAB), min_size=1, max_size=3).map(" ".join)
classes = st.lists(
    st.tuples(st.lists(phrase, min_size=1, max_size=3), st.lists(phrase, max_size=2)),
    min_size=1,
    max_size=6,
)


def concept_set(spec) -> ConceptSet:
    return ConceptSet(
        "random", tuple(ClassQuery(f"c{i}", tuple(p), tuple(n)) for i, (p, n) in enumerate(spec))
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    spec=classes,
    corpus=st.lists(captions, max_size=25),
    keep_digits=st.booleans(),
    batch_size=st.integers(1, 8),
    arrow=st.booleans(),
    weighted=st.booleans(),
)
def test_engine_equals_reference(lemmatize, spec, corpus, keep_digits, batch_size, arrow, weighted):
    concepts = concept_set(spec)
    weights = [len(str(c)) % 5 + 1 for c in corpus] if weighted else None
    expected = reference_counts(corpus, concepts, lemmatize, weights, keep_digits)
    m = Matcher(concepts, lemmatize, keep_digits=keep_digits, batch_size=batch_size)
    texts = (
        pa.array([c if isinstance(c, str) else None for c in corpus], pa.string())
        if arrow
        else corpus
    )
    assert m.count(texts, weights).tolist() == expected.tolist()


def test_engine_equals_reference_on_imagenet(imagenet, imagenet_matcher, lemmatize):
    """Web-like captions built from ImageNet phrases, plurals, negatives and noise."""
    rng = random.Random(0)
    phrases = [p for c in imagenet.classes for p in c.phrases]
    negatives = sorted({n for c in imagenet.classes for n in c.negatives})
    corpus = []
    for _ in range(300):
        parts = [
            rng.choice(phrases) + rng.choice(["", "s", "es"]) for _ in range(rng.randint(0, 3))
        ]
        parts += rng.sample(negatives, rng.randint(0, 2)) + rng.sample(NOISE, 3)
        rng.shuffle(parts)
        text = rng.choice([" ", "-", ", ", " | "]).join(parts)
        corpus.append(text.upper() if rng.random() < 0.1 else text)
    expected = reference_counts(corpus, imagenet, lemmatize)
    assert expected.sum() > 200
    assert np.array_equal(imagenet_matcher.count(corpus), expected)
    # the matched pairs themselves agree, caption by caption
    cap, cls = imagenet_matcher.match_pairs(corpus)
    for i, want in enumerate(reference_matches(corpus, imagenet, lemmatize)):
        assert sorted(cls[cap == i].tolist()) == want


def test_relevant_words_are_complete(imagenet_matcher, lemmatize):
    """Step 3 of the engine's proof, checked on ~100k words: a word outside the relevant set
    never lemmatises into the query lemmas (and every relevant word does)."""
    from nltk.corpus import wordnet

    from tailstudy.freq.engine import contraction_words

    query = set(imagenet_matcher.query_tokens)
    words = {w for w in wordnet.all_lemma_names(wordnet.NOUN) if w.isalpha() and w.islower()}
    words |= set(wordnet._exception_map[wordnet.NOUN])
    for q in query:
        words |= {q + "s", q + "es", q + "ses", q[:-1] + "ies", q[:-1] + "ves", q + "men", q[:-1]}
    rng = random.Random(0)
    words |= {"".join(rng.choices("aeioustnrlmyx", k=rng.randint(1, 7))) for _ in range(20000)}
    words = {w for w in words if w.isalpha() and w.isascii() and w.islower()}
    contractions = contraction_words()
    relevant = set(imagenet_matcher.relevant_words)
    for w in words:
        tokens = contractions.get(w, (w,))
        assert (w in relevant) == any(lemmatize(t) in query for t in tokens), w


def test_contraction_words():
    import pytest

    pytest.importorskip("nltk")
    from tailstudy.freq.engine import contraction_words

    assert contraction_words() == {
        "cannot": ("can", "not"),
        "gimme": ("gim", "me"),
        "gonna": ("gon", "na"),
        "gotta": ("got", "ta"),
        "lemme": ("lem", "me"),
        "wanna": ("wan", "na"),
    }


def test_old_nltk_is_refused(lemmatize):
    """The relevant-word set assumes NLTK >= 3.9's one-pass morphy; a lemmatiser that repeats
    the rules (as older NLTK did) is detected by a probe."""
    import pytest

    repeated = lambda w: "dog" if w == "dogss" else lemmatize(w)  # noqa: E731
    with pytest.raises(RuntimeError, match="NLTK >= 3.9"):
        Matcher(concept_set([(["dog"], [])]), repeated)


def test_pickled_matcher_needs_no_wordnet(imagenet_matcher):
    import pickle

    import pytest

    copy = pickle.loads(pickle.dumps(imagenet_matcher))
    texts = ["two geese", "a crane by the water", "goldfish"]
    assert np.array_equal(copy.count(texts), imagenet_matcher.count(texts))
    with pytest.raises(RuntimeError, match="without its lemmatiser"):
        copy.word_lemmas("geese")
