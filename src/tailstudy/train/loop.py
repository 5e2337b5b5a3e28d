"""The trainer: ``fit()`` trains one run from its RunConfig, whatever its objective.

``fit`` tells the shared story: data order and epochs, optimiser and schedule, precision, DDP,
checkpoints, stop/resume, logging. Everything in which CLIP and SL differ (model, batch, loss,
what a checkpoint and ``model.pt`` hold) is asked of the run's objective
(``tailstudy.train.objectives``). Device-agnostic (CPU works); one process, or several when the
recipe is ``distributed`` (see ``tailstudy.train.distributed``). All randomness flows from the
run seed: the initial weights from ``seed``, the epoch order from ``(seed, epoch)``, augmentation
and vocabulary draws from one generator per process (seed + rank) whose state is checkpointed,
so a run resumed after a kill ends bit-identical (on CPU, same thread count) to an
uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from tailstudy import jobinfo
from tailstudy.concepts import names_for
from tailstudy.config import RunConfig
from tailstudy.data.loader import Rows, TrainingSet
from tailstudy.io import Stopped, UserError, atomic_path
from tailstudy.models import factory
from tailstudy.train import checkpoint, distributed, objectives, stop
from tailstudy.train.distributed import Ranks
from tailstudy.train.objectives.base import Objective

log = logging.getLogger("tailstudy.train")


@dataclass
class TrainState:
    """What the loop updates and a checkpoint restores (``seen`` and ``t0`` excepted)."""

    objective: Objective
    model: nn.Module
    opt: torch.optim.Optimizer
    generator: torch.Generator  # this process's augmentation (and vocabulary) draws
    scaler: torch.amp.GradScaler | None  # AMP fp16 only
    step: int = 0
    history: list[dict] = field(default_factory=list)  # one record per epoch
    loss_sum: float = 0.0  # this process's losses since the last epoch record
    loss_n: int = 0
    seen: int = 0  # images since the last epoch record
    t0: float = field(default_factory=time.perf_counter)


def fit(
    cfg: RunConfig,
    data: TrainingSet,
    out_dir: str | Path,
    ckpt_dir: str | Path,
    text_checkpoint: str | None = None,
    device: str = "auto",
    keep_ckpt: bool = False,
    ranks: Ranks | None = None,
    text_cache: str | None = None,
) -> list[dict]:
    """Train one run; writes ``out_dir/model.pt`` and ``out_dir/train_log.jsonl``.

    ``text_cache``: a folder where a frozen language-model text tower's caption states are
    kept between runs (computed once per encoder and caption set).

    ``ranks``: this process's rank in an initialised process group when the recipe is
    ``distributed`` (``tailstudy train`` launches the processes); None for a single process.
    """
    # ---- setup
    r, rank = cfg.recipe, ranks.rank if ranks else 0
    check_processes(cfg, ranks)
    job = jobinfo.current()  # recorded in every train_log row: the job that trained the epoch
    if rank == 0:
        log.info("run %s: %s", cfg.run_id, jobinfo.describe())
    dev = resolve_device(device, r.gpus)
    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    kind = objectives.get(cfg.objective)
    steps_per_epoch = plan_steps(cfg, len(data), kind.drop_last, ranks)
    objective = kind(cfg, ranks, steps_per_epoch)
    objective.text_cache = text_cache
    total = r.epochs * steps_per_epoch
    class_names = data.classes["name"].tolist()

    # ---- model and precision: CUDA runs (one GPU or several) as the paper's (AMP fp16 or
    # fp32 + TF32); CPU runs fp32. Both run channels_last: on CPU oneDNN's kernels train the
    # embedded SL 1.26x faster (bench/inmemory_speed.py), CLIP 1.23x at its batch of 128
    # frozen-head prompts name the classes with the descriptor names (METHODS §0.2)
    model = objective.build(
        names_for(data.classes["wnid"], class_names, "head-prompt"), text_checkpoint
    )
    on_cuda = dev.type == "cuda"
    sync_bn = on_cuda and ranks is not None and objective.sync_bn
    sync_bn = sync_bn and r.distributed.backend == "nccl"
    if sync_bn:  # SyncBN has no CPU kernels: with gloo each process normalises its own batch
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(dev).to(memory_format=torch.channels_last)
    objective.setup(model, data, dev)
    amp = on_cuda and objective.amp_fp16
    if on_cuda and not amp:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    scaler = torch.amp.GradScaler("cuda") if amp else None
    gen = torch.Generator().manual_seed(cfg.seed + rank)
    st = TrainState(objective, model, objective.make_optimizer(model), gen, scaler)
    if resume(st, cfg, ckpt_dir, ranks):
        log.info("resumed from %s at step %d/%d", ckpt_dir / checkpoint.LATEST, st.step, total)
    net = model  # after resuming: every rank starts from the same weights
    if ranks is not None:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)

    # ---- loop
    log.info(
        "run %s: %s %s, %d samples, %d classes, %d epochs × %d steps, batch %d, device %s",
        *(cfg.run_id, cfg.objective, cfg.arch, len(data), len(class_names)),
        *(r.epochs, steps_per_epoch, r.batch_size, dev),
    )
    if ranks is not None:
        log.info(
            "%d processes (%s) × batch %d; SyncBN %s, %s",
            *(ranks.world, r.distributed.backend, r.local_batch_size),
            *("on" if sync_bn else "off", "AMP fp16" if amp else "fp32"),
        )
    elif on_cuda:
        log.info("one GPU, %s, channels_last", "AMP fp16" if amp else "fp32 + TF32")
    if data.streams:
        log.info(
            "streaming %d rows from the shards with %d loader worker(s)",
            len(data),
            data.num_workers,
        )
    model.train()
    batches_epoch, batches = -1, iter(())
    while st.step < total:
        epoch, b = divmod(st.step, steps_per_epoch)
        if epoch != batches_epoch:
            batches = epoch_batches(
                cfg, data, steps_per_epoch, epoch, b, objective.drop_last, ranks
            )
            batches_epoch = epoch
        rows = next(batches)
        lr = objective.schedule(st.opt, st.step, total)
        batch = objective.batch(data, rows, st.generator)
        with torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext():
            loss = objective.loss(net, batch, st.generator)
        optimise(st, loss)
        st.seen += len(rows.idx)
        epoch_end = st.step % steps_per_epoch == 0
        saved = epoch_end or bool(r.ckpt_every_steps and st.step % r.ckpt_every_steps == 0)
        if epoch_end:
            end_epoch(st, cfg, epoch + 1, lr, total, dev, ranks, job)
        if saved:
            save_checkpoint(st, cfg, ckpt_dir, ranks)
        signum = stop.requested() or 0  # SIGTERM: scancel, preemption, time limit
        if ranks is not None:  # every process stops at the same step: checkpoints are collective
            signum = distributed.all_max(signum, dev)
        if signum and st.step < total:
            if not saved:
                save_checkpoint(st, cfg, ckpt_dir, ranks)
            raise Stopped(
                f"run {cfg.run_id}: {signal.Signals(signum).name} at step {st.step}/{total}; "
                f"checkpoint {ckpt_dir / checkpoint.LATEST} written, a rerun resumes from it",
                signum,
            )

    # ---- final write
    if ranks is not None:
        distributed.check_in_sync(model, ranks)
    if rank == 0:
        model.eval()
        with atomic_path(out_dir / "model.pt", suffix=".pt") as tmp:
            torch.save(
                {
                    "model": objective.export(),
                    "config": cfg.to_dict(),
                    "classes": class_names,
                    "quick_gelu": factory.uses_quick_gelu(model),  # rebuilt so by its readers
                },
                tmp,
            )
        with atomic_path(out_dir / "train_log.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(h, sort_keys=True) + "\n" for h in st.history))
        if not keep_ckpt:
            checkpoint.remove(ckpt_dir)
    return st.history


def optimise(st: TrainState, loss: torch.Tensor) -> None:
    """One optimiser step on ``loss`` (scaled under AMP), the objective's hooks around it."""
    if not torch.isfinite(loss):
        run = st.objective.cfg.run_id
        raise UserError(f"run {run}: loss became {loss.item()} at step {st.step}; lower lr")
    st.opt.zero_grad(set_to_none=True)
    if st.scaler is not None:
        st.scaler.scale(loss).backward()
        st.scaler.unscale_(st.opt)  # the hook sees true gradients; step() does not unscale twice
        st.objective.after_backward(st.step)
        st.scaler.step(st.opt)
        st.scaler.update()
    else:
        loss.backward()
        st.objective.after_backward(st.step)
        st.opt.step()
    st.objective.after_step(st.step)
    st.step += 1
    st.loss_sum, st.loss_n = st.loss_sum + loss.item(), st.loss_n + 1


def end_epoch(
    st: TrainState,
    cfg: RunConfig,
    epoch: int,
    lr: float,
    total: int,
    dev: torch.device,
    ranks: Ranks | None,
    job: dict,
) -> None:
    """Append the record of ``epoch`` (counted from 1; the loss over every process's batches)
    and log its line."""
    dt = time.perf_counter() - st.t0
    loss_sum, loss_n, seen = st.loss_sum, st.loss_n, st.seen
    if ranks is not None:
        loss_sum, loss_n, seen = distributed.all_sum([loss_sum, loss_n, seen], dev)
    metrics = st.objective.metrics()
    rec = {
        "epoch": epoch,
        "step": st.step,
        "loss": loss_sum / loss_n,
        "lr": lr,
        **metrics,
        "images_per_s": seen / dt if dt > 0 else float("nan"),
        "device": dev.type,
        **job,
    }
    st.history.append(rec)
    log.info(
        "epoch %d/%d step %d/%d loss %.4f lr %.2e %s%.0f img/s",
        *(epoch, cfg.recipe.epochs, st.step, total, rec["loss"], lr),
        "".join(f"{k} {v:.4g} " for k, v in metrics.items()),
        rec["images_per_s"],
    )
    st.loss_sum, st.loss_n, st.seen, st.t0 = 0.0, 0, 0, time.perf_counter()


def save_checkpoint(st: TrainState, cfg: RunConfig, ckpt_dir: Path, ranks: Ranks | None) -> None:
    """Rank 0 writes the checkpoint, with every rank's sampling state (collective if DDP)."""
    own = {"generator": st.generator.get_state(), "loss_acc": [st.loss_sum, st.loss_n]}
    every = distributed.gather(own, ranks) if ranks is not None else None
    if ranks is not None and not ranks.main:
        return
    state = {
        "config": cfg.to_dict(),
        "model": st.model.state_dict(),
        "optimizer": st.opt.state_dict(),
        "step": st.step,
        "history": st.history,
        **own,
    }
    if every is not None:
        state["ranks"] = every
    if st.scaler is not None:
        state["scaler"] = st.scaler.state_dict()
    if extra := st.objective.state_dict():
        state["objective"] = extra
    checkpoint.save(ckpt_dir, state)


def resume(st: TrainState, cfg: RunConfig, ckpt_dir: Path, ranks: Ranks | None) -> bool:
    """Load the run's latest checkpoint into ``st`` if there is one of this very config."""
    state = checkpoint.load_matching(ckpt_dir, cfg.to_dict())
    if state is None:
        return False
    st.model.load_state_dict(state["model"], strict=True)
    st.opt.load_state_dict(state["optimizer"])
    own = state["ranks"][ranks.rank] if ranks is not None else state
    st.generator.set_state(own["generator"])
    st.loss_sum, st.loss_n = own["loss_acc"]
    st.step, st.history = state["step"], state["history"]
    if st.scaler is not None:
        st.scaler.load_state_dict(state["scaler"])
    st.objective.load_state_dict(state.get("objective", {}))
    return True


def check_processes(cfg: RunConfig, ranks: Ranks | None) -> None:
    """The run is trained by as many processes as its recipe plans."""
    r = cfg.recipe
    if r.distributed is not None and ranks is None:
        raise UserError(
            f"run {cfg.run_id} trains in {r.processes} processes: start it with "
            "'python -m tailstudy train', which launches them"
        )
    if ranks is not None and ranks.world != r.processes:
        raise UserError(f"run {cfg.run_id}: {ranks.world} processes for {r.processes} planned")
    if ranks is None and r.gpus > 1:
        log.warning(
            "run %s: its recipe asks for %d GPUs but trains in one process on one GPU; "
            "set distributed: {processes: %d} to use them all",
            *(cfg.run_id, r.gpus, r.gpus),
        )


def plan_steps(cfg: RunConfig, n: int, drop_last: bool, ranks: Ranks | None) -> int:
    """Optimiser steps per epoch over ``n`` samples; a one-line error if there are none."""
    if n == 0:
        raise UserError(f"run {cfg.run_id}: the training set is empty")
    bsz, lbsz = cfg.recipe.batch_size, cfg.recipe.local_batch_size
    if ranks is None:
        steps = epoch_steps(n, bsz, drop_last)
        if steps == 0:
            raise UserError(f"run {cfg.run_id}: batch size {bsz} exceeds the {n} training samples")
        return steps
    per_rank = distributed.samples_per_rank(n, ranks.world, drop_last)
    steps = epoch_steps(per_rank, lbsz, drop_last)
    if steps == 0:
        raise UserError(
            f"run {cfg.run_id}: the per-process batch {lbsz} exceeds the {per_rank} samples "
            f"each of the {ranks.world} processes gets"
        )
    return steps


def epoch_order(
    cfg: RunConfig, n: int, epoch: int, drop_last: bool, ranks: Ranks | None
) -> torch.Tensor:
    """This process's row indices for ``epoch``, a function of ``(seed, epoch)`` alone."""
    if ranks is None:
        return torch.randperm(
            n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        )
    return distributed.epoch_indices(n, ranks, cfg.seed, epoch, drop_last)


def epoch_batches(
    cfg: RunConfig,
    data: TrainingSet,
    steps_per_epoch: int,
    epoch: int,
    start: int,
    drop_last: bool,
    ranks: Ranks | None,
) -> Iterator[Rows]:
    """This process's batches of ``epoch`` from step ``start`` on, whichever path ``data``
    takes: in memory, slices of ``epoch_order``; streamed, the loader's batches (the order of
    ``epoch_indices`` for one rank or several, crops seeded per row; ``stream.EpochBatches``)."""
    lbsz = cfg.recipe.local_batch_size
    if data.streams:
        yield from data.epoch(
            epoch,
            start,
            batch_size=lbsz,
            seed=cfg.seed,
            drop_last=drop_last,
            rank=ranks.rank if ranks else 0,
            world=ranks.world if ranks else 1,
            pin_memory=torch.cuda.is_available(),
        )
        return
    order = epoch_order(cfg, len(data), epoch, drop_last, ranks)
    for b in range(start, steps_per_epoch):
        yield Rows(order[b * lbsz : (b + 1) * lbsz])


def epoch_steps(rows: int, batch: int, drop_last: bool) -> int:
    """Steps of one epoch over ``rows`` samples. CLIP drops the last partial batch; SL keeps it,
    except a single leftover row: BatchNorm cannot normalise a batch of one in training, so that
    row sits the epoch out (a different row each epoch, as the order is reshuffled)."""
    if drop_last or rows % batch == 1:
        return rows // batch
    return math.ceil(rows / batch)


def resolve_device(device: str, gpus: int | None = None) -> torch.device:
    """``auto``: CUDA when the run asks for GPUs (recipe ``gpus`` > 0; None: any run) and torch
    sees one, else the CPU — a run with ``gpus: 0`` stays on the CPU even where GPUs are visible.
    A run that asks for GPUs but sees none (a CPU-only torch, no driver, an allocation without
    GPUs) trains on the CPU and says so."""
    if device == "auto":
        if gpus == 0:
            return torch.device("cpu")
        if torch.cuda.is_available():
            return torch.device("cuda")
        if gpus:
            log.warning(
                "the recipe asks for %d GPU(s) but torch sees no CUDA device "
                "(CUDA_VISIBLE_DEVICES=%s): running on the CPU",
                gpus,
                os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
            )
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            "--device cuda was requested but no CUDA device is visible; use --device cpu"
        )
    return torch.device(device)
