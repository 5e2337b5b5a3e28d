"""Model construction: open_clip CLIP models and the supervised prototype classifier.

Architectures are open_clip model configs. The project registers its own small presets
(``models/presets/*.json``, e.g. ``RN-tiny`` for the embedded world) next to open_clip's built-in
ones (``RN50`` at paper scale), so every model is created through ``open_clip.create_model``.

Pre-trained weights are loaded into a model built with the activation they were trained with:
QuickGELU for OpenAI's weights (and most older OpenCLIP ones), which open_clip's ``RN50`` and
``ViT-B-32`` configs do not build by themselves. open_clip's pretrained config says which; a
``model.pt`` written by the trainer records it (``quick_gelu``) and its readers rebuild it so.
"""

from __future__ import annotations

import logging
from functools import cache
from importlib.resources import files
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tailstudy.models import language

log = logging.getLogger("tailstudy.models")

# Text-tower parameters of an open_clip CLIP (the "head" that frozen/init modes load).
TEXT_TOWER_PREFIXES = (
    "token_embedding.",
    "positional_embedding",
    "transformer.",
    "ln_final.",
    "text_projection",
)


@cache
def register_presets() -> tuple[str, ...]:
    """Register the project's open_clip model configs; returns their names."""
    import open_clip

    names = []
    for entry in files("tailstudy.models").joinpath("presets").iterdir():
        if entry.name.endswith(".json"):
            open_clip.add_model_config(str(entry))
            names.append(entry.name[: -len(".json")])
    return tuple(sorted(names))


def create_clip(arch: str, quick_gelu: bool = False) -> nn.Module:
    """A randomly initialised open_clip CLIP model of architecture ``arch``; ``quick_gelu``
    builds it with QuickGELU instead of the architecture's own activation (the activation the
    weights later loaded into it were trained with: see :func:`pretrained_quick_gelu`)."""
    import open_clip

    register_presets()
    if arch not in open_clip.list_models():
        raise ValueError(f"unknown architecture {arch!r}; open_clip knows e.g. RN50, RN-tiny")
    return open_clip.create_model(arch, pretrained=None, force_quick_gelu=quick_gelu)


def pretrained_quick_gelu(arch: str, pretrained: str) -> bool:
    """Whether open_clip's pretrained weights ``arch``/``pretrained`` were trained with QuickGELU,
    as open_clip's pretrained config records (OpenAI's and most older OpenCLIP weights were).

    A local weights file is in no registry: for one that needs QuickGELU, name the
    ``-quickgelu`` architecture (e.g. ``RN50-quickgelu``), as open_clip does.
    """
    from open_clip.pretrained import get_pretrained_cfg

    register_presets()
    return bool(get_pretrained_cfg(arch, pretrained).get("quick_gelu", False))


def uses_quick_gelu(model: nn.Module) -> bool:
    """Whether ``model`` was built with QuickGELU (recorded in the checkpoints it is saved to)."""
    from open_clip.transformer import QuickGELU

    return any(isinstance(m, QuickGELU) for m in model.modules())


def load_pretrained_clip(arch: str, pretrained: str) -> nn.Module:
    """An open_clip model with pretrained weights (a tag of open_clip's registry, or a local
    file), built with the activation those weights were trained with."""
    import open_clip

    register_presets()
    quick_gelu = pretrained_quick_gelu(arch, pretrained)
    model = open_clip.create_model(arch, pretrained=pretrained, force_quick_gelu=quick_gelu)
    log.info(
        "open_clip %s/%s built with %s",
        arch,
        pretrained,
        "QuickGELU" if uses_quick_gelu(model) else "its architecture's activation",
    )
    return model


def read_checkpoint(path) -> tuple[dict[str, torch.Tensor], bool]:
    """(state dict, QuickGELU?) of a ``model.pt`` this project wrote (which records the
    activation), or of a file holding a bare open_clip state dict (the architecture's own)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model" in obj:
        return obj["model"], bool(obj.get("quick_gelu", False))
    return obj, False


def get_tokenizer(arch: str):
    import open_clip

    register_presets()
    return open_clip.get_tokenizer(arch)


def text_tower_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The text-tower entries of a CLIP state dict (``logit_scale`` and vision excluded)."""
    return {k: v for k, v in state.items() if k.startswith(TEXT_TOWER_PREFIXES)}


def load_text_tower(model: nn.Module, state: dict[str, torch.Tensor], freeze: bool) -> None:
    """Load a text tower into ``model`` (strict over the text keys); optionally freeze it."""
    text = text_tower_state(state)
    own = text_tower_state(model.state_dict())
    missing = sorted(set(own) - set(text))
    unexpected = sorted(set(text) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"text tower does not match the architecture (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}): use the same model preset as the source run"
        )
    for k, v in text.items():
        if own[k].shape != v.shape:
            raise ValueError(f"text tower key {k}: shape {tuple(v.shape)} != {tuple(own[k].shape)}")
    model.load_state_dict(text, strict=False)
    if freeze:
        for name, p in model.named_parameters():
            if name.startswith(TEXT_TOWER_PREFIXES):
                p.requires_grad_(False)


class TextWeights(NamedTuple):
    """A pre-trained text tower's state dict and the activation it was trained with; the model
    that takes it must be built with ``create_clip(arch, quick_gelu=...)``."""

    state: dict[str, torch.Tensor]
    quick_gelu: bool


def pretrained_text_state(source: dict) -> TextWeights:
    """The weights holding a pre-trained text tower, with their activation.

    ``source`` is either ``{"checkpoint": path}`` (a ``model.pt`` written by this project's
    trainer, which records its activation, or any file holding an open_clip state dict) or
    ``{"open_clip": arch, "pretrained": tag}`` (weights through open_clip's own pretrained
    registry, paper scale; QuickGELU where the registry says the weights were trained with it).
    """
    if "checkpoint" in source:
        return TextWeights(*read_checkpoint(source["checkpoint"]))
    model = load_pretrained_clip(source["open_clip"], source["pretrained"])
    return TextWeights(model.state_dict(), uses_quick_gelu(model))


@torch.no_grad()
def encode_prompts(
    model: nn.Module, tokenizer, prompts: list[str], batch: int = 256
) -> torch.Tensor:
    """L2-normalised text embeddings of ``prompts`` (N, D)."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), batch):
        out.append(
            F.normalize(model.encode_text(tokenizer(prompts[i : i + batch]).to(device)), dim=-1)
        )
    return torch.cat(out)


class PrototypeClassifier(nn.Module):
    """Supervised model: CLIP's vision tower + an L2-normalised prototype head (no bias).

    ``logits = exp(t) * normalize(f) @ normalize(W).T``, t learnable (clamped to ln 100 by the
    trainer), W either learnable (random init N(0, D^-1/2)) or a fixed buffer of class-prompt
    embeddings from a frozen text tower.
    """

    def __init__(self, visual: nn.Module, num_classes: int, dim: int, prototypes=None):
        super().__init__()
        self.visual = visual
        if prototypes is None:
            self.head = nn.Parameter(torch.randn(num_classes, dim) * dim**-0.5)
        else:
            if tuple(prototypes.shape) != (num_classes, dim):
                raise ValueError(f"prototypes {tuple(prototypes.shape)} != ({num_classes}, {dim})")
            self.register_buffer("head", prototypes.detach().clone().float())
        self.logit_scale = nn.Parameter(torch.tensor(2.6592600))  # ln(1/0.07)

    @property
    def frozen_head(self) -> bool:
        return not isinstance(self.head, nn.Parameter)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)

    def prototypes(self) -> torch.Tensor:
        return F.normalize(self.head, dim=-1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (normalised features, normalised prototypes); the loss picks the vocabulary."""
        return F.normalize(self.features(images), dim=-1), self.prototypes()


def create_sl(
    arch: str,
    num_classes: int,
    prototypes: torch.Tensor | None = None,
    quick_gelu: bool = False,
) -> nn.Module:
    clip = create_clip(arch, quick_gelu)
    dim = clip.text_projection.shape[1] if prototypes is None else prototypes.shape[1]
    return PrototypeClassifier(clip.visual, num_classes, dim, prototypes)


# --- frozen pre-trained language model as the text tower (METHODS §4.3 frozen_roberta) -------

HF_CONTEXT = 77  # tokens, as the paper's RoBERTa tokenizer


def create_lm_clip(arch: str, source: dict, pretrained: bool = True) -> nn.Module:
    """An open_clip ``CustomTextCLIP``: the vision tower of ``arch`` and open_clip's HF text tower
    over the language model ``source["hf_model"]`` (pooling ``source["pooler"]``, projection
    ``source["proj"]`` to ``arch``'s embedding size; the MLP is width→(width+embed)/2→embed,
    GELU, no bias). The language model, LayerNorms included, is frozen; the projection trains.
    ``pretrained=False`` builds the language model from its config only (weights loaded after)."""
    import open_clip

    register_presets()
    cfg = open_clip.get_model_config(arch)
    if cfg is None:
        raise ValueError(f"unknown architecture {arch!r}; open_clip knows e.g. RN50, RN-tiny")
    path = language.model_path(source["hf_model"])
    text_cfg = {
        "hf_model_name": path,
        "hf_tokenizer_name": path,
        "hf_model_pretrained": pretrained,
        "hf_pooler_type": source.get("pooler", "mean_pooler"),
        "hf_proj_type": source.get("proj", "mlp"),
        "context_length": HF_CONTEXT,
    }
    model = open_clip.CustomTextCLIP(cfg["embed_dim"], cfg["vision_cfg"], text_cfg)
    model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
    return model


def lm_tokenizer(source: dict):
    """open_clip's tokenizer of the language model (its own vocabulary, context 77)."""
    from open_clip.tokenizer import HFTokenizer

    return HFTokenizer(language.model_path(source["hf_model"]), context_length=HF_CONTEXT)


@torch.no_grad()
def lm_pooled_states(
    model: nn.Module, tokens: torch.Tensor, batch: int = 256, device=None, progress=None
) -> torch.Tensor:
    """The frozen language model's pooled caption states (before the trained projection):
    what the projection sees, computed once instead of at every step (N × width, float32)."""
    text = model.text
    device = device or next(text.parameters()).device
    was_training = text.training
    text.eval()  # a frozen model: no dropout
    # batches of similar length, cut after their longest caption: the padding the tokenizer
    # adds up to the context length is masked out of attention and pooling, so cutting it
    # changes nothing but the cost
    lengths = (tokens != text.config.pad_token_id).sum(1)
    order = torch.argsort(lengths, stable=True)
    out = torch.zeros(len(tokens), text.config.hidden_size)
    for i in range(0, len(tokens), batch):
        idx = order[i : i + batch]
        width = max(1, int(lengths[idx].max()))
        x = tokens[idx, :width].to(device)
        mask = (x != text.config.pad_token_id).long()
        states = text.transformer(input_ids=x, attention_mask=mask)
        out[idx] = text.pooler(states, mask).float().cpu()
        if progress:
            progress(min(i + batch, len(tokens)), len(tokens))
    text.train(was_training)
    return out


class LMText(nn.Module):
    """A frozen-LM CLIP's text side for open_clip's zero-shot classifier: ``encode_text``
    through :func:`lm_pooled_states` (padding cut) and the trained projection."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        device = next(self.model.text.proj.parameters()).device
        pooled = lm_pooled_states(self.model, tokens.cpu(), device=device).to(device)
        out = self.model.text.proj(pooled)
        return F.normalize(out, dim=-1) if normalize else out
