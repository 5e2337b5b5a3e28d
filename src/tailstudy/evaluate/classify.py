"""Evaluation of a trained run: CLIP zero-shot (80 OpenAI templates) or SL nearest prototype.

The evaluation set may have fewer classes than the run was trained on (IN-100 val for a 1000-way
run, METHODS §5.1): its classes are found in the training label space by wnid; CLIP's classifier
is built from the evaluation classes' names, SL keeps the head rows of those classes, and the
training-set counts are taken for those classes.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from tailstudy.concepts import names_for, openai_templates
from tailstudy.config import RunConfig
from tailstudy.data.augment import normalize, resize_center_crop, to_float
from tailstudy.data.loader import InMemorySet
from tailstudy.evaluate.metrics import confusion_matrix, per_class, summarize, train_positions
from tailstudy.io import UserError
from tailstudy.models import factory

log = logging.getLogger("tailstudy.evaluate")

TEMPLATES = {"openai80": openai_templates, "plain": lambda: (lambda c: c,)}
SL_EVAL_RESIZE = 256 / 224  # SL: Resize 256 → CenterCrop 224; CLIP: resize to the crop size


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


def load_run_model(model_path: str, cfg: RunConfig, train_names: list[str]) -> torch.nn.Module:
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    if "classes" in state and list(state["classes"]) != list(train_names):
        raise UserError(
            f"{model_path} was trained on {len(state['classes'])} classes that differ from the "
            f"{len(train_names)} of its variant's classes.tsv: retrain run {cfg.run_id}"
        )
    quick_gelu = bool(state.get("quick_gelu", False))  # the activation the run trained with
    if cfg.objective == "clip":
        model = factory.create_clip(cfg.arch, quick_gelu)
    else:
        head = state["model"]["head"]
        model = factory.create_sl(
            cfg.arch, len(train_names), head if cfg.recipe.head == "frozen" else None, quick_gelu
        )
    model.load_state_dict(state["model"], strict=True)
    return model.eval()


@torch.no_grad()
def evaluate(
    cfg: RunConfig,
    model_path: str,
    data: InMemorySet,
    train_classes,
    train_counts: np.ndarray,
    device,
    batch=512,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (summary, arrays) where arrays hold the confusion matrix and per-class stats over
    the evaluation classes; ``train_classes`` / ``train_counts`` are the run's label space and
    training-set counts, aligned to the evaluation classes by wnid."""
    c = data.num_classes
    if len(train_counts) != len(train_classes):
        raise UserError(
            f"run {cfg.run_id}: {len(train_counts)} training counts for {len(train_classes)} classes"
        )
    pos = train_positions(train_classes["wnid"], data.classes["wnid"], cfg.run_id)
    freq = np.asarray(train_counts)[pos]
    model = load_run_model(model_path, cfg, train_classes["name"].tolist()).to(device)
    names = names_for(data.classes["wnid"], data.classes["name"], "zero-shot")
    if cfg.objective == "clip":
        tokenizer = factory.get_tokenizer(cfg.arch)
        weights = zero_shot_classifier(model, tokenizer, names, cfg.eval_templates, device)
        encode, resize = model.encode_image, 1.0
    else:  # nearest prototype over the head rows of the evaluation classes
        weights = model.prototypes()[torch.from_numpy(pos).to(device)].T
        encode, resize = model.features, SL_EVAL_RESIZE
    size = data.images.shape[1]
    preds, top5 = [], 0
    for i in range(0, len(data), batch):
        x = resize_center_crop(to_float(data.images[i : i + batch]), size, resize)
        f = F.normalize(encode(normalize(x).to(device)), dim=-1)
        logits = 100.0 * f @ weights
        k = min(5, c)
        topk = logits.topk(k, dim=-1).indices.cpu()
        y = data.labels[i : i + batch]
        top5 += int((topk == y[:, None]).any(1).sum())
        preds.append(topk[:, 0])
    preds = torch.cat(preds).numpy()
    conf = confusion_matrix(data.labels.numpy(), preds, c)
    summary = summarize(conf, freq, top5)
    pc = per_class(conf)
    return summary, {"confusion": conf, "acc": pc["acc"], "pred": pc["pred"], "freq": freq}
