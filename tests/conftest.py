"""Shared fixtures: a small hand-made dataset in the project's on-disk format; a local SLURM."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from smk import UNREACHABLE_SLURM_CONF
from tailstudy.concepts import concept_subset


def make_dataset(
    root, n_classes=6, per_class=(30, 20, 12, 8, 5, 3), seed=0, size=32, concepts=None, extra=None
):
    """Images whose colour encodes the class; captions name the class and its colour.

    ``concepts``: positions in the ImageNet-100 list of the classes (default: the first
    ``n_classes``); ``extra``: a function adding columns to the index (e.g. LAIONet's
    ``similarity``, ``wnid``, ``row_id``) before it is written."""
    rng = np.random.default_rng(seed)
    every = concept_subset("imagenet100")
    concepts = [every[i] for i in concepts] if concepts is not None else every[:n_classes]
    n_classes = len(concepts)
    colours = rng.integers(0, 255, (n_classes, 3))
    rows, images = [], []
    for c, n in enumerate(per_class[:n_classes]):
        for i in range(n):
            img = np.clip(colours[c] + rng.normal(0, 20, (size, size, 3)), 0, 255)
            images.append(img.astype(np.uint8))
            rows.append(
                {
                    "key": f"s{c:02d}{i:04d}",
                    "label": c,
                    "caption": f"{concepts[c].name} colour {c}",
                    "title": concepts[c].name if i % 3 else "",
                    "tags": [concepts[c].lemmas[0], "photo"] if i % 4 else [],
                    "description": f"a thing of colour {c}" if i % 2 else "",
                }
            )
    order = rng.permutation(len(rows))
    from tailstudy.data.format import write_dataset

    index = pd.DataFrame(rows).iloc[order].reset_index(drop=True)
    if extra is not None:
        index = extra(index, concepts)
    write_dataset(
        root,
        root.name,
        index,
        np.stack(images)[order],
        [(c.wnid, c.name) for c in concepts],
        {"kind": "test"},
        shard_size=40,
    )
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    return make_dataset(tmp_path / "tiny")


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
        res = subprocess.run(["bash", str(SLURM_START)], capture_output=True, text=True,
                             timeout=180)  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.skip("SLURM tests: the test cluster did not start within 180 s")
    if res.returncode != 0:
        reason = res.stderr.strip() or f"{SLURM_START.name} exited with {res.returncode}"
        pytest.skip(f"SLURM tests: {reason}")
    return "debug"
