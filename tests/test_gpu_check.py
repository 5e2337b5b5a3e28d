"""bench/gpu_check.py: its smoke mode runs the same code on the CPU; without CUDA the GPU mode
stops with one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

from smk import REPO

SCRIPT = REPO / "bench/gpu_check.py"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))


def test_smoke_mode_trains_and_reports_on_cpu(tmp_path):
    cmd = [sys.executable, str(SCRIPT), "--device", "cpu", "--steps", "2", "--arch", "RN-tiny"]
    cmd += ["--image-size", "32", "--batch", "8", "--shards", "4", "--workers", "2"]
    res = subprocess.run(
        [*cmd, "--out", str(tmp_path)], capture_output=True, text=True, env=ENV, timeout=600
    )
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout
    assert "data: 16 JPEGs (short side 37) in 4 shards" in out
    for label in ("(a) full trainer", "(b) bare open_clip step, streamed", "resident on device"):
        rate = float(re.search(re.escape(label) + r"[^:]*:\s+([\d.]+) images/s", out).group(1))
        assert rate > 0
    assert "steps: trainer 2, bare 2 + 2" in out
    assert (tmp_path / "work/run/model.pt").exists()  # the trainer ran to the end


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is visible here")
def test_without_cuda_it_says_so_in_one_line():
    res = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert res.returncode == 2
    assert res.stderr.strip() == (
        "error: no CUDA device is visible: run this on a GPU node (or --device cpu for a smoke "
        "test)"
    )
