"""The trainer: ``fit()`` trains one run (CLIP or SL) from its RunConfig.

Sections, in order: setup → data → model → loss → optimiser/schedule → resume → loop → final
write. Device-agnostic (CPU works); single process. All randomness flows from the run seed:
the epoch permutation from ``(seed, epoch)``, augmentation and vocabulary draws from one
generator whose state is checkpointed, so a run resumed after a kill ends bit-identical (on CPU,
same thread count) to an uninterrupted one.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from pathlib import Path

import torch
from torch import nn

from tailstudy import jobinfo
from tailstudy.config import RunConfig
from tailstudy.data.augment import normalize, random_resized_crop, to_float
from tailstudy.data.loader import InMemorySet
from tailstudy.io import Stopped, UserError, atomic_path
from tailstudy.models import factory
from tailstudy.train import checkpoint, schedule, stop
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
                gpus, os.environ.get("CUDA_VISIBLE_DEVICES", "unset"),
            )  # fmt: skip
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(
            "--device cuda was requested but no CUDA device is visible; use --device cpu"
        )
    return torch.device(device)


def build_model(
    cfg: RunConfig, class_names: list[str], text_checkpoint: str | None
) -> tuple[nn.Module, object]:
    """The model of a run, with its pre-trained text tower / frozen head loaded if asked."""
    r = cfg.recipe
    tokenizer = factory.get_tokenizer(cfg.arch)
    needs_text = (cfg.objective == "clip" and r.text_tower in ("frozen", "init")) or (
        cfg.objective == "sl" and r.head == "frozen"
    )
    text_state = None
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
        text_state = factory.pretrained_text_state(src)
    if cfg.objective == "clip":
        model = factory.create_clip(cfg.arch)
        if text_state is not None:
            factory.load_text_tower(model, text_state, freeze=r.text_tower == "frozen")
        return model, tokenizer
    prototypes = None
    if text_state is not None:
        clip = factory.create_clip(cfg.arch)
        factory.load_text_tower(clip, text_state, freeze=True)
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


def lr_at(cfg: RunConfig, step: int, total: int, steps_per_epoch: int) -> float:
    r = cfg.recipe
    if r.schedule == "warmup-cosine":
        return schedule.warmup_cosine(step, r.lr, r.warmup_steps, total)
    if r.schedule == "multistep":
        return schedule.multistep(step, r.lr, total, list(r.milestones), r.gamma)
    if r.schedule == "cosine-epochs":
        return schedule.cosine_epochs(step, r.lr, total, steps_per_epoch)
    raise UserError(f"recipe {cfg.recipe_name}: unknown schedule {r.schedule!r}")


def fit(
    cfg: RunConfig,
    data: InMemorySet,
    out_dir: str | Path,
    ckpt_dir: str | Path,
    text_checkpoint: str | None = None,
    device: str = "auto",
    keep_ckpt: bool = False,
) -> list[dict]:
    """Train one run; writes ``out_dir/model.pt`` and ``out_dir/train_log.jsonl``."""
    # ---- setup
    r = cfg.recipe
    job = jobinfo.current()  # recorded in every train_log row: the job that trained the epoch
    log.info("run %s: %s", cfg.run_id, jobinfo.describe())
    dev = resolve_device(device, r.gpus)
    torch.manual_seed(cfg.seed)
    out_dir, ckpt_dir = Path(out_dir), Path(ckpt_dir)
    if len(data) == 0:
        raise UserError(f"run {cfg.run_id}: the training set is empty")
    n, bsz = len(data), r.batch_size
    drop_last = cfg.objective == "clip"  # CLIP's sampler drops the last partial batch; SL's not
    steps_per_epoch = n // bsz if drop_last else math.ceil(n / bsz)
    if steps_per_epoch == 0:
        raise UserError(f"run {cfg.run_id}: batch size {bsz} exceeds the {n} training samples")
    total = r.epochs * steps_per_epoch
    size = data.images.shape[1]
    class_names = data.classes["name"].tolist()

    # ---- data
    tokens = None
    # ---- model
    model, tokenizer = build_model(cfg, class_names, text_checkpoint)
    model.to(dev)
    if cfg.objective == "clip":
        tokens = torch.cat([tokenizer(data.captions[i : i + 4096]) for i in range(0, n, 4096)])
    # ---- loss
    if cfg.objective == "clip":
        import open_clip

        clip_loss = open_clip.ClipLoss()
    else:
        counts = torch.from_numpy(data.label_counts())
        weights = class_weights(counts, r.vocab_weighting).to(dev)
        group = r.vocab_group or bsz
    # ---- optimiser / schedule
    opt = make_optimizer(model, cfg)
    max_logit = math.log(r.logit_scale_max)
    # ---- resume
    gen = torch.Generator().manual_seed(cfg.seed)
    step, history = 0, []
    loss_sum, loss_n = 0.0, 0
    state = checkpoint.load_matching(ckpt_dir, cfg.to_dict())
    if state is not None:
        model.load_state_dict(state["model"], strict=True)
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        step, history = state["step"], state["history"]
        loss_sum, loss_n = state["loss_acc"]
        log.info("resumed from %s at step %d/%d", ckpt_dir / checkpoint.LATEST, step, total)

    def save_ckpt():
        checkpoint.save(
            ckpt_dir,
            {
                "config": cfg.to_dict(),
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "generator": gen.get_state(),
                "step": step,
                "history": history,
                "loss_acc": [loss_sum, loss_n],
            },
        )

    # ---- loop
    log.info(
        "run %s: %s %s, %d samples, %d classes, %d epochs × %d steps, batch %d, device %s",
        cfg.run_id, cfg.objective, cfg.arch, n, len(class_names), r.epochs, steps_per_epoch,
        bsz, dev,
    )  # fmt: skip
    model.train()
    seen, t0 = 0, time.perf_counter()
    while step < total:
        epoch, b = divmod(step, steps_per_epoch)
        perm = torch.randperm(
            n, generator=torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
        )
        idx = perm[b * bsz : (b + 1) * bsz]
        lr = lr_at(cfg, step, total, steps_per_epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        x = random_resized_crop(to_float(data.images[idx]), size, r.aug_scale, generator=gen)
        x = normalize(x).to(dev, non_blocking=True)
        if cfg.objective == "clip":
            img, txt, scale = model(x, tokens[idx].to(dev))
            loss = clip_loss(img, txt, scale)
        else:
            feats, protos = model(x)
            loss = subsampled_cross_entropy(
                feats, protos, model.logit_scale.exp(), data.labels[idx].to(dev),
                r.vocab_size, weights, group, gen,
            )  # fmt: skip
        if not torch.isfinite(loss):
            raise UserError(f"run {cfg.run_id}: loss became {loss.item()} at step {step}; lower lr")
        opt.zero_grad(set_to_none=True)
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
            rec = {
                "epoch": epoch + 1,
                "step": step,
                "loss": loss_sum / loss_n,
                "lr": lr,
                "logit_scale": model.logit_scale.detach().exp().item(),
                "images_per_s": seen / dt if dt > 0 else float("nan"),
                "device": dev.type,
                **job,
            }
            history.append(rec)
            log.info(
                "epoch %d/%d step %d/%d loss %.4f lr %.2e scale %.1f %.0f img/s",
                epoch + 1, r.epochs, step, total, rec["loss"], lr, rec["logit_scale"],
                rec["images_per_s"],
            )  # fmt: skip
            loss_sum, loss_n, seen, t0 = 0.0, 0, 0, time.perf_counter()
            save_ckpt()
        elif r.ckpt_every_steps and step % r.ckpt_every_steps == 0:
            save_ckpt()
        if stop.requested() and step < total:  # SIGTERM: scancel, preemption, time limit
            if not saved:
                save_ckpt()
            signum = stop.requested()
            raise Stopped(
                f"run {cfg.run_id}: {signal.Signals(signum).name} at step {step}/{total}; "
                f"checkpoint {ckpt_dir / checkpoint.LATEST} written, a rerun resumes from it",
                signum,
            )

    # ---- final write
    model.eval()
    with atomic_path(out_dir / "model.pt", suffix=".pt") as tmp:
        torch.save(
            {"model": model.state_dict(), "config": cfg.to_dict(), "classes": class_names}, tmp
        )
    import json

    with atomic_path(out_dir / "train_log.jsonl") as tmp:
        tmp.write_text("".join(json.dumps(h, sort_keys=True) + "\n" for h in history))
    if not keep_ckpt:
        checkpoint.remove(ckpt_dir)
    return history
