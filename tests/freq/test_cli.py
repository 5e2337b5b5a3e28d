"""Sources, tables and the ``tailstudy freq`` command line."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tailstudy.freq.cli import main
from tailstudy.freq.sources import (
    align_by_name,
    iter_caption_batches,
    read_table,
    sorted_sibling,
    write_count_tables,
)
from tailstudy.io import UserError

CAPTIONS = [
    'a "goldfish"',
    "two geese",
    None,
    "Goldfish and a goose",
    "nothing here",
    "crane by the water",
    "crane bird",
    "goldfish",
]


@pytest.fixture
def shards(tmp_path):
    """The same captions as two Parquet shards, a TSV with header and a gzipped one without."""
    d = tmp_path / "shards"
    d.mkdir()
    pq.write_table(
        pa.table({"TEXT": CAPTIONS[:5], "x": range(5)}), d / "a.parquet", row_group_size=2
    )
    pq.write_table(pa.table({"TEXT": CAPTIONS[5:]}), d / "b.parquet")
    rows = [f"http://u/{i}\t{c or ''}" for i, c in enumerate(CAPTIONS)]
    (tmp_path / "cc.tsv").write_text("url\tcaption\n" + "\n".join(rows) + "\n")
    with gzip.open(tmp_path / "cc_noheader.tsv.gz", "wt") as f:
        f.write("\n".join(rows) + "\nbroken line without a tab\n")
    return tmp_path


def test_iter_caption_batches(shards):
    got = [
        x
        for a in iter_caption_batches(shards / "shards/a.parquet", "TEXT", batch_size=2)
        for x in a.to_pylist()
    ]
    assert got == CAPTIONS[:5]
    tsv = [x for a in iter_caption_batches(shards / "cc.tsv", "caption") for x in a.to_pylist()]
    assert tsv == [c or "" for c in CAPTIONS]
    skipped = [0]
    gz = [
        x
        for a in iter_caption_batches(
            shards / "cc_noheader.tsv.gz", "1", header=False, skipped=skipped
        )
        for x in a.to_pylist()
    ]
    assert gz == tsv and skipped == [1]
    with pytest.raises(UserError, match="no column"):
        next(iter_caption_batches(shards / "shards/a.parquet", "caption"))
    with pytest.raises(UserError, match="field index"):
        next(iter_caption_batches(shards / "cc.tsv", "caption", header=False))


def test_sorted_sibling():
    assert sorted_sibling("out/class_frequency_cc12m_ori.tsv").name == "class_frequency_cc12m.tsv"
    assert sorted_sibling("out/x.tsv").name == "x_sorted.tsv"
    assert sorted_sibling("out/x_ori").name == "x"
    assert sorted_sibling("out/_ori.txt").name == "_ori_sorted.txt"


def test_tables_roundtrip_and_sorting(tmp_path):
    names, counts = ["b c", "a", "d", "e"], np.array([3, 5, 3, 0])
    written = write_count_tables(tmp_path / "t_ori.tsv", names, counts)
    assert [p.name for p in written] == ["t_ori.tsv", "t.tsv"]
    assert read_table(written[0])[0] == names
    s_names, s_counts = read_table(written[1])
    assert s_names == ["a", "b c", "d", "e"] and s_counts.tolist() == [5, 3, 3, 0]
    (tmp_path / "bad.tsv").write_text("a\tx\n")
    with pytest.raises(UserError, match="bad.tsv:1"):
        read_table(tmp_path / "bad.tsv")


def test_align_by_name():
    a = ("A", ["x", "y", "z"], np.array([1, 2, 3]))
    b = ("B", ["z", "x", "y"], np.array([30, 10, 20]))
    names, m = align_by_name([a, b])
    assert names == ["x", "y", "z"] and m.tolist() == [[1, 10], [2, 20], [3, 30]]
    c = ("C", ["x", "y"], np.array([1, 2]))
    with pytest.raises(UserError, match="different classes"):
        align_by_name([a, c])
    assert align_by_name([a, c], intersect=True)[0] == ["x", "y"]
    with pytest.raises(UserError, match="more than once"):
        align_by_name([a, ("D", ["x", "x"], np.array([1, 2]))])


def expected_counts(lemmatize, concepts):
    from tailstudy.freq.reference import reference_counts

    return reference_counts(CAPTIONS, concepts, lemmatize)


def test_count_parquet_and_tsv(shards, nltk_data, lemmatize, imagenet):
    want = expected_counts(lemmatize, imagenet)
    assert want[1] == 3 and want[99] == 2 and want[134] == 1 and want[517] == 0
    out = shards / "out" / "class_frequency_toy_imagenet_ori.tsv"
    args = [
        "count",
        "--captions",
        str(shards / "shards"),
        "--column",
        "TEXT",
        "--out",
        str(out),
        "--nltk-data",
        nltk_data,
        "--per-shard",
        str(shards / "per"),
    ]
    assert main(args) == 0
    names, counts = read_table(out)
    assert names == imagenet.names and counts.tolist() == want.tolist()
    s_names, s_counts = read_table(shards / "out" / "class_frequency_toy_imagenet.tsv")
    assert s_names[:2] == ["goldfish", "goose"] and s_counts[:2].tolist() == [3, 2]
    assert sorted(p.name for p in (shards / "per").iterdir()) == ["a_ori.tsv", "b_ori.tsv"]
    # merging the per-shard tables gives the total
    merged = shards / "merged_ori.tsv"
    assert main(["merge", *map(str, sorted((shards / "per").iterdir())), "--out", str(merged)]) == 0
    assert read_table(merged)[1].tolist() == want.tolist()
    # TSV shards, with and without a header
    for path, col, extra in [
        ("cc.tsv", "caption", []),
        ("cc_noheader.tsv.gz", "1", ["--no-header"]),
    ]:
        o = shards / f"{col}_ori.tsv"
        assert (
            main(
                [
                    "count",
                    "--captions",
                    str(shards / path),
                    "--column",
                    col,
                    *extra,
                    "--out",
                    str(o),
                    "--nltk-data",
                    nltk_data,
                    "--no-sorted",
                ]
            )
            == 0
        )
        assert read_table(o)[1].tolist() == want.tolist()
        assert not (shards / f"{col}.tsv").exists()


def test_count_workers_agree(shards, nltk_data, imagenet):
    from tailstudy.freq.count import count_captions

    one = count_captions([shards / "shards"], "TEXT", imagenet, nltk_data=nltk_data)
    two = count_captions([shards / "shards"], "TEXT", imagenet, workers=2, nltk_data=nltk_data)
    assert one.n_texts == two.n_texts == len(CAPTIONS)
    assert np.array_equal(one.counts, two.counts)
    for k in one.per_shard:
        assert np.array_equal(one.per_shard[k], two.per_shard[k])


def test_count_datacard(tmp_path, nltk_data):
    card = tmp_path / "datacard.json"
    card.write_text(json.dumps({"robin": 100, "two robins": 20, "goldfish": 7, "crane": 1}))
    out = tmp_path / "metaclip_ori.tsv"
    assert (
        main(
            [
                "count",
                "--datacard",
                str(card),
                "--concepts",
                "imagenet100",
                "--out",
                str(out),
                "--nltk-data",
                nltk_data,
            ]
        )
        == 0
    )
    names, counts = read_table(out)
    assert len(names) == 100 and names[0] == "American robin"  # label 15, the first of IN-100
    assert counts[0] == 120 and counts.sum() == 120


def test_count_errors(tmp_path, capsys):
    assert (
        main(
            [
                "count",
                "--captions",
                str(tmp_path / "nope.parquet"),
                "--column",
                "x",
                "--out",
                str(tmp_path / "o.tsv"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err
    assert main(["count", "--captions", str(tmp_path), "--out", str(tmp_path / "o.tsv")]) == 2
    assert "--column" in capsys.readouterr().err
    assert main(["count", "--datacard", "x.json", "--concepts", "cub", "--out", "o.tsv"]) == 2
    assert "class-name file" in capsys.readouterr().err


def test_correlate_aligns_by_name(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"class {i}" for i in range(30)]
    a, b = rng.integers(0, 1000, 30), rng.integers(0, 1000, 30)
    write_count_tables(tmp_path / "a_ori.tsv", names, a)  # writes a.tsv sorted by count too
    write_count_tables(tmp_path / "b_ori.tsv", names, b, sorted_copy=False)
    out = tmp_path / "rho.tsv"
    assert (
        main(
            [
                "correlate",
                f"A={tmp_path / 'a.tsv'}",
                f"B={tmp_path / 'b_ori.tsv'}",
                f"A2={tmp_path / 'a_ori.tsv'}",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = pd.read_csv(out, sep="\t", index_col=0)
    assert list(m.columns) == list(m.index) == ["A", "B", "A2"]
    from scipy.stats import spearmanr

    assert m.loc["A", "B"] == pytest.approx(spearmanr(a, b).statistic)
    assert m.loc["B", "A2"] == pytest.approx(spearmanr(a, b).statistic)
    assert m.loc["A", "A2"] == pytest.approx(1.0)
    assert np.allclose(m.to_numpy(), m.to_numpy().T)


def test_correlate_errors(tmp_path, capsys):
    write_count_tables(tmp_path / "a_ori.tsv", ["x", "y"], np.array([1, 2]), sorted_copy=False)
    write_count_tables(tmp_path / "b_ori.tsv", ["x", "z"], np.array([1, 2]), sorted_copy=False)
    assert main(["correlate", f"A={tmp_path / 'a_ori.tsv'}", "--out", str(tmp_path / "m")]) == 2
    assert (
        main(
            [
                "correlate",
                f"A={tmp_path / 'a_ori.tsv'}",
                f"B={tmp_path / 'b_ori.tsv'}",
                "--out",
                str(tmp_path / "m"),
            ]
        )
        == 2
    )
    assert "different classes" in capsys.readouterr().err
    assert main(["correlate", "nonsense", "B=x", "--out", str(tmp_path / "m")]) == 2


def test_project_cli_dispatches_to_freq(tmp_path):
    from tailstudy.cli import main as project_main

    write_count_tables(tmp_path / "a_ori.tsv", ["x", "y", "z"], np.array([1, 2, 3]))
    out = tmp_path / "m.tsv"
    assert (
        project_main(
            [
                "freq",
                "correlate",
                f"A={tmp_path / 'a_ori.tsv'}",
                f"B={tmp_path / 'a.tsv'}",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert out.read_text().splitlines()[0] == "\tA\tB"
