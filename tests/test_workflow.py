"""The Snakemake workflow: lint, DAG shape, targets, rerun semantics, config errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smk import REPO, SNAKEMAKE, job_counts, planned_jobs, smk


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


def test_lint_and_format_are_clean(workdir):
    res = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    snakefmt = str(Path(sys.executable).parent / "snakefmt")
    fmt = subprocess.run(
        [snakefmt, "--check", "Snakefile", "workflow/"], cwd=REPO, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stderr


def test_dry_run_job_counts_for_the_embedded_config(workdir):
    out = smk(workdir, "-n", "--quiet", "rules").stdout
    assert job_counts(out) == {
        # 14 + 14 + 15 runs, 5 shared, + the pre-training run; 7 DINO runs (1 + 2 arms x 3 seeds);
        # the scale study: 4 fractions x 4 text towers, 2 x 2 more seeds, SL and frozen SL
        "write_run_config": 39 + 7 + 22,
        "write_spec": 39,  # 6 datasets, 17 variants, 14 figures, claims, the paper comparison
        "build_dataset": 6,  # incaps, val, pretrain, web, the 2 transfer tasks
        "build_variant": 17,  # 9 caption variants, pretrain, web-cls and its 5 fractions, incaps-f4
        "train_model": 39 + 7 + 22,
        "evaluate_run": 38 + 22,  # the pre-training run is a dependency, not a study run; DINO runs
        "probe_features": 7,  # are probed instead: features once per run,
        "linear_probe": 7 * 2,  # one probe per (run, transfer task)
        "collect_study": 4,
        "collect_probes": 1,
        "wordnet": 1,
        "count_shard": 6,  # web, pretrain, incaps captions x imagenet, imagenet100
        "merge_counts": 6,
        "render_figure": 14,
        "check_claims": 1,
        "compare_to_paper": 1,
        "all_figures": 1,
    }


def test_frequency_figures_need_no_training(workdir):
    out = smk(workdir, "-n", "results/figures/fig13-corpus-correlation.pdf", "--quiet", "rules")
    counts = job_counts(out.stdout)
    assert counts["count_shard"] == 6 and counts["merge_counts"] == 6
    assert "train_model" not in counts and "evaluate_run" not in counts
    assert counts["build_dataset"] == 3  # web, pretrain, and incaps for the caption variant


def test_one_figure_target_pulls_only_its_study_runs(workdir):
    out = smk(workdir, "-n", "results/figures/fig11a-pearson-spearman.pdf").stdout
    runs = planned_jobs(out, "train_model")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    from tailstudy import study

    expected = set(study.expand(config).studies["caption-scratch"])
    assert runs == expected and len(runs) == 14
    assert not any("frozen" in r or "pretrain" in r for r in runs)
    out19 = smk(workdir, "-n", "results/figures/fig19-frozen-heads.pdf").stdout
    runs19 = planned_jobs(out19, "train_model")
    assert "pretrain_clip_clip-pretrain_s0" in runs19 and len(runs19) == 15


def test_changing_one_recipe_value_reruns_exactly_its_runs(workdir):
    """Mark every output up to date, change sl-k5's lr: only sl-k5 runs (and what they feed) rerun."""
    smk(workdir, "-c1", "--until", "write_run_config", "write_spec", "--quiet")
    summary = smk(workdir, "--summary").stdout.splitlines()[1:]
    for line in summary:  # placeholders for every output, then --touch orders their mtimes
        path = workdir / line.split("\t")[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    smk(workdir, "-c1", "--touch", "--quiet")
    assert "Nothing to be done" in smk(workdir, "-n").stdout
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["recipes"]["sl-k5"]["lr"] = 0.02
    changed = workdir / "changed.yaml"
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    out = smk(workdir, "-n", configfile=changed).stdout
    assert planned_jobs(out, "train_model") == {f"incaps-full_sl_sl-k5_s{s}" for s in range(3)}
    counts = job_counts(out)
    assert counts["write_run_config"] == 3 and counts["evaluate_run"] == 3
    assert counts["collect_study"] == 2  # caption-scratch and claims-scratch
    assert counts["render_figure"] == 2  # Figs. 3 and 11a; Fig. 19 is untouched
    assert "build_dataset" not in counts and "write_spec" not in counts
    # a change in a parent recipe reaches every recipe extending it
    config["recipes"]["sl-k5"]["lr"] = 0.05
    config["recipes"]["sl"]["momentum"] = 0.8
    changed.write_text(yaml.safe_dump(config, sort_keys=False))
    runs = planned_jobs(smk(workdir, "-n", configfile=changed).stdout, "train_model")
    # 14 on IN-Caps (Figs. 3, 19, claims) and SL and frozen SL of the scale study
    assert runs and all("_sl_" in r for r in runs) and len(runs) == 16


def test_paper_variant_kinds_are_wired_into_the_dag(workdir):
    """A =freq variant with a supplement, a class subset evaluated on its own set: the jobs get
    the datasets, counts and label spaces they need (dry run, commands printed)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    wnids = ["n01558993", "n01692333", "n01729322"]  # three of the embedded classes
    config["variants"].update(
        {
            "web-eqfreq": {
                "dataset": "web",
                "match": {"counts_of": {"variant": "incaps-full"}, "supplement": "pretrain"},
            },
            "incaps-sub": {
                "dataset": "incaps",
                "captions": {"fields": ["title"]},
                "classes": {"wnids": wnids},
                "evaluation": {"dataset": "incaps"},
            },
        }
    )
    config["studies"] = {
        "s": {
            "variant": ["web-eqfreq", "incaps-sub"],
            "model": ["sl"],
            "recipe": ["sl"],
            "seed": [0],
        }
    }
    config["figures"] = {k: v for k, v in config["figures"].items() if "studies" not in v}
    config["figures"]["f"] = {
        "plot": "descriptiveness",
        "studies": ["s"],
        "paper_label": "F",
        "caption": "c",
    }
    config["claims"] = []
    path = workdir / "kinds.yaml"
    path.write_text(yaml.safe_dump(config))
    out = smk(workdir, "-n", "-p", "results/figures/f.pdf", configfile=path).stdout
    cmds = [line.split("Shell command: ")[-1] for line in out.splitlines() if "python -m" in line]
    assert any(
        "variant --spec results/specs/variants/web-eqfreq.json" in c
        and "--counts-of results/variants/incaps-full --supplement results/data/pretrain" in c
        for c in cmds
    )
    train = [c for c in cmds if "train --config results/runs/web-eqfreq_sl_sl_s0" in c]
    assert len(train) == 1 and "--classes results/variants/web-eqfreq/classes.tsv" in train[0]
    assert (
        "$(dirname results/data/web/manifest.json results/data/pretrain/manifest.json)" in train[0]
    )
    ev = [c for c in cmds if "evaluate --config results/runs/incaps-sub_sl_sl_s0" in c]
    assert "$(dirname results/data/incaps/manifest.json)" in ev[0]
    assert "--train-classes results/variants/incaps-sub/classes.tsv" in ev[0]
    ev_web = [c for c in cmds if "evaluate --config results/runs/web-eqfreq_sl_sl_s0" in c]
    assert "$(dirname results/data/val/manifest.json)" in ev_web[0]  # the global set


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda c: c["recipes"]["clip"].update(epoch=3),
            "config error at recipes.clip: Additional",
        ),
        (
            lambda c: c["studies"]["caption-scratch"][0]["variant"].append("incaps-nope"),
            "config error: study caption-scratch names unknown variant 'incaps-nope'",
        ),
        (
            lambda c: c["recipes"]["clip"].update(epochs="six"),
            "config error at recipes.clip.epochs: 'six' is not of type 'integer'",
        ),
        (
            lambda c: c["figures"]["fig13-corpus-correlation"]["corpora"].append("laion9b"),
            "config error: figure fig13-corpus-correlation names unknown corpus 'laion9b'",
        ),
        (
            lambda c: c["frequency"]["concept_sets"].update(cub={}),
            "config error: concept set cub needs class_names",
        ),
        (
            lambda c: c["variants"]["web-cls-f2"].update(trim={"tail": 5, "ceil": 0}),
            "config error: variant web-cls-f2 combines sample and trim",
        ),
        (
            lambda c: c["variants"]["web-cls"].update(evaluation={"dataset": "in100-val"}),
            "config error: variant web-cls: evaluation.dataset 'in100-val' is not a declared",
        ),
        (
            lambda c: c["variants"]["web-cls"].update(threshold={"min_similarity": 0.7}),
            "config error at variants.web-cls.threshold: 'n' is a required property",
        ),
    ],
)
def test_malformed_configs_fail_before_any_job(workdir, mutate, message):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    mutate(config)
    bad = workdir / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    # a quick local target: were the config accepted, the run table would be written
    res = smk(workdir, "-c1", "results/run_table.tsv", configfile=bad, check=False)
    assert res.returncode != 0
    assert message in res.stdout + res.stderr
    assert not (workdir / "results").exists()  # nothing ran


def test_a_corpus_without_files_stops_only_the_jobs_that_read_it(workdir):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["frequency"]["corpora"]["yfcc"] = {
        "label": "YFCC",
        "captions": ["/x/*.parquet"],
        "column": "c",
    }
    config["figures"]["fig13-corpus-correlation"]["corpora"].append("yfcc")
    cfg = workdir / "nofiles.yaml"
    cfg.write_text(yaml.safe_dump(config))
    ok = smk(workdir, "-n", "results/figures/fig03-descriptiveness.pdf", configfile=cfg)
    assert ok.returncode == 0
    res = smk(
        workdir, "-n", "results/figures/fig13-corpus-correlation.pdf", configfile=cfg, check=False
    )
    assert res.returncode != 0
    assert "config error: corpus yfcc: no caption shard matches '/x/*.parquet'" in (
        res.stdout + res.stderr
    )


def test_results_readme_is_the_only_tracked_result():
    tracked = subprocess.run(
        ["git", "ls-files", "results"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    assert tracked == ["results/README.md"]


def _freq_only_config(workdir: Path) -> Path:
    """The embedded config plus one captions corpus of ``shards``, drawn by one figure."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["frequency"]["corpora"]["local"] = {
        "label": "Local",
        "captions": [str(workdir / "meta" / "*.parquet")],
        "column": "TEXT",
    }
    config["figures"] = {
        "tail": {
            "plot": "tail-classes",
            "paper_label": "T",
            "caption": "c",
            "corpora": ["local"],
            "concept_sets": ["imagenet100"],
        }
    }
    config["claims"] = []
    path = workdir / "freq.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_caption_shards_are_counted_one_job_each_and_recounted_alone(workdir):
    import pandas as pd

    meta = workdir / "meta"
    meta.mkdir()
    texts = [
        ["two geese near a robin", "a robin", None],
        ["Robin!", "a coyote on a rock", "nothing here"],
    ]
    for i, t in enumerate(texts):
        pd.DataFrame({"TEXT": t, "url": "x"}).to_parquet(meta / f"part-{i:05d}.parquet")
    cfg = _freq_only_config(workdir)
    smk(workdir, "-c2", "results/freq/local/imagenet100_ori.tsv", "--quiet", configfile=cfg)
    table = dict(
        line.split("\t")
        for line in (workdir / "results/freq/local/imagenet100_ori.tsv").read_text().splitlines()
    )
    assert table["American robin"] == "3" and table["coyote"] == "1" and table["goose"] == "1"
    assert sum(map(int, table.values())) == 5
    # a new version of one shard recounts only that shard
    pd.DataFrame({"TEXT": ["a robin", "a robin"]}).to_parquet(meta / "part-00001.parquet")
    out = smk(workdir, "-n", "results/freq/local/imagenet100_ori.tsv", configfile=cfg).stdout
    assert re.findall(r"wildcards: .*shard=(\S+)", out) == ["part-00001"]
    smk(workdir, "-c2", "results/freq/local/imagenet100_ori.tsv", "--quiet", configfile=cfg)
    table = dict(
        line.split("\t")
        for line in (workdir / "results/freq/local/imagenet100_ori.tsv").read_text().splitlines()
    )
    assert table["American robin"] == "4" and table["coyote"] == "0" and table["goose"] == "1"
    # the sorted twin, and the figure drawn from it
    first = (workdir / "results/freq/local/imagenet100.tsv").read_text().splitlines()[0]
    assert first == "American robin\t4"
    smk(workdir, "-c1", "results/figures/tail.pdf", "--quiet", configfile=cfg)
    tail = pd.read_csv(workdir / "results/figures/tail.csv")
    assert len(tail) == 100 and tail["count"].tolist()[:2] == [4, 1]  # all below 10, descending
