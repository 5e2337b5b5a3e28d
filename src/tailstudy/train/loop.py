"""The trainer: ``fit()`` trains one run (CLIP or SL) from its RunConfig.

Sections, in order: setup → data → model → loss → optimiser/schedule → resume → loop → final
write. Device-agnostic (CPU works); one process, or several when the recipe is ``distributed``
(see ``tailstudy.train.distributed``). All randomness flows from the run seed: the epoch order
from ``(seed, epoch)``, augmentation and vocabulary draws from one generator per process (seed
+ rank) whose state is checkpointed, so a run resumed after a kill ends bit-identical (on CPU,
same thread count) to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import time
from pathlib import Path

import torch
from torch import nn

from tailstudy import jobinfo
from tailstudy.concepts import names_for
from tailstudy.config import RunConfig
from tailstudy.data.augment import normalize, random_resized_crop, to_float
from tailstudy.data.loader import InMemorySet
from tailstudy.io import Stopped, UserError, atomic_path
from tailstudy.models import factory
from tailstudy.train import checkpoint, distributed, schedule, stop
from tailstudy.train.distributed import Ranks
from tailstudy.train.vocab import class_weights, subsampled_cross_entropy

log = logging.getLogger("tailstudy.train")

NO_DECAY = ("bn", "ln", "bias", "logit_scale")


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


def build_model(
    cfg: RunConfig, class_names: list[str], text_checkpoint: str | None
) -> tuple[nn.Module, object]:
    """The model of a run, with its pre-trained text tower / frozen head loaded if asked;
    ``class_names`` are the label space's names as the frozen-head prompts use them."""
    r = cfg.recipe
    tokenizer = factory.get_tokenizer(cfg.arch)
    needs_text = (cfg.objective == "clip" and r.text_tower in ("frozen", "init")) or (
        cfg.objective == "sl" and r.head == "frozen"
    )
    text = None  # factory.TextWeights: the state dict and the activation it was trained with
    if needs_text:
        src = dict(cfg.text_source or {})
        if "run" in src:
            if not text_checkpoint:
                raise UserError(
                    f"run {cfg.run_id} needs the text tower of run {src['run']}: "
                    "pass --text-checkpoint results/runs/<that run>/model.pt"
                )
            src = {"checkpoint": text_checkpoint}
        if not src:
            raise UserError(f"run {cfg.run_id} needs a text encoder but its config names none")
        text = factory.pretrained_text_state(src)
    if cfg.objective == "clip":
        model = factory.create_clip(cfg.arch, quick_gelu=text is not None and text.quick_gelu)
        if text is not None:
            factory.load_text_tower(model, text.state, freeze=r.text_tower == "frozen")
        return model, tokenizer
    prototypes = None
    if text is not None:
        clip = factory.create_clip(cfg.arch, quick_gelu=text.quick_gelu)
        factory.load_text_tower(clip, text.state, freeze=True)
        clip.eval()
        prototypes = factory.encode_prompts(
            clip, tokenizer, [r.head_prompt.format(n) for n in class_names]
        )
    return factory.create_sl(cfg.arch, len(class_names), prototypes), tokenizer


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    r = cfg.recipe
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if r.optimizer == "adamw":
        decay = [p for n, p in named if p.ndim >= 2 and not any(s in n for s in NO_DECAY)]
        rest = [p for n, p in named if not (p.ndim >= 2 and not any(s in n for s in NO_DECAY))]
        groups = [
            {"params": rest, "weight_decay": 0.0},
            {"params": decay, "weight_decay": r.weight_decay},
        ]
        # fused kernels: several times faster than the per-tensor loop, on CPU as on GPU
        return torch.optim.AdamW(groups, lr=r.lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
    if r.optimizer == "sgd":
        return torch.optim.SGD(
            [p for _, p in named],
            lr=r.lr,
            momentum=r.momentum,
            nesterov=r.nesterov,
            weight_decay=r.weight_decay,
            fused=True,
        )
    raise UserError(f"recipe {cfg.recipe_name}: unknown optimizer {r.optimizer!r} (adamw | sgd)")


def epoch_steps(rows: int, batch: int, drop_last: bool) -> int:
    """Steps of one epoch over ``rows`` samples. CLIP drops the last partial batch; SL keeps it,
    except a single leftover row: BatchNorm cannot normalise a batch of one in training, so that
    row sits the epoch out (a different row each epoch, as the order is reshuffled)."""
    if drop_last or rows % batch == 1:
        return rows // batch
    return math.ceil(rows / batch)


def lr_at(cfg: RunConfig, step: int, total: int, steps_per_epoch: int) -> float:
    r = cfg.recipe
    if r.schedule == "warmup-cosine":
        return schedule.warmup_cosine(step, r.lr, r.warmup_steps, total)
    if r.schedule == "multistep":
        return schedule.multistep(step, r.lr, total, list(r.milestones), r.gamma)
    if r.schedule == "cosine-epochs":
        return schedule.cosine_epochs(step, r.lr, total, steps_per_epoch)
    raise UserError(f"recipe {cfg.recipe_name}: unknown schedule {r.schedule!r}")


def make_clip_loss(ranks: Ranks | None = None) -> nn.Module:
    """open_clip's ``ClipLoss``; across processes as the paper trained (OpenCLIP's defaults).

    Every rank gathers all ranks' features without gradient and computes the loss over the
    global batch; its own features are put back with their gradient ("local gradients only, no
    gather-with-grad", METHODS §4.2). Each rank's feature gradients are then exactly those of
    the single-process loss over the global batch; DDP averages the resulting weight gradients
    over the ranks.
    """
    import open_clip

    if ranks is None:
        return open_clip.ClipLoss()
    return open_clip.ClipLoss(
        local_loss=False,
        gather_with_grad=False,
        cache_labels=True,
        rank=ranks.rank,
        world_size=ranks.world,
    )


def fit(
    cfg: RunConfig,
    data: InMemorySet,
    out_dir: str | Path,
    ckpt_dir: str | Path,
    text_checkpoint: str | None = None,
    device: str = "auto",
    keep_ckpt: bool = False,
    ranks: Ranks | None = None,
) -> list[dict]:
    """Train one run; writes ``out_dir/model.pt`` and ``out_dir/train_log.jsonl``.

    ``ranks``: this process's rank in an initialised process group when the recipe is
    ``distributed`` (``tailstudy train`` launches the processes); None for a single process.
    """
    # ---- setup
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
            cfg.run_id,
            r.gpus,
            r.gpus,
        )
    world, rank = (ranks.world, ranks.rank) if ranks else (1, 0)
    main = rank == 0
    job = jobinfo.current()  # recorded in every train_log row: the job that trained the epoch
    if main:
        log.info("run %s: %s", cfg.run_id, jobinfo.describe())
    dev = resolve_device(device, r.gpus)
    torch.manual_seed(cfg.seed)  # the same initial weights in every process
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    if len(data) == 0:
        raise UserError(f"run {cfg.run_id}: the training set is empty")
    n, bsz, lbsz = len(data), r.batch_size, r.local_batch_size
    drop_last = cfg.objective == "clip"  # CLIP's sampler drops the last partial batch; SL's not
    if ranks is None:
        steps_per_epoch = epoch_steps(n, bsz, drop_last)
        if steps_per_epoch == 0:
            raise UserError(f"run {cfg.run_id}: batch size {bsz} exceeds the {n} training samples")
    else:
        per_rank = distributed.samples_per_rank(n, world, drop_last)
        steps_per_epoch = epoch_steps(per_rank, lbsz, drop_last)
        if steps_per_epoch == 0:
            raise UserError(
                f"run {cfg.run_id}: the per-process batch {lbsz} exceeds the {per_rank} samples "
                f"each of the {world} processes gets"
            )
    total = r.epochs * steps_per_epoch
    size = data.images.shape[1]
    class_names = data.classes["name"].tolist()
    prompt_names = names_for(data.classes["wnid"], class_names, "head-prompt")

    # ---- data
    tokens = None
    # ---- model
    model, tokenizer = build_model(cfg, prompt_names, text_checkpoint)
    # CLIP normalises over the global batch (SyncBN) on GPUs with nccl; SyncBN has no CPU
    # kernels, so with gloo each process normalises its own batch (rank 0's statistics kept)
    sync_bn = (
        ranks is not None
        and cfg.objective == "clip"
        and dev.type == "cuda"
        and r.distributed.backend == "nccl"
    )
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(dev)
    if cfg.objective == "clip":
        tokens = torch.cat([tokenizer(data.captions[i : i + 4096]) for i in range(0, n, 4096)])
    # ---- precision: distributed runs as the paper's (CLIP: AMP fp16 on CUDA; SL: fp32 + TF32)
    amp = ranks is not None and cfg.objective == "clip" and dev.type == "cuda"
    if ranks is not None and cfg.objective == "sl" and dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    scaler = torch.amp.GradScaler("cuda") if amp else None
    # ---- loss
    if cfg.objective == "clip":
        clip_loss = make_clip_loss(ranks)
    else:
        counts = torch.from_numpy(data.label_counts())
        weights = class_weights(counts, r.vocab_weighting).to(dev)
        group = r.vocab_group or lbsz  # each process draws over its own local batch
    # ---- optimiser / schedule
    opt = make_optimizer(model, cfg)
    max_logit = math.log(r.logit_scale_max)
    # ---- resume
    gen = torch.Generator().manual_seed(cfg.seed + rank)  # augmentation, vocabulary: rank r
    step, history = 0, []
    loss_sum, loss_n = 0.0, 0
    state = checkpoint.load_matching(ckpt_dir, cfg.to_dict())
    if state is not None:
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        own = state["ranks"][rank] if ranks is not None else state
        gen.set_state(own["generator"])
        loss_sum, loss_n = own["loss_acc"]
        step, history = state["step"], state["history"]
        if scaler is not None:
            scaler.load_state_dict(state["scaler"])
        log.info("resumed from %s at step %d/%d", ckpt_dir / checkpoint.LATEST, step, total)
    forward = model
    if ranks is not None:  # after loading: every rank starts from the same weights
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None
        )

    def save_ckpt():
        own = {"generator": gen.get_state(), "loss_acc": [loss_sum, loss_n]}
        every = distributed.gather(own, ranks) if ranks is not None else None
        if not main:
            return
        state = {
            "config": cfg.to_dict(),
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "step": step,
            "history": history,
            "loss_acc": [loss_sum, loss_n],
        }
        if every is not None:
            state["ranks"] = every
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        checkpoint.save(ckpt_dir, state)

    # ---- loop
    log.info(
        "run %s: %s %s, %d samples, %d classes, %d epochs × %d steps, batch %d, device %s",
        cfg.run_id,
        cfg.objective,
        cfg.arch,
        n,
        len(class_names),
        r.epochs,
        steps_per_epoch,
        bsz,
        dev,
    )
    if ranks is not None:
        log.info(
            "%d processes (%s) × batch %d; SyncBN %s, %s",
            world,
            r.distributed.backend,
            lbsz,
            "on" if sync_bn else "off",
            "AMP fp16" if amp else "fp32",
        )
    model.train()
    seen, t0 = 0, time.perf_counter()
    order_epoch, order = -1, None
    while step < total:
        epoch, b = divmod(step, steps_per_epoch)
        if epoch != order_epoch:
            if ranks is None:
                gen_e = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
                order = torch.randperm(n, generator=gen_e)
            else:
                order = distributed.epoch_indices(n, ranks, cfg.seed, epoch, drop_last)
            order_epoch = epoch
        idx = order[b * lbsz : (b + 1) * lbsz]
        lr = lr_at(cfg, step, total, steps_per_epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        x = random_resized_crop(to_float(data.images[idx]), size, r.aug_scale, generator=gen)
        x = normalize(x).to(dev, non_blocking=True)
        with torch.autocast("cuda", dtype=torch.float16) if amp else contextlib.nullcontext():
            if cfg.objective == "clip":
                img, txt, scale = forward(x, tokens[idx].to(dev))
                loss = clip_loss(img, txt, scale)
            else:
                feats, protos = forward(x)
                loss = subsampled_cross_entropy(
                    feats,
                    protos,
                    model.logit_scale.exp(),
                    data.labels[idx].to(dev),
                    r.vocab_size,
                    weights,
                    group,
                    gen,
                )
        if not torch.isfinite(loss):
            raise UserError(f"run {cfg.run_id}: loss became {loss.item()} at step {step}; lower lr")
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, max_logit)
        step += 1
        loss_sum, loss_n, seen = loss_sum + loss.item(), loss_n + 1, seen + len(idx)
        saved = step % steps_per_epoch == 0 or bool(
            r.ckpt_every_steps and step % r.ckpt_every_steps == 0
        )
        if step % steps_per_epoch == 0 or step == total:
            dt = time.perf_counter() - t0
            e_loss, e_n, e_seen = loss_sum, loss_n, seen
            if ranks is not None:  # over all processes' batches
                e_loss, e_n, e_seen = distributed.all_sum([loss_sum, loss_n, seen], dev)
            rec = {
                "epoch": epoch + 1,
                "step": step,
                "loss": e_loss / e_n,
                "lr": lr,
                "logit_scale": model.logit_scale.detach().exp().item(),
                "images_per_s": e_seen / dt if dt > 0 else float("nan"),
                "device": dev.type,
                **job,
            }
            history.append(rec)
            log.info(
                "epoch %d/%d step %d/%d loss %.4f lr %.2e scale %.1f %.0f img/s",
                epoch + 1,
                r.epochs,
                step,
                total,
                rec["loss"],
                lr,
                rec["logit_scale"],
                rec["images_per_s"],
            )
            loss_sum, loss_n, seen, t0 = 0.0, 0, 0, time.perf_counter()
            save_ckpt()
        elif r.ckpt_every_steps and step % r.ckpt_every_steps == 0:
            save_ckpt()
        signum = stop.requested() or 0  # SIGTERM: scancel, preemption, time limit
        if ranks is not None:  # every process stops at the same step: checkpoints are collective
            signum = int(distributed.all_max(signum, dev))
        if signum and step < total:
            if not saved:
                save_ckpt()
            raise Stopped(
                f"run {cfg.run_id}: {signal.Signals(signum).name} at step {step}/{total}; "
                f"checkpoint {ckpt_dir / checkpoint.LATEST} written, a rerun resumes from it",
                signum,
            )

    # ---- final write
    if ranks is not None:
        distributed.check_in_sync(model, ranks)
    if not main:
        return history
    model.eval()
    with atomic_path(out_dir / "model.pt", suffix=".pt") as tmp:
        torch.save(
            {
                "model": model.state_dict(),
                "config": cfg.to_dict(),
                "classes": class_names,
                "quick_gelu": factory.uses_quick_gelu(model),  # rebuilt so by its readers
            },
            tmp,
        )
    import json

    with atomic_path(out_dir / "train_log.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(h, sort_keys=True) + "\n" for h in history))
    if not keep_ckpt:
        checkpoint.remove(ckpt_dir)
    return history
