import numpy as np
import pytest

from tailstudy.data.format import load_images, read_classes, read_index, read_manifest
from tailstudy.data.variants import build_captions, build_variant, caption_body, read_counts
from tailstudy.io import UserError


def test_dataset_roundtrip(tiny_dataset):
    index = read_index(tiny_dataset)
    m = read_manifest(tiny_dataset)
    assert m["n_samples"] == len(index) == 78 and len(m["shards"]) == 2
    keys = index["key"].tolist()[::-1][:10]
    imgs = load_images(tiny_dataset, keys)
    assert imgs.shape == (10, 32, 32, 3) and imgs.dtype == np.uint8
    with pytest.raises(UserError, match="not in dataset"):
        load_images(tiny_dataset, ["nope"])


def test_caption_body_field_logic():
    assert caption_body("T", ["a", "b"], "D", ["title", "tags", "description"]) == "T a b D"
    assert caption_body("T", ["a", "b"], "D", ["description", "title"]) == "T D"  # fixed order
    assert caption_body("", [], "D", ["title", "tags", "description"]) == "D"
    assert caption_body("T\tx", None, "", ["title", "tags"]) == "T x"


@pytest.mark.parametrize(
    "fields",
    [
        ["title", "tags", "description"],
        ["title"],
        ["tags"],
        ["description"],
        ["title", "description"],
        ["tags", "description"],
        ["title", "tags"],
    ],
)
def test_natural_language_variants(tiny_dataset, fields):
    index, classes = read_index(tiny_dataset), read_classes(tiny_dataset)
    out = build_captions(index, classes, {"fields": fields})
    assert len(out) == len(index)  # the class-name prefix keeps every row
    names = classes.set_index("label")["name"]
    for row, src in zip(out.itertuples(), index.itertuples(), strict=True):
        body = caption_body(src.title, src.tags, src.description, fields)
        assert row.caption == f"{names[row.label]} {body}".strip()
    noprefix = build_captions(index, classes, {"fields": fields, "prefix": False})
    expected = sum(
        bool(caption_body(r.title, r.tags, r.description, fields)) for r in index.itertuples()
    )
    assert len(noprefix) == expected  # rows with empty bodies are dropped


def test_template_variants(tiny_dataset):
    import open_clip

    index, classes = read_index(tiny_dataset), read_classes(tiny_dataset)
    names = classes.set_index("label")["name"]
    out = build_captions(index, classes, {"template": "openai80", "name": "class"})
    prompts = {t(n) for t in open_clip.OPENAI_IMAGENET_TEMPLATES for n in names}
    assert set(out["caption"]) <= prompts and out["caption"].nunique() > len(names)
    again = build_captions(index, classes, {"template": "openai80", "name": "class"})
    assert out.equals(again)  # static: drawn once, deterministically
    syn = build_captions(index, classes, {"template": "openai80", "name": "synset"})
    from tailstudy.concepts import imagenet_concepts

    lemmas = {c.wnid: c.lemmas for c in imagenet_concepts()}
    wnid = classes.set_index("label")["wnid"]
    for row in syn.itertuples():
        assert any(
            row.caption == t(lem)
            for t in open_clip.OPENAI_IMAGENET_TEMPLATES
            for lem in lemmas[wnid[row.label]]
        )
    with pytest.raises(UserError):
        build_captions(index, classes, {"fields": [], "prefix": False})


def test_build_variant_writes_counts(tiny_dataset, tmp_path):
    m = build_variant(tiny_dataset, {"dataset": "tiny", "captions": {"fields": ["title"]}},
                      tmp_path / "v", "v")  # fmt: skip
    counts = read_counts(tmp_path / "v" / "counts.tsv")
    assert counts["count"].tolist() == [30, 20, 12, 8, 5, 3]
    assert m["n_rows"] == 78


def test_sample_keeps_every_class_and_index_order():
    import pandas as pd

    from tailstudy.data.variants import sample_rows

    rows = pd.DataFrame({"key": [f"k{i}" for i in range(200)],
                         "label": [0] * 180 + [1] * 10 + [2] * 5 + [-1] * 5,
                         "caption": [""] * 200})  # fmt: skip
    out = sample_rows(rows, 1 / 32, seed=42)
    drawn = rows.sample(frac=1 / 32, random_state=42)
    assert set(drawn["key"]) <= set(out["key"])  # the pandas draw, untouched
    assert set(out.loc[out["label"] >= 0, "label"]) == {0, 1, 2}  # top-up: no class lost
    assert out["key"].map(lambda k: int(k[1:])).is_monotonic_increasing
    added = set(out["key"]) - set(drawn["key"])
    lost = {0, 1, 2} - set(drawn["label"])
    assert lost  # 1/32 of 200 rows: at least one small class is lost by the draw
    assert added == {f"k{[0, 180, 190][c]}" for c in lost}  # its first row, nothing else
    assert len(out) == len(drawn) + len(added)


def test_labelled_sampled_variant(tiny_dataset, tmp_path):
    spec = {"dataset": "tiny", "labelled": True, "sample": {"fraction": 0.25, "seed": 42}}
    m = build_variant(tiny_dataset, spec, tmp_path / "v", "v")
    counts = read_counts(tmp_path / "v" / "counts.tsv")["count"].to_numpy()
    assert (counts >= 1).all() and counts.sum() == m["n_rows"] < 78 / 4 + 6
