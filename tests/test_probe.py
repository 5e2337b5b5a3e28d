"""Linear probes of DINO runs as workflow steps: the embedded transfer tasks, the probe table
per study, Fig. 10 / Table 2 from it, claim F7's statistic, and what the pipeline checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tailstudy import layout as L
from tailstudy.analysis import compare
from tailstudy.analysis.claims import evaluate_claims
from tailstudy.data.format import read_classes, read_index
from tailstudy.embedded import World, build_dataset
from tailstudy.embedded.world import FACETS
from tailstudy.evaluate import probe
from tailstudy.figures import FigureInputs, render
from tailstudy.io import UserError, read_json
from tailstudy.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]
WORLD = {
    "seed": 0,
    "eval_concepts": "imagenet100",
    "n_open_world": 20,
    "image_size": 32,
    "group_size": 4,
}


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_embedded_probe_task_has_splits_labels_and_metric(tmp_path):
    spec = {
        "style": "curated",
        "captions": "alttext",
        "profile": {"shape": "balanced", "n": 400},
        "probe": {"task": "shape", "metric": "mean_per_class", "seed": 1},
        "seed": 5,
    }
    build_dataset(World(WORLD), spec, tmp_path / "t", "t")
    index = read_index(tmp_path / "t")
    manifest = read_json(tmp_path / "t" / "manifest.json")
    assert manifest["metric"] == "mean_per_class" == probe.metric_of(tmp_path / "t")
    assert read_classes(tmp_path / "t")["name"].tolist() == list(FACETS["shape"])
    assert set(index["label"]) <= set(range(len(FACETS["shape"])))
    counts = index["split"].value_counts()
    assert manifest["splits"] == {k: int(v) for k, v in counts.items()}
    assert 0.5 < counts["train"] / len(index) < 0.7 and counts["test"] > 40
    with pytest.raises(UserError, match="probe.task 'hue'"):
        build_dataset(World(WORLD), {**spec, "probe": {"task": "hue"}}, tmp_path / "u", "u")


def test_a_dataset_that_is_no_transfer_set_is_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.json").write_text(json.dumps({"name": "val"}))
    with pytest.raises(UserError, match="dataset val is not a transfer set"):
        probe.metric_of(tmp_path / "d")


def fake_results(tmp_path, scores: dict) -> list[Path]:
    """Probe JSONs: scores[(recipe, variant, seed)] = {dataset: test score}."""
    paths = []
    for (recipe, variant, seed), per in scores.items():
        run = f"{variant}_dino_{recipe}_s{seed}"
        factors = {"variant": variant, "recipe": recipe, "seed": seed, "recipe_label": recipe}
        for d, v in per.items():
            p = tmp_path / run / f"{d}.json"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps({"run_id": run, "dataset": d, "factors": factors, "test": v}))
            paths.append(p)
    return paths


def test_probe_table_figures_and_claim(tmp_path):
    sets = ["a", "b"]
    scores = {("dino", "cur", 0): {"a": 50.0, "b": 70.0}}
    for s in range(3):
        scores[("dino", "web", s)] = {"a": 40.0 + s, "b": 60.0}
        scores[("dino-sub", "web", s)] = {"a": 45.0, "b": 64.0 - 4 * s}
    table = probe.collect("st", fake_results(tmp_path, scores), sets, tmp_path / "t.tsv")
    assert table.set_index("run_id").loc["web_dino_dino_s1", "probe_mean"] == 50.5
    with pytest.raises(UserError, match="lack probe results for probe_c"):
        probe.collect("st", fake_results(tmp_path, scores), [*sets, "c"], tmp_path / "u.tsv")

    spec = {
        "plot": "probe-delta",
        "paper_label": "Fig. 10",
        "probe_datasets": sets,
        "datasets": ["b", "a"],
        "baseline": {"variant": "cur", "recipe": "dino"},
        "select": {
            "web": {"variant": "web", "recipe": "dino"},
            "sub": {"variant": "web", "recipe": "dino-sub"},
        },
    }
    render(spec, FigureInputs([tmp_path / "t.tsv"]), tmp_path / "fig10.pdf")
    delta = pd.read_csv(tmp_path / "fig10.csv")
    assert delta["dataset"].tolist()[:3] == ["b", "a", "Avg"]  # the spec's order, then Avg
    d = delta.set_index(["arm", "dataset"])["delta"]
    assert d["web", "a"] == pytest.approx(41.0 - 50.0) and d["sub", "b"] == pytest.approx(
        60.0 - 70.0
    )
    assert d["sub", "Avg"] == pytest.approx((54.5 + 52.5 + 50.5) / 3 - 60)

    spec = {**spec, "plot": "probe-table", "paper_label": "Table 2"}
    spec["select"] = {"cur": spec.pop("baseline"), **spec["select"]}
    spec["paper_rows"] = {"cur": "ImageNet (vanilla)/65536"}
    spec["paper_datasets"] = {"a": "Aircraft", "b": "Pets"}
    render(spec, FigureInputs([tmp_path / "t.tsv"]), tmp_path / "table2.pdf")
    t2 = pd.read_csv(tmp_path / "table2.csv").set_index(["arm", "dataset"])
    assert t2.loc[("cur", "a"), "paper"] == 27.0 and t2.loc[("cur", "Avg"), "paper"] == 60.8
    assert np.isnan(t2.loc[("web", "a"), "paper"]) and t2.loc[("web", "a"), "score"] == 41.0
    assert t2.loc[("cur", "a"), "paper_row"] == "ImageNet (vanilla)/65536"
    assert t2.loc[("cur", "Avg"), "paper_dataset"] == "Avg"
    # compare_to_paper.tsv reads our score beside the paper's cell it names
    table = compare.build(tmp_path, "paper", figures={"Table 2": "table2.csv"})
    rows = table[table["item"] == "Table 2"].set_index("quantity")
    cell = rows.loc["ImageNet (vanilla), vocabulary 65536: Aircraft"]
    assert (cell["paper"], cell["ours"], cell["ours_from"]) == (27.0, 50.0, "table2.csv")
    assert rows.loc["ImageNet (vanilla), vocabulary 65536: Avg", "paper"] == 60.8
    assert cell["comparable"] == "yes"  # paper scale, sources unchanged
    # Birdsnap's images come from URLs that died since: its cells, and Avg, do not compare
    avg = rows.loc["ImageNet (vanilla), vocabulary 65536: Avg"]
    assert avg["ours"] == t2.loc[("cur", "Avg"), "score"]
    assert avg["comparable"] == "no" and avg["reason"].startswith("Birdsnap")
    assert np.isnan(rows.loc["LAIONet (vanilla), vocabulary 65536: Aircraft", "ours"])  # unmapped

    claim = {
        "id": "F7",
        "text": "sub > vanilla",
        "study": "st",
        "statistic": probe.MEAN,
        "a": {"variant": "web", "recipe": "dino-sub"},
        "b": {"variant": "web", "recipe": "dino"},
        "expect": "greater",
    }
    res = evaluate_claims([claim], [tmp_path / "t.tsv"], tmp_path / "claims.tsv")
    assert res["holds"].tolist() == [True, True, False]  # seed 2: 50.5 vs 51
    assert not res["claim_holds"].any()


def test_pipeline_wires_dino_studies_to_probes(config):
    p = Pipeline(config)
    assert p.probe_studies == ["dino-transfer"] and "dino-transfer" not in p.eval_studies
    assert len(p.probe_runs) == 7
    run = p.probe_runs[0]
    assert len(p.probe_feature_files(run)) == 2 * 3  # transfer tasks x splits
    assert p.probe_inputs(run, "probe-shape")["features"] == [
        L.path(L.PROBE_FEATURE, run=run, dataset="probe-shape", split=s)
        for s in ("train", "val", "test")
    ]
    assert p.claims_tables() == [
        "results/tables/claims-scratch.tsv",
        "results/tables/probe/dino-transfer.tsv",
        "results/tables/web-scale.tsv",  # F6 (studies in name order)
    ]
    assert p.spec("figures", "fig10-dino-transfer")["probe_datasets"] == p.probe_datasets
    with pytest.raises(UserError, match="holds DINO runs"):
        p.study_evals("dino-transfer")


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda c: c["studies"]["dino-transfer"].append(
                {"variant": ["incaps-full"], "model": ["sl"], "recipe": ["sl"], "seed": [0]}
            ),
            "study dino-transfer mixes dino runs",
        ),
        (lambda c: c["probe"].update(datasets=["val"]), "dataset val is not a transfer set"),
        (lambda c: c.pop("probe"), "train DINO runs: list probe.datasets"),
        (lambda c: c["claims"][0].update(statistic="probe_mean"), "claim F1: statistic"),
    ],
)
def test_pipeline_rejects_inconsistent_probe_configs(config, edit, message):
    bad = copy.deepcopy(config)
    edit(bad)
    with pytest.raises(UserError, match=message):
        Pipeline(bad)
