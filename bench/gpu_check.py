"""One-GPU check of the training path: trainer vs a bare open_clip step, images/s and memory.

    python bench/gpu_check.py                      # RN50, 224 px, 100 steps of 256, on CUDA
    python bench/gpu_check.py --device cpu --steps 2 --arch RN-tiny --image-size 32 --batch 8
                                                   # smoke mode: the same code on the CPU

Writes a dataset of synthetic JPEG shards (``--shards`` × ``--per-shard`` images, shorter side
``--image-size`` × 256/224 as the builders store them) in the project's format, then:

(a) the full trainer: ``python -m tailstudy train`` in this process on a CLIP run config (recipe
    as METHODS §4.2, one GPU: AMP fp16 + GradScaler, channels_last), two epochs of half the
    steps each; images/s of its second epoch from ``train_log.jsonl``;
(b) a bare open_clip forward/backward/AdamW step (the same model and loss, AMP, channels_last)
    on batches from the streaming source (``tailstudy.data.stream``: decode + open_clip's train
    transform in ``--workers`` workers, pinned memory), and the same step on one batch already on
    the GPU (the model's ceiling, no data loading);

and prints images/s of each and the peak GPU memory. Without CUDA, ``--device cuda`` (the
default) stops with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loader import _pool, make_dataset  # noqa: E402  (bench/loader.py: the same generator)


def fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


def write_run_config(path: Path, a: argparse.Namespace, rows: int) -> None:
    from tailstudy.config import Recipe, RunConfig

    steps_per_epoch = rows // a.batch
    recipe = Recipe(
        epochs=2,
        batch_size=a.batch,
        lr=1e-3,
        weight_decay=0.2,
        optimizer="adamw",
        schedule="warmup-cosine",
        warmup_steps=min(10, steps_per_epoch),
        gpus=1 if a.device == "cuda" else 0,
    )
    cfg = RunConfig(
        run_id="gpu-check",
        scale="paper",
        objective="clip",
        arch=a.arch,
        dataset="gpucheck",
        variant="gpucheck",
        seed=0,
        eval_dataset="gpucheck",
        eval_templates="openai80",
        recipe_name="clip",
        recipe=recipe,
    )
    path.write_text(cfg.to_json())


def trainer(a, root: Path, work: Path) -> dict:
    import shutil

    import torch

    from tailstudy.cli import main
    from tailstudy.data.format import read_index, write_index

    # two epochs over half the rows: the second epoch's rate leaves out start-up and warm-up
    work.mkdir(parents=True, exist_ok=True)
    index = read_index(root)
    half = index.iloc[: len(index) // 2]
    write_index(work / "index.parquet", half)
    shutil.copy(root / "classes.tsv", work / "classes.tsv")
    cfg = work / "config.json"
    write_run_config(cfg, a, len(half))
    if a.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    rc = main(
        [
            "train",
            "--config",
            str(cfg),
            "--dataset",
            str(root),
            "--index",
            str(work / "index.parquet"),
            "--out",
            str(work / "run"),
            "--ckpt-dir",
            str(work / "ckpt"),
            "--device",
            a.device,
            "--in-memory-max-mb",  # the streaming path, as at paper scale
            "0",
            "--workers",
            str(a.workers),
        ]
    )
    if rc != 0:
        fail(f"the trainer failed (exit status {rc}); its error is above")
    log = [json.loads(x) for x in (work / "run/train_log.jsonl").read_text().splitlines()]
    peak = torch.cuda.max_memory_allocated() / 2**30 if a.device == "cuda" else float("nan")
    return {
        "images_per_s": log[-1]["images_per_s"],
        "wall_s": time.perf_counter() - t0,
        "peak_gib": peak,
        "steps": log[-1].get("step"),
    }


def bare(a, root: Path) -> dict:
    """open_clip forward/backward/AdamW on streamed batches, then on one resident batch."""
    import open_clip
    import torch

    from tailstudy.data.stream import EpochBatches, ShardSource, iterate, make_loader
    from tailstudy.data.stream import train_transform as tt
    from tailstudy.models import factory

    dev = torch.device(a.device)
    amp = dev.type == "cuda"
    torch.manual_seed(0)
    model = factory.create_clip(a.arch).to(dev).to(memory_format=torch.channels_last)
    tok = factory.get_tokenizer(a.arch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.2)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    loss_fn = open_clip.ClipLoss()

    def step(x, t):
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            img, txt, scale = model(x, t)[:3]
            loss = loss_fn(img, txt, scale)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss

    def sync():
        if amp:
            torch.cuda.synchronize()

    src = ShardSource(root, transform=tt("clip", a.image_size), progress=False)
    batches = EpochBatches(len(src), a.batch, 0, drop_last=True)
    loader = make_loader(src, batches, num_workers=a.workers, pin_memory=amp)
    warm = min(5, max(1, a.steps // 10))
    if amp:
        torch.cuda.reset_peak_memory_stats()
    n, t0, first = 0, None, None
    for i, b in enumerate(iterate(loader)):
        if i >= a.steps:
            break
        x = b["image"].to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
        t = tok(b["caption"]).to(dev, non_blocking=True)
        if first is None:
            first = (x, t)
        step(x, t)
        if i + 1 == warm:
            sync()
            t0, n = time.perf_counter(), 0
        elif t0 is not None:
            n += len(x)
    sync()
    streamed = n / (time.perf_counter() - t0) if t0 and n else float("nan")
    x, t = first
    for _ in range(warm):
        step(x, t)
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step(x, t)
    sync()
    resident = a.steps * len(x) / (time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if amp else float("nan")
    return {"streamed": streamed, "resident": resident, "peak_gib": peak}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    ap.add_argument("--arch", default="RN50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--shards", type=int, default=200, help="JPEG shards to write")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--out", type=Path, help="keep the data and run here (default: temporary)")
    a = ap.parse_args()

    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        fail("no CUDA device is visible: run this on a GPU node (or --device cpu for a smoke test)")
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    rows = a.steps * a.batch  # two trainer epochs of steps/2, one bare pass of steps
    per_shard = -(-rows // a.shards)
    with tempfile.TemporaryDirectory() as tmp:
        base = a.out or Path(tmp)
        root = base / "gpucheck"
        t0 = time.perf_counter()
        short = round(a.image_size * 256 / 224)
        pool = _pool(min(500, rows), short_side=short)
        make_dataset(root, per_shard * a.shards, pool, per_shard, a.image_size)
        print(
            f"data: {per_shard * a.shards} JPEGs (short side {short}) in {a.shards} shards, "
            f"{time.perf_counter() - t0:.0f} s",
            flush=True,
        )
        dev = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
        print(f"device: {dev}; {a.arch} at {a.image_size} px, batch {a.batch}", flush=True)
        b = bare(a, root)
        tr = trainer(a, root, base / "work")
        print(
            f"(a) full trainer (tailstudy train, epoch 2):     {tr['images_per_s']:8.1f} images/s"
        )
        print(f"(b) bare open_clip step, streamed batches:        {b['streamed']:8.1f} images/s")
        print(f"    bare open_clip step, batch resident on device: {b['resident']:8.1f} images/s")
        print(f"trainer / bare (streamed): {tr['images_per_s'] / b['streamed']:.2f}")
        print(
            f"peak GPU memory: trainer {tr['peak_gib']:.2f} GiB, bare {b['peak_gib']:.2f} GiB "
            f"(torch.cuda.max_memory_allocated)"
        )
        print(f"steps: trainer {tr['steps']}, bare {a.steps} + {a.steps}; {a.workers} workers")


if __name__ == "__main__":
    main()
