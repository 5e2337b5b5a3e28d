"""What the rules ask of the config (tailstudy.pipeline) and the results/ layout they share."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tailstudy import cost, study
from tailstudy import layout as L
from tailstudy.data.spec import variant_refs
from tailstudy.io import UserError
from tailstudy.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config():
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    # a match variant following another variant's counts, topped up from a second dataset
    cfg["variants"]["web-eq"] = {
        "dataset": "web",
        "labelled": True,
        "match": {"counts_of": {"variant": "web-cls"}, "supplement": "pretrain", "seed": 0},
    }
    return cfg


def test_variant_inputs_follow_its_references(config):
    p = Pipeline(config)
    assert p.variant_inputs("web-eq") == {
        "spec": "results/specs/variants/web-eq.json",
        "dataset": "results/data/web/manifest.json",
        "counts_of": "results/variants/web-cls/index.parquet",
        "counts_of_classes": "results/variants/web-cls/classes.tsv",
        "supplement": "results/data/pretrain/manifest.json",
    }
    assert p.variant_args("web-eq") == (
        "--counts-of results/variants/web-cls --supplement results/data/pretrain"
    )
    assert p.variant_inputs("web-cls") == {
        "spec": "results/specs/variants/web-cls.json",
        "dataset": "results/data/web/manifest.json",
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"counts_of": {"variant": "nope"}},
            "variant web-eq: match.counts_of names unknown variant",
        ),
        ({"supplement": "nope"}, "variant web-eq: match.supplement 'nope' is not a declared"),
    ],
)
def test_the_check_and_the_wiring_read_one_walk(config, edit, message):
    cfg = copy.deepcopy(config)
    cfg["variants"]["web-eq"]["match"].update(edit)
    with pytest.raises(UserError, match=message):
        variant_refs(cfg, "web-eq")
    with pytest.raises(UserError, match=message):
        study.check(cfg)


def test_counts_of_cycle_is_one_line(config):
    cfg = copy.deepcopy(config)
    cfg["variants"]["web-cls"] = {
        "dataset": "web",
        "match": {"counts_of": {"variant": "web-eq"}, "seed": 0},
    }
    with pytest.raises(UserError, match="match.counts_of cycle web-cls -> web-eq -> web-cls"):
        study.check(cfg)


def test_run_wiring_and_resources(config):
    p = Pipeline(config)
    run = next(r for r, d in p.runs.depends.items())  # a run with a pre-trained text tower
    cfg = p.run(run)
    inputs = p.train_inputs(run)
    assert inputs["config"] == f"results/runs/{run}/config.json"
    assert inputs["text"] == f"results/runs/{p.runs.depends[run]}/model.pt"
    assert inputs["index"] == f"results/variants/{cfg.variant}/index.parquet"
    assert p.text_checkpoint_arg(run) == f"--text-checkpoint {inputs['text']}"
    assert p.gpus(run) == 0 and p.train_threads(run) == cfg.recipe.processes
    base = cost.time_limit_min(config, cost.train_cost(config, cfg))  # from the work itself
    assert [p.train_runtime(run, a) for a in (1, 2)] == [base, 2 * base]
    assert p.train_mem_mb(run) == cost.train_mem_mb(config, cfg)
    inputs = p.eval_inputs(run, cfg.eval_dataset)
    assert inputs["dataset"] == f"results/data/{cfg.eval_dataset}/manifest.json"
    assert inputs["manifest"] == f"results/variants/{cfg.variant}/manifest.json"


def test_a_run_may_have_several_evaluation_sets_each_its_own_job(config):
    cfg = copy.deepcopy(config)
    cfg["datasets"]["val2"] = dict(cfg["datasets"]["val"], seed=9)
    cfg["evaluation"]["also"] = [{"dataset": "val2", "objectives": ["clip"]}]
    p = Pipeline(cfg)
    clip = next(r for r, c in p.runs.runs.items() if c.objective == "clip")
    sl = next(r for r, c in p.runs.runs.items() if c.objective == "sl")
    default = p.run(clip).eval_dataset
    assert p.eval_sets(clip) == [default, "val2"] and p.eval_sets(sl) == [default]
    assert p.eval_summaries(clip) == [
        f"results/eval/{clip}/{default}/summary.json",
        f"results/eval/{clip}/val2/summary.json",
    ]
    assert p.eval_inputs(clip, "val2")["dataset"] == "results/data/val2/manifest.json"
    with pytest.raises(UserError, match=f"run {sl} is not evaluated on val2"):
        p.eval_inputs(sl, "val2")
    # a study reads every evaluation of its runs; a figure the default one's per-class table
    study_name = next(s for s, rs in p.runs.studies.items() if clip in rs)
    assert f"results/eval/{clip}/val2/summary.json" in p.study_evals(study_name)
    # a variant's own list replaces the global one
    variant = p.run(clip).variant
    cfg["variants"][variant]["evaluation"] = {"also": []}
    assert Pipeline(cfg).eval_sets(clip) == [default]
    cfg["evaluation"]["also"] = [{"dataset": "nope"}]
    with pytest.raises(UserError, match="evaluation.also names 'nope'"):
        study.check(cfg)


def test_a_frozen_language_model_is_a_clip_text_tower_only(config, tmp_path):
    cfg = copy.deepcopy(config)
    cfg["text_encoders"]["minilm"] = {"hf_model": str(tmp_path)}  # a local model folder
    cfg["recipes"]["clip-lm"] = {
        "extends": "clip",
        "text_tower": "frozen-lm",
        "text_encoder": "minilm",
    }
    cfg["studies"]["lm"] = [{"variant": ["incaps-full"], "model": ["clip"], "recipe": ["clip-lm"]}]
    p = Pipeline(cfg)
    run = next(r for r in p.runs.studies["lm"])
    assert p.run(run).text_source["hf_model"] == str(tmp_path)
    assert run not in p.runs.depends  # no run of the workflow gives its tower
    assert p.text_cache_arg(run) == "--text-cache results/cache/text/minilm"
    assert p.text_cache_arg(next(iter(p.runs.depends))) == ""
    bad = copy.deepcopy(cfg)
    bad["recipes"]["sl-lm"] = {"extends": "sl", "head": "frozen", "text_encoder": "minilm"}
    bad["studies"]["lm"] = [{"variant": ["incaps-full"], "model": ["sl"], "recipe": ["sl-lm"]}]
    with pytest.raises(UserError, match="recipe sl-lm .sl. needs a CLIP text tower text encoder"):
        study.check(bad)
    for name, msg in (
        ("./no/such/folder", "is no folder, Hugging Face hub id"),
        ("gt all minilm", "is no folder, Hugging Face hub id"),
    ):
        bad = copy.deepcopy(cfg)
        bad["text_encoders"]["minilm"]["hf_model"] = name
        with pytest.raises(UserError, match=f"text encoder minilm: hf_model '{name}' {msg}"):
            study.check(bad)
    bad = copy.deepcopy(cfg)
    bad["recipes"]["clip-lm"]["text_encoder"] = "clip-pretrained"
    with pytest.raises(UserError, match="needs a language model text encoder"):
        study.check(bad)


def test_rules_name_results_paths_only_through_the_layout():
    """Every path under results/ in the rules comes from tailstudy.layout (logs and
    benchmarks, named by their rule, excepted)."""
    files = [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]
    for f in files:
        code = [ln for ln in f.read_text().splitlines() if not ln.lstrip().startswith("#")]
        literal = [
            ln
            for ln in code
            if "results/" in ln and not re.search(r"results/(logs|benchmarks)/", ln)
        ]
        assert not literal, f"{f.name}: {literal}"


def test_layout_patterns_lie_under_results():
    patterns = {k: v for k, v in vars(L).items() if k.isupper() and isinstance(v, str)}
    assert all(v.startswith(L.RESULTS) for v in patterns.values())
    assert L.path(L.RUN_CONFIG, run="r") == "results/runs/r/config.json"


def test_compare_reads_the_figures_by_their_paper_label(config):
    p = Pipeline(config)
    spec = p.compare_spec()
    assert spec["scale"] == "embedded" and spec["published"] == []
    assert spec["figures"] == {
        "Fig. 11a": "figures/fig11a-pearson-spearman.csv",
        "Fig. 13": "figures/fig13-corpus-correlation.csv",
        "Table 1": "figures/table01-tail-classes.csv",
        "Table 2": "figures/table02-dino-probe.csv",
    }
    # of the paper's §3 datasets, the embedded config builds the full-text IN-Caps variant
    assert spec["variants"] == {"incaps-full": "incaps-full"}
    assert p.compare_inputs() == [
        *(f"results/{f}" for f in spec["figures"].values()),
        "results/variants/incaps-full/manifest.json",
    ]
    assert p.spec("compare", "paper") == spec


def test_figure_specs_keep_the_series_order_of_the_config(config):
    """Spec files are written with sorted keys; the figure's series keep the config's order."""
    import json

    from tailstudy.figures.kinds import ordered

    p = Pipeline(config)
    spec = json.loads(p.spec_json("figures", "fig11a-pearson-spearman"))
    assert list(spec["select"]) == ["CLIP", "SL"]  # sorted on disk
    assert (
        list(ordered(spec))
        == ["SL", "CLIP"]
        == list(config["figures"]["fig11a-pearson-spearman"]["select"])
    )
