"""Class queries of the concept sets (METHODS §0.2, §2.3–2.4)."""

from __future__ import annotations

import json

import pytest

from tailstudy.freq.conceptsets import (
    imagenet_desc_names,
    load_concept_set,
    name_phrases,
    read_class_names,
    remove_parenthesised,
)
from tailstudy.freq.data import IMAGENET_SYNONYM_OVERRIDES, NEGATIVE_CLASSES, NEGATIVE_RULES
from tailstudy.io import UserError

pytest.importorskip("timm")
pytest.importorskip("open_clip")


@pytest.fixture(scope="module")
def imagenet():
    return load_concept_set("imagenet")


def test_imagenet_names(imagenet):
    import open_clip

    names = imagenet.names
    assert len(names) == 1000 and len(set(names)) == 1000
    differ = {
        i: (d, z)
        for i, (d, z) in enumerate(zip(names, open_clip.IMAGENET_CLASSNAMES, strict=True))
        if d != z
    }
    assert differ == {
        27: ("eft", "newt"),
        638: ("maillot", "tights"),
        744: ("projectile", "missile"),
        836: ("sunglass", "sunglasses"),
    }
    assert names == imagenet_desc_names()


def test_negative_rules_fire_for_exactly_the_nine_classes(imagenet):
    fired = [i for i, c in enumerate(imagenet.classes) if c.negatives]
    assert fired == sorted(NEGATIVE_CLASSES)
    rules = dict(NEGATIVE_RULES)
    assert imagenet.classes[348].negatives == rules["ram"]
    assert imagenet.classes[517].negatives == rules["crane"]
    assert imagenet.classes[134].phrases == ("crane bird",)
    assert imagenet.classes[134].negatives == ()


def test_synonyms(imagenet):
    from tailstudy.concepts import imagenet_concepts

    for c, q in zip(imagenet_concepts(), imagenet.classes, strict=True):
        if c.wnid in IMAGENET_SYNONYM_OVERRIDES:
            assert q.phrases == IMAGENET_SYNONYM_OVERRIDES[c.wnid]
        else:
            assert q.phrases == tuple(dict.fromkeys(x.lower() for x in c.lemmas))
        assert all(p == p.lower() and "(" not in p for p in q.phrases)
    assert imagenet.classes[833].phrases == ("submarine", "pigboat", "sub", "u-boat")


def test_synonym_table_override(tmp_path, imagenet):
    from tailstudy.concepts import imagenet_concepts

    table = {c.wnid: [f"thing{c.index}", "Bow (weapon)"] for c in imagenet_concepts()}
    path = tmp_path / "syn.json"
    path.write_text(json.dumps(table))
    cs = load_concept_set("imagenet", synonyms=path)
    assert cs.classes[5].phrases == ("thing5", "bow")
    assert cs.classes[5].negatives == ("tie",)  # the 'bow' trigger fires on the stripped phrase
    del table["n01440764"]
    path.write_text(json.dumps(table))
    with pytest.raises(UserError, match="lacks 1"):
        load_concept_set("imagenet", synonyms=path)


def test_imagenet100(imagenet):
    from tailstudy.concepts import IMAGENET100_INDICES

    sub = load_concept_set("imagenet100")
    assert len(sub) == 100
    assert sub.classes == tuple(imagenet.classes[i] for i in IMAGENET100_INDICES)


def test_phrase_rules():
    assert remove_parenthesised("arcade (passageway) ") == "arcade"
    assert name_phrases("Residential Buildings or Homes or Apartments") == (
        "residential buildings",
        "homes",
        "apartments",
    )
    assert name_phrases("a / b (c) or d") == ("a", "b", "d")
    assert name_phrases("bakery/shop") == ("bakery/shop",)


def test_clip_benchmark_sets():
    sizes = {"pets": 37, "flowers102": 102, "eurosat": 10}
    for name, n in sizes.items():
        cs = load_concept_set(name)
        assert len(cs) == n and all(c.phrases and not c.negatives for c in cs.classes)
    assert load_concept_set("eurosat").classes[2].phrases == ("brushland", "shrubland")


@pytest.mark.parametrize("name", ["cub", "food101", "places365", "dtd"])
def test_sets_without_a_name_package_need_a_file(name):
    with pytest.raises(UserError, match="class-name file"):
        load_concept_set(name)


def test_read_class_names(tmp_path):
    cub = tmp_path / "classes.txt"
    cub.write_text("1 001.Black_footed_Albatross\n17 017.Cardinal\n\n")
    cs = load_concept_set("cub", class_names=cub)
    assert cs.names == ["Black_footed_Albatross", "Cardinal"]
    assert cs.classes[1].phrases == ("cardinal bird", "northern cardinal", "red cardinal")
    places = tmp_path / "categories_places365.txt"
    places.write_text("/a/airfield 0\n/a/arcade 8\n/b/bakery/shop 30\n/l/lock_chamber 200\n")
    cs = load_concept_set("places365", class_names=places)
    assert cs.names == ["airfield", "arcade", "bakery/shop", "lock_chamber"]
    assert cs.classes[1].phrases[0] == "arcade passageway"
    desc = tmp_path / "descriptors_dtd.json"
    desc.write_text(json.dumps({"banded": ["x"], "blotchy": ["y"]}))
    assert read_class_names(desc) == ["banded", "blotchy"]
    with pytest.raises(UserError, match="does not exist"):
        read_class_names(tmp_path / "missing.txt")


def test_unknown_set():
    with pytest.raises(UserError, match="unknown concept set"):
        load_concept_set("imagenet21k")
