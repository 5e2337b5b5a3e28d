"""The embedded synthetic world: determinism, frequency profiles, captions, format."""

from __future__ import annotations

import numpy as np
import pytest

from tailstudy.data.format import load_images, read_classes, read_index
from tailstudy.embedded import World, build_dataset, class_counts
from tailstudy.embedded.text import CONTEXT_PHRASE, SIZE_WORD
from tailstudy.embedded.world import FACETS, attributes_of, sample_dataset
from tailstudy.io import UserError

WORLD = {
    "seed": 0,
    "eval_concepts": "imagenet100",
    "n_open_world": 50,
    "image_size": 32,
    "group_size": 4,
}
CURATED = {
    "style": "curated",
    "captions": "fields",
    "profile": {"shape": "curated", "n": 3000},
    "seed": 1,
}
WEB = {
    "style": "web",
    "captions": "alttext",
    "profile": {"shape": "longtail", "n": 3000},
    "open_world_fraction": 0.5,
    "seed": 2,
}


@pytest.fixture(scope="module")
def world():
    return World(WORLD)


def test_world_is_deterministic_with_unique_facet_combinations(world):
    again = World(dict(WORLD))
    assert [c.facets for c in world.concepts] == [c.facets for c in again.concepts]
    combos = [c.facets for c in world.concepts]
    assert len(set(combos)) == len(combos) == 150
    assert len(world.eval_concepts) == 100 and world.eval_concepts[0].name == "American robin"
    # every facet value is shared by many concepts
    for f, values in enumerate(FACETS.values()):
        used = np.bincount([c[f] for c in combos], minlength=len(values))
        assert used.min() >= 3
    # hard neighbours: members of a group differ in at most two facets from another member
    by_group: dict[int, list] = {}
    for c in world.concepts:
        by_group.setdefault(c.group, []).append(c.facets)
    close = [
        min(sum(a != b for a, b in zip(x, y, strict=True)) for y in g if y is not x)
        for g in by_group.values()
        if len(g) > 1
        for x in g
    ]
    assert max(close) <= 4 and np.mean(close) <= 2.5


def test_profiles():
    rng = np.random.default_rng(0)
    cur = class_counts({"shape": "curated", "n": 45000}, 100, rng)
    assert (cur == 0).sum() == 1 and abs(cur.sum() - 45000) < 100
    assert 1.8 < cur.max() / np.median(cur) < 2.4
    web = class_counts({"shape": "longtail", "n": 3_000_000}, 1000, rng)
    assert 150 < web.max() / np.median(web) < 700
    assert (class_counts({"shape": "balanced", "n": 3000}, 100, rng) == 30).all()


def test_dataset_is_deterministic_and_seeds_differ(world):
    a, _ = sample_dataset(world, CURATED, "a")
    b, _ = sample_dataset(world, CURATED, "a")
    c, _ = sample_dataset(world, {**CURATED, "seed": 9}, "a")
    assert a.equals(b) and not a["caption"].equals(c["caption"])


def test_field_presence_and_attribute_words_are_true(world):
    idx, facets = sample_dataset(
        world, {**CURATED, "profile": {"shape": "curated", "n": 6000}}, "x"
    )
    by_wnid = {c.concept.wnid: c for c in world.concepts}
    concepts = [by_wnid[w] for w in idx["wnid"]]
    n = len(idx)
    assert abs((idx["title"] != "").mean() - 0.99) < 0.02
    assert abs((idx["tags"].map(len) > 0).mean() - 0.91) < 0.03
    assert abs((idx["description"] != "").mean() - 0.60) < 0.03
    all_words = {v for vals in FACETS.values() for v in vals} | set(SIZE_WORD.values())
    phrases = set(CONTEXT_PHRASE.values())
    for row, wc, f in zip(idx.itertuples(), concepts, facets, strict=True):
        attrs = attributes_of(f)
        typical = wc.attributes()
        assert attrs["shape"] == typical["shape"] and attrs["colour"] == typical["colour"]
        own = set(attrs.values()) | {SIZE_WORD[attrs["size"]], CONTEXT_PHRASE[attrs["context"]]}
        desc = row.description
        if wc.concept.name in desc:  # names may hold colour words ("little blue heron")
            continue
        for w in all_words:  # every attribute word in the description is the image's own
            if f" {w} " in f" {desc.split(',')[0]} " and w not in ("plain",):
                assert w in own, (w, desc, attrs)
        for p in phrases:
            if p in desc:
                assert p in own
        for t in row.tags:  # attribute tags are the image's own facets
            if t in all_words:
                assert (
                    t in own
                    or t in wc.concept.lemmas
                    or t in {c.concept.name for c in world.concepts}
                )
    assert n == (idx["label"] >= 0).sum()


def test_web_corpus_has_open_world_concepts_and_a_long_tail(world):
    idx, _ = sample_dataset(world, WEB, "w")
    assert abs((idx["label"] == -1).sum() - 1500) < 10
    counts = np.bincount(idx.loc[idx["label"] >= 0, "label"], minlength=100)
    assert counts.max() / np.median(counts) > 10
    open_names = {c.name for c in world.open_concepts}
    assert any(any(n in cap for n in open_names) for cap in idx.loc[idx["label"] == -1, "caption"])


def test_written_dataset_roundtrips(world, tmp_path):
    spec = {**CURATED, "profile": {"shape": "balanced", "n": 200}}
    build_dataset(world, spec, tmp_path / "val", "val")
    idx = read_index(tmp_path / "val")
    assert len(idx) == 200 and (np.bincount(idx["label"]) == 2).all()
    classes = read_classes(tmp_path / "val")
    assert classes["name"].tolist() == [c.name for c in world.eval_concepts]
    imgs = load_images(tmp_path / "val", idx["key"].tolist()[:5])
    assert imgs.shape == (5, 32, 32, 3) and imgs.std() > 10
    build_dataset(world, spec, tmp_path / "val2", "val")
    assert (load_images(tmp_path / "val2", idx["key"].tolist()[:5]) == imgs).all()


def test_bad_specs_are_rejected(world):
    with pytest.raises(UserError, match="unknown key"):
        World({**WORLD, "colours": 3})
    with pytest.raises(UserError, match="unknown key"):
        sample_dataset(world, {**CURATED, "sze": 1}, "x")
    with pytest.raises(UserError, match="profile.shape"):
        sample_dataset(world, {**CURATED, "profile": {"shape": "zipf", "n": 10}}, "x")
