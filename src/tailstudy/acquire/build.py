"""Dataset builders for real data: everything lands in the format of ``tailstudy.data.format``.

* ``imagenet-captions``: the ImageNet-Captions JSON records whose wnid is an ImageNet-1k class,
  with their images from a local ImageNet train folder (``<root>/<wnid>/<filename>``); rows keep
  ``title``, ``tags`` and ``description`` so that the caption variants apply (METHODS §1.1).
* ``image-folder``: an evaluation set from class folders, ``<root>/<wnid>/`` (ImageNet val) or
  ``<root>/<index>/`` (ImageNetV2, 0..999); ``imagenet100`` keeps the 100 classes of §0.2 and
  labels them by rank (§1.3).
* ``laionet`` / ``cls``: the images img2dataset downloaded for the URL table; failed rows are
  left out. LAIONet keeps ``row_id``, ``wnid`` and ``similarity``; a -Cls image that matched k
  classes gives k rows (keys ``<row_id>-<label>``, the image stored once per row).

Images are stored with their shorter side reduced to ``short_side`` (dataset key, default 256,
the LAION-400M img2dataset setting; aspect ratio kept, never enlarged, never cropped): training
crops the source image (METHODS §0.4). Images no larger, or every image with ``short_side: 0``,
keep their bytes. The manifest's ``image_size`` is the square side the in-memory loader crops
to (dataset key ``image_size``, default 224).
"""

from __future__ import annotations

import io
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.acquire.download import iter_successes, read_urls
from tailstudy.concepts import concept_subset, imagenet_concepts
from tailstudy.data.format import (
    DEFAULT_SHORT_SIDE,
    ShardWriter,
    finish_dataset,
    shrink_to_short_side,
)
from tailstudy.io import UserError, read_json

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 224
IMAGE_SUFFIXES = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png"}
_WS = re.compile(r"[\r\n\t]")


def _key(text: str) -> str:
    """A webdataset-safe sample key (no dots, no path separators)."""
    return re.sub(r"[./\\\s]", "_", text)


def _class_list(concepts) -> list[tuple[str, str]]:
    return [(c.wnid, c.name) for c in concepts]


def _missing_classes(root: Path, folders: dict[str, str], what: str) -> None:
    missing = [f for f in folders if not (root / f).is_dir()]
    if missing:
        shown = ", ".join(f"{m} ({folders[m]})" for m in missing[:5])
        raise UserError(
            f"{root} lacks the folders of {len(missing)} of {len(folders)} {what} classes: "
            f"{shown}{' ...' if len(missing) > 5 else ''}"
        )


def _short_side(spec: dict) -> int:
    return int(spec.get("short_side", DEFAULT_SHORT_SIDE))


def _write_files(writer: ShardWriter, keys, paths, exts, name: str, short_side: int) -> None:
    t0 = time.perf_counter()
    for i, (key, path, ext) in enumerate(zip(keys, paths, exts, strict=True)):
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise UserError(f"cannot read image {path}: {e.strerror}") from None
        try:
            data = shrink_to_short_side(data, ext, short_side)
        except (OSError, SyntaxError, ValueError) as e:
            raise UserError(f"image {path} does not decode ({e}); remove or replace it") from None
        writer.write(key, ext, data)
        if (i + 1) % 20_000 == 0:
            log.info(
                "%s: %d / %d images copied (%.0f/s)",
                name,
                i + 1,
                len(keys),
                (i + 1) / (time.perf_counter() - t0),
            )


# --- image folders ------------------------------------------------------------------------------


def build_image_folder(spec: dict, out: Path, name: str) -> dict:
    root = Path(spec["root"])
    layout, classes = spec.get("layout", "wnid"), spec.get("classes", "imagenet1k")
    if not root.is_dir():
        raise UserError(f"dataset {name}: image folder {root} does not exist")
    concepts = concept_subset(classes)
    if layout == "wnid":
        folders = {c.wnid: c.name for c in concepts}
    elif layout == "index":
        folders = {str(c.index): f"{c.wnid}, {c.name}" for c in concepts}
    else:
        raise UserError(f"dataset {name}: layout must be wnid or index, not {layout!r}")
    _missing_classes(root, folders, classes)
    rows, skipped = [], 0
    for label, (folder, c) in enumerate(zip(folders, concepts, strict=True)):
        files = sorted(p for p in (root / folder).iterdir() if p.is_file())
        for p in files:
            ext = IMAGE_SUFFIXES.get(p.suffix.lower())
            if ext is None:
                skipped += 1
                continue
            rows.append(
                {
                    "key": _key(f"{c.wnid}_{p.stem}"),
                    "label": label,
                    "caption": "",
                    "wnid": c.wnid,
                    "path": f"{folder}/{p.name}",
                    "ext": ext,
                }
            )
    if skipped:
        log.warning("%s: skipped %d files that are not .jpg/.jpeg/.png", root, skipped)
    index = pd.DataFrame(rows, columns=["key", "label", "caption", "wnid", "path", "ext"])
    if index.empty:
        raise UserError(f"dataset {name}: no .jpg/.jpeg/.png image under {root}")
    empty = sorted(set(folders) - {p.split("/")[0] for p in index["path"]})
    if empty:
        log.warning("%s: %d class folders hold no image (e.g. %s)", root, len(empty), empty[0])
    with ShardWriter(out, name) as writer:
        _write_files(
            writer,
            index["key"],
            [root / p for p in index["path"]],
            index["ext"],
            name,
            _short_side(spec),
        )
    return finish_dataset(
        out,
        name,
        index.drop(columns="ext"),
        writer,
        _class_list(concepts),
        {"source": "image-folder", **spec},
        _image_size(spec),
    )


def _image_size(spec: dict) -> tuple[int, int]:
    s = int(spec.get("image_size", DEFAULT_IMAGE_SIZE))
    return (s, s)


# --- ImageNet-Captions --------------------------------------------------------------------------

CAPTION_FIELDS = ("filename", "wnid", "title", "tags", "description")


def load_captions_json(path: str | Path) -> pd.DataFrame:
    """ImageNet-Captions records (filename, wnid, title, tags, description), in file order."""
    path = Path(path)
    try:
        records = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"ImageNet-Captions file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise UserError(f"{path} must hold a list of records {{{', '.join(CAPTION_FIELDS)}}}")
    for i, r in enumerate(records):
        missing = [f for f in CAPTION_FIELDS if f not in r]
        if missing:
            raise UserError(f"{path}: record {i} lacks {', '.join(missing)}")
        if not isinstance(r["tags"], list):
            raise UserError(f"{path}: record {i} has tags {r['tags']!r}, expected a list")
    df = pd.DataFrame.from_records(records, columns=list(CAPTION_FIELDS))
    for f in ("title", "description"):
        df[f] = df[f].fillna("").astype(str)
    df["tags"] = [[str(t) for t in tags] for tags in df["tags"]]
    return df


def incaps_caption(title: str, tags: list[str], description: str) -> str:
    """``title tags description`` (present parts, in that order), tabs/newlines as spaces."""
    parts = [x for x in (title, " ".join(tags), description) if x]
    return _WS.sub(" ", " ".join(parts))


def build_imagenet_captions(spec: dict, out: Path, name: str) -> dict:
    train = Path(spec["imagenet_train"])
    if not train.is_dir():
        raise UserError(f"dataset {name}: ImageNet train folder {train} does not exist")
    records = load_captions_json(spec["captions_json"])
    concepts = imagenet_concepts()
    label_of = {c.wnid: c.index for c in concepts}
    keep = records["wnid"].isin(label_of)
    log.info(
        "%s: %d records, %d of ImageNet-1k classes",
        spec["captions_json"],
        len(records),
        int(keep.sum()),
    )
    df = records[keep].reset_index(drop=True)
    if df.empty:
        raise UserError(f"{spec['captions_json']}: no record has an ImageNet-1k wnid")
    used = {w: next(c.name for c in concepts if c.wnid == w) for w in sorted(set(df["wnid"]))}
    _missing_classes(train, used, "ImageNet-Captions")
    paths = [train / w / f for w, f in zip(df["wnid"], df["filename"], strict=True)]
    absent = [p for p in paths if not p.is_file()]
    if absent:
        raise UserError(
            f"{len(absent)} ImageNet-Captions images are not in {train}, e.g. {absent[0]}"
        )
    stems = pd.Series([_key(Path(f).stem) for f in df["filename"]])
    dup = stems.groupby(stems).cumcount()
    df.insert(0, "key", [s if d == 0 else f"{s}-{d}" for s, d in zip(stems, dup, strict=True)])
    df.insert(1, "label", df["wnid"].map(label_of).astype(np.int32))
    df.insert(
        2,
        "caption",
        [
            incaps_caption(t, g, d)
            for t, g, d in zip(df["title"], df["tags"], df["description"], strict=True)
        ],
    )
    exts = [IMAGE_SUFFIXES.get(p.suffix.lower(), "jpg") for p in paths]
    with ShardWriter(out, name) as writer:
        _write_files(writer, df["key"], paths, exts, name, _short_side(spec))
    counts = df["label"].value_counts()
    log.info("%s: %d images, %d non-empty classes", name, len(df), len(counts))
    return finish_dataset(
        out,
        name,
        df,
        writer,
        _class_list(concepts),
        {"source": "imagenet-captions", **spec},
        _image_size(spec),
        {"nonzero_classes": int(len(counts)), "duplicate_filenames": int((dup > 0).sum())},
    )


# --- downloaded sets ----------------------------------------------------------------------------


def decodable(data: bytes) -> bool:
    """Whether PIL decodes the image completely. img2dataset checks images with OpenCV and, with
    ``skip_reencode``, keeps their original bytes: the loader decodes with PIL, so an image PIL
    rejects is left out here rather than met in training. JPEG draft mode decodes at reduced
    scale, which still reads all the coded data (a truncated file fails)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (32, 32))
            im.load()
        return True
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def build_downloaded(spec: dict, out: Path, name: str, downloads: Path) -> dict:
    """LAIONet or a -Cls set from its URL table and its download shards."""
    kind = spec["source"]
    urls = read_urls(downloads / "urls.parquet")
    manifest = read_json(downloads / "manifest.json")
    concepts = imagenet_concepts()
    label_of = {c.wnid: c.index for c in concepts}
    if kind == "laionet":
        labels_of = dict(zip(urls["row_id"], urls["wnid"].map(label_of), strict=True))
    else:
        labels_of = dict(zip(urls["row_id"], urls["labels"], strict=True))
    got: set[int] = set()
    bad: list[int] = []
    t0 = time.perf_counter()
    with ShardWriter(out, name) as writer:
        for s in manifest["shards"]:
            for rid, ext, data in iter_successes(downloads / s["shard"], s["img2dataset_shards"]):
                if rid not in labels_of:
                    raise UserError(
                        f"download shard {s['shard']} holds row {rid}, not in the "
                        "URL table: delete it and rerun the download"
                    )
                if not decodable(data):
                    bad.append(rid)
                    continue
                data = shrink_to_short_side(data, ext, _short_side(spec))
                if kind == "laionet":
                    writer.write(str(rid), ext, data)
                else:
                    for label in labels_of[rid]:
                        writer.write(f"{rid}-{int(label)}", ext, data)
                got.add(rid)
            log.info(
                "%s: shard %s re-packed (%d images so far, %.0f s)",
                name,
                s["shard"],
                len(got),
                time.perf_counter() - t0,
            )
    rows = urls[urls["row_id"].isin(got)].copy()
    if rows.empty:
        raise UserError(f"dataset {name}: no image was downloaded")
    if kind == "laionet":
        rows.insert(0, "key", rows["row_id"].astype(str))
        rows.insert(1, "label", rows["wnid"].map(label_of).astype(np.int32))
        rows = rows.sort_values("row_id")
    else:
        rows = rows.explode("labels").rename(columns={"labels": "label"})
        rows["label"] = rows["label"].astype(np.int32)
        rows.insert(0, "key", rows["row_id"].astype(str) + "-" + rows["label"].astype(str))
        rows["wnid"] = [concepts[i].wnid for i in rows["label"]]
        rows = rows.sort_values(["label", "row_id"], kind="stable")
    rows["caption"] = rows["caption"].fillna("").astype(str)
    rows = rows.reset_index(drop=True)
    nonzero = int(rows["label"].nunique())
    if bad:
        log.warning(
            "%s: left out %d downloaded images that do not decode (row ids %s)",
            name,
            len(bad),
            ", ".join(map(str, bad[:5])),
        )
    log.info(
        "%s: %d rows from %d of %d URLs, %d non-empty classes",
        name,
        len(rows),
        len(got),
        manifest["n_urls"],
        nonzero,
    )
    return finish_dataset(
        out,
        name,
        rows,
        writer,
        _class_list(concepts),
        {"source": kind, **spec},
        _image_size(spec),
        {
            "nonzero_classes": nonzero,
            "n_urls": manifest["n_urls"],
            "images": len(got),
            "undecodable": len(bad),
        },
    )


def build_real_dataset(spec: dict, out: str | Path, name: str, downloads: str | Path | None):
    """Build dataset ``name`` of a real source into ``out``; returns its manifest."""
    out = Path(out)
    kind = spec.get("source")
    if kind == "image-folder":
        return build_image_folder(spec, out, name)
    if kind == "imagenet-captions":
        return build_imagenet_captions(spec, out, name)
    if kind == "transfer":
        from tailstudy.acquire.transfer import build_transfer

        return build_transfer(spec, out, name)
    if kind == "birdsnap":
        if downloads is None:
            raise UserError(f"dataset {name} (birdsnap) needs --downloads (its download folder)")
        from tailstudy.acquire import birdsnap

        return birdsnap.build(spec, out, name, Path(downloads))
    if kind in ("laionet", "cls"):
        if downloads is None:
            raise UserError(f"dataset {name} ({kind}) needs --downloads (its download folder)")
        return build_downloaded(spec, out, name, Path(downloads))
    raise UserError(f"dataset {name}: source {kind!r} cannot be built here")
