import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from tailstudy.config import Recipe, RunConfig
from tailstudy.data.loader import load_split
from tailstudy.data.variants import build_variant
from tailstudy.train.loop import fit


def run_config(objective="clip", **recipe):
    base = {"epochs": 2, "batch_size": 16, "warmup_steps": 2, "lr": 1e-3}
    if objective == "sl":
        base.update(optimizer="sgd", lr=0.05, weight_decay=1e-4, schedule="multistep")
    base.update(recipe)
    return RunConfig(
        run_id=f"tiny_{objective}_test_s0",
        scale="test",
        objective=objective,
        arch="RN-tiny",
        dataset="tiny",
        variant="tiny",
        seed=0,
        eval_dataset="tiny",
        eval_templates="openai80",
        recipe_name="test",
        recipe=Recipe(**base),
    )


def test_clip_fit_and_frozen_text_tower(tiny_dataset, tmp_path):
    data = load_split(tiny_dataset, progress=False)
    hist = fit(run_config("clip"), data, tmp_path / "a", tmp_path / "a" / "ckpt", device="cpu")
    assert len(hist) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert (tmp_path / "a" / "model.pt").exists() and not (tmp_path / "a" / "ckpt").exists()
    src = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    cfg = RunConfig.from_dict(
        {
            **run_config("clip", text_tower="frozen", text_encoder="x").to_dict(),
            "text_source": {"run": "a"},
        }  # fmt: skip
    )
    fit(cfg, data, tmp_path / "b", tmp_path / "b" / "ckpt", str(tmp_path / "a" / "model.pt"), "cpu")
    out = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    for k in ("token_embedding.weight", "text_projection", "transformer.resblocks.0.ln_1.weight"):
        assert torch.equal(out[k], src[k])  # frozen: unchanged
    assert not torch.equal(out["visual.conv1.weight"], src["visual.conv1.weight"])


def test_sl_fit_with_vocabulary_subsampling(tiny_dataset, tmp_path):
    data = load_split(tiny_dataset, progress=False)
    hist = fit(
        run_config("sl", vocab_size=2, vocab_group=4), data, tmp_path, tmp_path / "c", device="cpu"
    )
    assert len(hist) == 2
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["model"]["head"].shape == (6, 64)


def _train_cmd(tmp_path, ds, cfg_path, out):
    return [sys.executable, "-m", "tailstudy", "train", "--config", str(cfg_path), "--dataset",
            str(ds), "--index", str(tmp_path / "v" / "index.parquet"), "--out", str(out),
            "--ckpt-dir", str(out / "ckpt"), "--threads", "1", "--device", "cpu"]  # fmt: skip


def test_kill9_and_resume_gives_identical_results(tiny_dataset, tmp_path):
    """A run killed with SIGKILL mid-training and rerun ends bit-identical to an uninterrupted one."""
    build_variant(tiny_dataset, {"dataset": "tiny"}, tmp_path / "v", "v")
    cfg = run_config("sl", epochs=6, batch_size=8, vocab_size=3, vocab_group=4, ckpt_every_steps=3)
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(cfg.to_json())
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(tmp_path, tiny_dataset, cfg_path, ref), check=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(tmp_path, tiny_dataset, cfg_path, out), stderr=subprocess.PIPE
    )
    ckpt = out / "ckpt" / "latest.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    if proc.poll() is not None:
        pytest.fail("training finished before it could be killed; make the run longer")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (out / "model.pt").exists()
    step = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < step < 60
    res = subprocess.run(
        _train_cmd(tmp_path, tiny_dataset, cfg_path, out), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert f"resumed from {ckpt} at step {step}" in res.stderr
    a = torch.load(ref / "model.pt", weights_only=True)["model"]
    b = torch.load(out / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x) for x in (ref / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in la] == [x["loss"] for x in lb]


def test_stale_checkpoint_from_other_config_is_not_resumed(tiny_dataset, tmp_path, caplog):
    data = load_split(tiny_dataset, progress=False)
    cfg = run_config("sl", epochs=1)
    fit(cfg, data, tmp_path / "x", tmp_path / "ck", device="cpu", keep_ckpt=True)
    other = run_config("sl", epochs=2)
    with caplog.at_level("WARNING"):
        fit(other, data, tmp_path / "y", tmp_path / "ck", device="cpu")
    assert "different run config" in caplog.text


@pytest.mark.slow
def test_sigterm_checkpoints_at_the_step_and_resumes_identically(tiny_dataset, tmp_path):
    """SIGTERM (scancel, preemption, a time limit) mid-epoch: the run writes a checkpoint at
    that step, says so in one line and exits 143; a rerun resumes there, bit-identical."""
    from tailstudy import jobinfo

    build_variant(tiny_dataset, {"dataset": "tiny"}, tmp_path / "v", "v")
    cfg = run_config("sl", epochs=6, batch_size=8, vocab_size=3, vocab_group=4)  # 10 steps/epoch
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(cfg.to_json())
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(tmp_path, tiny_dataset, cfg_path, ref), check=True)
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        _train_cmd(tmp_path, tiny_dataset, cfg_path, out), stderr=subprocess.PIPE, text=True
    )
    ckpt = out / "ckpt" / "latest.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)  # the first epoch's checkpoint: training is under way
    time.sleep(0.3)
    if proc.poll() is not None:
        pytest.fail("training finished before it could be stopped; make the run longer")
    os.kill(proc.pid, signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(rf"stopped: run {cfg.run_id}: SIGTERM at step (\d+)/60; checkpoint "
                     rf"{re.escape(str(ckpt))} written, a rerun resumes from it", last)  # fmt: skip
    assert m, last
    step = int(m.group(1))
    assert 10 <= step < 60 and torch.load(ckpt, weights_only=False)["step"] == step
    assert not (out / "model.pt").exists()
    res = subprocess.run(
        _train_cmd(tmp_path, tiny_dataset, cfg_path, out), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert f"resumed from {ckpt} at step {step}/60" in res.stderr
    a = torch.load(ref / "model.pt", weights_only=True)["model"]
    b = torch.load(out / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x) for x in (ref / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in la] == [x["loss"] for x in lb]
    here = jobinfo.current()  # outside SLURM: slurm_job_id null; the host that trained
    assert all(x["slurm_job_id"] == here["slurm_job_id"] and x["host"] == here["host"]
               and x["device"] == "cpu" for x in la + lb)  # fmt: skip
