"""Training and evaluation data read from a dataset's webdataset shards, for splits too large to
decode into memory (``tailstudy.data.loader`` keeps the in-memory path for small ones).

Map-style, as webdataset's indexed view (``wids``) is: a variant index (any subset of a dataset's
rows, or of several datasets' through its ``dataset`` column) is resolved once to (shard, byte
offset, size) per row by indexing the tar headers of the shards it touches with wids'
``MMIndexedTar``; a row is then read with one ``pread`` at its offset. Nothing is rewritten per
variant and an epoch reads only the variant's rows, however small a fraction of the dataset.

The order is ``DistributedSampler``'s (``tailstudy.train.distributed.epoch_indices``: one
permutation per (seed, epoch), split over the ranks; CLIP drops the uneven tail, SL pads) cut into
``epoch_steps`` batches, so every row is seen once per epoch under the samplers' rules. Each row
carries its own augmentation seed drawn from (seed, epoch, rank, position in the epoch): the
crops do not depend on the number of loader workers or on which worker decodes a row, and an
epoch resumed at step k yields exactly the batches k, k+1, ... of an uninterrupted one.

Decoding and augmentation run in ``num_workers`` DataLoader worker processes (persistent, pinned
memory). Captions and keys live in flat byte buffers, not Python lists, so forked workers do not
copy them page by page as reference counts change.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from tailstudy.cost import DEFAULTS
from tailstudy.data.augment import OPENAI_MEAN, OPENAI_STD
from tailstudy.data.format import (
    IMAGE_EXTENSIONS,
    index_columns,
    label_counts,
    read_classes,
    read_index,
)
from tailstudy.data.loader import Rows
from tailstudy.io import UserError

__all__ = [
    "DEFAULT_IN_MEMORY_MAX_MB",
    "EpochBatches",
    "ShardSource",
    "StreamedSplit",
    "eval_transform",
    "fits_in_memory",
    "in_memory_mb",
    "iterate",
    "make_loader",
    "train_transform",
]

#: Splits whose decoded images would take more than this stream from their shards instead of
#: being decoded into memory (the in-memory path holds rows × side² × 3 bytes in every process:
#: 32-px embedded images are 3 KB a row, 224-px ones 150 KB).
DEFAULT_IN_MEMORY_MAX_MB = DEFAULTS["in_memory_max_mb"]


def in_memory_mb(rows: int, image_side: int) -> float:
    """MiB of a split decoded into memory (uint8, ``image_side``² RGB)."""
    return rows * image_side * image_side * 3 / 2**20


def fits_in_memory(rows: int, image_side: int, max_mb: float = DEFAULT_IN_MEMORY_MAX_MB) -> bool:
    """Whether a split takes the in-memory path (else it streams from the shards)."""
    return in_memory_mb(rows, image_side) <= max_mb


# --------------------------------------------------------------------------- transforms


class FittedUint8:
    """A PIL image as the in-memory path holds it: resized (shorter side, bicubic) and
    centre-cropped to ``size`` square, uint8 HWC. DINO's multi-crop then cuts each batch in the
    training process, as it does in memory, so both paths give the same crops."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img) -> torch.Tensor:
        from tailstudy.data.format import fit_image

        return torch.from_numpy(np.asarray(fit_image(img, (self.size, self.size))).copy())


def train_transform(objective: str, image_size: int = 224, scale=(0.9, 1.0)):
    """The recipe's training transform of a PIL image (METHODS §0.4, §4.2, §4.4).

    CLIP: open_clip's train preprocess (RandomResizedCrop(scale) bicubic → tensor → OpenAI
    normalisation, no flip, no colour jitter). SL: the same steps as torchvision's ImageNet
    recipe with the paper's values (torchvision's RandomResizedCrop, bicubic, scale (0.9, 1)).
    DINO: the image fitted to ``image_size`` (:class:`FittedUint8`); its multi-crop runs on the
    batch.
    """
    if objective == "dino":
        return FittedUint8(image_size)
    if objective == "clip":
        import open_clip

        return open_clip.image_transform(
            image_size,
            is_train=True,
            mean=OPENAI_MEAN,
            std=OPENAI_STD,
            aug_cfg={"scale": tuple(scale)},
        )
    if objective == "sl":
        from torchvision import transforms as T

        return T.Compose(
            [
                T.RandomResizedCrop(
                    image_size, scale=tuple(scale), interpolation=T.InterpolationMode.BICUBIC
                ),
                T.ToTensor(),
                T.Normalize(OPENAI_MEAN, OPENAI_STD),
            ]
        )
    raise UserError(f"objective {objective!r}: expected clip, sl or dino")


def eval_transform(objective: str, image_size: int = 224):
    """Evaluation transform: CLIP resizes the shorter side to ``image_size`` (open_clip's val
    preprocess), SL to 256/224 of it (Resize 256 → CenterCrop 224); both bicubic, centre crop,
    OpenAI normalisation (METHODS §0.4, §5.1)."""
    if objective == "clip":
        import open_clip

        return open_clip.image_transform(
            image_size, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD
        )
    if objective == "sl":
        from torchvision import transforms as T

        return T.Compose(
            [
                T.Resize(round(image_size * 256 / 224), interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop(image_size),
                T.ToTensor(),
                T.Normalize(OPENAI_MEAN, OPENAI_STD),
            ]
        )
    raise UserError(f"objective {objective!r}: expected clip or sl")


# --------------------------------------------------------------------------- the row table


def _pack(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one UTF-8 buffer and offsets (no per-row Python objects)."""
    enc = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(enc) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in enc], out=offsets[1:])
    return np.frombuffer(b"".join(enc), dtype=np.uint8).copy(), offsets


def _unpack(buf: np.ndarray, offsets: np.ndarray, i: int) -> str:
    return buf[offsets[i] : offsets[i + 1]].tobytes().decode("utf-8")


def _scan_shard(path: Path, variant: str) -> dict[str, tuple[int, int]]:
    """key → (byte offset of the image's tar header, image size) for one shard."""
    from wids.wids_mmtar import MMIndexedTar

    if not path.exists():
        raise UserError(f"variant {variant}: shard {path} is missing; rebuild its dataset")
    try:
        tar = MMIndexedTar(str(path))
    except Exception as e:  # noqa: BLE001 - any failure to index is a damaged shard
        raise UserError(
            f"variant {variant}: shard {path} cannot be read as a tar file "
            f"({type(e).__name__}: {e}); rebuild its dataset"
        ) from None
    try:
        out = {}
        for name, offset, size in tar.by_index:
            key, _, ext = name.partition(".")
            if ext.lower() in IMAGE_EXTENSIONS:
                out[key] = (offset, size)
        return out
    finally:
        tar.close()


@dataclass
class _Rows:
    """Where every row of a variant lies: shard id, byte offset, size (parallel arrays)."""

    shards: list[str]
    shard_id: np.ndarray  # int32
    offset: np.ndarray  # int64, of the tar header
    size: np.ndarray  # int64


def _resolve(
    roots: list[Path], index: pd.DataFrame, variant: str, progress: bool
) -> tuple[_Rows, np.ndarray]:
    """Locate every row of ``index`` in its dataset's shards; returns the rows and the key
    buffer. Fails before any training with one line on a missing/damaged shard or absent keys."""
    by_name = {r.name: r for r in roots}
    if "dataset" in index.columns:
        names = index["dataset"].astype(str).to_numpy()
        absent = sorted(set(names) - set(by_name))
        if absent:
            raise UserError(
                f"variant {variant} has rows of dataset(s) {', '.join(absent)}: pass their "
                f"folders too (given: {', '.join(sorted(by_name)) or 'none'})"
            )
    else:
        if len(roots) > 1:
            raise UserError(
                f"{len(roots)} dataset folders given but variant {variant} has no dataset "
                "column: pass only the dataset it indexes"
            )
        names = np.full(len(index), roots[0].name, dtype=object)
    keys = index["key"].astype(str).to_numpy()
    shard_paths: list[str] = []
    shard_id = np.full(len(index), -1, dtype=np.int32)
    offset = np.zeros(len(index), dtype=np.int64)
    size = np.zeros(len(index), dtype=np.int64)
    missing: list[str] = []
    for name in sorted(set(names)):
        root = by_name[name]
        pos = np.flatnonzero(names == name)
        ds = read_index(root, columns=["key", "shard"]).set_index("key")["shard"]
        shard_of = ds.reindex(keys[pos])
        in_ds = shard_of.notna().to_numpy()
        missing += keys[pos[~in_ds]].tolist()
        pos, shard_of = pos[in_ds], shard_of[in_ds].to_numpy()
        expected = ds.value_counts()
        groups = pd.Series(np.arange(len(pos))).groupby(shard_of)
        todo = list(groups.indices.items())
        if progress:
            from tqdm import tqdm

            todo = tqdm(todo, desc=f"index shards of {name} for {variant}", unit="shard")
        for shard, where in todo:
            path = root / "shards" / shard
            found = _scan_shard(path, variant)
            if len(found) < expected[shard]:
                raise UserError(
                    f"variant {variant}: shard {path} holds {len(found)} images but dataset "
                    f"{name} lists {expected[shard]} in it (truncated or damaged); rebuild "
                    "the dataset"
                )
            sid = len(shard_paths)
            shard_paths.append(str(path))
            for j in where:
                i = pos[j]
                hit = found.get(keys[i])
                if hit is None:
                    missing.append(keys[i])
                    continue
                shard_id[i] = sid
                offset[i], size[i] = hit
    if missing:
        raise UserError(
            f"variant {variant}: {len(missing)} of its {len(index)} keys are in no shard "
            f"(e.g. {', '.join(missing[:3])}); rebuild the variant against its dataset(s)"
        )
    return _Rows(shard_paths, shard_id, offset, size), keys


class ShardSource(Dataset):
    """The rows of a variant index (default: a dataset's own index), read from the shards.

    ``source[(row, seed)]`` decodes row ``row`` and applies ``transform`` with torch's RNG seeded
    ``seed`` (the caller's RNG state is left untouched); ``source[row]`` uses seed 0. Returns a
    dict: ``image`` (the transform's output, or uint8 CHW without one), ``label``, ``caption``,
    ``row``. ``name`` is what errors call the variant.
    """

    def __init__(
        self,
        dataset_root: str | Path | Sequence[str | Path],
        index_path: str | Path | None = None,
        classes_path: str | Path | None = None,
        transform=None,
        name: str | None = None,
        progress: bool = True,
    ):
        roots = (
            [Path(dataset_root)]
            if isinstance(dataset_root, str | Path)
            else [Path(r) for r in dataset_root]
        )
        source = Path(index_path) if index_path else roots[0]
        self.name = name or (source.parent.name if source.suffix else source.name)
        cols = ["key", "label", "caption"]
        if "dataset" in index_columns(source):
            cols.append("dataset")
        index = read_index(source, columns=cols)
        if classes_path is None:
            classes_path = Path(index_path).parent if index_path else roots[0]
        self.classes = read_classes(classes_path)
        self.labels = index["label"].to_numpy(np.int64)
        if len(self.labels) and self.labels.max() >= len(self.classes):
            raise UserError(
                f"{source} has label {self.labels.max()} but {classes_path} lists "
                f"{len(self.classes)} classes: rebuild the variant"
            )
        self._rows, keys = _resolve(roots, index, self.name, progress)
        self._keys = _pack(keys)
        self._captions = _pack(index["caption"].fillna("").astype(str).tolist())
        self.transform = transform
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def label_counts(self) -> np.ndarray:
        return label_counts(self.labels, self.num_classes)

    def key(self, row: int) -> str:
        return _unpack(*self._keys, row)

    def caption(self, row: int) -> str:
        return _unpack(*self._captions, row)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fds"] = {}  # file descriptors stay with their process
        return state

    def _read(self, row: int) -> bytes:
        sid = int(self._rows.shard_id[row])
        path = self._rows.shards[sid]
        fd = self._fds.get(sid)
        if fd is None:
            if len(self._fds) >= 64:
                os.close(self._fds.pop(next(iter(self._fds))))
            try:
                fd = self._fds[sid] = os.open(path, os.O_RDONLY)
            except OSError as e:
                raise UserError(
                    f"variant {self.name}: shard {path} cannot be opened ({e.strerror}); "
                    "rebuild its dataset"
                ) from None
        off, size = int(self._rows.offset[row]), int(self._rows.size[row])
        data = os.pread(fd, 512 + size, off)
        key = self.key(row)
        name = data[:100].rstrip(b"\0").decode("utf-8", "replace")
        if len(data) != 512 + size or name.partition(".")[0] != key:
            raise UserError(
                f"variant {self.name}: shard {path} changed since it was indexed (sample {key} "
                "not where it was); restart the job"
            )
        return data[512:]

    def __getitem__(self, item) -> dict:
        from PIL import Image

        row, seed = item if isinstance(item, tuple) else (item, 0)
        data = self._read(row)
        try:
            img = Image.open(io.BytesIO(data)).convert("RGB")
        except Exception as e:  # noqa: BLE001 - PIL raises several types for bad bytes
            path = self._rows.shards[int(self._rows.shard_id[row])]
            raise UserError(
                f"variant {self.name}: shard {path} sample {self.key(row)} is not a decodable "
                f"image ({type(e).__name__}); rebuild its dataset"
            ) from None
        if self.transform is None:
            image = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
        else:
            # seed the CPU generator alone (torch.manual_seed also queues CUDA seeding, ~2 ms)
            state = torch.default_generator.get_state()
            torch.default_generator.manual_seed(seed)
            try:
                image = self.transform(img)
            finally:
                torch.default_generator.set_state(state)
        return {
            "image": image,
            "label": int(self.labels[row]),
            "caption": self.caption(row),
            "row": row,
        }


# --------------------------------------------------------------------------- order and loading


def sample_seeds(seed: int, epoch: int, rank: int, positions: np.ndarray) -> np.ndarray:
    """One augmentation seed per position in this rank's epoch (a hash of the four)."""
    mix = np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = positions.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + mix[0]
        x ^= x >> np.uint64(31)
        x *= mix[1] | np.uint64(1)
        x ^= x >> np.uint64(29)
    return (x >> np.uint64(1)).astype(np.int64)


class EpochBatches(Sampler):
    """This rank's batches of one epoch, as (row, augmentation seed) pairs.

    The order is ``epoch_indices`` (DistributedSampler, also for one rank); batches follow
    ``epoch_steps`` (CLIP drops the last partial batch; SL keeps it unless it is a single row).
    ``set_epoch(epoch, start_step)`` picks the epoch and the first batch (resume mid-epoch).
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, drop_last: bool, rank: int = 0, world: int = 1
    ):
        from tailstudy.train.distributed import samples_per_rank

        if n < world:
            raise UserError(f"{n} rows cannot be split over {world} processes")
        self.n, self.batch_size, self.seed, self.drop_last = n, batch_size, seed, drop_last
        self.rank, self.world = rank, world
        self.per_rank = samples_per_rank(n, world, drop_last)
        self.epoch, self.start = 0, 0

    @property
    def steps(self) -> int:
        """Batches per epoch."""
        from tailstudy.train.loop import epoch_steps

        return epoch_steps(self.per_rank, self.batch_size, self.drop_last)

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start = epoch, start_step

    def __len__(self) -> int:
        return max(self.steps - self.start, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        from tailstudy.train.distributed import Ranks, epoch_indices

        ranks = Ranks(self.rank, self.world, self.rank)
        order = epoch_indices(self.n, ranks, self.seed, self.epoch, self.drop_last).numpy()
        seeds = sample_seeds(self.seed, self.epoch, self.rank, np.arange(len(order)))
        b = self.batch_size
        for step in range(self.start, self.steps):
            sl = slice(step * b, (step + 1) * b)
            yield list(zip(order[sl].tolist(), seeds[sl].tolist(), strict=True))


class InOrderBatches(Sampler):
    """Every row once, in index order (evaluation)."""

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size = n, batch_size

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        for s in range(0, self.n, self.batch_size):
            yield list(range(s, min(s + self.batch_size, self.n)))


def make_loader(
    source: ShardSource, batches: Sampler, num_workers: int = 2, pin_memory: bool | None = None
) -> DataLoader:
    """A DataLoader over ``source`` drawing ``batches``; workers persist across epochs, so call
    ``batches.set_epoch`` before each ``iterate``. Pinned memory when CUDA is available."""
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return DataLoader(
        source,
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers > 0 else None,
    )


def iterate(loader: DataLoader) -> Iterator[dict]:
    """The loader's batches; an error raised in a worker surfaces as its own one line."""
    try:
        yield from loader
    except UserError as e:
        # a worker's UserError arrives wrapped in its traceback: keep the message line
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else str(e)
        prefix = "tailstudy.io.UserError: "
        raise UserError(last[len(prefix) :] if last.startswith(prefix) else last) from None


# --------------------------------------------------------------------------- a split as the trainer reads it


class _Captions(Sequence):
    """A split's captions, read from the source's packed buffer (len, index, slice)."""

    def __init__(self, source: ShardSource):
        self._source = source

    def __len__(self) -> int:
        return len(self._source)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._source.caption(j) for j in range(*i.indices(len(self)))]
        return self._source.caption(i)


class StreamedSplit:
    """A training or evaluation split read from its shards (``ShardSource``) through a
    DataLoader: what ``fit`` and the evaluation read where the in-memory path would not fit.

    Labels, captions and the label space are the variant index's; images come per batch from
    ``epoch`` (training: ``EpochBatches``, the recipe's transform applied to the source image in
    the workers) or ``eval_batches`` (every row in order, resize + centre crop).
    """

    streams = True

    def __init__(self, source: ShardSource, image_size: int, num_workers: int):
        self.source, self.num_workers = source, num_workers
        self._image_size = image_size
        self.labels = torch.from_numpy(source.labels)
        self.captions = _Captions(source)
        self.classes = source.classes
        self._loader: DataLoader | None = None
        self._batches: EpochBatches | None = None

    def __len__(self) -> int:
        return len(self.source)

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def image_size(self) -> int:
        return self._image_size

    def label_counts(self) -> np.ndarray:
        return self.source.label_counts()

    def epoch(
        self,
        epoch: int,
        start_step: int,
        *,
        batch_size: int,
        seed: int,
        drop_last: bool,
        rank: int = 0,
        world: int = 1,
        pin_memory: bool = False,
    ) -> Iterator[Rows]:
        """This rank's batches of ``epoch`` from ``start_step`` on; the workers persist."""
        if self._loader is None:
            self._batches = EpochBatches(len(self), batch_size, seed, drop_last, rank, world)
            self._loader = make_loader(self.source, self._batches, self.num_workers, pin_memory)
        self._batches.set_epoch(epoch, start_step)
        for item in iterate(self._loader):
            yield Rows(item["row"], item["image"], list(item["caption"]))

    def eval_batches(self, batch: int, resize: float | None = None) -> Iterator[tuple]:
        """(normalised images, labels) of every row, in order. The resize is the source's
        evaluation transform's (``eval_transform`` of the run's objective: the same ratio as
        its ``Classifier.resize``)."""
        batches = InOrderBatches(len(self), batch)
        loader = make_loader(self.source, batches, self.num_workers)
        for item in iterate(loader):
            yield item["image"], item["label"]
