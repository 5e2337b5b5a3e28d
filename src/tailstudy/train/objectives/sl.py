"""Supervised learning (METHODS §4.3–4.5): CLIP's vision tower and a prototype head.

The head is L2-normalised prototypes, learnable from a random init (``head: random``) or the
frozen text tower's embeddings of the class prompts (``head: frozen``, prompt ``head_prompt``);
logits are cosine similarities times the learnable logit scale. With ``vocab_size`` K, every
local group of the batch (``vocab_group`` rows, default the process's batch) classifies over
its own vocabulary: its labels topped up to K classes drawn by ``vocab_weighting``
(``tailstudy.train.vocab``). Evaluation is the nearest prototype over the full head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailstudy.config import Recipe
from tailstudy.train.objectives.base import (
    Batch,
    Classifier,
    Objective,
    clamp_logit_scale,
    one_crop,
    text_state,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from tailstudy.data.loader import Rows, TrainingSet

HEADS = ("random", "frozen")
EVAL_RESIZE = 256 / 224  # Resize 256 → CenterCrop 224 (CLIP resizes to the crop size)


class SL(Objective):
    name = "sl"
    recipe_keys = ("head", "vocab_size", "vocab_weighting", "vocab_group")
    factor_blanks = {"head": "", "vocab_size": 0, "vocab_weighting": ""}
    drop_last = False  # keeps the last partial batch (see loop.epoch_steps)
    amp_fp16 = False  # fp32, TF32 matmuls on CUDA
    sync_bn = False

    @classmethod
    def needs_text_encoder(cls, recipe: Recipe) -> bool:
        return recipe.head == "frozen"

    @classmethod
    def run_factors(cls, recipe: Recipe) -> dict:
        return {
            "head": recipe.head,
            "vocab_size": recipe.vocab_size or 0,
            "vocab_weighting": recipe.vocab_weighting if recipe.vocab_size else "",
        }

    def build(self, class_names: list[str], text_checkpoint: str | None) -> nn.Module:
        from tailstudy.models import factory

        prototypes = None
        if self.needs_text_encoder(self.recipe):  # the class prompts through the frozen tower
            text = text_state(self.cfg, text_checkpoint)
            clip = factory.create_clip(self.cfg.arch, quick_gelu=text.quick_gelu)
            factory.load_text_tower(clip, text.state, freeze=True)
            clip.eval()
            prompts = [self.recipe.head_prompt.format(n) for n in class_names]
            prototypes = factory.encode_prompts(clip, factory.get_tokenizer(self.cfg.arch), prompts)
        return factory.create_sl(self.cfg.arch, len(class_names), prototypes)

    def setup(self, model: nn.Module, data: TrainingSet, device: torch.device) -> None:
        import torch

        from tailstudy.train.vocab import class_weights

        super().setup(model, data, device)
        counts = torch.from_numpy(data.label_counts())
        self.class_weights = class_weights(counts, self.recipe.vocab_weighting).to(device)
        # each process draws over its own local batch
        self.group = self.recipe.vocab_group or self.recipe.local_batch_size

    def batch(self, data: TrainingSet, rows: Rows, generator: torch.Generator) -> Batch:
        x = one_crop(data, rows, self.recipe, generator, self.device)
        return {"images": x, "labels": data.labels[rows.idx].to(self.device, non_blocking=True)}

    def loss(self, net: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        from tailstudy.train.vocab import subsampled_cross_entropy

        features, prototypes = net(batch["images"])
        return subsampled_cross_entropy(
            features,
            prototypes,
            self.model.logit_scale.exp(),
            batch["labels"],
            self.recipe.vocab_size,
            self.class_weights,
            self.group,
            generator,
        )

    def after_step(self, step: int) -> None:
        clamp_logit_scale(self.model, self.recipe)

    def metrics(self) -> dict[str, float]:
        return {"logit_scale": self.model.logit_scale.detach().exp().item()}

    def load_trained(self, weights: dict, num_classes: int, quick_gelu: bool = False) -> nn.Module:
        from tailstudy.models import factory

        frozen = weights["head"] if self.recipe.head == "frozen" else None
        model = factory.create_sl(self.cfg.arch, num_classes, frozen, quick_gelu)
        model.load_state_dict(weights, strict=True)
        return model.eval()

    def classifier(self, model: nn.Module, class_names: list[str], positions, device) -> Classifier:
        """Nearest prototype over the head rows of the evaluation classes."""
        import torch

        weights = model.prototypes()[torch.from_numpy(positions).to(device)].T
        return Classifier(model.features, weights, resize=EVAL_RESIZE)
