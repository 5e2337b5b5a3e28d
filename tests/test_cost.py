"""The study's cost from the work: rows, GPU-hours, job time limits and memory, and `plan --cost`
on the paper config (its dry run set up as in test_paper_config)."""

from __future__ import annotations

import copy
import math

import pytest
import yaml

from smk import PAPER, REPO, make_standins, smk
from tailstudy import cost, study
from tailstudy.cli import main


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(PAPER.read_text())


def test_variant_rows_follow_the_variant_spec(config):
    assert cost.variant_rows(config, "incaps-full") == 448_896
    assert cost.variant_rows(config, "incaps10pct") == 44_548  # sample.n
    assert cost.variant_rows(config, "incaps100") == math.ceil(448_896 / 10)  # 100 of 1000
    assert cost.variant_rows(config, "laionet-t070") == 448_896  # threshold.n
    assert cost.variant_rows(config, "laionet-f32") == math.ceil(3_256_561 * 0.03125)
    assert cost.variant_rows(config, "laionet-eqfreq") == 448_896  # counts of incaps-full
    assert cost.variant_rows(config, "cc12m-cls") == 3_480_797
    embedded = yaml.safe_load((REPO / "config.yaml").read_text())
    assert cost.variant_rows(embedded, "web-cls-f4") == math.ceil(12_000 / 4)


def test_plan_counts_every_run_and_sums_the_formula(config):
    table = study.expand(config)
    rows = {r["study"]: r for r in cost.plan_table(config)}
    total = rows.pop("all (distinct runs)")
    assert total["runs"] == len(table.runs) == 166
    assert {s: r["runs"] for s, r in rows.items()} == {s: len(v) for s, v in table.studies.items()}
    # one run by hand: IN-Caps, CLIP, 32 epochs on 4 GPUs at 800 images/s each
    cfg = table.runs["incaps-full_clip_clip_s0"]
    t = cost.train_cost(config, cfg)
    assert t.samples == 448_896 * 32
    assert t.hours == pytest.approx(448_896 * 32 / (800 * 4) / 3600)
    assert t.device_hours == pytest.approx(4 * t.hours)
    e = cost.eval_cost(config, cfg)
    assert e.device_hours == pytest.approx(50_000 / (800 * 3) / 3600)  # one GPU
    v2 = cost.eval_cost(config, cfg, "imagenet-v2")  # CLIP runs are also evaluated on V2
    assert v2.device_hours == pytest.approx(10_000 / (800 * 3) / 3600)
    assert cost.eval_device_hours(config, cfg) == pytest.approx(e.device_hours + v2.device_hours)
    by_hand = sum(
        cost.train_cost(config, c).device_hours
        + sum(cost.eval_cost(config, c, d).device_hours for d in study.eval_sets(config, c))
        for c in table.runs.values()
    )
    assert total["gpu_hours"] == pytest.approx(by_hand)
    assert total["cpu_hours"] == 0
    # more seeds, proportionally more
    three = copy.deepcopy(config)
    three["seeds"] = [0, 1, 2]
    assert cost.plan_table(three)[-1]["gpu_hours"] == pytest.approx(3 * total["gpu_hours"])


def test_memory_follows_what_a_job_holds_not_the_dataset(config):
    table = study.expand(config)
    small = table.runs["incaps100_clip_clip_s0"]  # 44,890 rows
    large = table.runs["laionet-f1_clip_clip_s0"]  # 3.26M rows
    assert cost.train_mem_mb(config, small) == cost.train_mem_mb(config, large)
    sl = table.runs["incaps-full_sl_sl_s0"]  # local batch 64 instead of 256: fewer queued bytes
    assert cost.train_mem_mb(config, sl) < cost.train_mem_mb(config, large)
    # a frozen language model's caption states are held in memory: they grow with the rows
    lm = table.runs["laionet-f1_clip_clip-roberta_s0"]
    lm_small = table.runs["laionet-f32_clip_clip-roberta_s0"]
    assert cost.train_mem_mb(config, lm) > cost.train_mem_mb(config, lm_small)
    assert cost.train_mem_mb(config, lm_small) > cost.train_mem_mb(config, large)
    richer = copy.deepcopy(config)
    richer["resources"]["workers"] = 12
    assert cost.train_mem_mb(richer, large) > cost.train_mem_mb(config, large)


def test_time_limits_in_the_dry_run(config, tmp_path):
    root = make_standins(config, tmp_path)
    run = "incaps-full_clip_clip_s0"
    out = smk(
        root, "-n", f"results/eval/{run}/imagenet-val/summary.json", configfile=PAPER, replace=True
    ).stdout
    jobs = {b.split(":")[0]: b for b in out.split("\nrule ")[1:]}
    cfg = study.expand(config).runs[run]
    want = math.ceil(448_896 * 32 / (800 * 4) / 60 * 1.5 + 10)
    assert f"runtime={want}," in jobs["train_model"]
    assert f"mem_mb={cost.train_mem_mb(config, cfg)}," in jobs["train_model"]
    want_eval = math.ceil(50_000 / 2400 / 60 * 1.5 + 10)
    assert f"runtime={want_eval}," in jobs["evaluate_run"]


def test_plan_cost_cli(capsys, tmp_path, config):
    assert main(["plan", "--cost", "--configfile", str(PAPER)]) == 0
    out = capsys.readouterr().out
    total = next(ln for ln in out.splitlines() if ln.startswith("all (distinct runs)"))
    assert total.split()[3] == "166"
    assert "trimmed-tail" in out and "images/s per device" in out
    bad = copy.deepcopy(config)
    del bad["resources"]["throughput"]["RN50"]["sl"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    assert main(["plan", "--cost", "--configfile", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: resources.throughput has no RN50.sl entry") and "\n" not in err
