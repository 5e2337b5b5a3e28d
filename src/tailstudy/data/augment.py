"""Batched, seeded image transforms on uint8 NHWC tensors (CPU- and GPU-friendly).

CLIP and SL train with RandomResizedCrop(scale=(0.9, 1.0), ratio=(3/4, 4/3), bicubic) → Normalize
(OpenAI mean/std), no flip, no colour augmentation. Crops are drawn from a ``torch.Generator`` so
that a resumed run replays exactly the same augmentations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC → float NCHW in [0, 1]."""
    return images.permute(0, 3, 1, 2).float().div_(255.0)


def normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(OPENAI_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float],
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample RandomResizedCrop of float NCHW images to ``size``×``size`` (bicubic).

    Area fraction ~ U(scale), aspect ratio log-uniform in ``ratio``; crop sides are clipped to
    the image (torchvision falls back to a centre crop there; clipping keeps it vectorised).
    """
    n = x.shape[0]
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    logr = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    r = logr.exp()
    w = (area * r).sqrt().clamp(max=1.0)  # fraction of the width
    h = (area / r).sqrt().clamp(max=1.0)
    cx = (torch.rand(n, generator=generator) * (1 - w) + w / 2) * 2 - 1  # centre in [-1, 1]
    cy = (torch.rand(n, generator=generator) * (1 - h) + h / 2) * 2 - 1
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta.to(x.device), [n, 3, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bicubic", padding_mode="border", align_corners=False)


def resize_center_crop(x: torch.Tensor, size: int, resize_ratio: float = 1.0) -> torch.Tensor:
    """Resize the shorter side to ``round(size*resize_ratio)`` (bicubic), centre-crop ``size``.

    CLIP's eval transform is ``resize_ratio=1``; SL's "Resize 256 → CenterCrop 224" is 256/224.
    """
    target = round(size * resize_ratio)
    h, w = x.shape[-2:]
    if min(h, w) != target:
        s = target / min(h, w)
        x = F.interpolate(x, size=(round(h * s), round(w * s)), mode="bicubic", align_corners=False)
    h, w = x.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]
