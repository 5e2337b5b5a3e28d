"""The data-acquisition rules in the DAG, and config errors of the real dataset kinds."""

from __future__ import annotations

import pytest
import yaml

from smk import REPO, job_counts, smk


def real_data_config(tmp_path, laion_parts=2, cls_files=1, url_shards=3, extra=None):
    """The embedded config plus one dataset of every real kind, its inputs as placeholders."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    src = tmp_path / "data"
    (src / "imagenet/train").mkdir(parents=True)
    (src / "imagenet/val").mkdir(parents=True)
    (src / "imagenet_captions.json").write_text("[]")
    laion = [src / f"laion/part-{i:05d}.parquet" for i in range(laion_parts)]
    cc = [src / f"cc/cc12m-{i}.tsv" for i in range(cls_files)]
    for f in laion + cc:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("")
    config["download"] = {"url_shards": url_shards, "processes": 2}
    config["datasets"].update(
        {
            "incaps-real": {
                "source": "imagenet-captions",
                "captions_json": str(src / "imagenet_captions.json"),
                "imagenet_train": str(src / "imagenet/train"),
            },
            "imagenet-val": {"source": "image-folder", "root": str(src / "imagenet/val")},
            "dtd": {"source": "transfer", "dataset": "dtd", "root": str(src / "imagenet/val")},
            "laionet": {
                "source": "laionet",
                "metadata": [str(f) for f in laion],
                "text_encoder": {"open_clip": "ViT-B-32", "pretrained": "openai"},
                "download": {"url_shards": 2},
            },
            "cc12m-cls": {
                "source": "cls",
                "metadata": [str(f) for f in cc],
                "header": False,
                "url_column": "0",
                "caption_column": "1",
            },
        }
    )
    for name, change in (extra or {}).items():
        config["datasets"][name].update(change)
    path = tmp_path / "real.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


REAL = ["incaps-real", "imagenet-val", "dtd", "laionet", "cc12m-cls"]


def test_real_datasets_dry_run_shows_every_acquisition_step(tmp_path):
    path, _ = real_data_config(tmp_path)
    targets = [f"results/data/{d}/manifest.json" for d in REAL]
    out = smk(tmp_path, "-n", *targets, "--quiet", "rules", configfile=path).stdout
    assert job_counts(out) == {
        "write_spec": 7,  # 5 dataset specs, 2 download settings
        "build_local_dataset": 3,
        "laionet_lemmas": 1,
        "laionet_label": 2,  # one job per metadata part
        "laionet_similarity": 2,
        "laionet_filter": 1,
        "cls_match": 1,
        "cls_urls": 1,
        "download_shard": 5,  # laionet: its own 2 slices; cc12m-cls: the shared 3
        "download_manifest": 2,
        "build_downloaded_dataset": 2,
    }
    full = smk(tmp_path, "-n", *targets, configfile=path).stdout
    assert "results/downloads/laionet/00001/stats.json" in full
    assert "results/sources/laionet/similarity/00001.parquet" in full
    assert "--part 00001" in full or "wildcards: dataset=laionet, part=00001" in full
    # the embedded datasets are untouched: same job for them as before
    emb = smk(
        tmp_path, "-n", "results/data/incaps/manifest.json", "--quiet", "rules", configfile=path
    ).stdout
    assert job_counts(emb) == {"write_spec": 1, "build_dataset": 1}


def test_download_settings_reach_the_job_spec(tmp_path):
    path, _ = real_data_config(tmp_path)
    smk(
        tmp_path,
        "-c1",
        "results/specs/downloads/laionet.json",
        "results/specs/datasets/laionet.json",
        configfile=path,
    )
    import json

    spec = json.loads((tmp_path / "results/specs/downloads/laionet.json").read_text())
    assert spec["download"]["url_shards"] == 2 and spec["download"]["processes"] == 2
    assert spec["download"]["image_size"] == 256 and spec["download"]["retries"] == 10
    ds = json.loads((tmp_path / "results/specs/datasets/laionet.json").read_text())
    assert "world" not in ds and ds["dataset"]["threshold"] == 0.7  # schema default filled in
    assert ds["dataset"]["nsfw_keep"] == ["UNLIKELY"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"laionet": {"text_encoder": {"open_clip": "ViT-B-32"}}},
            "config error at datasets.laionet.text_encoder",
        ),
        ({"imagenet-val": {"layout": "folders"}}, "config error at datasets.imagenet-val.layout"),
        (
            {"imagenet-val": {"source": "imagefolder"}},
            "config error at datasets.imagenet-val.source",
        ),
        ({"dtd": {"dataset": "birdsnap"}}, "config error at datasets.dtd.dataset"),
    ],
)
def test_malformed_real_dataset_configs_fail_before_any_job(tmp_path, extra, message):
    path, _ = real_data_config(tmp_path, extra=extra)
    res = smk(tmp_path, "-c1", "results/run_table.tsv", configfile=path, check=False)
    assert res.returncode != 0 and message in res.stdout + res.stderr
    assert not (tmp_path / "results").exists()
