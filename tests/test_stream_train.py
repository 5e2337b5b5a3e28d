"""Training and evaluation through the streaming path (splits over ``in_memory_max_mb``): the
workflow's command lines ask for it from the config, a run trains and evaluates end to end, a
killed run resumes bit-identical, two gloo ranks train, and bad shards or absent keys stop the
job with one line before training."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from runs import make_dataset, run_config
from tailstudy.data.format import read_index, write_index
from tailstudy.data.loader import InMemorySet, open_eval_split, open_split
from tailstudy.data.stream import StreamedSplit
from tailstudy.data.variants import build_variant
from tailstudy.io import UserError
from tailstudy.pipeline import Pipeline
from tailstudy.study import expand

REPO = Path(__file__).resolve().parents[1]
GLOO2 = {"processes": 2, "backend": "gloo"}
STREAM = ["--in-memory-max-mb", "0"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stream-train")
    ds = make_dataset(tmp / "tiny")
    build_variant(ds, {"dataset": "tiny"}, tmp / "v", "v")
    return tmp, ds, tmp / "v" / "index.parquet"


def _train(ds, index, cfg_path, out, *extra, threads="1"):
    return [
        *(sys.executable, "-m", "tailstudy", "train", "--config", str(cfg_path)),
        *("--dataset", str(ds), "--index", str(index), "--out", str(out)),
        *("--ckpt-dir", str(out / "ckpt"), "--threads", threads, "--device", "cpu", *extra),
    ]


def _write(tmp, cfg, name):
    path = tmp / f"{name}.json"
    path.write_text(cfg.to_json())
    return path


def _weights(out):
    return torch.load(out / "model.pt", weights_only=True)["model"]


def _losses(out):
    return [json.loads(x)["loss"] for x in (out / "train_log.jsonl").read_text().splitlines()]


def test_the_config_limit_reaches_train_and_evaluate_of_the_embedded_study():
    """The embedded study's runs are told the config's limit and worker count (CPU runs: no
    workers); a limit of 0 sends every split down the streaming path."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    run = next(iter(expand(config).runs))
    default = Pipeline(config).loader_args(run)
    assert default == "--in-memory-max-mb 2048 --workers 0"
    config["resources"] = {**(config.get("resources") or {}), "in_memory_max_mb": 0}
    assert Pipeline(config).loader_args(run) == "--in-memory-max-mb 0 --workers 0"


def _cli(*args):
    res = subprocess.run(
        [sys.executable, "-m", "tailstudy", *map(str, args)], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def test_the_embedded_world_trains_and_evaluates_through_the_streaming_path(tmp_path):
    """The embedded config with ``in_memory_max_mb: 0`` (and a smaller incaps): its dataset and
    variant built as the workflow builds them, then one of its CLIP runs trained and evaluated
    with the command-line options the workflow gives it."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["resources"] = {**(config.get("resources") or {}), "in_memory_max_mb": 0}
    config["datasets"]["incaps"]["profile"]["n"] = 300
    p = Pipeline(config)
    run = "incaps-full_clip_clip_s0"
    cfg = p.run(run)
    loader = p.loader_args(run).split()
    ds, var = tmp_path / "incaps", tmp_path / "incaps-full"
    (tmp_path / "ds.json").write_text(p.spec_json("datasets", "incaps"))
    (tmp_path / "var.json").write_text(p.spec_json("variants", "incaps-full"))
    _cli("dataset", "--spec", tmp_path / "ds.json", "--out", ds)
    _cli("variant", "--spec", tmp_path / "var.json", "--dataset", ds, "--out", var)
    (tmp_path / "config.json").write_text(p.run_config_json(run))
    out = tmp_path / "run"
    res = _cli(
        *("train", "--config", tmp_path / "config.json", "--dataset", ds),
        *("--index", var / "index.parquet", "--classes", var / "classes.tsv", "--out", out),
        *("--ckpt-dir", out / "ckpt", "--threads", "1", "--device", "cpu", *loader),
    )
    rows = len(read_index(var / "index.parquet"))
    assert f"streaming {rows} rows from the shards with 0 loader worker(s)" in res.stderr
    assert len(_losses(out)) == cfg.recipe.epochs
    ev = tmp_path / "eval"
    _cli(
        *("evaluate", "--config", tmp_path / "config.json", "--model", out / "model.pt"),
        *("--dataset", ds, "--train-counts", var / "counts.tsv", "--out", ev),
        *("--device", "cpu", "--threads", "1", *loader),
    )
    summary = json.loads((ev / "summary.json").read_text())
    assert 0.0 <= summary["top1"] <= 1.0


def test_open_split_chooses_the_path_by_decoded_size(tiny):
    _, ds, index = tiny
    # 78 rows of 32² RGB: 0.23 MiB decoded
    small = open_split(ds, index, objective="sl", in_memory_max_mb=1, progress=False)
    big = open_split(ds, index, objective="sl", in_memory_max_mb=0.1, workers=0, progress=False)
    assert isinstance(small, InMemorySet) and isinstance(big, StreamedSplit)
    assert torch.equal(small.labels, big.labels) and list(small.captions) == big.captions[:]
    assert big.image_size == small.image_size == 32
    ev = open_eval_split(ds, objective="clip", in_memory_max_mb=0, workers=0)
    x, y = next(ev.eval_batches(16))
    assert x.shape == (16, 3, 32, 32) and torch.equal(y, small.labels[:16])


@pytest.mark.parametrize("objective", ["clip", "sl"])
def test_a_streamed_run_trains_and_evaluates_end_to_end(tiny, objective):
    tmp, ds, index = tiny
    cfg = run_config(objective, name="stream")
    cfg_path, out = _write(tmp, cfg, f"e2e-{objective}"), tmp / f"e2e-{objective}"
    res = subprocess.run(
        _train(ds, index, cfg_path, out, *STREAM, "--workers", "2"), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "streaming 78 rows from the shards with 2 loader worker(s)" in res.stderr
    losses = _losses(out)
    assert len(losses) == cfg.recipe.epochs and all(map(torch.isfinite, torch.tensor(losses)))
    ev = tmp / f"eval-{objective}"
    res = subprocess.run(
        [
            *(sys.executable, "-m", "tailstudy", "evaluate", "--config", str(cfg_path)),
            *("--model", str(out / "model.pt"), "--dataset", str(ds)),
            *("--train-counts", str(tmp / "v" / "counts.tsv"), "--out", str(ev)),
            *("--device", "cpu", "--threads", "1", *STREAM, "--workers", "1"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((ev / "summary.json").read_text())
    assert 0.0 <= summary["top1"] <= 1.0
    assert (ev / "per_class.csv").exists() or any(ev.iterdir())


def test_streamed_run_killed_and_rerun_ends_identical(tiny):
    """SIGKILL mid-training through the streaming path; the rerun (with another number of loader
    workers: the crops are seeded per row) ends bit-identical to the uninterrupted run."""
    tmp, ds, index = tiny
    cfg = run_config("sl", epochs=6, batch_size=8, vocab_size=3, vocab_group=4, ckpt_every_steps=3)
    cfg_path, ref = _write(tmp, cfg, "kill"), tmp / "kill-ref"
    subprocess.run(_train(ds, index, cfg_path, ref, *STREAM, "--workers", "0"), check=True)
    out = tmp / "kill-out"
    cmd = _train(ds, index, cfg_path, out, *STREAM, "--workers", "2")
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL, start_new_session=True)
    ckpt = out / "ckpt" / "latest.pt"
    deadline = time.time() + 180
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail("training finished before it could be killed; make the run longer")
    os.killpg(proc.pid, signal.SIGKILL)  # the trainer and its loader workers
    proc.wait()
    assert not (out / "model.pt").exists()
    step = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < step < 60
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed from {ckpt} at step {step}" in res.stderr
    a, b = _weights(ref), _weights(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _losses(ref) == _losses(out)


def test_two_gloo_ranks_stream_their_shares(tiny):
    tmp, ds, index = tiny
    cfg = run_config("clip", name="ddp", distributed=GLOO2)
    cfg_path, out = _write(tmp, cfg, "ddp"), tmp / "ddp"
    res = subprocess.run(
        _train(ds, index, cfg_path, out, *STREAM, "--workers", "1", threads="2"),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "launching 2 training processes (gloo backend" in res.stderr
    assert "streaming 78 rows from the shards" in res.stderr
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    # 78 rows over 2 ranks, local batch 8, CLIP drops the tail: 4 steps an epoch
    assert [x["step"] for x in log] == [4, 8]
    assert all(torch.isfinite(torch.tensor(x["loss"])) for x in log)


def _one_line_error(res) -> str:
    assert res.returncode == 2, res.stderr[-3000:]
    lines = [x for x in res.stderr.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, res.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_bad_shard_fails_with_one_line_naming_shard_and_variant(tmp_path, damage):
    ds = make_dataset(tmp_path / "tiny")
    build_variant(ds, {"dataset": "tiny"}, tmp_path / "v", "v")
    shard = sorted((ds / "shards").iterdir())[1]
    if damage == "missing":
        shard.unlink()
    else:
        shard.write_bytes(shard.read_bytes()[:3000])  # truncated mid-image
    cfg_path, out = _write(tmp_path, run_config("clip"), "bad"), tmp_path / "out"
    res = subprocess.run(
        _train(ds, tmp_path / "v" / "index.parquet", cfg_path, out, *STREAM, "--workers", "0"),
        capture_output=True,
        text=True,
    )
    line = _one_line_error(res)
    assert str(shard) in line and "variant v" in line
    assert not (out / "ckpt").exists() and not (out / "model.pt").exists()


def test_variant_keys_in_no_shard_are_reported_before_training(tmp_path):
    ds = make_dataset(tmp_path / "tiny")
    build_variant(ds, {"dataset": "tiny"}, tmp_path / "v", "v")
    index = read_index(tmp_path / "v" / "index.parquet")
    ghost = index.iloc[:2].assign(key=["ghost0001", "ghost0002"])
    write_index(tmp_path / "v" / "index.parquet", pd.concat([index, ghost], ignore_index=True))
    with pytest.raises(UserError, match=r"variant v: 2 of its 80 keys are in no shard"):
        open_split(ds, tmp_path / "v" / "index.parquet", objective="sl", in_memory_max_mb=0)
    cfg_path, out = _write(tmp_path, run_config("sl"), "ghost"), tmp_path / "out"
    res = subprocess.run(
        _train(ds, tmp_path / "v" / "index.parquet", cfg_path, out, *STREAM),
        capture_output=True,
        text=True,
    )
    line = _one_line_error(res)
    assert "ghost0001" in line and "in no shard" in line
    assert "epoch" not in res.stderr and not (out / "ckpt").exists()


def test_streamed_dino_cuts_the_same_crops_and_trains(tiny, tmp_path):
    """DINO over a split too large for memory: the workers decode each batch's images as the
    in-memory path holds them, so its multi-crop (in the training process) cuts the same crops;
    a short run trains and exports its teacher."""
    from tailstudy.data.loader import Rows
    from tailstudy.train.loop import fit
    from tailstudy.train.objectives.dino import DINO
    from test_dino_objective import dino_config

    _, ds, index = tiny
    memory = open_split(ds, index, objective="dino", progress=False)
    streamed = open_split(ds, index, objective="dino", in_memory_max_mb=0, workers=0)
    assert isinstance(memory, InMemorySet) and isinstance(streamed, StreamedSplit)
    cfg = dino_config()
    rows = next(streamed.epoch(0, 0, batch_size=4, seed=0, drop_last=True))
    assert rows.images.dtype == torch.uint8 and rows.images.shape == (4, 32, 32, 3)
    assert torch.equal(rows.images, memory.images_at(rows.idx))
    obj = DINO(cfg, None, steps_per_epoch=2)
    torch.manual_seed(0)
    model = obj.build(["thing"], None)
    crops = []
    for data, batch_rows in ((memory, Rows(rows.idx)), (streamed, rows)):
        obj.setup(model, data, torch.device("cpu"))
        crops.append(obj.batch(data, batch_rows, torch.Generator().manual_seed(3))["crops"])
    assert all(torch.equal(a, b) for a, b in zip(*crops, strict=True))

    history = fit(cfg, streamed, tmp_path / "out", tmp_path / "ckpt", device="cpu")
    assert len(history) == 2 and (tmp_path / "out" / "model.pt").is_file()
