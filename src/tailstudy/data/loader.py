"""Loading a training or evaluation set (a variant index over a dataset's shards) into memory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from tailstudy.data.format import load_images, read_classes, read_index


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

    def label_counts(self) -> np.ndarray:
        return label_counts(self.labels.numpy(), self.num_classes)


def label_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    return np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.int64)


def load_split(
    dataset_root: str | Path, index_path: str | Path | None = None, progress: bool = True
) -> InMemorySet:
    """Load the rows of ``index_path`` (a variant index; default: the dataset's own index)."""
    index = read_index(index_path or dataset_root, columns=["key", "label", "caption"])
    images = load_images(dataset_root, index["key"].tolist(), progress=progress)
    return InMemorySet(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(index["label"].to_numpy(np.int64)),
        captions=index["caption"].fillna("").astype(str).tolist(),
        classes=read_classes(dataset_root),
    )
