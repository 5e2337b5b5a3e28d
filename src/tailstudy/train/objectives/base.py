"""What a training objective is: everything in which CLIP, SL and DINO differ.

``fit`` (``tailstudy.train.loop``) owns the shared story: data order and epochs, optimiser and
schedule, precision, DDP, checkpoints, stop/resume, logging. It asks the run's objective, in
this order, and never looks at its name:

========================  =================================================================
``build``                 the model, with its pre-trained text tower / frozen prototypes
``setup``                 per-run state on the final (moved, DDP-ready) model: tokens, loss
``make_optimizer``        the optimiser (default: the recipe's, ``train.schedule``)
``schedule``              set the step's learning rate (default: the recipe's schedule)
``batch``                 one batch from ``Rows``: augmentation, labels or tokens
``loss``                  the loss of a batch through ``net`` (the model, or its DDP wrapper)
``after_backward``        gradients ready, before the optimiser step (hook; default none)
``after_step``            after the optimiser step (logit-scale clamp; an EMA teacher)
``metrics``               extra numbers of the epoch's log line and ``train_log.jsonl``
``state_dict``            extra checkpoint state (default none), ``load_state_dict`` back
``export``                the weights ``model.pt`` holds
========================  =================================================================

and, for evaluation, ``load_trained`` (the model back from ``model.pt``) and ``classifier``
(features and class weights: CLIP's zero-shot classifier, SL's prototypes). Class attributes
say how the loop treats the objective (``drop_last``, ``amp_fp16``, ``sync_bn``); class methods
answer for a recipe before any run exists (``recipe_keys``, ``needs_text_encoder``,
``run_factors``), which is what the run table (``tailstudy.study``) asks.

DINO (``dino.py``) fits without touching ``fit``: its model holds student, teacher and loss;
it brings its own optimiser and schedules through ``make_optimizer`` / ``schedule``, moves the
teacher by EMA in ``after_step`` and exports the teacher's vision tower.

This module and the objective modules are imported by the run table when the workflow is
parsed: they import torch (and the model factory) only inside the methods that train or
evaluate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from tailstudy.config import Recipe, RunConfig
from tailstudy.io import UserError

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from torch import nn

    from tailstudy.data.loader import Rows, TrainingSet
    from tailstudy.train.distributed import Ranks

Batch = dict[str, Any]


@dataclass(frozen=True)
class Classifier:
    """How a trained model classifies: ``logits = 100 · normalize(encode(x)) @ weights``."""

    encode: Callable[[torch.Tensor], torch.Tensor]  # images (normalised NCHW) -> features
    weights: torch.Tensor  # [D, C] over the evaluation classes, columns L2-normalised
    resize: float  # eval transform: resize the shorter side to size·resize, centre-crop size


class Objective:
    """One training objective; an instance serves one run (``cfg``), in one process (``ranks``)."""

    name: ClassVar[str]
    #: recipe keys only this objective reads; another objective's recipe may not set them
    recipe_keys: ClassVar[tuple[str, ...]] = ()
    #: the run-table columns this objective fills, with the value other objectives' runs get
    factor_blanks: ClassVar[dict[str, Any]] = {}
    #: whether other runs may take their text tower (``text_encoders.*.run``) from its runs
    has_text_tower: ClassVar[bool] = False
    #: the sampler drops the last partial batch of an epoch (else keeps it, see ``epoch_steps``)
    drop_last: ClassVar[bool] = False
    #: distributed CUDA runs train under fp16 autocast with a GradScaler (else fp32 with TF32)
    amp_fp16: ClassVar[bool] = False
    #: distributed runs normalise over the global batch (SyncBN; nccl only, no CPU kernels)
    sync_bn: ClassVar[bool] = False

    @classmethod
    def needs_text_encoder(cls, recipe: Recipe) -> bool:
        """Whether runs of this recipe load a pre-trained text tower (``text_encoder``)."""
        return False

    @classmethod
    def text_encoder_kind(cls, recipe: Recipe) -> str:
        """What ``text_encoder`` must name (``tailstudy.study.text_encoder_kind``)."""
        return "CLIP text tower"

    @classmethod
    def run_factors(cls, recipe: Recipe) -> dict[str, Any]:
        """This objective's run-table columns (keys of ``factor_blanks``) for ``recipe``."""
        return {}

    def __init__(self, cfg: RunConfig, ranks: Ranks | None = None, steps_per_epoch: int = 0):
        """``steps_per_epoch``: of this process, as ``fit`` plans them (0 outside training)."""
        self.cfg, self.recipe, self.ranks = cfg, cfg.recipe, ranks
        self.steps_per_epoch = steps_per_epoch
        self.model: nn.Module | None = None
        self.device: torch.device | None = None

    # ---- training
    def build(self, class_names: list[str], text_checkpoint: str | None) -> nn.Module:
        raise NotImplementedError

    def setup(self, model: nn.Module, data: TrainingSet, device: torch.device) -> None:
        """Called once ``model`` is final (SyncBN, device); keeps it for the other methods."""
        self.model, self.device = model, device

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """The run's optimiser over ``model``'s trainable parameters."""
        from tailstudy.train.schedule import make_optimizer

        return make_optimizer(model, self.cfg)

    def schedule(self, opt: torch.optim.Optimizer, step: int, total: int) -> float:
        """Set the hyper-parameters of optimiser step ``step`` of ``total``; returns its lr."""
        from tailstudy.train.schedule import lr_at

        lr = lr_at(self.cfg, step, total, self.steps_per_epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        return lr

    def batch(self, data: TrainingSet, rows: Rows, generator: torch.Generator) -> Batch:
        """The batch of ``rows`` (``rows.idx`` into ``data``; on the streaming path with their
        augmented images and captions)."""
        raise NotImplementedError

    def loss(self, net: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def after_backward(self, step: int) -> None:
        """Gradients are computed (and unscaled under AMP); the optimiser has not stepped.
        ``step`` counts from 0; the epoch is ``step // self.steps_per_epoch``."""

    def after_step(self, step: int) -> None:
        """The optimiser has taken step ``step``."""

    def metrics(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise UserError(
                f"run {self.cfg.run_id}: the checkpoint holds {self.name} state "
                f"({', '.join(state)}) this version does not know; delete the checkpoint"
            )

    def export(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    # ---- evaluation
    def load_trained(
        self, weights: dict[str, torch.Tensor], num_classes: int, quick_gelu: bool = False
    ) -> nn.Module:
        """The exported model in eval mode; ``quick_gelu``: the activation it was trained with
        (``model.pt`` records it)."""
        raise NotImplementedError

    def classifier(self, model: nn.Module, class_names: list[str], positions, device) -> Classifier:
        """``class_names``: the evaluation classes; ``positions``: their rows in the run's label
        space (numpy int array)."""
        raise NotImplementedError


# ---- parts CLIP and SL share


def text_state(cfg: RunConfig, text_checkpoint: str | None) -> dict:
    """The state dict holding the run's pre-trained text tower (``cfg.text_source``)."""
    from tailstudy.models import factory

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
    return factory.pretrained_text_state(src)


def one_crop(
    data: TrainingSet, rows: Rows | torch.Tensor, recipe: Recipe, generator, device: torch.device
) -> torch.Tensor:
    """One RandomResizedCrop per image (``recipe.aug_scale``), normalised, on ``device``.

    In-memory rows (or a plain index tensor) are cropped here from ``generator``; streamed rows
    arrive cropped by the loader workers (the recipe's transform of the source image). The batch
    is channels_last, as the model is (``fit``); on CUDA it goes over from pinned memory.
    """
    import torch

    from tailstudy.data.augment import normalize, random_resized_crop, to_float

    images = getattr(rows, "images", None)
    if images is None:
        idx = getattr(rows, "idx", rows)
        x = to_float(data.images_at(idx))
        x = normalize(
            random_resized_crop(x, data.image_size, recipe.aug_scale, generator=generator)
        )
    else:
        x = images
    if device.type != "cuda":
        return x.to(device).contiguous(memory_format=torch.channels_last)
    if not x.is_pinned():
        x = x.pin_memory()
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def clamp_logit_scale(model: nn.Module, recipe: Recipe) -> None:
    """Keep the learnable temperature ``exp(t)`` at most ``recipe.logit_scale_max``."""
    import torch

    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(recipe.logit_scale_max))
