"""The streaming data source: exact epochs per rank and worker count, mixed-dataset variants,
deterministic order and crops, and one-line errors on bad shards or absent keys."""

from __future__ import annotations

import io
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tailstudy.data.format import ShardWriter, finish_dataset, read_index, write_index
from tailstudy.data.stream import (
    EpochBatches,
    InOrderBatches,
    ShardSource,
    eval_transform,
    iterate,
    make_loader,
    train_transform,
)
from tailstudy.io import UserError


def make_jpeg_dataset(root, name, n, shard_size=7, seed=0):
    """``n`` JPEG images of random sizes (short side 20–40 px, either orientation)."""
    rng = np.random.default_rng(seed)
    rows = []
    with ShardWriter(root, name, shard_size) as w:
        for i in range(n):
            a, b = int(rng.integers(20, 41)), int(rng.integers(20, 61))
            h, wd = (a, b) if i % 2 else (b, a)
            arr = rng.integers(0, 255, (h, wd, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=90)
            key = f"{name}{i:05d}"
            w.write(key, "jpg", buf.getvalue())
            rows.append({"key": key, "label": i % 3, "caption": f"a photo number {i} of {name}"})
    index = pd.DataFrame(rows)
    classes = [("n001", "cat"), ("n002", "dog"), ("n003", "owl")]
    finish_dataset(root, name, index, w, classes, {"kind": "test"}, (32, 32))
    return root


@pytest.fixture
def jpeg_ds(tmp_path):
    return make_jpeg_dataset(tmp_path / "dsa", "dsa", 45)


def variant(tmp_path, ds_root, keep, name="v"):
    """A variant folder over ``keep`` rows of ``ds_root``'s index (shared label space)."""
    out = tmp_path / name
    out.mkdir()
    index = read_index(ds_root).iloc[keep].reset_index(drop=True)
    write_index(out / "index.parquet", index[["key", "label", "caption"]])
    shutil.copy(ds_root / "classes.tsv", out / "classes.tsv")
    return out


def epoch_rows(source, world, workers, epoch, drop_last, batch=4, seed=3):
    """Rows each rank sees in ``epoch`` (rank → list of batches of row ids), plus keys seen."""
    per_rank = []
    source.transform = source.transform or eval_transform("clip", 16)
    for rank in range(world):
        b = EpochBatches(len(source), batch, seed, drop_last, rank=rank, world=world)
        b.set_epoch(epoch)
        loader = make_loader(source, b, num_workers=workers, pin_memory=False)
        batches = []
        for item in iterate(loader):
            rows = item["row"].tolist()
            assert item["caption"] == [source.caption(r) for r in rows]
            assert item["label"].tolist() == source.labels[rows].tolist()
            batches.append(rows)
        per_rank.append(batches)
    return per_rank


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("workers", [0, 2])
def test_epoch_sees_every_variant_row_once_clip_drop_last(jpeg_ds, tmp_path, world, workers):
    keep = np.arange(0, 45, 2)  # 23 of 45 rows, from every shard
    src = ShardSource(jpeg_ds, variant(tmp_path, jpeg_ds, keep) / "index.parquet", progress=False)
    assert len(src) == 23
    assert {src.key(i) for i in range(len(src))} == {f"dsa{i:05d}" for i in keep}
    for epoch in (0, 1):
        ranks = epoch_rows(src, world, workers, epoch, drop_last=True)
        seen = [r for batches in ranks for b in batches for r in b]
        per_rank = 23 // world
        steps = per_rank // 4
        assert all(len(batches) == steps for batches in ranks)
        assert all(len(b) == 4 for batches in ranks for b in batches)
        assert len(seen) == len(set(seen)) == world * steps * 4  # no row twice
        # the rows of the epoch are those of DistributedSampler's drop-last split
        from tailstudy.train.distributed import Ranks, epoch_indices

        want = set()
        for rank in range(world):
            order = epoch_indices(23, Ranks(rank, world, rank), 3, epoch, True)
            want |= set(order[: steps * 4].tolist())
        assert set(seen) == want


@pytest.mark.parametrize("world", [1, 2])
@pytest.mark.parametrize("workers", [0, 2])
def test_epoch_sees_every_variant_row_sl_pad(jpeg_ds, tmp_path, world, workers):
    keep = np.arange(1, 44)  # 43 rows: 2 ranks pad to 22 each
    src = ShardSource(jpeg_ds, variant(tmp_path, jpeg_ds, keep) / "index.parquet", progress=False)
    ranks = epoch_rows(src, world, workers, 0, drop_last=False, batch=5)
    seen = [r for batches in ranks for b in batches for r in b]
    per_rank = -(-43 // world)
    assert all(sum(map(len, batches)) == per_rank for batches in ranks)
    assert len(seen) == world * per_rank
    counts = Counter(seen)
    assert set(counts) == set(range(43))  # every row, padding repeats at most the overhang
    assert sum(c - 1 for c in counts.values()) == world * per_rank - 43


def test_sl_single_leftover_row_sits_the_epoch_out(jpeg_ds):
    src = ShardSource(jpeg_ds, progress=False)  # 45 rows, batch 4: 11 batches + 1 row
    b = EpochBatches(len(src), 4, 0, drop_last=False)
    assert b.steps == 11 and len(list(b)) == 11


def test_variant_mixing_two_datasets_streams_both(tmp_path):
    a = make_jpeg_dataset(tmp_path / "dsa", "dsa", 20, seed=1)
    b = make_jpeg_dataset(tmp_path / "dsb", "dsb", 15, seed=2)
    ia, ib = read_index(a).iloc[::2], read_index(b).iloc[1::3]
    index = pd.concat([ia.assign(dataset="dsa"), ib.assign(dataset="dsb")], ignore_index=True)[
        ["key", "label", "caption", "dataset"]
    ]
    out = tmp_path / "mix"
    out.mkdir()
    write_index(out / "index.parquet", index)
    shutil.copy(a / "classes.tsv", out / "classes.tsv")
    src = ShardSource([a, b], out / "index.parquet", progress=False)
    seen = [
        r for batches in epoch_rows(src, 1, 2, 0, drop_last=False) for bt in batches for r in bt
    ]
    assert sorted(seen) == list(range(len(index)))
    # the bytes come from the right dataset: decoding matches the dataset's own image
    raw = ShardSource([a, b], out / "index.parquet", progress=False)  # uint8, no transform
    for row in (0, len(ia), len(index) - 1):
        key = raw.key(row)
        ds = a if key.startswith("dsa") else b
        own = ShardSource(ds, progress=False)
        j = [own.key(i) for i in range(len(own))].index(key)
        assert torch.equal(raw[row]["image"], own[j]["image"])
    with pytest.raises(UserError, match="pass their folders too"):
        ShardSource([a], out / "index.parquet", progress=False)


def test_order_and_crops_deterministic_and_resume_mid_epoch(jpeg_ds):
    src = ShardSource(jpeg_ds, transform=train_transform("clip", 16), progress=False)

    def run(workers, start=0, seed=5, epoch=2):
        b = EpochBatches(len(src), 4, seed, drop_last=True, rank=1, world=2)
        b.set_epoch(epoch, start)
        return [
            (x["row"].tolist(), x["image"])
            for x in iterate(make_loader(src, b, num_workers=workers, pin_memory=False))
        ]

    ref = run(0)
    again = run(2)
    assert len(ref) == len(again) == (45 // 2) // 4
    for (r0, x0), (r1, x1) in zip(ref, again, strict=True):
        assert r0 == r1 and torch.equal(x0, x1)  # same rows and crops whatever the workers
    resumed = run(2, start=3)
    for (r0, x0), (r1, x1) in zip(ref[3:], resumed, strict=True):
        assert r0 == r1 and torch.equal(x0, x1)
    other = run(0, seed=6)
    assert [r for r, _ in other] != [r for r, _ in ref]
    other_epoch = run(0, epoch=3)
    assert [r for r, _ in other_epoch] != [r for r, _ in ref]


def test_transforms_give_recipe_shapes(jpeg_ds):
    src = ShardSource(jpeg_ds, progress=False)
    for objective in ("clip", "sl"):
        for t in (train_transform(objective, 24), eval_transform(objective, 24)):
            src.transform = t
            x = src[(3, 7)]["image"]
            assert x.shape == (3, 24, 24) and x.dtype == torch.float32
    # evaluation is deterministic and in index order
    src.transform = eval_transform("clip", 24)
    loader = make_loader(src, InOrderBatches(len(src), 8), num_workers=0, pin_memory=False)
    rows = [r for x in iterate(loader) for r in x["row"].tolist()]
    assert rows == list(range(45))


def test_absent_variant_keys_reported_before_training(jpeg_ds, tmp_path):
    v = variant(tmp_path, jpeg_ds, np.arange(10))
    index = read_index(v)
    index.loc[[2, 5], "key"] = ["nosuch1", "nosuch2"]
    write_index(v / "index.parquet", index)
    with pytest.raises(UserError, match=r"variant v: 2 of its 10 keys are in no shard") as e:
        ShardSource(jpeg_ds, v / "index.parquet", progress=False)
    assert "\n" not in str(e.value)


def test_missing_shard_named_with_variant(jpeg_ds, tmp_path):
    v = variant(tmp_path, jpeg_ds, np.arange(45))
    (jpeg_ds / "shards" / "dsa-000002.tar").unlink()
    with pytest.raises(UserError, match=r"variant v: shard .*dsa-000002.tar is missing") as e:
        ShardSource(jpeg_ds, v / "index.parquet", progress=False)
    assert "\n" not in str(e.value)


def test_truncated_shard_named_with_variant(jpeg_ds, tmp_path):
    v = variant(tmp_path, jpeg_ds, np.arange(45))
    path = jpeg_ds / "shards" / "dsa-000001.tar"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(UserError, match=r"variant v: shard .*dsa-000001.tar") as e:
        ShardSource(jpeg_ds, v / "index.parquet", progress=False)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_image_fails_in_worker_with_one_line(jpeg_ds, tmp_path, workers):
    v = variant(tmp_path, jpeg_ds, np.arange(45))
    src = ShardSource(
        jpeg_ds, v / "index.parquet", transform=eval_transform("sl", 16), progress=False
    )
    # overwrite one image's bytes in place (same size): the tar stays valid, the JPEG does not
    row = 9
    sid, off, size = (int(a[row]) for a in (src._rows.shard_id, src._rows.offset, src._rows.size))
    path = src._rows.shards[sid]
    with open(path, "r+b") as f:
        f.seek(off + 512)
        f.write(b"\0" * size)
    b = EpochBatches(len(src), 5, 0, drop_last=False)
    with pytest.raises(UserError) as e:
        for _ in iterate(make_loader(src, b, num_workers=workers, pin_memory=False)):
            pass
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"variant v: shard {path} sample {src.key(row)} is not a decodable")


def test_embedded_shards_stream_the_pixels_the_in_memory_path_loads(tiny_dataset):
    from tailstudy.data.loader import load_split

    mem = load_split(tiny_dataset, progress=False)
    src = ShardSource(tiny_dataset, progress=False)
    assert len(src) == len(mem) and src.label_counts().tolist() == mem.label_counts().tolist()
    for row in (0, len(src) // 2, len(src) - 1):
        item = src[row]
        assert torch.equal(item["image"].permute(1, 2, 0), mem.images[row])
        assert item["caption"] == mem.captions[row] and item["label"] == int(mem.labels[row])
