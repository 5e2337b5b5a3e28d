"""CLIP (METHODS §4.2): contrastive image-text training through open_clip.

The model is open_clip's CLIP; its text tower is trained from scratch, or loaded from a
pre-training run (or open_clip's registry) and frozen (``text_tower: frozen``) or fine-tuned
(``init``); or it is open_clip's HF text tower over a frozen pre-trained language model of
which only the projection trains (``frozen-lm``, METHODS §4.3 ``frozen_roberta``): the frozen
model's pooled caption states are computed once per caption and dataset (kept, float16, in the
``text_cache`` folder), so a step runs only the projection. The loss is open_clip's
``ClipLoss`` (symmetric InfoNCE at the learnable logit scale, capped at ``logit_scale_max``),
over the global batch when distributed. Captions are tokenised once per run. Evaluation is
open_clip's zero-shot classifier over prompt templates.
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

TEXT_TOWERS = ("scratch", "frozen", "init", "frozen-lm")
LM = "frozen-lm"
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

    text_cache: str | None = None  # folder of cached frozen language-model states (fit sets it)

    @classmethod
    def needs_text_encoder(cls, recipe: Recipe) -> bool:
        return recipe.text_tower in ("frozen", "init", LM)

    @classmethod
    def text_encoder_kind(cls, recipe: Recipe) -> str:
        return "language model" if recipe.text_tower == LM else super().text_encoder_kind(recipe)

    @classmethod
    def run_factors(cls, recipe: Recipe) -> dict:
        return {"text_tower": recipe.text_tower}

    @property
    def frozen_lm(self) -> bool:
        return self.recipe.text_tower == LM

    def build(self, class_names: list[str], text_checkpoint: str | None) -> nn.Module:
        from tailstudy.models import factory

        if self.frozen_lm:
            self.tokenizer = factory.lm_tokenizer(self.cfg.text_source)
            return factory.create_lm_clip(self.cfg.arch, self.cfg.text_source)
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
        if self.frozen_lm or not data.streams:  # every caption once, up front
            captions = list(data.captions)
            chunks = [self.tokenizer(captions[i : i + 4096]) for i in range(0, len(captions), 4096)]
            self.tokens = torch.cat(chunks)
        if self.frozen_lm:  # the frozen model's states of every caption of the split, cached
            self.states = lm_states(
                model, self.cfg, captions, self.tokens, self.text_cache, self.ranks
            )
        self.clip_loss = clip_loss(self.ranks)

    def batch(self, data: TrainingSet, rows: Rows, generator: torch.Generator) -> Batch:
        x = one_crop(data, rows, self.recipe, generator, self.device)
        if self.frozen_lm:
            return {"images": x, "states": self.states[rows.idx].to(self.device).float()}
        if rows.captions is not None:
            tokens = self.tokenizer(rows.captions)
        else:
            tokens = self.tokens[rows.idx]
        return {"images": x, "tokens": tokens.to(self.device, non_blocking=True)}

    def loss(self, net: nn.Module, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        if self.frozen_lm:  # the frozen language model's part is cached: only its projection runs
            import torch.nn.functional as F

            image_features, _, scale = net(batch["images"], None)
            text_features = F.normalize(self.model.text.proj(batch["states"]), dim=-1)
            return self.clip_loss(image_features, text_features, scale)
        image_features, text_features, scale = net(batch["images"], batch["tokens"])
        return self.clip_loss(image_features, text_features, scale)

    def after_step(self, step: int) -> None:
        clamp_logit_scale(self.model, self.recipe)

    def metrics(self) -> dict[str, float]:
        return {"logit_scale": self.model.logit_scale.detach().exp().item()}

    def load_trained(self, weights: dict, num_classes: int, quick_gelu: bool = False) -> nn.Module:
        from tailstudy.models import factory

        if self.frozen_lm:
            model = factory.create_lm_clip(self.cfg.arch, self.cfg.text_source, pretrained=False)
        else:
            model = factory.create_clip(self.cfg.arch, quick_gelu)
        model.load_state_dict(weights, strict=True)
        return model.eval()

    def classifier(self, model: nn.Module, class_names: list[str], positions, device) -> Classifier:
        """Zero-shot: the evaluation classes' names through the run's own text tower."""
        from tailstudy.models import factory

        tokenizer = (
            factory.lm_tokenizer(self.cfg.text_source)
            if self.frozen_lm
            else factory.get_tokenizer(self.cfg.arch)
        )
        text = factory.LMText(model) if self.frozen_lm else model  # the frozen LM, padding cut
        weights = zero_shot_classifier(
            text, tokenizer, class_names, self.cfg.eval_templates, device
        )
        return Classifier(model.encode_image, weights, resize=1.0)


def lm_states(
    model, cfg, captions: list[str], tokens, cache: str | None, ranks: Ranks | None = None
) -> torch.Tensor:
    """The frozen language model's pooled states of ``captions``, each distinct caption encoded
    once per dataset, kept in float16: ``cache/<dataset>.pt`` keeps the states of every caption
    encoded so far
    (by the runs of this encoder on that dataset); only the captions it lacks are encoded, and
    the file is rewritten with them. A distributed run's ranks each encode a share of them and
    gather the rest (rank 0 writes the file)."""
    import logging
    from pathlib import Path

    import torch

    from tailstudy.io import atomic_path
    from tailstudy.models import factory

    log = logging.getLogger("tailstudy.train")
    path = Path(cache, f"{cfg.dataset}.pt") if cache else None
    known: dict[str, int] = {}
    stored = None
    if path is not None and path.exists():
        stored = torch.load(path, map_location="cpu", weights_only=True)
        if stored.get("encoder") != cfg.text_source:
            raise UserError(
                f"{path} holds the states of another text encoder ({stored.get('encoder')}); "
                "delete it"
            )
        known = {c: i for i, c in enumerate(stored["captions"])}
    missing = sorted({c for c in captions if c not in known})
    log.info(
        "frozen language model: %d distinct captions cached, %d to encode",
        len(set(captions)) - len(missing),
        len(missing),
    )

    def progress(done, total):
        if done == total or done % (50 * 256) == 0:
            log.info("frozen language model: %d/%d captions encoded", done, total)

    if missing:
        pos = {c: i for i, c in enumerate(captions)}
        todo = tokens[[pos[c] for c in missing]]
        if ranks is None or ranks.world == 1:
            new = factory.lm_pooled_states(model, todo, progress=progress)
        else:
            new = _gathered_states(model, todo, ranks, progress)
        old_captions = stored["captions"] if stored else []
        new = new.half()  # what the projection sees under AMP; half the memory of float32
        states = torch.cat([stored["states"], new]) if stored else new
        all_captions = [*old_captions, *missing]
        known = {c: i for i, c in enumerate(all_captions)}
        if path is not None and (ranks is None or ranks.main):
            with atomic_path(path, suffix=".pt") as tmp:
                torch.save(
                    {"encoder": cfg.text_source, "captions": all_captions, "states": states}, tmp
                )
    else:
        states = stored["states"]
    return states[[known[c] for c in captions]]


def _gathered_states(model, tokens, ranks: Ranks, progress) -> torch.Tensor:
    """Rank r encodes rows r, r + world, ...; every rank gathers all of them."""
    import torch
    from torch import distributed as dist

    from tailstudy.models import factory

    n, world = len(tokens), ranks.world
    share = -(-n // world)
    mine = factory.lm_pooled_states(model, tokens[ranks.rank :: world], progress=progress)
    device = next(model.text.proj.parameters()).device
    padded = torch.zeros(share, mine.shape[1], device=device)
    padded[: len(mine)] = mine.to(device)
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    out = torch.zeros(n, mine.shape[1])
    for r, part in enumerate(parts):
        rows = torch.arange(r, n, world)
        out[rows] = part[: len(rows)].cpu()
    return out
