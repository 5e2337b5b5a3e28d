"""Launching a distributed run: ``tailstudy train`` starts torchrun, which starts the ranks.

Kept free of torch imports, so that the launching process itself stays light.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys

from tailstudy.config import Distributed
from tailstudy.io import UserError

log = logging.getLogger("tailstudy.train")


def launch_command(spec: Distributed, train_args: list[str]) -> list[str]:
    """The torchrun command line that runs ``tailstudy train`` as ``spec.processes`` ranks."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(spec.processes),
        "-m",
        "tailstudy",
        "train",
        *train_args,
        "--worker",
    ]


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux: have the kernel send ``sig`` to this process when its parent dies.

    torchrun starts its ranks in sessions of their own, so without this a launcher or torchrun
    killed outright (kill -9) would leave them training as orphans.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG


def launch(spec: Distributed, train_args: list[str], threads: int | None) -> tuple[int, int | None]:
    """Run the ranks under torchrun and wait; returns torchrun's exit status and the signal this
    launcher forwarded (None if none).

    ``threads`` CPU threads are shared among the processes. SIGTERM/SIGINT reach torchrun, which
    passes them on to the ranks (they checkpoint at the step and stop); if this launcher is
    killed outright, torchrun gets SIGTERM from the kernel.
    """
    per_rank = max(1, (threads or os.cpu_count() or 1) // spec.processes)
    cmd = launch_command(spec, [*train_args, "--threads", str(per_rank)])
    env = {**os.environ, "OMP_NUM_THREADS": str(per_rank)}
    log.info(
        "launching %d training processes (%s backend, %d CPU thread(s) each): torchrun %s",
        spec.processes,
        spec.backend,
        per_rank,
        " ".join(cmd[3:]),
    )
    try:
        proc = subprocess.Popen(cmd, env=env, preexec_fn=die_with_parent)
    except OSError as e:
        raise UserError(f"could not start torchrun: {e}") from None

    received: list[int] = []

    def forward(signum, _frame):
        received.append(signum)
        proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        rc = proc.wait()
        return rc, (received[0] if received else None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
