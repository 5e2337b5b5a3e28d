"""The on-disk dataset format, shared by every scale.

A dataset is a folder::

    {root}/index.parquet          one row per sample (see INDEX_COLUMNS)
    {root}/classes.tsv            label space: label<TAB>wnid<TAB>name, label order (no header)
    {root}/manifest.json          name, source, counts, shard list with sha256
    {root}/shards/{name}-NNNNNN.tar   webdataset shards: {key}.png or {key}.jpg

``index.parquet`` columns (always present):
    key      str    unique sample id; the webdataset ``__key__`` in the shard
    shard    str    shard file name under ``shards/``
    label    int32  index into classes.tsv, or -1 if the sample shows none of the labelled classes
    caption  str    the sample's caption (curated datasets: may be empty; fields below hold the parts)
Optional columns: ``title`` (str), ``tags`` (list<str>), ``description`` (str) for ImageNet-Captions
style records; ``concepts`` (list<str> of wnids actually depicted/mentioned); ``wnid`` (str);
``row_id`` (int64, the global metadata row of a downloaded image) and ``similarity`` (float,
LAIONet's caption-to-definition similarity). Multi-label sets (VOC2007) store ``label`` -1 and
``labels`` (list<int32>, indices into classes.tsv, ascending: the classes the image shows) and
``difficult`` (list<int32>: the classes it shows only as objects marked difficult, which VOC's
protocol leaves out of that class's AP); ``write_index`` keeps both list<int32>.

Images are stored as encoded bytes (PNG for generated sets; JPEG, or whatever bytes the source
had, for real ones) and may differ in size. ``manifest.json``'s ``image_size`` [h, w] is the
size the in-memory loader yields: an image of another size is resized (shorter side, bicubic)
and centre-cropped to it.

A *variant* is only an index (``key``, ``label``, ``caption``, ...) plus its own ``classes.tsv``
that points into a dataset's shards (and, for a supplemented variant, a second dataset's, named
per row in a ``dataset`` column): no image is ever copied.
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
#: optional columns of label indices, stored as list<int32>
LABEL_LIST_COLUMNS = ("labels", "difficult")


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
    """The label space of a dataset or variant folder (or of a ``classes.tsv`` path)."""
    path = Path(root)
    if path.is_dir() or path.suffix != ".tsv":
        path = path / "classes.tsv"
    if not path.exists():
        raise UserError(
            f"{path} is missing: the dataset or variant at {root} is incomplete; rebuild it"
        )
    return pd.read_csv(
        path, sep="\t", header=None, names=["label", "wnid", "name"], quoting=3, dtype={"name": str}
    )


class ShardWriter:
    """Write encoded samples into ``{root}/shards/{name}-NNNNNN.tar``, ``shard_size`` per shard.

    Each shard is written to a temporary file and moved into place when it is full (or at
    ``close``), so a shard on disk is always complete. ``shard_of`` maps every written key to its
    shard file name; ``shards`` lists ``{file, sha256}`` in order.
    """

    def __init__(self, root: str | os.PathLike, name: str, shard_size: int = 5000):
        self.dir = Path(root) / "shards"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name, self.shard_size = name, shard_size
        self.shard_of: dict[str, str] = {}
        self.shards: list[dict] = []
        self._sink = None
        self._ctx = None
        self._n = 0

    def _open(self) -> None:
        import webdataset as wds

        fname = shard_name(self.name, len(self.shards))
        self._ctx = atomic_path(self.dir / fname, suffix=".tar")
        tmp = self._ctx.__enter__()
        self._sink = wds.TarWriter(str(tmp))
        self._fname, self._n = fname, 0

    def _flush(self) -> None:
        if self._sink is None:
            return
        self._sink.close()
        self._ctx.__exit__(None, None, None)
        self.shards.append({"file": self._fname, "sha256": _sha256(self.dir / self._fname)})
        self._sink = self._ctx = None

    def write(self, key: str, ext: str, data: bytes) -> None:
        """One sample: ``key`` (no dots) with its encoded image under extension ``ext``."""
        if "." in key:
            raise ValueError(f"sample key {key!r} contains a dot (webdataset splits keys there)")
        if key in self.shard_of:
            raise ValueError(f"duplicate sample key {key!r}")
        if self._sink is None:
            self._open()
        self._sink.write({"__key__": key, ext: data})
        self.shard_of[key] = self._fname
        self._n += 1
        if self._n >= self.shard_size:
            self._flush()

    def close(self) -> list[dict]:
        self._flush()
        current = {s["file"] for s in self.shards}
        for stale in self.dir.glob(f"{self.name}-*.tar"):
            if stale.name not in current:
                stale.unlink()
        return self.shards

    def abort(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._ctx.__exit__(RuntimeError, RuntimeError("aborted"), None)
            self._sink = self._ctx = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def finish_dataset(
    root: str | os.PathLike,
    name: str,
    index: pd.DataFrame,
    writer: ShardWriter,
    classes: Sequence[tuple[str, str]],
    source: dict,
    image_size: Sequence[int],
    extra: dict | None = None,
) -> dict:
    """Write ``index.parquet`` (``shard`` filled from ``writer``), ``classes.tsv`` and
    ``manifest.json`` for samples already written by ``writer``; returns the manifest."""
    root = Path(root)
    missing = [c for c in ("key", "label", "caption") if c not in index.columns]
    if missing:
        raise ValueError(f"index lacks columns {missing}")
    if index["key"].duplicated().any():
        raise ValueError("duplicate keys in index")
    index = index.reset_index(drop=True).copy()
    absent = [k for k in index["key"] if k not in writer.shard_of]
    if absent:
        raise ValueError(f"{len(absent)} index keys have no image, e.g. {absent[:3]}")
    index["shard"] = index["key"].map(writer.shard_of)
    index["label"] = index["label"].astype("int32")
    cols = list(INDEX_COLUMNS) + [c for c in index.columns if c not in INDEX_COLUMNS]
    write_index(root / "index.parquet", index[cols])
    write_classes(root, classes)
    manifest = {
        "name": name,
        "source": source,
        "n_samples": int(len(index)),
        "n_classes": len(classes),
        "image_size": [int(x) for x in image_size],
        "shards": writer.shards,
        **(extra or {}),
    }
    write_json(root / "manifest.json", manifest)
    return manifest


def write_dataset(
    root: str | os.PathLike,
    name: str,
    index: pd.DataFrame,
    images: np.ndarray,
    classes: Sequence[tuple[str, str]],
    source: dict,
    shard_size: int = 5000,
    extra: dict | None = None,
) -> None:
    """Write images (N,H,W,3 uint8, row-aligned with ``index``) as PNG webdataset shards.

    ``index`` must hold ``key``, ``label`` and ``caption``; the ``shard`` column is filled here.
    ``extra``: further manifest entries (a transfer task's ``metric`` and ``splits``).
    """
    from PIL import Image
    from tqdm import tqdm

    missing = [c for c in ("key", "label", "caption") if c not in index.columns]
    if missing:
        raise ValueError(f"index lacks columns {missing}")
    if len(index) != len(images):
        raise ValueError(f"{len(index)} index rows but {len(images)} images")
    if index["key"].duplicated().any():
        raise ValueError("duplicate keys in index")
    index = index.reset_index(drop=True)
    with ShardWriter(root, name, shard_size) as writer:
        for i in tqdm(range(len(index)), desc=f"write {name}", unit="img", mininterval=5):
            buf = io.BytesIO()
            Image.fromarray(images[i]).save(buf, format="PNG", compress_level=1)
            writer.write(index.at[i, "key"], "png", buf.getvalue())
    finish_dataset(root, name, index, writer, classes, source, images.shape[1:3], extra)


def write_index(path: str | os.PathLike, index: pd.DataFrame) -> None:
    """Write an index; the columns of LABEL_LIST_COLUMNS become list<int32> (whether they hold
    lists or, as ``read_index`` returns them, arrays)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(index, preserve_index=False)
    for col in LABEL_LIST_COLUMNS:
        if col in table.column_names:
            i = table.schema.get_field_index(col)
            table = table.set_column(i, col, table.column(col).cast(pa.list_(pa.int32())))
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table, str(tmp))


def read_index(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        path = path / "index.parquet"
    if not path.exists():
        raise UserError(f"{path} is missing: build the dataset or variant first")
    return pd.read_parquet(path, columns=list(columns) if columns else None)


def index_columns(path: str | os.PathLike) -> list[str]:
    """Column names of an index (a folder or its ``index.parquet``) without reading its rows."""
    import pyarrow.parquet as pq

    path = Path(path)
    if path.is_dir():
        path = path / "index.parquet"
    if not path.exists():
        raise UserError(f"{path} is missing: build the dataset or variant first")
    return pq.read_schema(path).names


def label_counts(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Rows per class (labels < 0, i.e. unlabelled rows, are not counted)."""
    labels = np.asarray(labels)
    return np.bincount(labels[labels >= 0], minlength=num_classes).astype(np.int64)


def read_manifest(root: str | os.PathLike) -> dict:
    return read_json(Path(root) / "manifest.json")


IMAGE_EXTENSIONS = ("png", "jpg", "jpeg")


def fit_image(img, size: Sequence[int]):
    """A PIL image resized (shorter side, bicubic) and centre-cropped to ``size`` = (h, w)."""
    from PIL import Image

    h, w = int(size[0]), int(size[1])
    if img.size == (w, h):
        return img
    scale = max(h / img.height, w / img.width)
    nw, nh = max(w, round(img.width * scale)), max(h, round(img.height * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - w) // 2, (nh - h) // 2
    return img.crop((left, top, left + w, top + h))


#: Shorter side of stored images of real datasets (dataset key ``short_side``): the setting of
#: img2dataset's LAION-400M recipe (``image_size 256, resize_mode keep_ratio,
#: resize_only_if_bigger``), which the downloaded sets use too.
DEFAULT_SHORT_SIDE = 256


def shrink_to_short_side(data: bytes, ext: str, short_side: int | None) -> bytes:
    """Encoded image bytes with the shorter side reduced to ``short_side`` (aspect ratio kept,
    bicubic, re-encoded as JPEG quality 95 or PNG as ``ext`` says). Images already that small,
    and any image when ``short_side`` is None or 0, keep their bytes unchanged."""
    from PIL import Image

    if not short_side:
        return data
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        if min(w, h) <= short_side:
            return data
        scale = short_side / min(w, h)
        size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
        if img.format == "JPEG":
            img.draft("RGB", size)  # DCT-domain downscale to at least ``size``: faster decode
        out = img.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    if ext == "png":
        out.save(buf, format="PNG")
    else:
        out.save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def load_images(root: str | os.PathLike, keys: Sequence[str], progress: bool = False) -> np.ndarray:
    """Decode the images of ``keys`` (in that order) from a dataset's shards → (N,H,W,3) uint8.

    Only the shards that hold requested keys are read. PNG and JPEG samples are decoded alike;
    images whose size differs from the manifest's ``image_size`` are resized and centre-cropped
    to it. Raises UserError naming a missing key.
    """
    import webdataset as wds
    from PIL import Image

    root = Path(root)
    index = read_index(root, columns=["key", "shard"]).set_index("key")
    size = read_manifest(root).get("image_size")
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
            ext = next((e for e in IMAGE_EXTENSIONS if e in sample), None)
            if ext is None:
                raise UserError(f"sample {sample['__key__']} in {path} holds no png or jpg image")
            img = Image.open(io.BytesIO(sample[ext])).convert("RGB")
            if size:
                img = fit_image(img, size)
            arr = np.asarray(img)
            if out is None:
                out = np.empty((len(keys), *arr.shape), dtype=np.uint8)
            elif arr.shape != out.shape[1:]:
                raise UserError(
                    f"{path}: image {sample['__key__']} is {arr.shape[:2]}, others "
                    f"{out.shape[1:3]}, and the manifest gives no image_size; rebuild the dataset"
                )
            out[i] = arr
    if out is None:
        return np.empty((0, 0, 0, 3), dtype=np.uint8)
    return out
