"""Resumable training checkpoints: self-describing, written atomically, loaded strictly."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from tailstudy.io import atomic_path

log = logging.getLogger(__name__)
LATEST = "latest.pt"


def save(ckpt_dir: str | Path, state: dict) -> None:
    path = Path(ckpt_dir) / LATEST
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_matching(ckpt_dir: str | Path, config: dict) -> dict | None:
    """The latest checkpoint if it was written by a run with exactly this ``config``, else None.

    A checkpoint from a different config (a changed recipe) is discarded, never resumed.
    """
    path = Path(ckpt_dir) / LATEST
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or corrupt file: start over rather than fail
        log.warning("ignoring unreadable checkpoint %s (%s); training from scratch", path, e)
        return None
    if state.get("config") != config:
        log.warning("checkpoint %s belongs to a different run config; training from scratch", path)
        return None
    return state


def remove(ckpt_dir: str | Path) -> None:
    shutil.rmtree(ckpt_dir, ignore_errors=True)
