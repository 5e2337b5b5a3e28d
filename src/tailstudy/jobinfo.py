"""Where a step runs: the SLURM job (if any) and the host, recorded next to its results.

Only read for the record — nothing here decides how a step runs (distributed mode in particular
is never inferred from SLURM's environment).
"""

from __future__ import annotations

import os
import socket


def current() -> dict:
    """``{"slurm_job_id": int | None, "host": str}`` for this process."""
    job = os.environ.get("SLURM_JOB_ID", "").strip()
    return {"slurm_job_id": int(job) if job.isdigit() else None, "host": socket.gethostname()}


def describe() -> str:
    """One log line's worth: the SLURM job, host and the GPUs SLURM or the user made visible."""
    rec = current()
    job = f"SLURM job {rec['slurm_job_id']}" if rec["slurm_job_id"] is not None else "no SLURM job"
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"{job} on {rec['host']}, CUDA_VISIBLE_DEVICES={gpus if gpus is not None else 'unset'}"
