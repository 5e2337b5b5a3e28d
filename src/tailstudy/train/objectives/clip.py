"""CLIP (METHODS §4.2): contrastive image-text training through open_clip.

The model is open_clip's CLIP; its text tower is trained from scratch, or loaded from a
pre-training run (or open_clip's registry) and frozen (``text_tower: frozen``) or fine-tuned
(``init``). The loss is open_clip's ``ClipLoss`` (symmetric InfoNCE at the learnable logit
scale, capped at ``logit_scale_max``), over the global batch when distributed. Captions are
tokenised once per run. Evaluation is open_clip's zero-shot classifier over prompt templates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tailstudy.concepts import openai_templates
from tailstudy.config import Recipe
from tailstudy.io import UserError
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
    from tailstudy.train.distributed import Ranks

TEXT_TOWERS = ("scratch", "frozen", "init")
TEMPLATES = {"openai80": openai_templates, "plain": lambda: (lambda c: c,)}


def clip_loss(ranks: Ranks | None = None) -> nn.Module:
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


def zero_shot_classifier(model, tokenizer, class_names, templates: str, device) -> torch.Tensor:
    """open_clip's zero-shot classifier: [D, C], columns = normalised mean template embeddings."""
    import open_clip

    if templates not in TEMPLATES:
        raise UserError(f"unknown template set {templates!r}; expected one of {sorted(TEMPLATES)}")
    return open_clip.build_zero_shot_classifier(
        model,
        tokenizer=tokenizer,
        classnames=class_names,
        templates=TEMPLATES[templates](),
        num_classes_per_batch=max(1, 4096 // 80),
        device=device,
    )


class CLIP(Objective):
    name = "clip"
    recipe_keys = ("text_tower",)
    factor_blanks = {"text_tower": ""}
    has_text_tower = True
    drop_last = True  # as open_clip's sampler
    amp_fp16 = True
    sync_bn = True

    @classmethod
    def needs_text_encoder(cls, recipe: Recipe) -> bool:
        return recipe.text_tower in ("frozen", "init")

    @classmethod
    def run_factors(cls, recipe: Recipe) -> dict:
        return {"text_tower": recipe.text_tower}

    def build(self, class_names: list[str], text_checkpoint: str | None) -> nn.Module:
        from tailstudy.models import factory

        self.tokenizer = factory.get_tokenizer(self.cfg.arch)
        text = (
            text_state(self.cfg, text_checkpoint) if self.needs_text_encoder(self.recipe) else None
        )
        # built with the activation the text tower's weights were trained with (QuickGELU for
        # OpenAI's)
        model = factory.create_clip(self.cfg.arch, quick_gelu=text is not None and text.quick_gelu)
        if text is not None:
            factory.load_text_tower(model, text.state, freeze=self.recipe.text_tower == "frozen")
        return model

    def setup(self, model: nn.Module, data: TrainingSet, device: torch.device) -> None:
        import torch

        super().setup(model, data, device)
        self.tokens = None  # streamed: each batch's captions are tokenised as they arrive
        if not data.streams:  # in memory: every caption once, up front
            captions = data.captions
            chunks = [self.tokenizer(captions[i : i + 4096]) for i in range(0, len(captions), 4096)]
            self.tokens = torch.cat(chunks)
        self.clip_loss = clip_loss(self.ranks)

    def batch(self, data: TrainingSet, rows: Rows, generator: torch.Generator) -> Batch:
        x = one_crop(data, rows, self.recipe, generator, self.device)
        if rows.captions is not None:
            tokens = self.tokenizer(rows.captions)
        else:
            tokens = self.tokens[rows.idx]
        return {"images": x, "tokens": tokens.to(self.device, non_blocking=True)}

    def loss(self, net: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        image_features, text_features, scale = net(batch["images"], batch["tokens"])
        return self.clip_loss(image_features, text_features, scale)

    def after_step(self, step: int) -> None:
        clamp_logit_scale(self.model, self.recipe)

    def metrics(self) -> dict[str, float]:
        return {"logit_scale": self.model.logit_scale.detach().exp().item()}

    def load_trained(self, weights: dict, num_classes: int, quick_gelu: bool = False) -> nn.Module:
        from tailstudy.models import factory

        model = factory.create_clip(self.cfg.arch, quick_gelu)
        model.load_state_dict(weights, strict=True)
        return model.eval()

    def classifier(self, model: nn.Module, class_names: list[str], positions, device) -> Classifier:
        """Zero-shot: the evaluation classes' names through the run's own text tower."""
        from tailstudy.models import factory

        tokenizer = factory.get_tokenizer(self.cfg.arch)
        weights = zero_shot_classifier(
            model, tokenizer, class_names, self.cfg.eval_templates, device
        )
        return Classifier(model.encode_image, weights, resize=1.0)
