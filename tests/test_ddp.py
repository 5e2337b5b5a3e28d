"""Distributed (DDP) training: recipe keys, the torchrun launch, and the paper's semantics.

Everything runs on CPU with the gloo backend and 2 processes: the gathered CLIP loss and its
gradients against the single-process loss on the whole batch, SL's vocabulary drawn per process
over its local batch, full 2-process runs through the command line, and resume after kill -9.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from runs import run_config as tiny_run_config
from tailstudy.config import Distributed, Recipe, RunConfig, recipe_from_dict
from tailstudy.data.loader import load_split
from tailstudy.data.variants import build_variant
from tailstudy.io import UserError
from tailstudy.train import distributed
from tailstudy.train.distributed import Ranks
from tailstudy.train.launch import launch_command
from tailstudy.train.loop import fit
from tailstudy.train.objectives.clip import clip_loss

REPO = Path(__file__).resolve().parents[1]
GLOO2 = {"processes": 2, "backend": "gloo"}


def run_config(objective="clip", **recipe):
    return tiny_run_config(objective, name="ddp", **recipe)


# ---- recipe keys and launch (no processes)


def test_distributed_recipe_keys_round_trip_and_one_line_errors():
    r = recipe_from_dict({"batch_size": 1024, "gpus": 4, "distributed": {"processes": 4}}, "p")
    assert r.distributed == Distributed(processes=4, backend="nccl")
    assert (r.processes, r.local_batch_size) == (4, 256)
    assert Recipe().distributed is None and Recipe().processes == 1 and Recipe().gpus == 0
    cfg = run_config("sl", distributed=GLOO2)
    again = RunConfig.from_dict(json.loads(cfg.to_json()))
    assert again == cfg and again.recipe.distributed == Distributed(2, "gloo")
    bad = {
        "does not split evenly": {
            "batch_size": 10,
            "distributed": {"processes": 4, "backend": "gloo"},
        },
        "set gpus: 2": {"distributed": {"processes": 2}},
        "backend 'mpi' is unknown": {"distributed": {"processes": 2, "backend": "mpi"}},
        "unknown key": {"distributed": {"processes": 2, "nodes": 2}},
        "at least 1": {"distributed": {"processes": 0, "backend": "gloo"}},
    }
    for message, d in bad.items():
        with pytest.raises(UserError, match=message) as e:
            recipe_from_dict(d, "x")
        assert "\n" not in str(e.value) and str(e.value).startswith("recipe x")


def test_schema_accepts_distributed_recipes():
    import jsonschema

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    recipe = schema["properties"]["recipes"]["additionalProperties"]
    ok = {"gpus": 4, "distributed": {"processes": 4, "backend": "nccl"}}
    jsonschema.Draft202012Validator(recipe).validate(ok)
    for wrong in (
        {"distributed": {"backend": "gloo"}},
        {"distributed": {"processes": 2, "x": 1}},
        {"gpus": -1},
        {"distributed": {"processes": 2, "backend": "tcp"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.Draft202012Validator(recipe).validate(wrong)


def test_launch_command_is_torchrun_standalone():
    cmd = launch_command(Distributed(4), ["--config", "c.json"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[3:] == [
        "--standalone",
        "--nproc_per_node",
        "4",
        "-m",
        "tailstudy",
        "train",
        "--config",
        "c.json",
        "--worker",
    ]


def test_ranks_never_guess_from_environment(monkeypatch, tmp_path):
    from tailstudy.cli import main

    for k in distributed.LAUNCHER_ENV:
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(UserError, match="missing RANK"):
        distributed.init_from_launcher(Distributed(2, "gloo"), "cpu")
    env = {
        "RANK": "0",
        "WORLD_SIZE": "3",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "x",
        "MASTER_PORT": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(
        UserError, match="asks for distributed.processes 2 but the launcher started 3"
    ):
        distributed.init_from_launcher(Distributed(2, "gloo"), "cpu")
    cfg = tmp_path / "c.json"
    cfg.write_text(run_config("clip").to_json())
    args = [
        "train",
        "--config",
        str(cfg),
        "--dataset",
        "d",
        "--index",
        "i",
        "--out",
        "o",
        "--ckpt-dir",
        "k",
        "--worker",
    ]
    assert main(args) == 2  # a single-process run config is never run as a rank
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="nccl needs one CUDA device per process"):
            distributed.resolve_rank_device("auto", 0, "nccl")
    assert distributed.resolve_rank_device("cpu", 1, "gloo") == torch.device("cpu")


def test_fit_refuses_a_distributed_recipe_without_its_processes(tiny_dataset, tmp_path):
    data = load_split(tiny_dataset, progress=False)
    with pytest.raises(UserError, match="trains in 2 processes"):
        fit(run_config("clip", distributed=GLOO2), data, tmp_path, tmp_path / "k", device="cpu")


@pytest.mark.parametrize("drop_last", [True, False])
def test_epoch_indices_split_the_data_like_distributed_sampler(drop_last):
    n, world = 23, 2
    parts = [distributed.epoch_indices(n, Ranks(r, world, r), 0, 3, drop_last) for r in range(2)]
    per = distributed.samples_per_rank(n, world, drop_last)
    assert all(len(p) == per for p in parts)
    both = torch.cat(parts).tolist()
    if drop_last:
        assert len(set(both)) == len(both) == 22  # disjoint, the odd sample dropped
    else:
        assert set(both) == set(range(n)) and len(both) == 24  # padded by one repeat
    same = distributed.epoch_indices(n, Ranks(0, world, 0), 0, 3, drop_last)
    other = distributed.epoch_indices(n, Ranks(0, world, 0), 0, 4, drop_last)
    assert torch.equal(same, parts[0]) and not torch.equal(other, parts[0])


# ---- 2 gloo processes in-process (torch.multiprocessing), one spawn for all checks

B = 8  # global batch of the gradient checks


def _clip_inputs():
    from tailstudy.models import factory

    g = torch.Generator().manual_seed(1)
    img = torch.nn.functional.normalize(torch.randn(B, 16, generator=g), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(B, 16, generator=g), dim=-1)
    x = torch.randn(B, 3, 32, 32, generator=g)
    tokens = factory.get_tokenizer("RN-tiny")([f"a photo of thing {i}" for i in range(B)])
    torch.manual_seed(0)
    model = factory.create_clip("RN-tiny").eval()  # eval BN: per-sample, batch-split invariant
    return img, txt, x, tokens, model


def _rank_main(rank, tmp, dataset):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=2)
    ranks = Ranks(rank, 2, rank)
    out = {}
    sl = slice(rank * B // 2, (rank + 1) * B // 2)
    img, txt, x, tokens, model = _clip_inputs()
    # (1) the loss on fixed features, gathered without gradient
    f_img, f_txt = img[sl].clone().requires_grad_(), txt[sl].clone().requires_grad_()
    scale = torch.tensor(10.0, requires_grad=True)
    loss = clip_loss(ranks)(f_img, f_txt, scale)
    loss.backward()
    out["features"] = (loss.detach(), f_img.grad, f_txt.grad, scale.grad)
    # (2) one DDP step of the CLIP model on this rank's half of the batch
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    loss = clip_loss(ranks)(*ddp(x[sl], tokens[sl]))
    loss.backward()
    out["model"] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    # (3) a whole SL fit, recording each vocabulary draw
    import tailstudy.train.vocab as vocab

    drawn, original = [], vocab.subsample_vocabulary

    def record(y, k, weights, generator=None):
        v, t = original(y, k, weights, generator)
        drawn.append((y.tolist(), v.tolist()))
        return v, t

    vocab.subsample_vocabulary = record
    cfg = run_config("sl", epochs=1, vocab_size=3, distributed=GLOO2)
    data = load_split(dataset, progress=False)
    fit(cfg, data, Path(tmp) / "sl", Path(tmp) / "sl" / "ckpt", device="cpu", ranks=ranks)
    out["vocab"] = drawn
    torch.save(out, Path(tmp) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    from runs import make_dataset

    tmp = tmp_path_factory.mktemp("ranks")
    dataset = make_dataset(tmp / "tiny")
    mp.spawn(_rank_main, args=(str(tmp), dataset), nprocs=2, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=False) for r in range(2)], dataset


@pytest.mark.slow
def test_gathered_clip_loss_and_gradients_equal_single_process(two_ranks):
    import open_clip

    ranks, _ = two_ranks
    img, txt, *_ = _clip_inputs()
    img, txt = img.clone().requires_grad_(), txt.clone().requires_grad_()
    scale = torch.tensor(10.0, requires_grad=True)
    loss = open_clip.ClipLoss()(img, txt, scale)
    loss.backward()
    for r in ranks:
        assert torch.allclose(r["features"][0], loss.detach(), atol=1e-6)  # the global loss
        assert torch.allclose(r["features"][3], scale.grad, atol=1e-6)
    # each rank's local features get exactly their single-process gradient
    assert torch.allclose(torch.cat([r["features"][1] for r in ranks]), img.grad, atol=1e-7)
    assert torch.allclose(torch.cat([r["features"][2] for r in ranks]), txt.grad, atol=1e-7)


@pytest.mark.slow
def test_ddp_clip_step_gradient_matches_global_batch(two_ranks):
    """With BN in eval mode, 2 ranks × B/2 under DDP give the gradient of the single-process
    loss on batch B: exactly for logit_scale, divided by the 2 ranks (DDP's average of
    local-only gradients, as in OpenCLIP) for every tower weight."""
    ranks, _ = two_ranks
    _, _, x, tokens, model = _clip_inputs()
    img, txt, scale = model(x, tokens)
    import open_clip

    loss = open_clip.ClipLoss()(img, txt, scale)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for r in ranks:
        assert torch.allclose(r["model"][0], loss.detach(), atol=1e-5)
        ddp = r["model"][1]
        assert ddp.keys() == grads.keys()
        for name, g in grads.items():
            want = g if name == "logit_scale" else g / 2
            assert torch.allclose(ddp[name], want, rtol=1e-3, atol=1e-7), name
    assert torch.equal(
        ranks[0]["model"][1]["visual.conv1.weight"], ranks[1]["model"][1]["visual.conv1.weight"]
    )


@pytest.mark.slow
def test_sl_vocabulary_is_drawn_per_rank_over_its_local_batch(two_ranks):
    ranks, dataset = two_ranks
    labels = load_split(dataset, progress=False).labels
    n, local, k = len(labels), 8, 3
    order = [distributed.epoch_indices(n, Ranks(r, 2, r), 0, 0, drop_last=False) for r in (0, 1)]
    steps = len(ranks[0]["vocab"])
    assert steps == len(ranks[1]["vocab"]) == math.ceil(math.ceil(n / 2) / local)
    not_global = 0
    for step in range(steps):
        for r in (0, 1):
            y, v = ranks[r]["vocab"][step]
            assert y == labels[order[r][step * local : (step + 1) * local]].tolist()  # local
            assert set(y) <= set(v) and len(v) == max(k, len(set(y))) == len(set(v))
        y0, v0 = ranks[0]["vocab"][step]
        y1, _ = ranks[1]["vocab"][step]
        not_global += not (set(y0) | set(y1)) <= set(v0)
    assert not_global > 0  # rank 0's vocabulary is not topped up from the global batch


# ---- full 2-process runs through the command line (torchrun)


def _cmd(ds, index, cfg_path, out):
    return [
        sys.executable,
        "-m",
        "tailstudy",
        "train",
        "--config",
        str(cfg_path),
        "--dataset",
        str(ds),
        "--index",
        str(index),
        "--out",
        str(out),
        "--ckpt-dir",
        str(out / "ckpt"),
        "--threads",
        "2",
        "--device",
        "cpu",
    ]


def _write(tmp_path, cfg, name):
    path = tmp_path / f"{name}.json"
    path.write_text(cfg.to_json())
    return path


def _epoch_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " tailstudy.train: epoch " in line]


def _log(out):
    return [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]


def _alive(marker: str) -> list[int]:
    """Processes whose command line mentions ``marker`` (Linux /proc)."""
    pids = []
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (p / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(p.name))
        except OSError:
            continue
    return pids


KILL_RECIPE = {"epochs": 3, "batch_size": 8, "vocab_size": 3, "ckpt_every_steps": 3}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    """A CLIP and an SL run, each trained by one process (fit) and by 2 processes (the CLI)."""
    from runs import make_dataset

    tmp = tmp_path_factory.mktemp("cli")
    ds = make_dataset(tmp / "tiny")
    build_variant(ds, {"dataset": "tiny"}, tmp / "v", "v")
    data = load_split(ds, progress=False)
    runs = {"tmp": tmp, "dataset": ds, "index": tmp / "v" / "index.parquet"}
    for objective, recipe in (("clip", {}), ("sl", KILL_RECIPE)):
        single = tmp / f"{objective}-1"
        fit(run_config(objective, **recipe), data, single, single / "ckpt", device="cpu")
        cfg = run_config(objective, distributed=GLOO2, **recipe)
        cfg_path, out = _write(tmp, cfg, objective), tmp / f"{objective}-2"
        res = subprocess.run(_cmd(ds, runs["index"], cfg_path, out), capture_output=True, text=True)
        runs[objective] = (cfg, cfg_path, single, out, res)
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("objective", ["clip", "sl"])
def test_two_process_run_writes_what_a_single_process_run_writes(cli_runs, objective):
    cfg, _, single, out, res = cli_runs[objective]
    assert res.returncode == 0, res.stderr[-3000:]
    assert "launching 2 training processes (gloo backend" in res.stderr
    lines = _epoch_lines(res.stderr)  # rank 0 alone logs: one line per epoch
    assert [x.split(" epoch ")[1].split()[0] for x in lines] == [
        f"{e}/{cfg.recipe.epochs}" for e in range(1, cfg.recipe.epochs + 1)
    ]
    a = torch.load(single / "model.pt", weights_only=True)
    b = torch.load(out / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and a["classes"] == b["classes"]
    assert {k: v.shape for k, v in a["model"].items()} == {
        k: v.shape for k, v in b["model"].items()
    }
    assert b["config"]["recipe"]["distributed"] == GLOO2
    la, lb = _log(single), _log(out)
    assert len(la) == len(lb) == cfg.recipe.epochs
    assert [x.keys() for x in la] == [x.keys() for x in lb]
    assert all(torch.isfinite(torch.tensor(x["loss"])) for x in lb)
    assert not (out / "ckpt").exists()


def _first_checkpoint(proc, out, what: str):
    """Wait until the running training ``proc`` has written its first checkpoint; its path."""
    ckpt = out / "ckpt" / "latest.pt"
    deadline = time.time() + 180
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail(f"training finished before it could be {what}; make the run longer")
    return ckpt


def _resume(cli_runs, cfg_path, ref, out, ckpt, step):
    """Rerun the interrupted run: it resumes at ``step``; the reference's and its weights."""
    ds, index = cli_runs["dataset"], cli_runs["index"]
    res = subprocess.run(_cmd(ds, index, cfg_path, out), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert f"resumed from {ckpt} at step {step}" in res.stderr
    a = torch.load(ref / "model.pt", weights_only=True)["model"]
    b = torch.load(out / "model.pt", weights_only=True)["model"]
    return a, b


@pytest.mark.slow
def test_two_process_run_killed_and_rerun_ends_identical(cli_runs):
    """kill -9 of a 2-process run mid-training; the rerun resumes from the checkpoint (every
    rank its own sampling state) and ends bit-identical to the uninterrupted 2-process run."""
    _, cfg_path, _, ref, res = cli_runs["sl"]
    assert res.returncode == 0, res.stderr[-3000:]
    ds, index, out = cli_runs["dataset"], cli_runs["index"], cli_runs["tmp"] / "killed"
    proc = subprocess.Popen(
        _cmd(ds, index, cfg_path, out), stderr=subprocess.DEVNULL, start_new_session=True
    )
    ckpt = _first_checkpoint(proc, out, "killed")
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and torchrun; the ranks die with them
    proc.wait()
    time.sleep(1.0)
    if sys.platform.startswith("linux"):
        assert _alive(str(out)) == [], "training processes outlived their killed launcher"
    assert ckpt.exists() and not (out / "model.pt").exists()
    state = torch.load(ckpt, weights_only=False)
    assert 0 < state["step"] < 30 and len(state["ranks"]) == 2
    a, b = _resume(cli_runs, cfg_path, ref, out, ckpt, state["step"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [x["loss"] for x in _log(ref)] == [x["loss"] for x in _log(out)]


@pytest.mark.slow
def test_two_process_run_stopped_by_sigterm_checkpoints_and_resumes(cli_runs):
    """SIGTERM to the launcher (scancel, preemption): both ranks stop at the same step, the
    checkpoint holds both ranks' states, the command exits 143 with one line, and the rerun
    ends bit-identical to the uninterrupted run."""
    _, cfg_path, _, ref, res = cli_runs["sl"]
    assert res.returncode == 0, res.stderr[-3000:]
    ds, index, out = cli_runs["dataset"], cli_runs["index"], cli_runs["tmp"] / "sigterm"
    proc = subprocess.Popen(_cmd(ds, index, cfg_path, out), stderr=subprocess.PIPE, text=True)
    ckpt = _first_checkpoint(proc, out, "stopped")
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=180)[1]
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("stopped: run "), err[-3000:]
    assert "SIGTERM received: stopping at the end of this step" in err
    state = torch.load(ckpt, weights_only=False)
    assert 0 < state["step"] < 30 and len(state["ranks"]) == 2
    assert not (out / "model.pt").exists()
    a, b = _resume(cli_runs, cfg_path, ref, out, ckpt, state["step"])
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [x["loss"] for x in _log(ref)] == [x["loss"] for x in _log(out)]


# ---- the workflow: the run config opts in, the job gets one thread per process


def _smk(workdir, configfile, *args):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)


def test_workflow_gives_a_distributed_run_its_processes_and_rejects_uneven_batches(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["recipes"]["sl-k5"]["distributed"] = {"processes": 4, "backend": "gloo"}
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(config))
    res = _smk(
        tmp_path,
        path,
        "-n",
        "-c4",
        "results/runs/incaps-full_sl_sl-k5_s0/model.pt",
        "results/runs/incaps-full_sl_sl_s0/model.pt",
    )
    assert res.returncode == 0, res.stderr
    jobs = {
        b.split("wildcards: run=")[1].split()[0]: b
        for b in res.stdout.split("\nrule train_model:")[1:]
    }
    assert "threads: 4" in jobs["incaps-full_sl_sl-k5_s0"]
    assert "threads: 4" not in jobs["incaps-full_sl_sl_s0"]
    config["recipes"]["sl-k5"]["batch_size"] = 126
    path.write_text(yaml.safe_dump(config))
    res = _smk(tmp_path, path, "-n")
    assert res.returncode != 0
    assert (
        "config error: recipe sl-k5: batch_size 126 (the global batch) does not split evenly over "
        "distributed.processes 4" in res.stderr + res.stdout
    )
