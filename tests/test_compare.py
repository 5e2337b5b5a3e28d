"""compare_to_paper.tsv from hand-made result files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from tailstudy.analysis import compare, paper
from tailstudy.figures import FigureInputs, render
from tailstudy.freq.sources import write_table

CLASSES = [f"class {i}" for i in range(12)]
# hand-made published tables of the six corpora for the ImageNet concept set
TABLES = {
    "CC-12M": [5, 0, 12, 7, 7, 30, 2, 9, 1, 40, 3, 11],
    "YFCC-15M": [4, 1, 10, 9, 6, 25, 0, 8, 2, 31, 5, 3],
    "LAION-400M": [50, 3, 120, 80, 64, 300, 22, 91, 15, 410, 33, 100],
    "MetaCLIP-400M": [9, 9, 9, 2, 4, 50, 1, 5, 7, 60, 3, 8],
    "LAION-2B": [250, 14, 600, 420, 300, 1500, 100, 460, 70, 2000, 170, 480],
    # the same ranks as MetaCLIP-400M: Spearman 1, as the paper prints for ImageNet
    "MetaCLIP-2.5B": [90, 90, 90, 20, 40, 500, 10, 50, 70, 600, 30, 80],
}


def rows_of(table, item, text):
    return table[(table["item"] == item) & table["quantity"].str.contains(text, regex=False)]


def test_fig13_rows_from_published_tables(tmp_path):
    freq = {}
    for i, counts in enumerate(TABLES.values()):
        path = tmp_path / "published" / f"c{i}_imagenet.txt"
        path.parent.mkdir(exist_ok=True)
        write_table(path, CLASSES, counts)
        freq[f"c{i}@imagenet"] = path
    spec = {
        "plot": "frequency-correlation",
        "paper_label": "Fig. 13",
        "corpora": [f"c{i}" for i in range(6)],
        "concept_sets": ["imagenet"],
        "corpus_specs": {f"c{i}": {"label": label} for i, label in enumerate(TABLES)},
    }
    results = tmp_path / "results"
    render(spec, FigureInputs(freq=freq), results / "figures" / "fig13-corpus-correlation.pdf")

    table = compare.build(results, "embedded", published=TABLES)
    fig13 = table[table["item"] == "Fig. 13"]
    assert len(fig13) == len(paper.FIG13) == 8 * 15
    imagenet = fig13[fig13["quantity"].str.startswith("imagenet:")]
    assert len(imagenet) == 15 and (imagenet["comparable"] == "yes").all()
    assert (imagenet["reason"] == "from the published frequency tables").all()
    for r in imagenet.itertuples():
        a, b = r.quantity.removeprefix("imagenet: Spearman ").split(" vs ")
        assert r.ours == pytest.approx(spearmanr(TABLES[a], TABLES[b])[0], abs=1e-4)
        assert r.paper == paper.FIG13[("imagenet", a, b)]
        assert r.diff == pytest.approx(r.ours - r.paper)
    same = rows_of(fig13, "Fig. 13", "imagenet: Spearman MetaCLIP-2.5B vs MetaCLIP-400M")
    assert same["ours"].iloc[0] == pytest.approx(1.0) and same["diff"].iloc[0] == pytest.approx(0)
    # concept sets the hand-made figure does not hold are listed, not computed
    cub = fig13[fig13["quantity"].str.startswith("cub:")]
    assert (cub["comparable"] == "no").all() and cub["reason"].str.startswith("not computed").all()

    # counted from LAION captions instead of the published tables: not comparable, and why
    counted = compare.build(results, "paper", published=set(TABLES) - {"LAION-400M"})
    laion = rows_of(counted, "Fig. 13", "imagenet: Spearman LAION-400M vs CC-12M")
    assert laion["comparable"].iloc[0] == "no" and "Re-LAION-5B" in laion["reason"].iloc[0]
    other = rows_of(counted, "Fig. 13", "imagenet: Spearman YFCC-15M vs CC-12M")
    assert other["comparable"].iloc[0] == "yes"


def test_fig11_table1_sizes_and_scale(tmp_path):
    figs = tmp_path / "figures"
    figs.mkdir()
    wide = {
        "pearson_acc": [0.50, 0.30],
        "pearson_log_acc": [0.6, 0.4],
        "spearman_acc": [0.52, 0.25],
        "pearson_pred": [0.61, 0.05],
        "pearson_log_pred": [0.7, 0.1],
        "spearman_pred": [0.57, 0.10],
    }
    # the figure's CSV has one row per class; the statistics repeat on every row of a series
    pd.DataFrame({"series": ["SL", "Frozen CLIP"], "freq": [3, 4], **wide}).to_csv(
        figs / "fig11a-pearson-spearman.csv", index=False
    )
    pd.DataFrame({"series": ["SL", "CLIP"], **wide}).to_csv(
        figs / "fig11b-pearson-spearman.csv", index=False
    )
    counts = [9, 9, 8, 6, 5, 5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 0, 0]
    acc = np.linspace(0, 1, len(counts))
    pd.DataFrame(
        {"corpus": "YFCC-15M", "class": [f"c{i}" for i in range(28)], "count": counts, "acc": acc}
    ).to_csv(figs / "table01-tail-classes.csv", index=False)
    for name, m in {
        "incaps-full": {"n_rows": 448_896, "nonzero_classes": 999},
        "laionet-t070": {
            "n_rows": 448_896,
            "nonzero_classes": 940,
            "steps": {"above_threshold": 3_000_000},
        },
    }.items():
        (tmp_path / "variants" / name).mkdir(parents=True)
        (tmp_path / "variants" / name / "manifest.json").write_text(json.dumps(m))

    t = compare.build(tmp_path, "paper", series={"CLIP": "Frozen CLIP"})
    sl = rows_of(t, "Fig. 11a", "SL acc: Pearson").iloc[0]
    assert (sl.paper, sl.ours, sl.comparable) == (0.55, 0.50, "yes")
    assert sl["diff"] == pytest.approx(-0.05)
    clip = rows_of(t, "Fig. 11a", "CLIP #pred: Spearman").iloc[0]
    assert (clip.paper, clip.ours) == (0.08, 0.10)
    # panel a prints no Pearson (log): no row for it
    assert rows_of(t, "Fig. 11a", "Pearson (log)").empty
    assert len(t[t["item"] == "Fig. 11a"]) == 8 and len(t[t["item"] == "Fig. 11b"]) == 12
    b = t[t["item"] == "Fig. 11b"]
    assert (b["comparable"] == "no").all() and b["reason"].str.contains("LAIONet").all()
    c = t[t["item"] == "Fig. 11c"]
    assert c["ours"].isna().all() and c["reason"].str.startswith("not computed").all()

    t1 = t[t["item"] == "Table 1"]
    f = t1[t1["quantity"].str.startswith("frequency of tail class")]
    assert f["paper"].tolist() == paper.TABLE1_FREQ
    assert f["ours"].tolist()[:28] == counts and np.isnan(f["ours"].iloc[28])
    assert rows_of(t1, "Table 1", "classes below 10").iloc[0][["paper", "ours"]].tolist() == [
        29,
        28,
    ]
    assert rows_of(t1, "Table 1", "classes with count 1").iloc[0][["paper", "ours"]].tolist() == [
        6,
        5,
    ]
    a = t1[t1["quantity"].str.startswith("accuracy (%)")]
    assert a["ours"].iloc[:28].to_numpy() == pytest.approx(acc * 100)
    assert rows_of(t1, "Table 1", ">= 50%")["ours"].iloc[0] == int((acc >= 0.5).sum())

    sizes = t[t["item"] == "§3 sizes"]
    inc = rows_of(sizes, "§3 sizes", "incaps-full: ")
    assert inc["ours"].tolist() == [448_896, 999] and (inc["comparable"] == "yes").all()
    ln = rows_of(sizes, "§3 sizes", "laionet-t070: ")
    assert ln["ours"].tolist() == [448_896, 940, 3_000_000] and (ln["comparable"] == "no").all()
    assert ln["reason"].str.contains("Re-LAION-5B").all()
    assert len(t[t["item"] == "Table 2"]) == 6 * 13

    # a config that draws no Fig. 11b: its rows are not computed, whatever file lies there
    only_a = compare.build(
        tmp_path,
        "paper",
        series={"CLIP": "Frozen CLIP"},
        figures={"Fig. 11a": "figures/fig11a-pearson-spearman.csv"},
    )
    b = only_a[only_a["item"] == "Fig. 11b"]
    assert b["ours"].isna().all()
    assert (b["reason"] == "not computed: Fig. 11b: not drawn by this config").all()

    # the same files at embedded scale: nothing is comparable, and each row says why
    e = compare.build(tmp_path, "embedded", series={"CLIP": "Frozen CLIP"})
    computed = e[e["ours"].notna()]
    assert (computed["comparable"] == "no").all()
    assert computed[computed["item"] == "Fig. 11a"]["reason"].str.startswith("embedded:").all()


def test_written_tsv_and_html(tmp_path):
    (tmp_path / "variants" / "incaps100").mkdir(parents=True)
    (tmp_path / "variants" / "incaps100" / "manifest.json").write_text(
        json.dumps({"n_rows": 44_548, "nonzero_classes": 100})
    )
    t = compare.build(tmp_path, "paper")
    compare.write(t, tmp_path / "compare_to_paper.tsv")
    back = pd.read_csv(
        tmp_path / "compare_to_paper.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    assert list(back.columns) == compare.COLUMNS and len(back) == len(t)
    row = back[back["quantity"] == "incaps100: rows"].iloc[0]
    assert (row["paper"], row["ours"], row["diff"], row["comparable"]) == (
        "44548",
        "44548",
        "0",
        "yes",
    )
    assert (
        back[back["quantity"] == "imagenet: Spearman YFCC-15M vs CC-12M"]["paper"].iloc[0] == "0.82"
    )
    page = compare.to_html(t)
    assert page.count('<tr class="yes">') == (t["comparable"] == "yes").sum() == 2
    assert page.count('<tr class="no">') == len(t) - 2
    assert "&gt;= 50%" in page  # escaped
    compare.write_html(t, tmp_path / "compare_to_paper.html")
    assert (tmp_path / "compare_to_paper.html").read_text() == page


def test_published_labels_from_config():
    config = {
        "frequency": {
            "corpora": {
                "laion400m": {"label": "LAION-400M", "table": "published/laion400m.txt"},
                "cc12m": {"label": "CC-12M", "captions": ["cc12m.tsv"], "column": "1"},
                "yfcc": {"table": "published/yfcc.txt"},
            }
        }
    }
    assert compare.published_labels(config) == {"LAION-400M", "yfcc"}
    assert compare.published_labels({}) == set()
