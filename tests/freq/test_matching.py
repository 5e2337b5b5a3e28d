"""Every matching rule of METHODS §2.2–2.5 on hand-made captions, for the reference and the
engine alike."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tailstudy.freq.conceptsets import ClassQuery, ConceptSet, named_concept_set
from tailstudy.freq.engine import Matcher
from tailstudy.freq.reference import norm, reference_counts

_MATCHERS: dict = {}  # (concept set, keep_digits) -> Matcher, shared by the tests


@pytest.fixture(params=["reference", "engine"])
def count(request, lemmatize):
    """``count(texts, concepts, weights=None, keep_digits=False) -> counts``."""
    if request.param == "reference":
        return lambda texts, concepts, weights=None, keep_digits=False: reference_counts(
            texts, concepts, lemmatize, weights, keep_digits
        )

    def engine(texts, concepts, weights=None, keep_digits=False):
        key = (concepts, keep_digits)
        if key not in _MATCHERS:
            _MATCHERS[key] = Matcher(concepts, lemmatize, keep_digits=keep_digits, batch_size=3)
        return _MATCHERS[key].count(texts, weights)

    return engine


def toy(*classes: tuple) -> ConceptSet:
    """``toy(("name", ["phrase", ...], ["negative", ...]), ...)``; negatives are optional."""
    return ConceptSet(
        "toy",
        tuple(ClassQuery(c[0], tuple(c[1]), tuple(c[2]) if len(c) > 2 else ()) for c in classes),
    )


def hits(count, concepts, text, **kw) -> list[str]:
    """Names of the classes a single text counts for."""
    c = count([text], concepts, **kw)
    return [concepts.classes[i].name for i in np.flatnonzero(c)]


def imagenet_hits(count, imagenet, text) -> set[int]:
    return set(np.flatnonzero(count([text], imagenet)).tolist())


# ---- normalisation ---------------------------------------------------------------------------


def test_norm(lemmatize):
    assert norm("Geese, CRANES & sunglasses; mice + cacti!", lemmatize) == [
        "goose",
        "crane",
        "sunglass",
        "mouse",
        "cactus",
    ]
    assert norm("man-eater", lemmatize) == ["man", "eater"]
    assert norm("B52 bomber 1950s", lemmatize) == ["b", "bomber", "s"]
    assert norm("B52 bomber 1950s", lemmatize, keep_digits=True) == ["b52", "bomber", "1950s"]
    assert norm("I cannot", lemmatize) == ["i", "can", "not"]
    assert norm(None, lemmatize) == norm(float("nan"), lemmatize) == norm("", lemmatize) == []


# ---- phrases ---------------------------------------------------------------------------------

CAN = toy(("can opener", ["can opener", "tin opener"]), ("dog", ["dog"]))


def test_multi_word_phrase_any_order(count):
    assert hits(count, CAN, "an opener for the can") == ["can opener"]
    assert hits(count, CAN, "OPENER ... tin") == ["can opener"]
    assert hits(count, CAN, "a can of beans") == []


def test_contraction_makes_a_match(count):
    assert hits(count, CAN, "I cannot find the opener") == ["can opener"]


def test_synonyms_and_one_count_per_caption(count):
    assert list(count(["tin opener and can opener", "dog dog dogs"], CAN)) == [1, 1]


def test_plural_lemmas(count, imagenet):
    assert 99 in imagenet_hits(count, imagenet, "two geese")  # goose
    assert {836, 837} <= imagenet_hits(count, imagenet, "Sunglasses")  # sunglass, sunglasses
    assert 673 in imagenet_hits(count, imagenet, "mice")  # computer mouse: lemma 'mouse'


def test_case_and_punctuation(count):
    assert hits(count, CAN, "DOG!!!") == ["dog"]
    assert hits(count, CAN, "#dog_lover") == ["dog"]


def test_hyphens_split_words(count, imagenet):
    assert 833 in imagenet_hits(count, imagenet, "U-Boat wreck")  # phrase 'u-boat' -> u, boat
    assert 833 in imagenet_hits(count, imagenet, "boat u")
    shark = toy(("shark", ["man-eater"]))
    assert hits(count, shark, "the man eater") == ["shark"]
    assert hits(count, shark, "eater-man") == ["shark"]


def test_digits(count):
    dogs = toy(("dog", ["dog"]), ("b52", ["b52"]))
    assert hits(count, dogs, "3dogs") == ["dog"]  # digits dropped: '3dogs' -> 'dogs'
    assert hits(count, dogs, "3dogs", keep_digits=True) == []
    assert hits(count, dogs, "a B-52 and a b52", keep_digits=True) == ["b52"]


def test_special_characters(count):
    k = toy(("kilo", ["kilo"]), ("i", ["stanbul"]))
    assert hits(count, k, "\u212ailo") == ["kilo"]  # Kelvin sign lower-cases to 'k'
    assert hits(count, k, "İstanbul") == ["i"]  # 'İ'.lower() is 'i' + a combining dot


def test_special_characters_across_captions(lemmatize):
    """The Kelvin sign shortens its caption by two bytes: later captions must not shift."""
    k = toy(("kilo", ["kilo"]), ("dog", ["dog"]), ("i", ["i"]))
    texts = ["\u212a\u212a", "\u212ailo dog", "dog \u212a", "İ", "kilo\u212a", "x\u212ailo", "dog"]
    want = reference_counts(texts, k, lemmatize)
    assert want.tolist() == [1, 3, 1]
    for batch_size in (1, 2, 100):
        assert Matcher(k, lemmatize, batch_size=batch_size).count(texts).tolist() == want.tolist()


def test_steps_split_by_bytes(lemmatize, monkeypatch):
    """Long captions make short steps (at most BLOCK_BYTES bytes, or one caption each)."""
    import tailstudy.freq.engine as engine

    k = toy(("kilo", ["kilo"]), ("dog", ["dog", "hot dog"], ["hot"]))
    texts = ["dog " * 20, None, "kilo", "hot dog " * 3 + "\u212ailo", "", "a dog"] * 3
    want = reference_counts(texts, k, lemmatize)
    pairs = Matcher(k, lemmatize).match_pairs(texts)
    monkeypatch.setattr(engine, "BLOCK_BYTES", 16)
    m = Matcher(k, lemmatize)
    steps = list(m._blocks(texts))
    # 80 bytes alone; None + "kilo" (4); 30 bytes alone; "" + "a dog" (5); and so on
    assert [len(b) for _, b in steps] == [1, 2, 1, 2] * 3
    assert [i for i, _ in steps] == [0, 1, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16]
    assert m.count(texts).tolist() == want.tolist()
    assert all(np.array_equal(a, b) for a, b in zip(m.match_pairs(texts), pairs, strict=True))


def test_huge_vocabulary_searches_instead_of_a_table(
    imagenet, imagenet_matcher, lemmatize, monkeypatch
):
    import tailstudy.freq.engine as engine

    texts = ["a hot dog and a sea lion", "Great White Shark", "tiger cat", "dog", None] * 5
    want = imagenet_matcher.count(texts)
    monkeypatch.setattr(engine, "SCRATCH_MAX", 0)
    m = Matcher(imagenet, lemmatize)
    assert m.count(texts).tolist() == want.tolist() and m._scratch is None
    assert want.tolist() == reference_counts(texts, imagenet, lemmatize).tolist()


@pytest.mark.parametrize("empty", [None, float("nan"), "", "   ", "123 !!", 42])
def test_empty_captions(count, empty):
    assert count([empty, "dog"], CAN).tolist() == [0, 1]


def test_arrow_input_with_nulls(lemmatize):
    m = Matcher(CAN, lemmatize)
    for typ in (pa.string(), pa.large_string(), pa.binary(), pa.large_binary(), pa.string_view()):
        data = ["dog", None, "can opener"]
        arr = pa.array(
            [None if x is None else (x.encode() if "binary" in str(typ) else x) for x in data], typ
        )
        assert m.count(arr).tolist() == [1, 1]
        assert m.count(arr.slice(1)).tolist() == [1, 0]
    chunked = pa.chunked_array([["dog"], ["dog", "tin opener"]])
    assert m.count(chunked).tolist() == [1, 2]


def test_phrase_without_words_is_rejected(lemmatize):
    bad = toy(("x", ["42"]))
    with pytest.raises(ValueError, match="would match"):
        Matcher(bad, lemmatize)
    with pytest.raises(ValueError, match="would match"):
        reference_counts(["x"], bad, lemmatize)


# ---- negatives -------------------------------------------------------------------------------

NEGATIVE_CASES = [
    # (caption, ImageNet label, counts?)
    ("a sorrel horse grazing", 339, True),
    ("sorrel leaves in the garden", 339, False),
    ("sorrel plant", 339, False),
    ("gymnast on the horizontal bar", 602, True),
    ("horizontal bar chart", 602, False),
    ("impala herd", 352, True),
    ("chevy impala", 352, False),
    ("hunting bow", 456, True),
    ("bow tie", 456, False),
    ("ringlet butterfly", 322, True),
    ("hair ringlets", 322, False),
    ("a ram on a hill", 348, True),
    ("dodge ram truck", 348, False),
    ("RAM: random access memory", 348, False),
    ("ram with random horns", 348, False),  # 'random access' acts word by word
    ("no access for the ram", 348, False),
    ("construction crane", 517, True),
    ("a crane by the water", 517, False),
    ("crane bird", 517, False),
    ("crane bird", 134, True),
    ("crane", 134, False),  # class 134 needs both 'crane' and 'bird'
    ("navy submarine", 833, True),
    ("italian sub", 833, False),
    ("sidewinder rattlesnake", 68, True),
    ("sidewinder missile", 68, False),
    ("sidewinder park", 68, False),
]


@pytest.mark.parametrize(("text", "label", "expected"), NEGATIVE_CASES)
def test_negative_rules(count, imagenet, text, label, expected):
    assert (label in imagenet_hits(count, imagenet, text)) == expected


def test_negative_lemmas_and_other_classes(count):
    """A negative blocks its own class only, and matches on lemmas ('leaves' -> 'leaf')."""
    s = toy(("sorrel", ["sorrel"], ["leaf", "random access"]), ("leaf", ["leaf"]))
    assert hits(count, s, "sorrel leaves") == ["leaf"]
    assert hits(count, s, "sorrel access") == []
    assert hits(count, s, "sorrel") == ["sorrel"]


# ---- concept-set special cases -----------------------------------------------------------------


def test_places365_special_cases(count):
    places = named_concept_set("places365", ["arcade", "lock_chamber", "airplane_cabin"])
    assert places.classes[0].phrases[0] == "arcade passageway"
    assert hits(count, places, "shopping arcade hallway") == ["arcade"]
    assert hits(count, places, "video arcade") == []
    assert hits(count, places, "lock chamber on the canal") == ["lock_chamber"]
    assert hits(count, places, "lock chamber") == []
    assert hits(count, places, "inside an airplane cabin") == ["airplane_cabin"]


def test_cub_special_case(count):
    cub = named_concept_set("cub", ["Cardinal", "Black_footed_Albatross"])
    assert hits(count, cub, "a cardinal") == []
    assert hits(count, cub, "Northern Cardinal at the feeder") == ["Cardinal"]
    assert hits(count, cub, "black-footed albatross") == ["Black_footed_Albatross"]


def test_or_and_slash_split_names(count):
    eurosat = named_concept_set("eurosat", ["highway or road", "lake / sea (water)"])
    assert eurosat.classes[1].phrases == ("lake", "sea")
    assert count(["a road", "sea view", "highway"], eurosat).tolist() == [2, 1]


# ---- MetaCLIP weighting ----------------------------------------------------------------------


def test_weights(count):
    assert count(["dog", "can opener", "dog opener"], CAN, weights=[5, 7, 11]).tolist() == [7, 16]


def test_nothing_to_match(lemmatize):
    m = Matcher(CAN, lemmatize)
    assert m.count([]).tolist() == [0, 0]
    assert m.count(["", None, "!!"]).tolist() == [0, 0]
    assert m.count(pa.array([], pa.string())).tolist() == [0, 0]
    with pytest.raises(ValueError, match="weights"):
        m.count(["dog"], weights=[1, 2])
