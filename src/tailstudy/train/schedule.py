"""The optimiser of a run and its learning rate: schedules as pure functions of the step."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tailstudy.io import UserError

if TYPE_CHECKING:
    import torch

    from tailstudy.config import RunConfig

NO_DECAY = ("bn", "ln", "bias", "logit_scale")


def make_optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW (no weight decay on norms, biases, 1-D tensors and the logit scale) or SGD, over
    the trainable parameters."""
    import torch

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
    """The recipe's learning rate at optimiser step ``step`` of ``total``."""
    r = cfg.recipe
    if r.schedule == "warmup-cosine":
        return warmup_cosine(step, r.lr, r.warmup_steps, total)
    if r.schedule == "multistep":
        return multistep(step, r.lr, total, list(r.milestones), r.gamma)
    if r.schedule == "cosine-epochs":
        return cosine_epochs(step, r.lr, total, steps_per_epoch)
    raise UserError(f"recipe {cfg.recipe_name}: unknown schedule {r.schedule!r}")


def warmup_cosine(step: int, base_lr: float, warmup: int, total: int) -> float:
    """Linear warm-up ``base_lr*(step+1)/warmup`` then cosine to 0 over the remaining steps."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    e, es = step - warmup, max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * e / es)) * base_lr


def multistep(
    step: int, base_lr: float, total: int, milestones: list[float], gamma: float
) -> float:
    """Step decay: multiply by ``gamma`` at each milestone, given as a fraction of training.

    The paper's SL schedule (×0.1 at epochs 30, 50, 70 of 90) is ``milestones=[1/3, 5/9, 7/9]``.
    """
    progress = step / max(1, total)
    return base_lr * gamma ** sum(progress >= m for m in milestones)


def cosine_epochs(step: int, base_lr: float, total: int, steps_per_epoch: int) -> float:
    """Per-epoch cosine annealing to 0 (what the authors' SL code actually runs)."""
    epoch = step // max(1, steps_per_epoch)
    epochs = max(1, total // max(1, steps_per_epoch))
    return 0.5 * (1 + math.cos(math.pi * epoch / epochs)) * base_lr
