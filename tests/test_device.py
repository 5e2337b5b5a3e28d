"""Device choice from a recipe's ``gpus``, and the job record every step writes."""

from __future__ import annotations

import socket

import torch

from tailstudy import jobinfo
from tailstudy.train.loop import resolve_device


def test_auto_device_follows_the_recipes_gpus(monkeypatch, caplog):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto", 0).type == "cpu"  # gpus: 0 never takes a visible GPU
    assert resolve_device("auto", 2).type == "cuda"
    assert resolve_device("auto").type == "cuda"
    assert resolve_device("cpu", 1).type == "cpu"  # an explicit --device wins
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with caplog.at_level("WARNING"):
        assert resolve_device("auto", 1).type == "cpu"
    assert "asks for 1 GPU(s) but torch sees no CUDA device (CUDA_VISIBLE_DEVICES=0)" in caplog.text


def test_job_record_reads_the_slurm_job_id(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    assert jobinfo.current() == {"slurm_job_id": 4711, "host": socket.gethostname()}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,3")
    assert (
        jobinfo.describe() == f"SLURM job 4711 on {socket.gethostname()}, CUDA_VISIBLE_DEVICES=1,3"
    )
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert jobinfo.current()["slurm_job_id"] is None
    assert jobinfo.describe().startswith("no SLURM job on ")
    assert jobinfo.describe().endswith("CUDA_VISIBLE_DEVICES=unset")
