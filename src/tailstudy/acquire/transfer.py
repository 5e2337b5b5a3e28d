"""The DINO transfer sets of METHODS §1.4 from local roots, read with torchvision's classes.

``root`` is the folder handed to the torchvision class (``download=False``: the data must be
there, laid out as torchvision expects, e.g. ``<root>/dtd/dtd/images``, ``<root>/food-101``).
Every image of every split used by the linear probe becomes one row with ``split`` ``train``,
``val`` or ``test``: the probe's regularisation search fits ``train`` and scores ``val``; the
final fit uses ``train`` + ``val`` and scores ``test``. Where the dataset has no official
validation split, ``val`` is the first 20% (floor) of ``np.random.seed(0)``'s permutation of the
training indices (§1.4). The metric the probe reports is in the manifest.

Images keep their file bytes where the torchvision class takes a ``loader`` (the loader returns
the path); otherwise (CIFAR, Pets) the decoded images are stored as PNG. Not built yet:
Birdsnap (images scraped from URLs), Caltech-101 and SUN397 (they need SSLT's / the official
split files) and VOC2007 (multi-label).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.data.format import ShardWriter, finish_dataset
from tailstudy.io import UserError

log = logging.getLogger(__name__)

#: key -> (torchvision class, fixed kwargs, {our split: torchvision split}, metric)
TRANSFER_SETS: dict[str, tuple[str, dict, dict, str]] = {
    "aircraft": ("FGVCAircraft", {"annotation_level": "variant"},
                 {"train": "train", "val": "val", "test": "test"}, "mean_per_class"),
    "cars": ("StanfordCars", {}, {"train": "train", "test": "test"}, "top1"),
    "cifar10": ("CIFAR10", {}, {"train": True, "test": False}, "top1"),
    "cifar100": ("CIFAR100", {}, {"train": True, "test": False}, "top1"),
    "dtd": ("DTD", {"partition": 1}, {"train": "train", "val": "val", "test": "test"}, "top1"),
    "flowers": ("Flowers102", {}, {"train": "train", "val": "val", "test": "test"},
                "mean_per_class"),
    "food": ("Food101", {}, {"train": "train", "test": "test"}, "top1"),
    "pets": ("OxfordIIITPet", {}, {"train": "trainval", "test": "test"}, "mean_per_class"),
}  # fmt: skip

VAL_FRACTION = 0.2


def random_val(n: int, fraction: float = VAL_FRACTION, seed: int = 0) -> np.ndarray:
    """Boolean mask of the training indices that become validation: the first ``floor(n *
    fraction)`` of ``np.random.seed(seed); np.random.permutation(n)``."""
    perm = np.random.RandomState(seed).permutation(n)
    mask = np.zeros(n, dtype=bool)
    mask[perm[: int(np.floor(n * fraction))]] = True
    return mask


def _open(key: str, root: Path, split):
    import inspect

    import torchvision.datasets as tvd

    cls_name, kwargs, _, _ = TRANSFER_SETS[key]
    cls = getattr(tvd, cls_name)
    args = dict(kwargs)
    args["train" if isinstance(split, bool) else "split"] = split
    if "loader" in inspect.signature(cls.__init__).parameters:
        args["loader"] = str  # the sample is the image's path: its bytes are copied unchanged
    try:
        return cls(str(root), download=False, **args)
    except (RuntimeError, FileNotFoundError, OSError) as e:
        raise UserError(
            f"transfer set {key}: torchvision's {cls_name} cannot read {root} ({e}); put the "
            "dataset there as torchvision lays it out"
        ) from None


def _encode(sample) -> tuple[str, bytes, str]:
    """(extension, bytes, path or '') of one torchvision sample."""
    if isinstance(sample, str):
        ext = "png" if sample.lower().endswith(".png") else "jpg"
        return ext, Path(sample).read_bytes(), sample
    buf = io.BytesIO()
    sample.convert("RGB").save(buf, format="PNG")
    return "png", buf.getvalue(), ""


def build_transfer(spec: dict, out: Path, name: str) -> dict:
    key, root = spec["dataset"], Path(spec["root"])
    if key not in TRANSFER_SETS:
        raise UserError(
            f"dataset {name}: unknown transfer set {key!r} ({', '.join(TRANSFER_SETS)})"
        )
    _, _, splits, metric = TRANSFER_SETS[key]
    from tailstudy.acquire.build import _image_size

    rows, classes = [], None
    with ShardWriter(out, name) as writer:
        for ours, theirs in splits.items():
            ds = _open(key, root, theirs)
            names = list(ds.classes)
            if classes is None:
                classes = names
            elif names != classes:
                raise UserError(f"transfer set {key}: split {ours} lists other classes than train")
            split_of = np.full(len(ds), ours, dtype=object)
            if ours == "train" and "val" not in splits:
                split_of[random_val(len(ds))] = "val"
            for i in range(len(ds)):
                sample, label = ds[i]
                ext, data, path = _encode(sample)
                k = f"{ours}-{i:06d}"
                writer.write(k, ext, data)
                rows.append({"key": k, "label": int(label), "caption": "", "split": split_of[i],
                             "path": str(Path(path).relative_to(root)) if path else ""})  # fmt: skip
            log.info("%s: %s split, %d images", name, ours, len(ds))
    index = pd.DataFrame(rows)
    counts = index["split"].value_counts().to_dict()
    return finish_dataset(
        out, name, index, writer, [(c, c) for c in classes], {"source": "transfer", **spec},
        _image_size(spec), {"metric": metric, "splits": {k: int(v) for k, v in counts.items()}},
    )  # fmt: skip
