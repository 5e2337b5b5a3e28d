"""Clean stops: SIGTERM (``scancel``, preemption, a SLURM time limit) ends training at a step.

SLURM sends SIGTERM to every process of a job it cancels, preempts or times out, and SIGKILL
``KillWait`` seconds (default 30) later. ``install()`` (called by the ``train`` command, never at
import) turns SIGTERM into a request that the training loop reads at each step boundary: it then
writes a checkpoint and raises :class:`tailstudy.io.Stopped`, which the command line reports in
one line with exit status 143 (128 + SIGTERM). The job fails, and its retry — or the next
``snakemake`` — resumes from that checkpoint instead of from the last periodic one. Should
SIGKILL come first, the atomic checkpoint writes leave the previous checkpoint intact.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)

_requested: int | None = None


def _handler(signum, frame) -> None:
    global _requested
    if _requested is None:
        log.warning("%s received: stopping at the end of this step", signal.Signals(signum).name)
    _requested = signum


def install(signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
    """Catch ``signals`` in this process from now on (main thread only; else a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for s in signals:
        signal.signal(s, _handler)


def requested() -> int | None:
    """The signal that asked this process to stop, or None."""
    return _requested


def reset() -> None:
    global _requested
    _requested = None
