"""The frequency section of the config (plan) and the frequency figures, on hand-made tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from tailstudy.figures import FigureInputs, frequency
from tailstudy.freq import plan
from tailstudy.freq.sources import write_table
from tailstudy.io import UserError

NAMES = [f"class {i}" for i in range(12)]


def _config(tmp_path, **corpora):
    return {
        "datasets": {"web": {}},
        "variants": {"web-cls": {"dataset": "web"}},
        "frequency": {"concept_sets": {"imagenet": {}, "imagenet100": {}}, "corpora": corpora},
        "figures": {},
    }


def test_shards_from_globs_are_one_job_per_file_sorted(tmp_path):
    for name in ("part-00001.parquet", "part-00000.parquet", "other.tsv"):
        (tmp_path / name).write_text("")
    config = _config(
        tmp_path,
        laion={
            "label": "L",
            "captions": [str(tmp_path / "part-*.parquet"), str(tmp_path / "other.tsv")],
            "column": "TEXT",
        },
    )
    shards = plan.shards(config, "laion")
    assert list(shards) == ["other", "part-00000", "part-00001"]
    assert shards["part-00000"].column == "TEXT" and shards["other"].path.endswith("other.tsv")
    config["frequency"]["corpora"]["laion"]["captions"].append(str(tmp_path / "x" / "*.parquet"))
    with pytest.raises(UserError, match="no caption shard matches"):
        plan.shards(config, "laion")


def test_headerless_tsv_corpus_passes_a_field_index(tmp_path):
    (tmp_path / "cc12m.tsv").write_text("http://x/1.jpg\ta goldfish\n")
    config = _config(
        tmp_path,
        cc12m={
            "label": "CC",
            "captions": [str(tmp_path / "cc12m.tsv")],
            "column": "1",
            "header": False,
        },
    )
    plan.check(config)
    (shard,) = plan.shards(config, "cc12m").values()
    assert shard.column == "1" and shard.header is False
    config["frequency"]["corpora"]["web"] = {"label": "W", "dataset": "web", "header": False}
    with pytest.raises(UserError, match="corpus web: header only applies to captions shards"):
        plan.check(config)


def test_duplicate_shard_names_are_rejected(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "part-0.parquet").write_text("")
    config = _config(
        tmp_path, c={"label": "C", "captions": [str(tmp_path / "*/part-0.parquet")], "column": "t"}
    )
    with pytest.raises(UserError, match="two shards are named 'part-0'"):
        plan.shards(config, "c")


def test_table_paths_keys_and_needed_tables(tmp_path):
    config = _config(
        tmp_path,
        web={"label": "Web", "dataset": "web"},
        cls={"label": "Cls", "labels": "web-cls"},
        pub={"label": "Published", "table": "/data/laion400m.txt"},
    )
    config["figures"] = {
        "f13": {"plot": "frequency-correlation", "corpora": ["web", "pub"]},
        "f13b": {
            "plot": "frequency-correlation",
            "corpora": ["web", "cls"],
            "concept_sets": ["imagenet", "imagenet100"],
        },
        "f2": {"plot": "label-curves", "corpora": ["cls"]},
    }
    plan.check(config)
    assert plan.table_path(config, "web", "imagenet") == "results/freq/web/imagenet_ori.tsv"
    assert plan.table_path(config, "cls", "imagenet") == "results/variants/web-cls/counts.tsv"
    assert plan.table_path(config, "pub", "imagenet") == "/data/laion400m.txt"
    assert plan.needed_tables(config) == [("web", "imagenet"), ("web", "imagenet100")]
    assert plan.figure_tables(config, "f2") == {"cls@labels": "results/variants/web-cls/counts.tsv"}
    assert set(plan.figure_tables(config, "f13")) == {"web@imagenet", "pub@imagenet"}
    assert set(plan.figure_tables(config, "f13b")) == {
        "web@imagenet",
        "web@imagenet100",
        "cls@labels",
    }
    config["figures"]["f13"]["concept_sets"] = ["imagenet", "imagenet100"]
    with pytest.raises(UserError, match="but its table is for imagenet"):
        plan.check(config)  # a published table holds one concept set
    assert plan.shards(config, "web")["index"].path == "results/data/web/index.parquet"


@pytest.mark.parametrize(
    "corpus, figure, message",
    [
        ({"label": "W", "dataset": "nope"}, None, "corpus c reads unknown dataset 'nope'"),
        ({"label": "W", "labels": "nope"}, None, "corpus c reads unknown variant 'nope'"),
        (
            {"label": "W", "dataset": "web"},
            {"plot": "frequency-ranks", "panels": [["c"]]},
            "figure f (frequency-ranks) needs rank_by",
        ),
        (
            {"label": "W", "dataset": "web"},
            {"plot": "label-curves", "corpora": ["c", "d"]},
            "figure f names unknown corpus 'd'",
        ),
        (
            {"label": "W", "dataset": "web"},
            {"plot": "label-curves", "corpora": ["c"], "concept_sets": ["cub"]},
            "figure f uses concept set 'cub', not in frequency.concept_sets",
        ),
        (
            {"label": "W", "dataset": "web"},
            {"plot": "label-curves", "corpora": ["c"], "concept_sets": ["imagenet", "imagenet100"]},
            "figure f (label-curves) draws one concept set; name one",
        ),
        (
            {"label": "W", "dataset": "web", "column": "TEXT"},
            None,
            "corpus c: column only applies to captions shards",
        ),
        ({"label": "W", "captions": ["x.parquet"]}, None, "corpus c: caption shards need a column"),
        (
            {"label": "W", "table": "t.txt", "concept_set": "imagenet100"},
            {"plot": "tail-classes", "corpora": ["c"]},
            "figure f needs corpus c for concept set imagenet, but its table is for imagenet100",
        ),
        (
            {"label": "W", "dataset": "web", "labels": "web-cls"},
            None,
            "corpus c needs exactly one of",
        ),
    ],
)
def test_cross_reference_errors(tmp_path, corpus, figure, message):
    config = _config(tmp_path, c=corpus)
    if figure:
        config["figures"]["f"] = figure
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plan.check(config)


@pytest.fixture
def tables(tmp_path):
    """Three corpora over the same 12 classes, written in different line orders."""
    rng = np.random.default_rng(0)
    a = np.array([500, 300, 200, 120, 90, 50, 30, 20, 9, 5, 1, 0])
    b = (a * rng.uniform(0.5, 2, len(a))).astype(int)
    c = rng.permutation(a)
    paths = {}
    for key, counts in (("a", a), ("b", b), ("c", c)):
        order = rng.permutation(len(NAMES))  # never aligned by position
        path = tmp_path / f"{key}.tsv"
        write_table(path, [NAMES[i] for i in order], counts[order])
        paths[f"{key}@imagenet"] = path
    return FigureInputs(freq=paths), {"a": a, "b": b, "c": c}


def _spec(**kw):
    labels = {k: {"label": k.upper()} for k in "abc"}
    return {"paper_label": "F", "corpus_specs": labels, **kw}


def test_ranks_orders_classes_by_the_reference_corpus(tables):
    inputs, counts = tables
    fig, data = frequency.ranks(inputs, _spec(panels=[["a", "b"], ["c"]], rank_by="a", sigma=0))
    b = data[data["corpus"] == "B"].sort_values("rank")
    assert b["class"].tolist() == NAMES  # a's counts descend with the label index
    assert b["count"].tolist() == counts["b"].tolist()
    assert data[data["corpus"] == "A"]["count"].is_monotonic_decreasing
    assert sorted(data["panel"].unique()) == [0, 1]


def test_smoothing_keeps_the_mass(tables):
    inputs, counts = tables
    _, data = frequency.ranks(inputs, _spec(panels=[["b"]], rank_by="a", sigma=3))
    b = data[data["corpus"] == "B"]
    assert b["smoothed"].sum() == pytest.approx(counts["b"].sum(), rel=1e-6)
    assert b["smoothed"].std() < b["count"].std()


def test_correlation_matches_scipy_on_name_aligned_counts(tables):
    inputs, counts = tables
    _, data = frequency.correlation(inputs, _spec(corpora=["a", "b", "c"]))
    assert len(data) == 3  # lower triangle only
    row = data[(data["a"] == "C") & (data["b"] == "A")].iloc[0]
    assert row["rho"] == pytest.approx(spearmanr(counts["a"], counts["c"]).statistic)


def test_zoom_bands_cover_every_rank_once(tables):
    inputs, _ = tables
    _, data = frequency.zoom(inputs, _spec(pairs=[["a", "b"], ["c"]], rank_by="a", rows=5))
    a = data[(data["corpus"] == "A")]
    assert sorted(a["rank"]) == list(range(12)) and a["band"].nunique() == 5


def test_label_curves_and_tail_table(tables):
    inputs, counts = tables
    _, curves = frequency.label_curves(inputs, _spec(corpora=["c"]))
    assert curves["count"].tolist() == sorted(counts["c"], reverse=True)
    _, tail = frequency.tail_classes(inputs, _spec(corpora=["a"], below=10))
    assert tail["class"].tolist() == ["class 8", "class 9", "class 10", "class 11"]
    assert tail["count"].tolist() == [9, 5, 1, 0]


def test_tables_listing_different_classes_are_refused(tables, tmp_path):
    inputs, _ = tables
    write_table(tmp_path / "d.tsv", NAMES[:-1] + ["class x"], np.arange(12))
    inputs.freq["d@imagenet"] = tmp_path / "d.tsv"
    with pytest.raises(UserError, match="list different classes"):
        frequency.ranks(inputs, _spec(panels=[["d"]], rank_by="a"))
    with pytest.raises(UserError, match="no frequency table for corpus e"):
        frequency.tail_classes(inputs, _spec(corpora=["e"]))


def test_render_writes_pdf_png_csv(tables, tmp_path):
    from tailstudy.figures import render

    inputs, _ = tables
    render(
        {"plot": "frequency-correlation", **_spec(corpora=["a", "b"])}, inputs, tmp_path / "fig.pdf"
    )
    assert (tmp_path / "fig.png").stat().st_size > 1000
    assert pd.read_csv(tmp_path / "fig.csv").shape == (1, 4)


def test_label_only_figures_need_no_concept_set(tmp_path):
    config = _config(tmp_path, cls={"label": "Cls", "labels": "web-cls"})
    config["frequency"]["concept_sets"] = {}
    config["figures"]["f2"] = {"plot": "label-curves", "corpora": ["cls"]}
    plan.check(config)
    assert plan.needed_tables(config) == []
