"""Learning-rate schedules as pure functions of the optimiser step."""

from __future__ import annotations

import math


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
