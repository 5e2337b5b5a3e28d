"""The on-disk dataset format, shared by every scale.

A dataset is a folder::

    {root}/index.parquet          one row per sample (see INDEX_COLUMNS)
    {root}/classes.tsv            label space: label<TAB>wnid<TAB>name, label order (no header)
    {root}/manifest.json          name, source, counts, shard list with sha256
    {root}/shards/{name}-NNNNNN.tar   webdataset shards: {key}.png (or .jpg)

``index.parquet`` columns (always present):
    key      str    unique sample id; the webdataset ``__key__`` in the shard
    shard    str    shard file name under ``shards/``
    label    int32  index into classes.tsv, or -1 if the sample shows none of the labelled classes
    caption  str    the sample's caption (curated datasets: may be empty; fields below hold the parts)
Optional columns: ``title`` (str), ``tags`` (list<str>), ``description`` (str) for ImageNet-Captions
style records; ``concepts`` (list<str> of wnids actually depicted/mentioned); ``sim`` (float).

A *variant* is only an index (``key``, ``label``, ``caption``, ...) that points into one dataset's
shards: no image is ever copied.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.io import UserError, atomic_path, read_json, write_json

INDEX_COLUMNS = ("key", "shard", "label", "caption")


def shard_name(dataset: str, i: int) -> str:
    return f"{dataset}-{i:06d}.tar"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_classes(root: str | os.PathLike, classes: Sequence[tuple[str, str]]) -> None:
    """Write ``classes.tsv`` from (wnid, name) pairs in label order."""
    lines = [f"{i}\t{w}\t{n}\n" for i, (w, n) in enumerate(classes)]
    with atomic_path(Path(root) / "classes.tsv") as tmp:
        tmp.write_text("".join(lines))


def read_classes(root: str | os.PathLike) -> pd.DataFrame:
    path = Path(root) / "classes.tsv"
    if not path.exists():
        raise UserError(f"{path} is missing: the dataset at {root} is incomplete; rebuild it")
    return pd.read_csv(
        path, sep="\t", header=None, names=["label", "wnid", "name"], quoting=3, dtype={"name": str}
    )


def write_dataset(
    root: str | os.PathLike,
    name: str,
    index: pd.DataFrame,
    images: np.ndarray,
    classes: Sequence[tuple[str, str]],
    source: dict,
    shard_size: int = 5000,
) -> None:
    """Write images (N,H,W,3 uint8, row-aligned with ``index``) as PNG webdataset shards.

    ``index`` must hold ``key``, ``label`` and ``caption``; the ``shard`` column is filled here.
    """
    import webdataset as wds
    from PIL import Image

    root = Path(root)
    missing = [c for c in ("key", "label", "caption") if c not in index.columns]
    if missing:
        raise ValueError(f"index lacks columns {missing}")
    if len(index) != len(images):
        raise ValueError(f"{len(index)} index rows but {len(images)} images")
    if index["key"].duplicated().any():
        raise ValueError("duplicate keys in index")
    (root / "shards").mkdir(parents=True, exist_ok=True)
    index = index.reset_index(drop=True).copy()
    shards = []
    starts = range(0, len(index), shard_size)
    from tqdm import tqdm

    for s, start in enumerate(tqdm(starts, desc=f"write {name}", unit="shard", mininterval=5)):
        fname = shard_name(name, s)
        with (
            atomic_path(root / "shards" / fname, suffix=".tar") as tmp,
            wds.TarWriter(str(tmp)) as sink,
        ):
            for i in range(start, min(start + shard_size, len(index))):
                buf = io.BytesIO()
                Image.fromarray(images[i]).save(buf, format="PNG", compress_level=1)
                sink.write({"__key__": index.at[i, "key"], "png": buf.getvalue()})
        index.loc[start : start + shard_size - 1, "shard"] = fname
        shards.append({"file": fname, "sha256": _sha256(root / "shards" / fname)})
    index["label"] = index["label"].astype("int32")
    cols = list(INDEX_COLUMNS) + [c for c in index.columns if c not in INDEX_COLUMNS]
    write_index(root / "index.parquet", index[cols])
    write_classes(root, classes)
    write_json(
        root / "manifest.json",
        {
            "name": name,
            "source": source,
            "n_samples": int(len(index)),
            "n_classes": len(classes),
            "image_size": list(images.shape[1:3]),
            "shards": shards,
        },
    )


def write_index(path: str | os.PathLike, index: pd.DataFrame) -> None:
    with atomic_path(path, suffix=".parquet") as tmp:
        index.to_parquet(tmp, index=False)


def read_index(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        path = path / "index.parquet"
    if not path.exists():
        raise UserError(f"{path} is missing: build the dataset or variant first")
    return pd.read_parquet(path, columns=list(columns) if columns else None)


def read_manifest(root: str | os.PathLike) -> dict:
    return read_json(Path(root) / "manifest.json")


def load_images(root: str | os.PathLike, keys: Sequence[str], progress: bool = False) -> np.ndarray:
    """Decode the images of ``keys`` (in that order) from a dataset's shards → (N,H,W,3) uint8.

    Only the shards that hold requested keys are read. Raises UserError naming a missing key.
    """
    import webdataset as wds
    from PIL import Image

    root = Path(root)
    index = read_index(root, columns=["key", "shard"]).set_index("key")
    keys = list(keys)
    try:
        shard_of = index.loc[keys, "shard"]
    except KeyError:
        absent = [k for k in keys if k not in index.index][:3]
        raise UserError(f"keys {absent} are not in dataset {root}; rebuild the variant") from None
    pos = {k: i for i, k in enumerate(keys)}
    out: np.ndarray | None = None
    shards = sorted(set(shard_of))
    if progress:
        from tqdm import tqdm

        shards = tqdm(shards, desc=f"decode {root.name}", unit="shard")
    for shard in shards:
        path = root / "shards" / shard
        if not path.exists():
            raise UserError(f"shard {path} is missing: rebuild dataset {root.name}")
        # every process of a distributed run loads whole sets: no split of shards by node
        for sample in wds.WebDataset(
            str(path), shardshuffle=False, empty_check=False, nodesplitter=None
        ):
            i = pos.get(sample["__key__"])
            if i is None:
                continue
            ext = "png" if "png" in sample else "jpg"
            img = np.asarray(Image.open(io.BytesIO(sample[ext])).convert("RGB"))
            if out is None:
                out = np.empty((len(keys), *img.shape), dtype=np.uint8)
            out[i] = img
    if out is None:
        return np.empty((0, 0, 0, 3), dtype=np.uint8)
    return out
