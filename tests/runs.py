"""Tiny datasets in the project's on-disk format, and configs of short runs on them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tailstudy.concepts import concept_subset
from tailstudy.config import Recipe, RunConfig


def run_config(objective="clip", name="test", **recipe) -> RunConfig:
    """A short run on the tiny dataset (RN-tiny); ``recipe`` keys override the defaults."""
    base = {"epochs": 2, "batch_size": 16, "warmup_steps": 2, "lr": 1e-3}
    if objective == "sl":
        base.update(optimizer="sgd", lr=0.05, weight_decay=1e-4, schedule="multistep")
    base.update(recipe)
    return RunConfig(
        run_id=f"tiny_{objective}_{name}_s0",
        scale="test",
        objective=objective,
        arch="RN-tiny",
        dataset="tiny",
        variant="tiny",
        seed=0,
        eval_dataset="tiny",
        eval_templates="openai80",
        recipe_name="test",
        recipe=Recipe(**base),
    )


def make_dataset(
    root, n_classes=6, per_class=(30, 20, 12, 8, 5, 3), seed=0, size=32, concepts=None, extra=None
):
    """Images whose colour encodes the class; captions name the class and its colour.

    ``concepts``: positions in the ImageNet-100 list of the classes (default: the first
    ``n_classes``); ``extra``: a function adding columns to the index (e.g. LAIONet's
    ``similarity``, ``wnid``, ``row_id``) before it is written."""
    rng = np.random.default_rng(seed)
    every = concept_subset("imagenet100")
    concepts = [every[i] for i in concepts] if concepts is not None else every[:n_classes]
    n_classes = len(concepts)
    colours = rng.integers(0, 255, (n_classes, 3))
    rows, images = [], []
    for c, n in enumerate(per_class[:n_classes]):
        for i in range(n):
            img = np.clip(colours[c] + rng.normal(0, 20, (size, size, 3)), 0, 255)
            images.append(img.astype(np.uint8))
            rows.append(
                {
                    "key": f"s{c:02d}{i:04d}",
                    "label": c,
                    "caption": f"{concepts[c].name} colour {c}",
                    "title": concepts[c].name if i % 3 else "",
                    "tags": [concepts[c].lemmas[0], "photo"] if i % 4 else [],
                    "description": f"a thing of colour {c}" if i % 2 else "",
                }
            )
    order = rng.permutation(len(rows))
    from tailstudy.data.format import write_dataset

    index = pd.DataFrame(rows).iloc[order].reset_index(drop=True)
    if extra is not None:
        index = extra(index, concepts)
    write_dataset(
        root,
        root.name,
        index,
        np.stack(images)[order],
        [(c.wnid, c.name) for c in concepts],
        {"kind": "test"},
        shard_size=40,
    )
    return root
