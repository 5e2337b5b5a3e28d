"""DINO with prototype subsampling (METHODS §4.7): self-supervised, labels unused.

The pieces live in ``tailstudy.train.dino`` (lightly's head / transforms / schedules, free
L2-normalised prototypes, Sinkhorn or centering targets, the prototype subset); this module
only puts them behind the objective protocol. The model ``fit`` trains is a :class:`DinoPair`:
the student (the only trainable part; DDP wraps it through the pair's ``forward``), the
teacher (built fresh and loaded with the student's state dict, gradients off, moved only by
EMA in ``after_step``) and the loss (its center is a buffer, so checkpoints hold it). The
optimiser and its schedules (lr warm-up + cosine, weight decay, teacher momentum) are DINO's,
through the ``make_optimizer`` / ``schedule`` hooks. ``model.pt`` holds the teacher's vision
tower as ``visual.*`` keys: the linear probe reads it like any other run's tower.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tailstudy.config import Recipe
from tailstudy.io import UserError
from tailstudy.train.objectives.base import Batch, Objective

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tailstudy.data.loader import Rows, TrainingSet


def spec_of(recipe: Recipe, where: str = "recipe dino"):
    from tailstudy.train.dino import DinoSpec

    return DinoSpec.from_dict(recipe.dino, where)


def _pair_class():
    from torch import nn

    class DinoPair(nn.Module):
        """Student, teacher and loss of one DINO run; ``forward`` is the student's."""

        def __init__(self, student, teacher, loss_fn):
            super().__init__()
            self.student, self.teacher, self.loss_fn = student, teacher, loss_fn

        def forward(self, crops, subset=None):
            return self.student(crops, subset)

    return DinoPair


class DINO(Objective):
    name = "dino"
    recipe_keys = ("dino",)
    factor_blanks = {"prototypes": 0, "sample_num": 0}
    drop_last = True
    amp_fp16 = True
    sync_bn = True

    @classmethod
    def run_factors(cls, recipe: Recipe) -> dict[str, Any]:
        spec = spec_of(recipe)
        return {"prototypes": spec.n_prototypes, "sample_num": spec.subset_size}

    def __init__(self, cfg, ranks=None, steps_per_epoch: int = 0):
        super().__init__(cfg, ranks, steps_per_epoch)
        self.spec = spec_of(self.recipe, f"recipe {cfg.recipe_name}: dino")
        self.total = self.recipe.epochs * steps_per_epoch
        self.step = 0  # the next optimiser step (loss draws its prototype subset from it)
        self.momentum = self.spec.momentum_teacher

    # ---- training
    def build(self, class_names: list[str], text_checkpoint: str | None) -> nn.Module:
        from tailstudy.train import dino

        student = dino.build_student(self.cfg.arch, self.spec)
        teacher = dino.build_teacher(student, self.cfg.arch, self.spec)
        return _pair_class()(student, teacher, dino.DinoLoss(self.spec))

    def setup(self, model: nn.Module, data: TrainingSet, device: torch.device) -> None:
        from tailstudy.train.dino import MultiCrop

        super().setup(model, data, device)
        if self.spec.global_crop_size > data.image_size:
            raise UserError(
                f"run {self.cfg.run_id}: global crops of {self.spec.global_crop_size} px exceed "
                f"the {data.image_size}-px training images; lower dino.global_crop_size"
            )
        self.multicrop = MultiCrop(self.spec)

    def make_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        from tailstudy.train.dino import make_optimizer

        return make_optimizer(model.student, self.spec)

    def schedule(self, opt: torch.optim.Optimizer, step: int, total: int) -> float:
        from tailstudy.train.dino import apply_schedules

        hp = apply_schedules(
            opt, self.spec, step, total, self.steps_per_epoch, self.recipe.batch_size
        )
        self.momentum = hp["momentum"]
        return hp["lr"]

    def batch(self, data: TrainingSet, rows: Rows, generator: torch.Generator) -> Batch:
        # streamed: the loader workers decoded the rows' images (uint8, fitted to image_size)
        images = data.images_at(rows.idx) if rows.images is None else rows.images
        crops = self.multicrop(images, generator)
        import torch

        cl = torch.channels_last  # as the model is (``fit``)
        return {"crops": [c.to(self.device, non_blocking=True, memory_format=cl) for c in crops]}

    def epoch(self, step: int) -> int:
        return step // self.steps_per_epoch if self.steps_per_epoch else 0

    def loss(self, net: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        from tailstudy.train.dino import dino_loss, prototype_subset

        subset = prototype_subset(self.spec, self.cfg.seed, self.step, self.device)
        m = self.model
        return dino_loss(net, m.teacher, batch["crops"], m.loss_fn, self.epoch(self.step), subset)

    def after_backward(self, step: int) -> None:
        from tailstudy.train.dino import cancel_prototype_gradients, clip_gradients

        clip_gradients(self.model.student, self.spec.clip_grad)
        cancel_prototype_gradients(
            self.model.student, self.epoch(step), self.spec.freeze_last_layer
        )

    def after_step(self, step: int) -> None:
        from tailstudy.train.dino import update_teacher

        update_teacher(self.model.student, self.model.teacher, self.momentum)
        self.step = step + 1

    def metrics(self) -> dict[str, float]:
        from tailstudy.train.dino import teacher_temperature

        return {
            "teacher_momentum": float(self.momentum),
            "teacher_temp": teacher_temperature(self.spec, self.epoch(max(self.step - 1, 0))),
        }

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state.get("step", 0))

    def export(self) -> dict[str, torch.Tensor]:
        from tailstudy.train.dino import teacher_backbone_state

        return teacher_backbone_state(self.model.teacher)

    # ---- evaluation: transfer by linear probe, no classifier of its own
    def load_trained(self, weights: dict, num_classes: int, quick_gelu: bool = False):
        raise UserError(
            f"run {self.cfg.run_id} is a DINO run: it has no classifier; it is evaluated by "
            "linear probes on the transfer sets"
        )

    def classifier(self, model, class_names, positions, device):
        raise UserError(f"run {self.cfg.run_id} is a DINO run: it has no classifier")
