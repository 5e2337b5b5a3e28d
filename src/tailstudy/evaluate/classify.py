"""Evaluation of a trained run: top-1/top-5, confusion and per-class statistics.

The run's objective says how its model classifies (``Objective.classifier``): CLIP zero-shot
over the 80 OpenAI templates, SL nearest prototype.

The evaluation set may have fewer classes than the run was trained on (IN-100 val for a 1000-way
run, METHODS §5.1): its classes are found in the training label space by wnid; CLIP's classifier
is built from the evaluation classes' names, SL keeps the head rows of those classes, and the
training-set counts are taken for those classes.

The evaluation set is read as ``data.loader.open_eval_split`` opened it: decoded in memory, or
streamed from its shards (resize + centre crop in the loader workers); the batches are the same
either way.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from tailstudy.concepts import names_for
from tailstudy.config import RunConfig
from tailstudy.data.loader import InMemorySet
from tailstudy.evaluate.metrics import confusion_matrix, neural_collapse, train_positions
from tailstudy.evaluate.outputs import metrics_arrays, metrics_summary
from tailstudy.io import UserError
from tailstudy.train import objectives

if TYPE_CHECKING:
    from tailstudy.data.stream import StreamedSplit

log = logging.getLogger("tailstudy.evaluate")


def load_run_model(model_path: str, cfg: RunConfig, train_names: list[str]) -> torch.nn.Module:
    """The trained model of run ``cfg`` from its ``model.pt``, in eval mode."""
    state = torch.load(model_path, map_location="cpu", weights_only=True)
    if "classes" in state and list(state["classes"]) != list(train_names):
        raise UserError(
            f"{model_path} was trained on {len(state['classes'])} classes that differ from the "
            f"{len(train_names)} of its variant's classes.tsv: retrain run {cfg.run_id}"
        )
    quick_gelu = bool(state.get("quick_gelu", False))  # the activation the run trained with
    return objectives.get(cfg.objective)(cfg).load_trained(
        state["model"], len(train_names), quick_gelu
    )


@torch.no_grad()
def evaluate(
    cfg: RunConfig,
    model_path: str,
    data: InMemorySet | StreamedSplit,
    train_classes,
    train_counts: np.ndarray,
    device,
    batch=512,
    tail_wnids=None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """Return (summary, arrays): ``arrays`` the contents of ``metrics.npz`` over the evaluation
    classes (METHODS §5.5: confusion, acc, pred, the neural-collapse metrics of the
    un-normalised image features against the classifier's class vectors, top-1, top-5, freq),
    ``summary`` their statistics (``outputs.metrics_summary``). ``train_classes`` /
    ``train_counts`` are the run's label space and training-set counts, aligned to the
    evaluation classes by wnid; ``tail_wnids`` (a trimmed variant's T_N) splits the accuracy
    into head & mid and tail (§5.6) over the evaluation classes among them."""
    c = data.num_classes
    if len(train_counts) != len(train_classes):
        raise UserError(
            f"run {cfg.run_id}: {len(train_counts)} training counts for {len(train_classes)} classes"
        )
    pos = train_positions(train_classes["wnid"], data.classes["wnid"], cfg.run_id)
    freq = np.asarray(train_counts)[pos]
    model = load_run_model(model_path, cfg, train_classes["name"].tolist()).to(device)
    objective = objectives.get(cfg.objective)(cfg)
    names = names_for(data.classes["wnid"], data.classes["name"], "zero-shot")
    clf = objective.classifier(model, names, pos, device)
    on_cuda = torch.device(device).type == "cuda"
    if on_cuda:
        model.to(memory_format=torch.channels_last)
    preds, feats, ys, top5 = [], [], [], 0
    for step, (x, y) in enumerate(data.eval_batches(batch, clf.resize)):
        if on_cuda:
            x = (x if x.is_pinned() else x.pin_memory()).to(device, non_blocking=True)
            x = x.contiguous(memory_format=torch.channels_last)
        h = clf.encode(x.to(device)).float()
        feats.append(h.cpu().numpy())
        logits = 100.0 * F.normalize(h, dim=-1) @ clf.weights.float()
        k = min(5, c)
        topk = logits.topk(k, dim=-1).indices.cpu()
        top5 += int((topk == y[:, None]).any(1).sum())
        preds.append(topk[:, 0])
        ys.append(y)
        if step % 20 == 0:
            seen = sum(map(len, ys))
            log.info("run %s: %d/%d images evaluated", cfg.run_id, seen, len(data))
    preds = torch.cat(preds).numpy()
    labels = torch.cat(ys).numpy()  # in the order the batches came (features, predictions)
    conf = confusion_matrix(labels, preds, c)
    vectors = clf.weights.float().cpu().numpy()  # D×C
    nc = neural_collapse(np.concatenate(feats), labels, vectors)
    tail = None
    if tail_wnids is not None:  # T_N's evaluation classes, rarest first
        where = {w: i for i, w in enumerate(data.classes["wnid"])}
        tail = np.array([where[w] for w in tail_wnids if w in where], dtype=np.int64)
    arrays = metrics_arrays(conf, top5 / max(1, len(data)), nc, freq, vectors.T, tail)
    summary = metrics_summary(arrays, tail)
    summary["top5_micro"] = arrays["top5"]
    summary["n_train"] = int(np.sum(train_counts))  # the training set's size (Fig. 5's x)
    return summary, arrays
