"""Loading a training or evaluation set (a variant index over a dataset's shards) into memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import torch

from tailstudy.data.format import (
    index_columns,
    label_counts,
    load_images,
    read_classes,
    read_index,
)
from tailstudy.io import UserError

__all__ = ["InMemorySet", "TrainingSet", "label_counts", "load_split"]


class TrainingSet(Protocol):
    """What the trainer reads of a training set: map-style access to images by row index.

    Labels, captions and the label space come from the variant index and stay in memory; only
    the images are fetched per batch (``images_at``), so a sharded reader with random access
    (e.g. webdataset's ``wids``) can stand beside ``InMemorySet``.
    """

    labels: torch.Tensor  # int64 [N]
    captions: Sequence[str]
    classes: pd.DataFrame  # label, wnid, name

    def __len__(self) -> int: ...

    @property
    def image_size(self) -> int: ...

    def images_at(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC images of rows ``idx`` (a 1-D int64 tensor), in that order."""
        ...

    def label_counts(self) -> np.ndarray: ...


@dataclass
class InMemorySet:
    """Decoded images (uint8 NHWC), labels, captions and the label space of one split."""

    images: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    classes: pd.DataFrame  # label, wnid, name

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    def images_at(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx]

    def label_counts(self) -> np.ndarray:
        return label_counts(self.labels.numpy(), self.num_classes)


def _roots(dataset_root) -> list[Path]:
    if isinstance(dataset_root, str | Path):
        return [Path(dataset_root)]
    return [Path(r) for r in dataset_root]


def load_split(
    dataset_root: str | Path | Sequence[str | Path],
    index_path: str | Path | None = None,
    progress: bool = True,
    classes_path: str | Path | None = None,
) -> InMemorySet:
    """Load the rows of ``index_path`` (a variant index; default: the dataset's own index).

    The label space is ``classes_path``, else the ``classes.tsv`` beside a variant index, else the
    dataset's. A supplemented variant's index names each row's dataset in a ``dataset`` column;
    pass every dataset folder then (folders are named after their dataset, as under
    ``results/data/``).
    """
    roots = _roots(dataset_root)
    source = index_path or roots[0]
    cols = ["key", "label", "caption"]
    by_dataset = "dataset" in index_columns(source)
    index = read_index(source, columns=cols + (["dataset"] if by_dataset else []))
    if classes_path is None:
        classes_path = Path(index_path).parent if index_path else roots[0]
    classes = read_classes(classes_path)
    labels = index["label"].to_numpy(np.int64)
    if len(labels) and labels.max() >= len(classes):
        raise UserError(
            f"{source} has label {labels.max()} but {classes_path} lists {len(classes)} classes: "
            "rebuild the variant"
        )
    if by_dataset:
        images = _load_from_datasets(roots, index, progress)
    else:
        if len(roots) > 1:
            raise UserError(
                f"{len(roots)} dataset folders given but {source} has no dataset column: "
                "pass only the dataset it indexes"
            )
        images = load_images(roots[0], index["key"].tolist(), progress=progress)
    return InMemorySet(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        captions=index["caption"].fillna("").astype(str).tolist(),
        classes=classes,
    )


def _load_from_datasets(roots: list[Path], index: pd.DataFrame, progress: bool) -> np.ndarray:
    """Images of an index whose rows come from several datasets (``dataset`` column)."""
    by_name = {r.name: r for r in roots}
    wanted = sorted(index["dataset"].unique())
    absent = [d for d in wanted if d not in by_name]
    if absent:
        raise UserError(
            f"the index has rows of dataset(s) {', '.join(absent)}: pass their folders with "
            f"--dataset (given: {', '.join(sorted(by_name)) or 'none'})"
        )
    out: np.ndarray | None = None
    for name in wanted:
        pos = np.flatnonzero((index["dataset"] == name).to_numpy())
        imgs = load_images(by_name[name], index["key"].iloc[pos].tolist(), progress=progress)
        if out is None:
            out = np.empty((len(index), *imgs.shape[1:]), dtype=np.uint8)
        elif imgs.shape[1:] != out.shape[1:]:
            raise UserError(
                f"dataset {name} has images of {imgs.shape[1:3]} pixels, the others "
                f"{out.shape[1:3]}: in-memory training needs one image size"
            )
        out[pos] = imgs
    return out if out is not None else np.empty((0, 0, 0, 3), dtype=np.uint8)
