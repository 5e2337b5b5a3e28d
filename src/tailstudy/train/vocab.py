"""Vocabulary subsampling for supervised learning ("sub voc.", dynamic classification).

At every iteration and for every *local group* of the batch (one GPU's batch in the paper), the
classification vocabulary is the union of the group's labels, topped up to ``k`` classes drawn
without replacement with probability proportional to a class weight; targets are remapped to
positions in that vocabulary. Evaluation always uses the full head.
"""

from __future__ import annotations

import torch

WEIGHTINGS = ("linear", "sqrt", "uniform")


def class_weights(counts: torch.Tensor, weighting: str) -> torch.Tensor:
    """Sampling weights w_c from training-set label counts f_c (linear f, sqrt f, or uniform)."""
    counts = counts.double()
    if weighting == "linear":
        return counts.clone()
    if weighting == "sqrt":
        return counts.sqrt()
    if weighting == "uniform":
        return torch.ones_like(counts)
    raise ValueError(f"unknown vocabulary weighting {weighting!r}; expected one of {WEIGHTINGS}")


def subsample_vocabulary(
    y: torch.Tensor, k: int, weights: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (vocabulary V: sorted class ids, targets remapped to positions in V).

    V ⊇ unique(y) always (never truncated below the group's own classes). If |unique(y)| < k,
    ``k - |unique(y)|`` further classes are drawn without replacement with probability ∝
    ``weights`` (zero for classes already in V; classes of weight 0 are never drawn; if fewer
    positive-weight classes remain than needed, all of them are taken).
    """
    v0 = torch.unique(y)  # sorted
    n_extra = k - v0.numel()
    if n_extra > 0:
        # drawn on CPU, where the trainer's generator lives, whatever device the batch is on
        p = weights.detach().double().cpu().clone()
        p[v0.cpu()] = 0.0
        n_extra = min(n_extra, int((p > 0).sum()))
        if n_extra > 0:
            v1 = torch.multinomial(p, n_extra, replacement=False, generator=generator)
            v0 = torch.sort(torch.cat([v0, v1.to(v0.device, v0.dtype)])).values
    return v0, torch.searchsorted(v0, y)


def subsampled_cross_entropy(
    features: torch.Tensor,
    prototypes: torch.Tensor,
    scale: torch.Tensor,
    y: torch.Tensor,
    k: int | None,
    weights: torch.Tensor | None,
    group: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean cross-entropy over the batch, each local group of ``group`` samples with its own
    subsampled vocabulary (``k=None``: the full vocabulary, plain cross-entropy)."""
    if k is None:
        return torch.nn.functional.cross_entropy(scale * features @ prototypes.T, y)
    total = features.new_zeros(())
    for start in range(0, y.numel(), group):
        f, t = features[start : start + group], y[start : start + group]
        vocab, target = subsample_vocabulary(t, k, weights, generator)
        logits = scale * f @ prototypes[vocab].T
        total = total + torch.nn.functional.cross_entropy(logits, target, reduction="sum")
    return total / y.numel()
