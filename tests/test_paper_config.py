"""The paper-scale config: valid, the complete grid of METHODS §6, and a DAG that plans every job.

The raw sources are stood in for by empty files and folders under ``data/`` of a scratch working
directory, the layout the config documents; a dry run never opens them.
"""

from __future__ import annotations

import collections
import copy
import re
import subprocess

import jsonschema
import pytest
import yaml

from smk import PAPER, REPO, SNAKEMAKE, job_counts, make_standins, planned_jobs, smk
from tailstudy import study
from tailstudy.pipeline import Pipeline

SCHEMA = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())

# METHODS §6.1: CLIP groups C1-C10 and SL groups S1-S10, by the study that holds them.
CLIP_RUNS = {  # study -> CLIP runs
    "caption-scratch": 9,  # C1
    "caption-frozen": 9,  # C2
    "caption-init": 6,  # C3
    "laionet-threshold": 10,  # C4
    "laionet-scale": 24,  # C5: six fractions x {scratch, frozen CLIP, CLIP init, frozen RoBERTa}
    "in100": 2,  # C6
    "in100-extra": 2,  # C7
    "web-cls": 2,  # C8, C9
    "trimmed-tail": 24,  # C10
}
SL_RUNS = {
    "caption-scratch": 5,  # S1
    "caption-frozen": 5,  # S2
    "vocab-weighting": 16,  # S3
    "laionet-scale": 2,  # S4, S5
    "in100": 2,  # S7
    "in100-extra": 2,  # S8
    "web-cls": 2,  # S6
    "laionet-threshold": 2,  # S9
    "trimmed-tail": 36,  # S10
}
DINO_RUNS = {"dino-transfer": 6}  # D1-D6
TRANSFER_SETS = 12  # METHODS §1.4: 11 read locally, Birdsnap downloaded from its URL list


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load(PAPER.read_text())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, config):
    return make_standins(config, tmp_path_factory.mktemp("paper"))


def test_paper_config_is_valid_and_declares_the_grid(config):
    jsonschema.Draft202012Validator(SCHEMA).validate(config)
    study.check(config)
    table = study.expand(config)
    by = collections.Counter(
        (s, table.runs[r].objective) for s, rs in table.studies.items() for r in rs
    )
    assert {s: n for (s, o), n in by.items() if o == "clip"} == CLIP_RUNS
    assert {s: n for (s, o), n in by.items() if o == "sl"} == SL_RUNS
    assert {s: n for (s, o), n in by.items() if o == "dino"} == DINO_RUNS
    assert len(table.runs) == 166 >= 143 + 6  # no run is shared between studies
    assert all(cfg.arch == "RN50" and cfg.scale == "paper" for cfg in table.runs.values())
    # IN-Caps-100 and IN-Caps (10%) runs are evaluated on the ImageNet-100 classes
    evals = {cfg.variant: cfg.eval_dataset for cfg in table.runs.values()}
    assert evals["incaps100"] == evals["incaps10pct"] == "imagenet100-val"
    assert evals["incaps-full"] == evals["laionet-f1"] == "imagenet-val"
    # three seeds triple every run (the paper's "roughly 400" controlled runs)
    three = copy.deepcopy(config)
    three["seeds"] = [0, 1, 2]
    assert len(study.expand(three).runs) == 3 * 166
    # the frozen-RoBERTa runs: open_clip's HF tower over roberta-base
    lm = [c for c in table.runs.values() if c.recipe.text_tower == "frozen-lm"]
    assert len(lm) == 6 and all(c.text_source["hf_model"] == "roberta-base" for c in lm)
    assert {c.variant for c in lm} == {f"laionet-f{k}" for k in (1, 2, 4, 8, 16, 32)}
    # evaluation sets (§6.1): IN val, CLIP also IN-V2; IN-100 runs on IN-100 val only; E1
    evaluated = [c for c in table.runs.values() if c.objective != "dino"]  # DINO: probes
    sets = collections.Counter(tuple(study.eval_sets(config, c)) for c in evaluated)
    assert sets == {
        ("imagenet-val", "imagenet-v2"): 84 - 1,  # every CLIP run on 1000 classes but E1's
        ("imagenet-val",): 68 - 1,  # SL runs on 1000 classes but E1's
        ("imagenet100-val",): 2 + 2 + 2 + 2,  # C6, C7, S7, S8
        ("imagenet-val", "imagenet-v2", "imagenet100-val"): 1,  # E1: CLIP incaps-full frozen
        ("imagenet-val", "imagenet100-val"): 1,  # E1: SL incaps-full frozen head
    }
    # D2-D6: prototypes and subset sizes of METHODS §6.1; the vanilla-65536 runs freeze the
    # prototypes for their first epoch (§8.15)
    dino = {
        (c.variant, c.factors["prototypes"], c.factors["sample_num"]): c.recipe.dino
        for c in table.runs.values()
        if c.objective == "dino"
    }
    assert sorted(dino) == sorted(
        [("imagenet-train", 65536, 65536), ("laionet-f1", 65536, 65536)]
        + [("laionet-f1", 16384, 16384)]
        + [("laionet-f1", 65536, k) for k in (1024, 4096, 16384)]
    )
    assert {k: d.get("freeze_last_layer") for k, d in dino.items()}[
        ("laionet-f1", 65536, 65536)
    ] == 1
    assert dino[("laionet-f1", 65536, 4096)]["freeze_last_layer"] == 0


def test_paper_dry_run_plans_every_job(workdir):
    res = smk(workdir, "-n", "all", configfile=PAPER, replace=True)
    counts = job_counts(res.stdout)
    assert counts["train_model"] == counts["write_run_config"] == 166
    assert counts["evaluate_run"] == 160 + 84 + 2  # + ImageNetV2 of CLIP runs, + E1; DINO: probes
    assert counts["collect_study"] == 10 and counts["collect_probes"] == 1
    assert counts["probe_features"] == 6  # once per DINO run
    assert counts["linear_probe"] == 6 * TRANSFER_SETS
    assert counts["render_figure"] == 20
    assert counts["compare_to_paper"] == 1
    assert counts["build_variant"] == 38
    # the data rules: 4 local image sets; LAIONet per metadata part; -Cls per caption file; the
    # four downloaded sets (16 URL slices each by default)
    assert counts["build_local_dataset"] == 5 + TRANSFER_SETS - 1  # all but Birdsnap
    assert counts["laionet_label"] == counts["laionet_similarity"] == 32
    assert counts["laionet_lemmas"] == counts["laionet_filter"] == 1
    assert counts["cls_match"] == counts["cls_urls"] == 2
    assert counts["birdsnap_urls"] == 1
    assert counts["download_manifest"] == counts["build_downloaded_dataset"] == 4
    assert counts["download_shard"] == 4 * 16


def test_dino_jobs_ask_for_their_gpus(workdir, config):
    """Fig. 10 plans D1-D6 on 8 GPUs each, one feature job per run on one GPU, and the 6 × 11
    linear probes on the CPU."""
    res = smk(
        workdir, "-n", "results/figures/fig10-dino-transfer.pdf", configfile=PAPER, replace=True
    )
    blocks = res.stdout.split("\nrule ")[1:]

    def gpus(rule):
        found = [b for b in blocks if b.startswith(f"{rule}:")]
        return [int(m.group(1)) if (m := re.search(r"\bgpu=(\d+)", b)) else 0 for b in found]

    assert planned_jobs(res.stdout, "train_model") == set(
        study.expand(config).studies["dino-transfer"]
    )
    assert gpus("train_model") == [8] * 6
    assert gpus("probe_features") == [1] * 6
    assert gpus("linear_probe") == [0] * 6 * TRANSFER_SETS
    assert "evaluate_run" not in job_counts(res.stdout)


def test_fig11bc_plan_their_runs_and_feed_the_comparison(workdir, config):
    res = smk(
        workdir, "-n", "results/figures/fig11c-pearson-spearman.pdf", configfile=PAPER, replace=True
    )
    # the figure reads its study's table, so the study's four runs (C8, S6) are trained
    assert planned_jobs(res.stdout, "train_model") == set(study.expand(config).studies["web-cls"])
    spec = Pipeline(config).compare_spec()
    assert spec["figures"]["Fig. 11b"] == "figures/fig11b-pearson-spearman.csv"
    assert spec["figures"]["Fig. 11c"] == "figures/fig11c-pearson-spearman.csv"
    assert spec["scale"] == "paper" and "incaps-trim5-ceil1" in spec["variants"]


def test_one_figure_plans_only_its_runs(workdir, config):
    res = smk(
        workdir, "-n", "results/figures/fig03-descriptiveness.pdf", configfile=PAPER, replace=True
    )
    expected = set(study.expand(config).studies["caption-scratch"])
    assert planned_jobs(res.stdout, "train_model") == expected
    assert len(expected) == 14
    res = smk(workdir, "-n", "results/figures/fig05-scale.pdf", configfile=PAPER, replace=True)
    expected = set(study.expand(config).studies["laionet-scale"])
    assert planned_jobs(res.stdout, "train_model") == expected and len(expected) == 26
    # each run on its evaluation sets: the CLIP ones also on ImageNetV2 (their study table's columns)
    assert job_counts(res.stdout)["evaluate_run"] == 26 + 24


@pytest.mark.slow
def test_editing_one_recipe_value_reruns_only_its_runs(tmp_path, config):
    """Every output of the paper study marked up to date; sl-k50's lr changed: only its run
    (and the table and figure it feeds) is planned again."""
    workdir = make_standins(config, tmp_path)
    smk(
        workdir,
        "-c1",
        "--until",
        "write_run_config",
        "write_spec",
        "--quiet",
        configfile=PAPER,
        replace=True,
    )
    summary = smk(workdir, "--summary", configfile=PAPER, replace=True).stdout.splitlines()[1:]
    for line in summary:  # placeholders for every output, then --touch orders their mtimes
        path = workdir / line.split("\t")[0]
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    smk(workdir, "-c1", "--touch", "--quiet", configfile=PAPER, replace=True)
    assert "Nothing to be done" in smk(workdir, "-n", configfile=PAPER, replace=True).stdout
    changed = copy.deepcopy(config)
    changed["recipes"]["sl-k50"]["lr"] = 0.05
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(changed, sort_keys=False))
    out = smk(workdir, "-n", configfile=path, replace=True).stdout
    assert planned_jobs(out, "train_model") == {"incaps-full_sl_sl-k50_s0"}
    counts = job_counts(out)
    assert counts["write_run_config"] == counts["evaluate_run"] == 1
    # the figures reading caption-scratch: Figs. 3, 11a, and 4b (its IN-Caps reference point)
    assert counts["collect_study"] == 1 and counts["render_figure"] == 3


def test_slurm_profile_selects_the_paper_config(workdir, config):
    """`snakemake --profile profiles/slurm` from the repository root plans the paper-scale
    study (its configfile), each training job asking SLURM for the recipe's 4 GPUs."""
    target = "results/figures/fig03-descriptiveness.pdf"
    cmd = [*SNAKEMAKE, "--profile", "profiles/slurm", "--directory", str(workdir), "-n", target]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert planned_jobs(res.stdout, "train_model") == set(
        study.expand(config).studies["caption-scratch"]
    )
    train = [b for b in res.stdout.split("\nrule ")[1:] if b.startswith("train_model:")]
    assert train and all(re.search(r"resources: .*\bgpu=4\b", b) for b in train)


def test_paper_configfile_replaces_the_embedded_one_without_the_flag(workdir):
    """`snakemake --configfile workflow/configs/paper.yaml` where config.yaml is found (the
    repository root, and the cluster jobs, which Snakemake starts without
    --replace-workflow-config) plans the paper study, not the two merged."""
    (workdir / "config.yaml").write_text((REPO / "config.yaml").read_text())
    try:
        merged = smk(workdir, "-n", "--quiet", "rules", configfile=PAPER)
        replaced = smk(workdir, "-n", "--quiet", "rules", configfile=PAPER, replace=True)
    finally:
        (workdir / "config.yaml").unlink()
    assert "config: scale paper from --configfile replaces config.yaml" in merged.stdout
    assert job_counts(merged.stdout) == job_counts(replaced.stdout)
    assert job_counts(merged.stdout)["train_model"] > 0
