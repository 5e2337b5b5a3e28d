"""Memory and speed of the streaming data source (tailstudy.data.stream) on generated shards.

    python bench/loader.py [--sizes 5000 50000] [--workers 2] [--batch 256] [--out DIR]

Writes datasets of 224-px-short-side JPEGs (aspect ratios 1:1 to 3:2, either orientation) in
the project's format, then, each in a fresh process:

* peak RSS of one CLIP training epoch (open_clip train transform at 224) through the source at
  every size: the main process and the largest worker (goal: the largest set costs <= 1.2x the
  smallest one's total);
* on the smallest set, images/s of the source with ``--workers`` workers against a bare
  webdataset pipeline over the same shards (``WebDataset -> decode("pil") -> the same
  transform``, batched in a DataLoader with the same workers), interleaved over ``--repeat``
  rounds (goal: >= 0.8x).

Timings on a shared machine are noisy: compare the ratios, measured in the same run.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _pool(n: int, seed: int = 0, short_side: int = 224) -> list[bytes]:
    """``n`` distinct smooth JPEGs with shorter side ``short_side``, the longer 1-1.5x that, in
    either orientation (JPEG sizes like photos': ~16 KB at 224)."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        long = int(rng.integers(short_side, short_side * 3 // 2 + 1))
        w, h = (long, short_side) if i % 2 else (short_side, long)
        img = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 255, 3)))
        d = ImageDraw.Draw(img)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            r = int(rng.integers(max(2, short_side // 22), max(3, short_side // 3)))
            d.ellipse(
                (x0 - r, y0 - r, x0 + r, y0 + r),
                fill=tuple(int(c) for c in rng.integers(0, 255, 3)),
            )
        noise = rng.integers(0, 40, (h, w, 3), dtype=np.uint8)
        img = Image.fromarray(np.clip(np.asarray(img) + noise, 0, 255).astype(np.uint8))
        img = img.filter(ImageFilter.GaussianBlur(1))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def make_dataset(
    root: Path, n: int, pool: list[bytes], shard_size: int = 500, image_size: int = 224
) -> None:
    """A dataset of ``n`` rows cycling through ``pool``, 100 classes, in the project's format."""
    import pandas as pd

    from tailstudy.data.format import ShardWriter, finish_dataset

    if (root / "manifest.json").exists():
        return
    name = root.name
    with ShardWriter(root, name, shard_size=shard_size) as w:
        for i in range(n):
            w.write(f"{name}{i:07d}", "jpg", pool[i % len(pool)])
    index = pd.DataFrame(
        {
            "key": [f"{name}{i:07d}" for i in range(n)],
            "label": np.arange(n) % 100,
            "caption": [f"a photo of object {i % 100}, picture {i}" for i in range(n)],
        }
    )
    classes = [(f"n{c:08d}", f"class {c}") for c in range(100)]
    finish_dataset(root, name, index, w, classes, {"kind": "bench"}, (image_size, image_size))


def epoch_rss(root: str, workers: int, batch: int) -> dict:
    """One CLIP training epoch through the source; peak RSS (MiB) of main and workers."""
    import torch

    from tailstudy.data.stream import EpochBatches, ShardSource, iterate, make_loader
    from tailstudy.data.stream import train_transform as tt

    torch.set_num_threads(1)
    src = ShardSource(root, transform=tt("clip", 224), progress=False)
    b = EpochBatches(len(src), batch, 0, drop_last=True)
    loader = make_loader(src, b, num_workers=workers, pin_memory=False)
    t0, n = time.perf_counter(), 0
    for x in iterate(loader):
        n += len(x["row"])
    dt = time.perf_counter() - t0
    del loader  # persistent workers exit here, so their peak RSS is counted below
    import gc

    gc.collect()
    time.sleep(0.5)
    kib = 1024
    main = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib
    return {"rows": len(src), "images": n, "s": dt, "main_mib": main, "worker_mib": child}


def _wds_loader(root: Path, workers: int, batch: int):
    import torch
    import webdataset as wds

    from tailstudy.data.stream import train_transform as tt

    shards = sorted(str(p) for p in (root / "shards").glob("*.tar"))
    t = tt("clip", 224)
    ds = (
        wds.WebDataset(shards, shardshuffle=False, nodesplitter=wds.split_by_node)
        .decode("pil")
        .to_tuple("jpg", "__key__")
        .map_tuple(t, lambda k: k)
        .batched(batch, partial=False)
    )
    return torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)


def throughput(root: str, workers: int, batch: int, repeat: int) -> dict:
    """images/s of the source vs the bare webdataset pipeline, rounds interleaved."""
    import torch

    from tailstudy.data.stream import EpochBatches, ShardSource, iterate, make_loader
    from tailstudy.data.stream import train_transform as tt

    torch.set_num_threads(1)
    src = ShardSource(root, transform=tt("clip", 224), progress=False)
    b = EpochBatches(len(src), batch, 0, drop_last=True)
    ours = make_loader(src, b, num_workers=workers, pin_memory=False)
    bare = _wds_loader(Path(root), workers, batch)
    res: dict[str, list[float]] = {"stream": [], "webdataset": []}
    for r in range(repeat):
        for name in ("stream", "webdataset"):
            t0, n = time.perf_counter(), 0
            if name == "stream":
                b.set_epoch(r)
                for x in iterate(ours):
                    n += len(x["row"])
            else:
                for x, _ in bare:
                    n += len(x)
            res[name].append(n / (time.perf_counter() - t0))
            print(f"round {r}: {name} {res[name][-1]:.0f} images/s", file=sys.stderr, flush=True)
    return res


def _child(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[5000, 50000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", type=Path, help="keep the datasets here (default: a temporary folder)")
    ap.add_argument("--_rss", help=argparse.SUPPRESS)
    ap.add_argument("--_speed", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._rss:
        print(json.dumps(epoch_rss(a._rss, a.workers, a.batch)))
        return
    if a._speed:
        print(json.dumps(throughput(a._speed, a.workers, a.batch, a.repeat)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        base = a.out or Path(tmp)
        t0 = time.perf_counter()
        pool = _pool(1000)
        print(f"{len(pool)} distinct JPEGs, mean {np.mean([len(p) for p in pool]) / 1024:.1f} KiB")
        roots = {}
        for n in a.sizes:
            roots[n] = base / f"bench{n}"
            make_dataset(roots[n], n, pool)
        print(f"datasets written in {time.perf_counter() - t0:.0f} s")
        rss = {}
        for n in a.sizes:
            common = ["--workers", str(a.workers), "--batch", str(a.batch)]
            rss[n] = _child(["--_rss", str(roots[n]), *common])
            r = rss[n]
            print(
                f"{n:>7} rows: one epoch {r['images']} images in {r['s']:.0f} s "
                f"({r['images'] / r['s']:.0f}/s); peak RSS main {r['main_mib']:.0f} MiB, "
                f"largest worker {r['worker_mib']:.0f} MiB, main + {a.workers} workers "
                f"{r['main_mib'] + a.workers * r['worker_mib']:.0f} MiB",
                flush=True,
            )
        lo, hi = min(a.sizes), max(a.sizes)

        def total(r):
            return r["main_mib"] + a.workers * r["worker_mib"]

        print(
            f"peak RSS {hi} / {lo} rows: {total(rss[hi]) / total(rss[lo]):.2f}x "
            f"(main {rss[hi]['main_mib'] / rss[lo]['main_mib']:.2f}x, "
            f"worker {rss[hi]['worker_mib'] / rss[lo]['worker_mib']:.2f}x; goal <= 1.2x)"
        )
        sp = _child(
            [
                "--_speed",
                str(roots[lo]),
                "--workers",
                str(a.workers),
                "--batch",
                str(a.batch),
                "--repeat",
                str(a.repeat),
            ]
        )
        s, w = np.median(sp["stream"]), np.median(sp["webdataset"])
        print(
            f"throughput on {lo} rows, {a.workers} workers, median of {a.repeat}: stream "
            f"{s:.0f} images/s, bare webdataset {w:.0f} images/s: {s / w:.2f}x (goal >= 0.8x); "
            f"rounds {[round(x) for x in sp['stream']]} vs {[round(x) for x in sp['webdataset']]}"
        )


if __name__ == "__main__":
    main()
