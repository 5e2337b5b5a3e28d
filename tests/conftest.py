"""Shared fixtures: a tiny dataset (tests/runs.py makes it); open_clip's pretrained weights
without a hub; a local SLURM."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from runs import make_dataset
from smk import UNREACHABLE_SLURM_CONF


@pytest.fixture
def tiny_dataset(tmp_path):
    return make_dataset(tmp_path / "tiny")


@pytest.fixture
def no_hub(monkeypatch):
    """open_clip's pretrained tags without a download: the weights file of a tag is a stand-in
    and loading it leaves the model's random weights; returns the (tag's file) loads done."""
    import open_clip.factory

    loads = []

    def download(cfg, cache_dir=None):
        return f"<weights {cfg.get('url') or cfg.get('hf_hub')}>"

    monkeypatch.setattr(open_clip.factory, "download_pretrained", download)
    monkeypatch.setattr(
        open_clip.factory, "load_checkpoint", lambda model, path, **kw: loads.append(path)
    )
    return loads


SLURM_START = Path(__file__).parent / "slurm" / "start_cluster.sh"
_standin_conf: set[str] = set()


@pytest.fixture(scope="session", autouse=True)
def unreachable_slurm_fails_fast(tmp_path_factory):
    """Where SLURM's client tools are installed but no controller answers (this machine until
    the local cluster starts), the SLURM executor plugin's start-up probe (`scontrol show
    config`) waits ~9 s in every snakemake call. Until slurm_cluster starts one, SLURM_CONF
    points at a config whose controller is given up on at once (MessageTimeout=1)."""
    if shutil.which("scontrol") is None or "SLURM_CONF" in os.environ:
        yield
        return
    conf = tmp_path_factory.mktemp("slurm") / "slurm.conf"
    conf.write_text(UNREACHABLE_SLURM_CONF)
    _standin_conf.add(str(conf))
    os.environ["SLURM_CONF"] = str(conf)
    try:
        yield
    finally:
        if os.environ.get("SLURM_CONF") == str(conf):
            del os.environ["SLURM_CONF"]


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node SLURM on this machine (partition ``debug``, a fake GPU), started by
    tests/slurm/start_cluster.sh and left running; skips with the reason where it cannot be."""
    import importlib.util

    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        pytest.skip("SLURM tests: snakemake-executor-plugin-slurm is not installed")
    if os.environ.get("SLURM_CONF") in _standin_conf:
        del os.environ["SLURM_CONF"]  # the cluster's own /etc/slurm/slurm.conf from here on
    try:
        res = subprocess.run(
            ["bash", str(SLURM_START)], capture_output=True, text=True, timeout=180
        )
    except subprocess.TimeoutExpired:
        pytest.skip("SLURM tests: the test cluster did not start within 180 s")
    if res.returncode != 0:
        reason = res.stderr.strip() or f"{SLURM_START.name} exited with {res.returncode}"
        pytest.skip(f"SLURM tests: {reason}")
    return "debug"
