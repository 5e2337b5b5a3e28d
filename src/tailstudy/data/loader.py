"""Opening a training or evaluation set (a variant index over a dataset's shards): decoded into
memory when small (``load_split``), else streamed from the shards (``tailstudy.data.stream``).

``open_split`` / ``open_eval_split`` make that choice, in one place, from the split's decoded
size against ``in_memory_max_mb``; the trainer and the evaluation read either the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import pandas as pd
import torch

from tailstudy.data.format import (
    index_columns,
    label_counts,
    load_images,
    read_classes,
    read_index,
    read_manifest,
)
from tailstudy.io import UserError

if TYPE_CHECKING:
    from tailstudy.data import stream

__all__ = [
    "InMemorySet",
    "Rows",
    "TrainingSet",
    "label_counts",
    "load_split",
    "open_eval_split",
    "open_split",
]


@dataclass
class Rows:
    """One batch of a training epoch: its rows (``idx``, positions in the split) and, on the
    streaming path, their images already decoded and augmented by the loader workers (float
    NCHW, normalised) and their captions. ``images`` is None on the in-memory path: the
    objective crops the rows' images itself (``objectives.base.one_crop``)."""

    idx: torch.Tensor
    images: torch.Tensor | None = None
    captions: list[str] | None = None


class TrainingSet(Protocol):
    """What the trainer reads of a training set: ``InMemorySet`` (images decoded in memory,
    fetched by row, ``images_at``) or ``stream.StreamedSplit`` (``streams`` True: the batches of
    an epoch come from its loader, images augmented). Labels, captions and the label space come
    from the variant index and stay in memory either way."""

    streams: bool
    labels: torch.Tensor  # int64 [N]
    captions: Sequence[str]
    classes: pd.DataFrame  # label, wnid, name

    def __len__(self) -> int: ...

    @property
    def image_size(self) -> int: ...

    def label_counts(self) -> np.ndarray: ...


@dataclass
class InMemorySet:
    """Decoded images (uint8 NHWC), labels, captions and the label space of one split."""

    images: torch.Tensor
    labels: torch.Tensor
    captions: list[str]
    classes: pd.DataFrame  # label, wnid, name
    streams: ClassVar[bool] = False

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return self.images.shape[1]

    def images_at(self, idx: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC images of rows ``idx`` (a 1-D int64 tensor), in that order."""
        return self.images[idx]

    def eval_batches(
        self, batch: int, resize: float
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(normalised images, labels) of every row in order: the shorter side resized to
        ``image_size × resize``, centre-cropped to ``image_size`` (bicubic)."""
        from tailstudy.data.augment import normalize, resize_center_crop, to_float

        for i in range(0, len(self), batch):
            x = resize_center_crop(to_float(self.images[i : i + batch]), self.image_size, resize)
            yield normalize(x), self.labels[i : i + batch]

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


# --------------------------------------------------------------------------- which path


def split_image_side(dataset_root: str | Path | Sequence[str | Path]) -> int:
    """Side of the square images of a split: its (first) dataset's ``image_size`` (the in-memory
    loader's square; the training crop and evaluation size of the streaming path)."""
    size = read_manifest(_roots(dataset_root)[0]).get("image_size") or [224, 224]
    return int(size[0])


def _split_rows(dataset_root, index_path) -> int:
    return len(read_index(index_path or _roots(dataset_root)[0], columns=["key"]))


def streams(
    dataset_root: str | Path | Sequence[str | Path],
    index_path: str | Path | None,
    in_memory_max_mb: float,
) -> bool:
    """Whether a split streams from its shards: its decoded images exceed ``in_memory_max_mb``."""
    from tailstudy.data.stream import fits_in_memory

    side = split_image_side(dataset_root)
    return not fits_in_memory(_split_rows(dataset_root, index_path), side, in_memory_max_mb)


def open_split(
    dataset_root: str | Path | Sequence[str | Path],
    index_path: str | Path | None = None,
    classes_path: str | Path | None = None,
    *,
    objective: str,
    aug_scale: Sequence[float] = (0.9, 1.0),
    in_memory_max_mb: float | None = None,
    workers: int = 2,
    progress: bool = True,
) -> TrainingSet:
    """A training split: in memory (``load_split``) when its decoded images take at most
    ``in_memory_max_mb`` MiB (default ``stream.DEFAULT_IN_MEMORY_MAX_MB``), else streamed from
    its shards with ``workers`` loader processes and the recipe's train transform of
    ``objective`` (RandomResizedCrop ``aug_scale`` of the source image to the dataset's
    ``image_size``)."""
    from tailstudy.data import stream

    limit = stream.DEFAULT_IN_MEMORY_MAX_MB if in_memory_max_mb is None else in_memory_max_mb
    if not streams(dataset_root, index_path, limit):
        return load_split(dataset_root, index_path, progress, classes_path)
    side = split_image_side(dataset_root)
    source = stream.ShardSource(
        dataset_root,
        index_path,
        classes_path,
        transform=stream.train_transform(objective, side, tuple(aug_scale)),
        progress=progress,
    )
    return stream.StreamedSplit(source, side, workers)


def open_eval_split(
    dataset_root: str | Path,
    *,
    objective: str,
    in_memory_max_mb: float | None = None,
    workers: int = 2,
    progress: bool = False,
) -> InMemorySet | stream.StreamedSplit:
    """An evaluation set (a dataset's own rows), as ``open_split`` chooses; streamed, the
    objective's evaluation transform (resize + centre crop) runs in the loader workers."""
    from tailstudy.data import stream

    limit = stream.DEFAULT_IN_MEMORY_MAX_MB if in_memory_max_mb is None else in_memory_max_mb
    if not streams(dataset_root, None, limit):
        return load_split(dataset_root, progress=progress)
    side = split_image_side(dataset_root)
    source = stream.ShardSource(
        dataset_root, transform=stream.eval_transform(objective, side), progress=progress
    )
    return stream.StreamedSplit(source, side, workers)
