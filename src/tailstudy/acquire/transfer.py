"""The DINO transfer sets of METHODS §1.4 from local roots.

Most are read with torchvision's classes: ``root`` is the folder handed to the torchvision class
(``download=False``: the data must be there, laid out as torchvision expects, e.g.
``<root>/dtd/dtd/images``, ``<root>/food-101``). Three are read here from their own files, since
torchvision's class lacks the split or the labels the probe needs:

``caltech101`` (102 classes: the 101 categories and ``BACKGROUND_Google``)::

    <root>/caltech101/101_ObjectCategories/<class>/image_NNNN.jpg   (torchvision's layout)
    <root>/caltech101-splits/train.txt, test.txt                    (SSLT's split files)

  A split line is ``<class>/<file> [<label>]`` (e.g. ``accordion/image_0001.jpg 5``; a leading
  ``101_ObjectCategories/`` is allowed), a path relative to ``101_ObjectCategories``. The class is
  the path's folder; the classes are the folders of ``101_ObjectCategories`` sorted by code point
  (``BACKGROUND_Google``, ``Faces``, ``Faces_easy``, ``Leopards``, ``Motorbikes``, ``accordion``,
  ...), the order of SSLT's labels; a label given on the line must equal the folder's index.

``sun397`` (397 classes, partition 01)::

    <root>/SUN397/ClassName.txt, <root>/SUN397/<letter>/<class>/sun_*.jpg  (the SUN397 archive)
    <root>/Partitions/Training_01.txt, Testing_01.txt                    (from Partitions.zip)

  ``ClassName.txt`` lines are class paths (``/a/abbey``, ``/b/bakery/shop``), in label order;
  partition lines are image paths relative to ``SUN397`` (``/a/abbey/sun_aaaaaaaaaa.jpg``), the
  class being the path's folder. classes.tsv keeps the class path as wnid and a readable name
  (``airport terminal``, ``bakery (shop)``).

``voc2007`` (multi-label, the 20 classes of VOC_CLASSES in the devkit's order)::

    <root>/VOCdevkit/VOC2007/ImageSets/Main/train.txt, val.txt, test.txt
    <root>/VOCdevkit/VOC2007/Annotations/<id>.xml, JPEGImages/<id>.jpg

  (torchvision's VOCDetection layout: the trainval and test archives extracted into one
  ``<root>``). An image's ``labels`` are the classes it has a non-difficult object of;
  ``difficult`` lists those it shows only as difficult objects (the devkit's 0 entries, which
  its AP leaves out); ``label`` is -1.

Every image of every split used by the linear probe becomes one row with ``split`` ``train``,
``val`` or ``test``: the probe's regularisation search fits ``train`` and scores ``val``; the
final fit uses ``train`` + ``val`` and scores ``test``. Where the dataset has no official
validation split, ``val`` is the first 20% (floor) of ``np.random.seed(0)``'s permutation of the
training indices (§1.4). The metric the probe reports (``top1``, ``mean_per_class`` or ``map11``,
VOC's 11-point mean average precision) is in the manifest.

Images keep their file bytes where the set is read here or the torchvision class takes a
``loader`` (the loader returns the path); otherwise (CIFAR, Pets) the decoded images are stored
as PNG. Not built: Birdsnap, whose images are scraped from URLs.
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
    "aircraft": (
        "FGVCAircraft",
        {"annotation_level": "variant"},
        {"train": "train", "val": "val", "test": "test"},
        "mean_per_class",
    ),
    "cars": ("StanfordCars", {}, {"train": "train", "test": "test"}, "top1"),
    "cifar10": ("CIFAR10", {}, {"train": True, "test": False}, "top1"),
    "cifar100": ("CIFAR100", {}, {"train": True, "test": False}, "top1"),
    "dtd": ("DTD", {"partition": 1}, {"train": "train", "val": "val", "test": "test"}, "top1"),
    "flowers": (
        "Flowers102",
        {},
        {"train": "train", "val": "val", "test": "test"},
        "mean_per_class",
    ),
    "food": ("Food101", {}, {"train": "train", "test": "test"}, "top1"),
    "pets": ("OxfordIIITPet", {}, {"train": "trainval", "test": "test"}, "mean_per_class"),
}

#: sets read here from their own files: key -> metric
OWN_SETS: dict[str, str] = {"caltech101": "mean_per_class", "sun397": "top1", "voc2007": "map11"}

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

#: where each set's files must be under its ``root`` (named in every error about a bad root)
LAYOUTS: dict[str, str] = {
    "aircraft": "<root>/fgvc-aircraft-2013b/data/ (images/, variants.txt, images_variant_*.txt)",
    "cars": "<root>/stanford_cars/ (cars_train/, cars_test/, devkit/cars_meta.mat, "
    "devkit/cars_train_annos.mat, cars_test_annos_withlabels.mat)",
    "cifar10": "<root>/cifar-10-batches-py/ (data_batch_1..5, test_batch, batches.meta)",
    "cifar100": "<root>/cifar-100-python/ (train, test, meta)",
    "dtd": "<root>/dtd/dtd/ (images/<class>/, labels/train1.txt, val1.txt, test1.txt)",
    "flowers": "<root>/flowers-102/ (jpg/, imagelabels.mat, setid.mat)",
    "food": "<root>/food-101/ (images/<class>/, meta/train.json, meta/test.json)",
    "pets": "<root>/oxford-iiit-pet/ (images/, annotations/trainval.txt, annotations/test.txt)",
    "caltech101": "<root>/caltech101/101_ObjectCategories/<class>/ and "
    "<root>/caltech101-splits/train.txt, test.txt",
    "sun397": "<root>/SUN397/ (ClassName.txt, <letter>/<class>/) and "
    "<root>/Partitions/Training_01.txt, Testing_01.txt",
    "voc2007": "<root>/VOCdevkit/VOC2007/ (Annotations/, JPEGImages/, "
    "ImageSets/Main/train.txt, val.txt, test.txt)",
}

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
        # torchvision's advice to download does not apply: the workflow reads local copies
        why = " ".join(str(e).replace("You can use download=True to download it", "").split())
        raise UserError(
            f"transfer set {key}: torchvision's {cls_name} cannot read {root} ({why}); "
            f"expected {LAYOUTS[key]}"
        ) from None


def _encode(sample) -> tuple[str, bytes, str]:
    """(extension, bytes, path or '') of one torchvision sample."""
    if isinstance(sample, str):
        ext = "png" if sample.lower().endswith(".png") else "jpg"
        return ext, Path(sample).read_bytes(), sample
    buf = io.BytesIO()
    sample.convert("RGB").save(buf, format="PNG")
    return "png", buf.getvalue(), ""


#: one sample of a set read here: (image file, label, extra index columns)
Sample = tuple[Path, int, dict]


def _lines(key: str, path: Path, what: str) -> list[str]:
    """The non-empty stripped lines of a split or class file; UserError naming it if absent."""
    if not path.is_file():
        raise UserError(
            f"transfer set {key}: {path} is missing; put {what} there, laid out as "
            f"{LAYOUTS[key]} (README: Getting the data)"
        )
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise UserError(f"transfer set {key}: {path} lists nothing")
    return lines


def _caltech101(root: Path) -> tuple[list[tuple[str, str]], dict[str, list[Sample]]]:
    images = root / "caltech101" / "101_ObjectCategories"
    if not images.is_dir():
        raise UserError(
            f"transfer set caltech101: {images} is missing; extract Caltech-101's "
            f"101_ObjectCategories there, laid out as {LAYOUTS['caltech101']}"
        )
    names = sorted(d.name for d in images.iterdir() if d.is_dir())
    label_of = {c: i for i, c in enumerate(names)}
    splits = {}
    for split in ("train", "test"):
        path = root / "caltech101-splits" / f"{split}.txt"
        samples = []
        for n, line in enumerate(_lines("caltech101", path, "SSLT's caltech101-splits"), 1):
            parts = line.split()
            rel = parts[0].removeprefix("101_ObjectCategories/").lstrip("/")
            cls = rel.split("/")[0] if "/" in rel else None
            if cls not in label_of or len(parts) > 2 or parts[1:] not in ([], [str(label_of[cls])]):
                raise UserError(
                    f"transfer set caltech101: {path}:{n}: {line!r} is not '<class>/<file> "
                    f"[<label>]' with a class folder of {images} and its index in sorted order"
                )
            samples.append((images / rel, label_of[cls], {}))
        splits[split] = samples
    return [(c, c) for c in names], splits


def sun397_name(class_path: str) -> str:
    """``/a/airport_terminal`` -> ``airport terminal``; ``/b/bakery/shop`` -> ``bakery (shop)``."""
    parts = [p.replace("_", " ") for p in class_path.strip("/").split("/")[1:]]
    return parts[0] + (f" ({', '.join(parts[1:])})" if len(parts) > 1 else "")


def _sun397(root: Path) -> tuple[list[tuple[str, str]], dict[str, list[Sample]]]:
    images = root / "SUN397"
    class_file = images / "ClassName.txt"
    classes = ["/" + c.strip("/") for c in _lines("sun397", class_file, "the SUN397 archive")]
    label_of = {c: i for i, c in enumerate(classes)}
    splits = {}
    for split, file in (("train", "Training_01.txt"), ("test", "Testing_01.txt")):
        path = root / "Partitions" / file
        samples = []
        for n, line in enumerate(_lines("sun397", path, "SUN397's Partitions.zip"), 1):
            rel = "/" + line.strip("/")
            cls = rel.rsplit("/", 1)[0]
            if cls not in label_of:
                raise UserError(
                    f"transfer set sun397: {path}:{n}: {line!r} is not in a class of {class_file}"
                )
            samples.append((images / rel.lstrip("/"), label_of[cls], {}))
        splits[split] = samples
    return [(c, sun397_name(c)) for c in classes], splits


def _voc2007(root: Path) -> tuple[list[tuple[str, str]], dict[str, list[Sample]]]:
    import xml.etree.ElementTree as ET

    base = root / "VOCdevkit" / "VOC2007"
    label_of = {c: i for i, c in enumerate(VOC_CLASSES)}
    splits = {}
    for split in ("train", "val", "test"):
        path = base / "ImageSets" / "Main" / f"{split}.txt"
        samples = []
        for line in _lines("voc2007", path, "the VOC2007 trainval and test archives"):
            image_id = line.split()[0]
            xml = base / "Annotations" / f"{image_id}.xml"
            if not xml.is_file():
                raise UserError(f"transfer set voc2007: {xml} is missing (listed in {path})")
            try:
                objects = ET.parse(xml).getroot().findall("object")
            except ET.ParseError as e:
                raise UserError(f"transfer set voc2007: {xml} is not valid XML ({e})") from None
            shown, hard = set(), set()
            for obj in objects:
                cls = (obj.findtext("name") or "").strip()
                if cls not in label_of:
                    raise UserError(f"transfer set voc2007: {xml}: unknown class {cls!r}")
                difficult = (obj.findtext("difficult") or "0").strip() == "1"
                (hard if difficult else shown).add(label_of[cls])
            extra = {"labels": sorted(shown), "difficult": sorted(hard - shown)}
            samples.append((base / "JPEGImages" / f"{image_id}.jpg", -1, extra))
        splits[split] = samples
    return [(c, c) for c in VOC_CLASSES], splits


_READERS = {"caltech101": _caltech101, "sun397": _sun397, "voc2007": _voc2007}


def _val_split(ours: str, n: int, has_val: bool) -> np.ndarray:
    split_of = np.full(n, ours, dtype=object)
    if ours == "train" and not has_val:
        split_of[random_val(n)] = "val"
    return split_of


def _write_own(key: str, root: Path, name: str, writer: ShardWriter, rows: list) -> list:
    classes, splits = _READERS[key](root)
    for samples in splits.values():
        absent = [p for p, _, _ in samples if not p.is_file()]
        if absent:
            raise UserError(
                f"transfer set {key}: {len(absent)} listed images are missing, e.g. {absent[0]}"
            )
    for ours, samples in splits.items():
        split_of = _val_split(ours, len(samples), "val" in splits)
        for i, (path, label, extra) in enumerate(samples):
            ext, data, _ = _encode(str(path))
            k = f"{ours}-{i:06d}"
            writer.write(k, ext, data)
            rows.append(
                {
                    "key": k,
                    "label": label,
                    "caption": "",
                    "split": split_of[i],
                    "path": str(path.relative_to(root)),
                    **extra,
                }
            )
        log.info("%s: %s split, %d images", name, ours, len(samples))
    return classes


def _write_torchvision(key: str, root: Path, name: str, writer: ShardWriter, rows: list) -> list:
    splits = TRANSFER_SETS[key][2]
    classes = None
    for ours, theirs in splits.items():
        ds = _open(key, root, theirs)
        names = list(ds.classes)
        if classes is None:
            classes = names
        elif names != classes:
            raise UserError(f"transfer set {key}: split {ours} lists other classes than train")
        split_of = _val_split(ours, len(ds), "val" in splits)
        for i in range(len(ds)):
            sample, label = ds[i]
            ext, data, path = _encode(sample)
            k = f"{ours}-{i:06d}"
            writer.write(k, ext, data)
            rows.append(
                {
                    "key": k,
                    "label": int(label),
                    "caption": "",
                    "split": split_of[i],
                    "path": str(Path(path).relative_to(root)) if path else "",
                }
            )
        log.info("%s: %s split, %d images", name, ours, len(ds))
    return [(c, c) for c in classes]


def build_transfer(spec: dict, out: Path, name: str) -> dict:
    key, root = spec["dataset"], Path(spec["root"])
    if key not in TRANSFER_SETS and key not in OWN_SETS:
        raise UserError(
            f"dataset {name}: unknown transfer set {key!r} "
            f"({', '.join(sorted([*TRANSFER_SETS, *OWN_SETS]))})"
        )
    if not root.is_dir():
        raise UserError(
            f"transfer set {key} (dataset {name}): root {root} is not a folder; "
            f"expected {LAYOUTS[key]}"
        )
    metric = OWN_SETS[key] if key in OWN_SETS else TRANSFER_SETS[key][3]
    from tailstudy.acquire.build import _image_size

    rows: list[dict] = []
    with ShardWriter(out, name) as writer:
        write = _write_own if key in OWN_SETS else _write_torchvision
        classes = write(key, root, name, writer, rows)
    index = pd.DataFrame(rows)
    counts = index["split"].value_counts().to_dict()
    return finish_dataset(
        out,
        name,
        index,
        writer,
        classes,
        {"source": "transfer", **spec},
        _image_size(spec),
        {"metric": metric, "splits": {k: int(v) for k, v in counts.items()}},
    )
