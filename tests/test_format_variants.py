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


#: The four labels where METHODS §0.2's tables differ: (label, NAMES_DESC, NAMES_ZS).
NAME_DIFFERENCES = [
    (27, "eft", "newt"),
    (638, "maillot", "tights"),
    (744, "projectile", "missile"),
    (836, "sunglass", "sunglasses"),
]


def test_class_name_table_per_purpose():
    from tailstudy.concepts import imagenet_concepts, imagenet_names, names_for

    zs, desc = imagenet_names("zero-shot"), imagenet_names("caption")
    assert imagenet_names("head-prompt") == imagenet_names("frequency") == desc
    assert [(i, desc[i], zs[i]) for i in range(1000) if desc[i] != zs[i]] == NAME_DIFFERENCES
    wnids = [imagenet_concepts()[i].wnid for i, _, _ in NAME_DIFFERENCES] + ["n99999999"]
    own = [*(z for _, _, z in NAME_DIFFERENCES), "a transfer class"]
    assert names_for(wnids, own, "caption") == ["eft", "maillot", "projectile", "sunglass"] + [
        "a transfer class"
    ]
    assert names_for(wnids, own, "zero-shot") == own
    with pytest.raises(ValueError, match="unknown class-name purpose"):
        imagenet_names("zs")


def test_captions_name_classes_as_the_descriptor_table():
    """The prefix of natural-language captions and the class templates use NAMES_DESC (§3.1),
    not the zero-shot names the dataset's classes.tsv carries."""
    import open_clip
    import pandas as pd

    from tailstudy.concepts import imagenet_concepts

    classes = pd.DataFrame(
        {
            "label": range(4),
            "wnid": [imagenet_concepts()[i].wnid for i, _, _ in NAME_DIFFERENCES],
            "name": [z for _, _, z in NAME_DIFFERENCES],
        }
    )
    index = pd.DataFrame(
        {
            "key": [f"k{i}" for i in range(8)],
            "label": [0, 1, 2, 3] * 2,
            "title": ["on the beach"] * 8,
            "tags": [["summer"]] * 8,
            "description": [""] * 8,
        }
    )
    nl = build_captions(index, classes, {"fields": ["title", "tags"]})
    desc = [d for _, d, _ in NAME_DIFFERENCES]
    assert nl["caption"].tolist() == [f"{d} on the beach summer" for d in desc] * 2
    tmpl = build_captions(index, classes, {"template": "openai80", "name": "class"})
    for row in tmpl.itertuples():
        assert any(row.caption == t(desc[row.label]) for t in open_clip.OPENAI_IMAGENET_TEMPLATES)


def test_build_variant_writes_counts(tiny_dataset, tmp_path):
    m = build_variant(
        tiny_dataset, {"dataset": "tiny", "captions": {"fields": ["title"]}}, tmp_path / "v", "v"
    )
    counts = read_counts(tmp_path / "v" / "counts.tsv")
    assert counts["count"].tolist() == [30, 20, 12, 8, 5, 3]
    assert m["n_rows"] == 78


def test_sample_keeps_every_class_and_index_order():
    import pandas as pd

    from tailstudy.data.variants import sample_rows

    rows = pd.DataFrame(
        {
            "key": [f"k{i}" for i in range(200)],
            "label": [0] * 180 + [1] * 10 + [2] * 5 + [-1] * 5,
            "caption": [""] * 200,
        }
    )
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


# ---- paper-scale variant kinds (METHODS §3.2–3.6), on hand-made frames


def _classes(n):
    import pandas as pd

    return pd.DataFrame(
        {
            "label": range(n),
            "wnid": [f"n{i:08d}" for i in range(n)],
            "name": [f"c{i}" for i in range(n)],
        }
    )


def _rows(labels, **cols):
    import pandas as pd

    return pd.DataFrame(
        {
            "key": [f"k{i:02d}" for i in range(len(labels))],
            "label": np.array(labels, dtype="int32"),
            "caption": [f"cap {i}" for i in range(len(labels))],
            **cols,
        }
    )


def test_subset_classes_remaps_to_rank_and_keeps_original_label():
    from tailstudy.data.variants import subset_classes

    rows = _rows([0, 1, 2, 3, 4, 3, -1, 1])
    out, classes = subset_classes(rows, _classes(5), ["n00000003", "n00000001"])  # any order
    assert out["key"].tolist() == ["k01", "k03", "k05", "k07"]  # index order kept
    assert out["label"].tolist() == [0, 1, 1, 0]  # rank among the kept labels
    assert out["label_ori"].tolist() == [1, 3, 3, 1]
    assert out["label"].dtype == rows["label"].dtype
    assert classes.to_dict("list") == {
        "label": [0, 1],
        "wnid": ["n00000001", "n00000003"],
        "name": ["c1", "c3"],
    }
    with pytest.raises(UserError, match="1 of the 2 classes are not in the dataset's label space"):
        subset_classes(rows, _classes(5), ["n00000001", "n00000099"])


def test_imagenet100_subset_is_the_cmc_list_in_label_order():
    from tailstudy.concepts import IMAGENET100_INDICES, imagenet_concepts
    from tailstudy.data.variants import subset_classes, subset_wnids

    wnids = subset_wnids({"subset": "imagenet100"})
    allc = imagenet_concepts()
    classes = _classes(0).iloc[:0]
    classes = classes.assign(label=range(1000)).reindex(range(1000))
    classes["label"] = range(1000)
    classes["wnid"] = [c.wnid for c in allc]
    classes["name"] = [c.name for c in allc]
    rows = _rows(list(IMAGENET100_INDICES[::-1]) + [0, 1, 999])
    out, sub = subset_classes(rows, classes, wnids)
    assert len(sub) == 100 and sub["wnid"].tolist() == [allc[i].wnid for i in IMAGENET100_INDICES]
    assert out["label"].tolist() == list(range(99, -1, -1))  # 994 -> 99, ..., 15 -> 0
    assert out["label_ori"].tolist() == list(IMAGENET100_INDICES[::-1])


def test_sample_n_after_sorting_draws_the_same_images_for_every_row_order():
    import pandas as pd

    from tailstudy.data.variants import sample_rows

    rows = _rows([0] * 30 + [1] * 15 + [2] * 4 + [3])
    shuffled = rows.sample(frac=1, random_state=7).reset_index(drop=True)
    shuffled["caption"] = "another caption variant"
    a = sample_rows(rows, n=12, seed=42, sort_by="key")
    b = sample_rows(shuffled, n=12, seed=42, sort_by="key")
    expected = rows.sort_values("key").sample(n=12, random_state=42)  # METHODS §3.2
    assert a["key"].tolist() == sorted(expected["key"]) == b["key"].tolist()
    assert len(a) == 12  # no top-up with n: a class the draw lost stays lost
    lost = {0, 1, 2, 3} - set(expected["label"])
    assert not lost & set(a["label"])
    topped = sample_rows(rows, n=12, seed=42, sort_by="key", top_up=True)
    assert set(topped["label"]) == {0, 1, 2, 3} and len(topped) == 12 + len(lost)
    with pytest.raises(UserError, match="exceeds"):
        sample_rows(rows, n=51)
    with pytest.raises(UserError, match="exactly one"):
        sample_rows(rows, 0.5, n=3)
    assert isinstance(a, pd.DataFrame)


def test_trim_tail_caps_the_rarest_classes_with_a_stable_tie_order():
    from tailstudy.data.variants import tail_classes, trim_tail

    # counts: c0 5, c1 1, c2 3, c3 0, c4 3, c5 2  ->  stable ascending order 3, 1, 5, 2, 4, 0
    labels = [0, 2, 1, 0, 5, 2, 4, 0, 4, 0, 2, 5, 4, 0]
    rows = _rows(labels)
    assert tail_classes(np.bincount(labels, minlength=6), 6).tolist() == [3, 1, 5, 2, 4, 0]
    out, tail = trim_tail(rows, 6, tail=4, ceil=1, seed=0)
    assert tail.tolist() == [3, 1, 5, 2]  # c2 and c4 tie at 3: the lower label is in the tail
    assert np.bincount(out["label"], minlength=6).tolist() == [5, 1, 1, 0, 3, 1]
    assert len(out) == 11
    untouched = rows[rows["label"].isin([0, 1, 4])]
    assert untouched["key"].tolist() == out.loc[out["label"].isin([0, 1, 4]), "key"].tolist()
    assert set(out["key"]) <= set(rows["key"]) and out["key"].is_monotonic_increasing
    zero, _ = trim_tail(rows, 6, tail=4, ceil=0, seed=0)
    assert np.bincount(zero["label"], minlength=6).tolist() == [5, 0, 0, 0, 3, 0]
    again, _ = trim_tail(rows, 6, tail=4, ceil=1, seed=0)
    assert again.equals(out)
    with pytest.raises(UserError, match="between 1 and the 6 classes"):
        trim_tail(rows, 6, tail=7, ceil=0)


def test_trim_tail_row_counts_follow_the_counts_alone():
    """METHODS §3.3's row table does not depend on ties: rows(ceil 1) - rows(ceil 0) is the
    number of non-empty tail classes, and each trim removes sum(max(0, n_c - ceil)) rows."""
    from tailstudy.data.variants import tail_classes, trim_tail

    rng = np.random.default_rng(3)
    counts = rng.integers(0, 12, 40)
    counts[[4, 9]] = [3, 3]
    labels = np.repeat(np.arange(40), counts)
    rows = _rows(rng.permutation(labels).tolist())
    for n in (1, 5, 17, 40):
        t = tail_classes(counts, n)
        one, _ = trim_tail(rows, 40, n, 1)
        zero, _ = trim_tail(rows, 40, n, 0)
        assert len(rows) - len(one) == np.maximum(counts[t] - 1, 0).sum()
        assert len(rows) - len(zero) == counts[t].sum()
        assert len(one) - len(zero) == (counts[t] > 0).sum()


def _laionet_rows():
    # class 0: 3 rows above t, class 1: 2, class 2: 1; class 3: 2 rows, both below t
    labels = [3, 0, 1, 0, 2, 3, 1, 0]
    sim = [0.50, 0.90, 0.80, 0.75, 0.71, 0.60, 0.95, 0.70]
    row_id = [70, 10, 60, 30, 20, 50, 40, 5]
    return _rows(labels, similarity=sim, row_id=row_id)


def test_threshold_sample_tops_up_before_thresholding_and_trims_the_largest_classes():
    from tailstudy.data.variants import threshold_sample

    rows = _laionet_rows()
    out, steps = threshold_sample(rows, 0.7, n=6, seed=42, drop_from_top=1)
    # all 6 rows >= 0.7 are drawn; class 3's first row (k00, below t) is added; one row over n
    # is dropped from the largest class (0), so class 0 keeps 2 of k01, k03, k07
    assert steps == {"above_threshold": 6, "topped_up": 1, "dropped": 1}
    assert len(out) == 6 and out["row_id"].is_monotonic_increasing
    assert set(out["key"]) >= {"k00", "k02", "k04", "k06"} and "k05" not in set(out["key"])
    assert out["label"].value_counts().to_dict() == {0: 2, 1: 2, 2: 1, 3: 1}
    # the draw itself is pandas' sample(n, random_state=42) of the rows above the threshold;
    # only rows of the largest class of D are dropped again
    big = _rows([0] * 20 + [1, 1, 2, 3], similarity=[0.9] * 23 + [0.1], row_id=range(24, 0, -1))
    drawn = big[big["similarity"] >= 0.7].sample(n=5, random_state=42)
    assert drawn["label"].value_counts().idxmax() == 0
    small, steps = threshold_sample(big, 0.7, n=5, seed=42, drop_from_top=1)
    assert len(small) == 5 and 3 in set(small["label"])
    assert steps["topped_up"] == 4 - drawn["label"].nunique() == steps["dropped"]
    assert set(drawn["key"]) - set(small["key"]) <= set(big.loc[big["label"] == 0, "key"])
    assert set(small["key"]) - set(drawn["key"]) == set(
        big.drop_duplicates("label").query("label not in @drawn.label")["key"]
    )
    with pytest.raises(UserError, match="only 3 rows have similarity >= 0.8"):
        threshold_sample(rows, 0.8, n=5)


def test_match_counts_per_class_with_supplement():
    from tailstudy.data.variants import match_counts

    rows = _rows([0, 0, 1, 0, 0, 1, 0], row_id=[9, 3, 8, 1, 5, 2, 7])
    sup = _rows([2, 1, 2, 2, 2, 2], row_id=[4, 6, 10, 11, 12, 0])
    sup["key"] = "s" + sup["key"]
    target = np.array([3, 4, 2, 0])
    out, steps = match_counts(rows, target, seed=0, supplement=sup)
    got = out.groupby("label").size().to_dict()
    assert got == {0: 3, 1: 3, 2: 2}  # c1: its 2 rows + the supplement's only one; c2: supplement
    assert steps == {"target": 9, "from_dataset": 5, "from_supplement": 3}
    assert out["row_id"].is_monotonic_increasing
    assert {"k02", "k05", "sk01"} <= set(out["key"])
    alone, steps = match_counts(rows, target, seed=0)
    assert steps["from_supplement"] == 0 and len(alone) == 5
    # the supplement never changes the main draw
    assert set(alone["key"]) == {k for k in out["key"] if not k.startswith("s")}
    assert match_counts(rows, target, seed=0)[0].equals(alone)
    draws = {tuple(match_counts(rows, target, seed=s)[0]["key"]) for s in range(8)}
    assert len(draws) > 1  # the seed is honoured


def test_align_counts_by_wnid():
    import pandas as pd

    from tailstudy.data.variants import align_counts

    target = pd.Series({"n00000002": 7, "n00000000": 3, "n00000009": 0})
    assert align_counts(target, _classes(3), "v").tolist() == [3, 0, 7]
    with pytest.raises(UserError, match="v: 1 classes with target counts"):
        align_counts(pd.Series({"n00000009": 1}), _classes(3), "v")


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"sample": {"fraction": 0.5}, "trim": {"tail": 2, "ceil": 0}}, "combines sample and trim"),
        (
            {
                "threshold": {"min_similarity": 0.7, "n": 5},
                "match": {"counts_of": {"dataset": "a"}},
            },
            "combines threshold and match",
        ),
        ({"sample": {"fraction": 0.5, "n": 3}}, "exactly one of fraction and n"),
        ({"classes": {"subset": "imagenet100", "wnids": ["n01440764"]}}, "exactly one of subset"),
        ({"match": {"counts_of": {"dataset": "a", "variant": "b"}}}, "exactly one of variant"),
        (
            {
                "captions": {"fields": ["title"]},
                "match": {"counts_of": {"dataset": "a"}, "supplement": "t2t"},
            },
            "own captions",
        ),
        (
            {"match": {"counts_of": {"dataset": "a"}, "supplement": "ds"}},
            "the variant.s own dataset",
        ),
    ],
)
def test_variant_kinds_compose_explicitly(spec, message):
    from tailstudy.data.spec import check_spec

    with pytest.raises(UserError, match=message) as e:
        check_spec("v", {"dataset": "ds", **spec})
    assert "\n" not in str(e.value)


# ---- build_variant with the paper-scale kinds, on tiny stand-in datasets


def _write_laionet(root, wnids, labels, seed=0, row_ids=None):
    """A LAIONet-style index (similarity, wnid, row_id) and its classes; no shards needed to
    build variants."""
    import pandas as pd

    from tailstudy.data.format import write_classes, write_index

    rng = np.random.default_rng(seed)
    labels = np.asarray(labels, dtype="int32")
    n = len(labels)
    write_index(
        root / "index.parquet",
        pd.DataFrame(
            {
                "key": [f"{root.name}{i:04d}" for i in range(n)],
                "shard": "x.tar",
                "label": labels,
                "caption": [f"web {i}" for i in range(n)],
                "similarity": rng.uniform(0.6, 1.0, n),
                "wnid": [wnids[x] for x in labels],
                "row_id": row_ids if row_ids is not None else rng.permutation(n) * 3,
            }
        ),
    )
    write_classes(root, [(w, f"class {w}") for w in wnids])
    return root


def test_class_subset_variant_declares_its_label_space(tiny_dataset, tmp_path):
    from tailstudy.data.format import read_classes

    full = read_classes(tiny_dataset)
    wnids = full["wnid"].iloc[[4, 1, 3]].tolist()
    spec = {"dataset": "tiny", "captions": {"fields": ["title"]}, "classes": {"wnids": wnids}}
    m = build_variant(tiny_dataset, spec, tmp_path / "v", "v")
    classes = read_classes(tmp_path / "v")
    assert classes["wnid"].tolist() == full["wnid"].iloc[[1, 3, 4]].tolist()  # dataset order
    assert classes["label"].tolist() == [0, 1, 2]
    assert read_counts(tmp_path / "v" / "counts.tsv").to_dict("list") == {
        "name": full["name"].iloc[[1, 3, 4]].tolist(),
        "count": [20, 8, 5],
    }
    index = read_index(tmp_path / "v")
    assert list(index.columns) == ["key", "label", "caption", "label_ori"]
    assert (index["label_ori"].map({1: 0, 3: 1, 4: 2}) == index["label"]).all()
    assert m["n_classes"] == 3 and m["label_space"] == classes["wnid"].tolist()
    # a variant without classes keeps the dataset's label space, declared beside its index
    build_variant(tiny_dataset, {"dataset": "tiny"}, tmp_path / "w", "w")
    assert read_classes(tmp_path / "w").equals(full)


def test_trim_variant_counts_and_tail_set(tiny_dataset, tmp_path):
    m = build_variant(
        tiny_dataset,
        {"dataset": "tiny", "trim": {"tail": 2, "ceil": 1, "seed": 0}},
        tmp_path / "v",
        "v",
    )
    counts = read_counts(tmp_path / "v" / "counts.tsv")["count"].tolist()
    assert counts == [30, 20, 12, 8, 1, 1] and m["n_rows"] == 72
    wnids = read_classes(tiny_dataset)["wnid"].tolist()
    assert m["tail"] == {
        "n": 2,
        "ceil": 1,
        "labels": [5, 4],
        "wnids": [wnids[5], wnids[4]],
        "counts_before": [3, 5],
    }


def test_laionet_kinds_name_the_dataset_lacking_a_column(tiny_dataset, tmp_path):
    spec = {"dataset": "tiny", "threshold": {"min_similarity": 0.7, "n": 10}}
    with pytest.raises(UserError, match="dataset tiny has no 'similarity', 'row_id' column") as e:
        build_variant(tiny_dataset, spec, tmp_path / "v", "v")
    assert "\n" not in str(e.value)
    spec = {"dataset": "tiny", "match": {"counts_of": {"dataset": "x"}}}
    with pytest.raises(UserError, match="dataset tiny has no 'row_id' column"):
        build_variant(tiny_dataset, spec, tmp_path / "v", "v", counts_root=tiny_dataset)


def test_threshold_variant_on_a_laionet_stand_in(tmp_path):
    wnids = [f"n0000000{i}" for i in range(5)]
    labels = np.repeat(np.arange(5), [40, 25, 10, 4, 1])
    root = _write_laionet(tmp_path / "laionet", wnids, labels)
    spec = {"dataset": "laionet", "threshold": {"min_similarity": 0.75, "n": 30}}
    m = build_variant(root, spec, tmp_path / "v", "v")
    index = read_index(tmp_path / "v")
    assert len(index) == 30 == m["n_rows"] and m["nonzero_classes"] == 5
    assert index["row_id"].is_monotonic_increasing
    assert m["steps"]["above_threshold"] == int((read_index(root)["similarity"] >= 0.75).sum())
    assert list(index.columns) == ["key", "label", "caption", "row_id"]


def test_match_variant_follows_counts_by_wnid_with_a_supplement(tiny_dataset, tmp_path):
    tiny = read_classes(tiny_dataset)  # counts 30, 20, 12, 8, 5, 3 in this order
    wnids = tiny["wnid"].tolist()[::-1]  # the LAIONet stand-in lists the classes reversed
    laionet = _write_laionet(
        tmp_path / "laionet", wnids, np.repeat(np.arange(6), [1, 2, 20, 5, 40, 9])
    )
    t2t = _write_laionet(tmp_path / "t2t", wnids[:3], np.repeat(np.arange(3), [4, 0, 1]), seed=1)
    spec = {"dataset": "laionet", "match": {"counts_of": {"dataset": "tiny"}, "supplement": "t2t"}}
    m = build_variant(laionet, spec, tmp_path / "v", "v", t2t, tiny_dataset)
    counts = read_counts(tmp_path / "v" / "counts.tsv")["count"].tolist()
    # by wnid: targets (reversed) 3, 5, 8, 12, 20, 30; own rows 1, 2, 20, 5, 40, 9;
    # t2t fills the first two classes' shortfall with what it has (4 and 0 rows)
    assert counts == [1 + 2, 2 + 0, 8, 5, 20, 9]
    assert m["steps"] == {"target": 78, "from_dataset": 45, "from_supplement": 2}
    index = read_index(tmp_path / "v")
    assert index["dataset"].value_counts().to_dict() == {"laionet": 45, "t2t": 2}
    assert index["row_id"].is_monotonic_increasing
    alone = {"dataset": "laionet", "match": {"counts_of": {"dataset": "tiny"}}}
    build_variant(laionet, alone, tmp_path / "w", "w", counts_root=tiny_dataset)
    assert "dataset" not in read_index(tmp_path / "w").columns
    # a variant as the target: the same counts, read from its index and classes.tsv
    build_variant(tiny_dataset, {"dataset": "tiny"}, tmp_path / "full", "full")
    build_variant(laionet, alone, tmp_path / "x", "x", counts_root=tmp_path / "full")
    assert read_index(tmp_path / "x").equals(read_index(tmp_path / "w"))
