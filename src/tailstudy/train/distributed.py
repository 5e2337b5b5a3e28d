"""Data-parallel training across processes (METHODS §4.2, §4.4, §4.5).

The run config decides: a recipe with ``distributed: {processes: N, backend: ...}`` is trained by
N processes that ``tailstudy train`` starts itself through torchrun (``--standalone``, one node,
inside whatever allocation the job owns). torchrun tells every process its rank and the world
size; nothing here guesses the mode from the environment. Each process trains on its share of
the data (``DistributedSampler`` with ``set_epoch``) with its per-process batch (the recipe's
global batch divided by N), draws its own augmentation and vocabulary from a generator seeded
``seed + rank``, and gradients are averaged by ``DistributedDataParallel``. Rank 0 alone logs and
writes checkpoints and the final model.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tailstudy.config import Distributed
from tailstudy.io import UserError
from tailstudy.train.launch import die_with_parent

log = logging.getLogger("tailstudy.train")

#: What torchrun sets in each process it starts.
LAUNCHER_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Ranks:
    """This process's place in an initialised process group."""

    rank: int
    world: int
    local_rank: int

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_from_launcher(spec: Distributed, device: str) -> tuple[Ranks, torch.device]:
    """Join the process group torchrun set up; returns this rank and its device.

    CUDA ranks use GPU ``LOCAL_RANK`` of those the job sees; nccl needs CUDA.
    """
    missing = [k for k in LAUNCHER_ENV if k not in os.environ]
    if missing:
        raise UserError(
            f"--worker is set by tailstudy's own torchrun launch (missing {', '.join(missing)}); "
            "run 'tailstudy train' without it"
        )
    world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    local = int(os.environ["LOCAL_RANK"])
    if world != spec.processes:
        raise UserError(
            f"the run config asks for distributed.processes {spec.processes} but the launcher "
            f"started {world}"
        )
    die_with_parent(signal.SIGKILL)
    dev = resolve_rank_device(device, local, spec.backend)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(spec.backend, rank=rank, world_size=world)
    return Ranks(rank, world, local), dev


def resolve_rank_device(device: str, local_rank: int, backend: str) -> torch.device:
    """``auto``/``cuda`` → this rank's GPU when CUDA is visible; ``cpu`` stays on CPU."""
    if device not in ("auto", "cuda", "cpu"):
        raise UserError(
            f"--device {device}: distributed ranks pick their GPU by rank; use auto, cuda or cpu"
        )
    cuda = torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise UserError("--device cuda was requested but no CUDA device is visible")
    if device == "cpu" or not cuda:
        if backend == "nccl":
            raise UserError(
                "distributed.backend nccl needs one CUDA device per process and none is in use "
                "here; use backend gloo to train on CPU"
            )
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise UserError(
            f"rank {local_rank} needs GPU {local_rank} but only {torch.cuda.device_count()} "
            "are visible: give the job as many GPUs as distributed.processes"
        )
    return torch.device("cuda", local_rank)


def epoch_indices(n: int, ranks: Ranks, seed: int, epoch: int, drop_last: bool) -> torch.Tensor:
    """This rank's sample order for ``epoch`` (``DistributedSampler`` with ``set_epoch``).

    ``drop_last`` (CLIP) drops the tail that does not divide over the ranks; otherwise (SL) the
    sampler pads by repeating samples, as PyTorch does.
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(n),
        num_replicas=ranks.world,
        rank=ranks.rank,
        shuffle=True,
        seed=seed,
        drop_last=drop_last,
    )
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler), dtype=torch.long)


def samples_per_rank(n: int, world: int, drop_last: bool) -> int:
    """``len(DistributedSampler)``: the same for every rank."""
    return n // world if drop_last else -(-n // world)


def gather(obj, ranks: Ranks) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    out = [None] * ranks.world
    dist.all_gather_object(out, obj)
    return out


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over the ranks (float64)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_max(value: int, device: torch.device) -> int:
    """The largest ``value`` over the ranks (e.g. a stop request any one rank received)."""
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def check_in_sync(model: torch.nn.Module, ranks: Ranks) -> None:
    """Fail if any rank's parameters differ from rank 0's (they never should).

    Buffers are not compared: without SyncBN each rank's last forward leaves its own BatchNorm
    running statistics, which DDP replaces by rank 0's at the next forward (and rank 0's are saved).
    """
    state = [p.detach().float().flatten() for p in model.parameters()]
    local = torch.cat(state) if state else torch.zeros(0)
    ref = local.clone()
    dist.broadcast(ref, src=0)
    bad = torch.tensor([float(not torch.equal(local, ref))], device=local.device)
    dist.all_reduce(bad)
    if bad.item():
        raise UserError(
            f"{int(bad.item())} training process(es) ended with weights different from rank 0's"
        )
