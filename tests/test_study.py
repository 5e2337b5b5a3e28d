"""Study expansion: run ids, de-duplication, dependencies, validation of configs."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml

from tailstudy import study
from tailstudy.config import RunConfig
from tailstudy.io import UserError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_embedded_config_is_valid_and_expands_deterministically(config):
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    study.check(config)
    a, b = study.expand(config), study.expand(copy.deepcopy(config))
    assert list(a.runs) == list(b.runs)
    assert all(study.RUN_ID.match(r) for r in a.runs)
    assert a.runs["incaps-full_sl_sl-k5_s2"].recipe.vocab_size == 5
    # the claims study shares its seed-0 runs with the figure study: no duplicate runs
    shared = set(a.studies["claims-scratch"]) & set(a.studies["caption-scratch"])
    assert {"incaps-full_clip_clip_s0", "incaps-title_clip_clip_s0"} <= shared
    title = {r for r in a.studies["claims-scratch"] if r.startswith("incaps-title_")}
    assert title == {f"incaps-title_clip_clip_s{s}" for s in range(3)}
    n_listed = sum(len(v) for v in a.studies.values())
    assert len(a.runs) == n_listed - len(shared) + 1  # + the pre-training run
    # frozen text towers depend on the pre-training run, which joins the table
    dep = "pretrain_clip_clip-pretrain_s0"
    assert dep in a.runs and a.depends["incaps-tags_clip_clip-frozen_s0"] == dep
    assert a.runs["incaps-tags_clip_clip-frozen_s0"].text_source == {"run": dep}


def test_run_config_json_roundtrip(config):
    cfg = study.expand(config).runs["incaps-full_sl_sl-frozen-k10_s0"]
    again = RunConfig.from_dict(__import__("json").loads(cfg.to_json()))
    assert again == cfg
    assert again.recipe.head == "frozen" and again.recipe.lr == config["recipes"]["sl"]["lr"]
    with pytest.raises(UserError, match="unknown key"):
        RunConfig.from_dict({**cfg.to_dict(), "surprise": 1})


def test_recipe_inheritance_and_cycles(config):
    r = study.resolve_recipe(config, "sl-frozen-k10")
    assert r["vocab_size"] == 10 and r["head"] == "frozen" and r["optimizer"] == "sgd"
    config["recipes"]["sl"]["extends"] = "sl-k5"
    with pytest.raises(UserError, match="circular"):
        study.resolve_recipe(config, "sl-k5")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["studies"]["caption-scratch"][0]["variant"].append("nope"), "unknown variant"),
        (lambda c: c["variants"]["incaps-full"].update(dataset="nope"), "unknown dataset"),
        (lambda c: c["figures"]["fig03-descriptiveness"].update(studies=["nope"]), "unknown study"),
        (lambda c: c["recipes"]["clip"].update(vocab_size=5), "ignores"),
        (lambda c: c["recipes"]["sl-frozen"].pop("text_encoder"), "needs a text_encoder"),
        (lambda c: c["claims"][0].update(study="nope"), "unknown study"),
        (
            lambda c: c["figures"]["fig03-descriptiveness"].update(descriptiveness=["nope"]),
            "descriptiveness names unknown variant 'nope'",
        ),
    ],
)
def test_cross_reference_errors_are_one_line(config, mutate, message):
    mutate(config)
    with pytest.raises(UserError, match=message) as e:
        study.check(config)
    assert "\n" not in str(e.value)


def test_schema_describes_every_key_and_rejects_unknown_keys():
    def walk(node, path):
        if isinstance(node, dict):
            # a dispatcher on `source` leaves closing the keys to each kind's own definition
            branches = node.get("allOf", [])
            dispatch = bool(branches) and all("then" in b for b in branches)
            if node.get("type") == "object" and "properties" in node and not dispatch:
                assert node.get("additionalProperties") is False, f"{path} allows unknown keys"
            for k, v in node.get("properties", {}).items():
                assert "description" in v, f"{path}.{k} has no description"
            for k, v in node.items():
                if k != "if":  # a condition, not keys of the config
                    walk(v, f"{path}.{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")

    walk(SCHEMA, "schema")


def _with_paper_variants(config):
    """The embedded config plus one variant of every paper kind (METHODS §3.2–3.6)."""
    for name in ("laionet", "t2t", "in100-val"):
        config["datasets"][name] = copy.deepcopy(config["datasets"]["web"])
    full = config["variants"]["incaps-full"]["captions"]
    config["variants"].update(
        {
            "incaps100": {
                "dataset": "incaps",
                "captions": full,
                "classes": {"subset": "imagenet100"},
                "evaluation": {"dataset": "in100-val"},
            },
            "incaps10pct": {
                "dataset": "incaps",
                "captions": full,
                "sample": {"n": 600, "seed": 42, "sort_by": "key"},
                "evaluation": {"dataset": "in100-val"},
            },
            "incaps-trim5-ceil0": {
                "dataset": "incaps",
                "captions": full,
                "trim": {"tail": 5, "ceil": 0, "seed": 0},
            },
            "laionet-t08": {"dataset": "laionet", "threshold": {"min_similarity": 0.8, "n": 6000}},
            "laionet-eqfreq": {
                "dataset": "laionet",
                "match": {"counts_of": {"dataset": "incaps"}, "supplement": "t2t", "seed": 0},
            },
        }
    )
    config["studies"]["paper-kinds"] = {
        "variant": [
            "incaps100",
            "incaps10pct",
            "incaps-trim5-ceil0",
            "laionet-t08",
            "laionet-eqfreq",
        ],
        "model": ["sl"],
        "recipe": ["sl"],
        "seed": [0],
    }
    return config


def test_paper_variant_kinds_validate_and_choose_their_evaluation_set(config):
    before = study.expand(copy.deepcopy(config)).runs
    config = _with_paper_variants(config)
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    study.check(config)
    runs = study.expand(config).runs
    assert runs["incaps100_sl_sl_s0"].eval_dataset == "in100-val"
    assert runs["incaps10pct_sl_sl_s0"].eval_dataset == "in100-val"
    assert runs["laionet-eqfreq_sl_sl_s0"].eval_dataset == "val"  # the global one
    # the runs that existed before are unchanged, to the byte (nothing retrains)
    assert all(runs[r].to_json() == cfg.to_json() for r, cfg in before.items())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda v: v["laionet-eqfreq"]["match"].update(counts_of={"variant": "nope"}),
            "laionet-eqfreq: match.counts_of names unknown variant 'nope'",
        ),
        (
            lambda v: v["laionet-eqfreq"]["match"].update(counts_of={"dataset": "nope"}),
            "laionet-eqfreq: match.counts_of names unknown dataset 'nope'",
        ),
        (
            lambda v: v["laionet-eqfreq"]["match"].update(supplement="nope"),
            "laionet-eqfreq: match.supplement 'nope' is not a declared dataset",
        ),
        (
            lambda v: (
                v["laionet-eqfreq"]["match"].update(counts_of={"variant": "laionet-t08"}),
                v["laionet-t08"].pop("threshold"),
                v["laionet-t08"].update(match={"counts_of": {"variant": "laionet-eqfreq"}}),
            ),
            "match.counts_of cycle laionet-t08 -> laionet-eqfreq -> laionet-t08",
        ),
        (
            lambda v: v["incaps100"]["evaluation"].update(dataset="nope"),
            "incaps100: evaluation.dataset 'nope' is not a declared dataset",
        ),
        (
            lambda v: v["incaps10pct"].update(trim={"tail": 5, "ceil": 1}),
            "variant incaps10pct combines sample and trim",
        ),
    ],
)
def test_paper_variant_reference_errors_are_one_line(config, mutate, message):
    config = _with_paper_variants(config)
    mutate(config["variants"])
    with pytest.raises(UserError, match=message) as e:
        study.check(config)
    assert "\n" not in str(e.value)


def test_grids_without_seeds_take_the_top_level_seeds(config):
    config["studies"] = {"s": [{"variant": ["incaps-full"], "model": ["sl"], "recipe": ["sl"]}]}
    config["figures"] = {k: v for k, v in config["figures"].items() if "studies" not in v}
    config["claims"] = []
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    assert study.expand(config).studies["s"] == ["incaps-full_sl_sl_s0"]  # default [0]
    config["seeds"] = [0, 1, 2]
    assert study.expand(config).studies["s"] == [f"incaps-full_sl_sl_s{i}" for i in range(3)]
    config["studies"]["s"][0]["seed"] = [7]  # a grid's own seeds win
    assert study.expand(config).studies["s"] == ["incaps-full_sl_sl_s7"]
