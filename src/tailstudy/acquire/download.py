"""Image downloads with img2dataset (METHODS §1.1), one job per URL-list shard.

A dataset's URL table (``urls.parquet``: ``row_id``, ``url``, ``caption``, ...) sorted by row id
is cut into ``url_shards`` contiguous slices. The job of slice ``s`` works in
``{downloads}/{s}/``::

    urls.parquet        the slice handed to img2dataset (url, caption, row_id)
    fingerprint.txt     hash of the slice and of the settings that shape the images
    img2dataset/        img2dataset's output: NNNNN.tar (successes), NNNNN.parquet (every row,
                        with status and error_message), NNNNN_stats.json (counts by reason)
    stats.json          written last: the slice's successes and failures by reason

img2dataset runs with ``incremental_mode="incremental"``: an img2dataset shard counts as done
when its ``_stats.json`` exists, so a killed job resumes where it stopped (a partial tar is
redone). When the slice or the image settings change, ``img2dataset/`` is deleted and the slice
downloaded afresh. The only network traffic is to the URLs themselves: wandb is off and
albumentations' update check is disabled (``NO_ALBUMENTATIONS_UPDATE=1``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import signal
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.io import UserError, atomic_path, read_json, write_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DownloadSettings:
    """img2dataset settings (defaults: METHODS §1.1) and the workflow's own download knobs."""

    image_size: int = 256
    resize_mode: str = "keep_ratio"
    resize_only_if_bigger: bool = True
    skip_reencode: bool = True
    encode_format: str = "jpg"
    encode_quality: int = 95
    processes: int = 16
    threads: int = 64
    retries: int = 10
    timeout: int = 10
    url_shards: int = 16
    samples_per_shard: int = 10_000
    min_success_rate: float = 0.25
    user_agent_token: str | None = None

    #: settings that change the bytes written: a change restarts a shard from scratch
    CONTENT = (
        "image_size",
        "resize_mode",
        "resize_only_if_bigger",
        "skip_reencode",
        "encode_format",
        "encode_quality",
        "samples_per_shard",
    )

    @classmethod
    def from_dict(cls, d: dict | None) -> DownloadSettings:
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise UserError(f"download settings: unknown key(s) {', '.join(unknown)}")
        s = cls(**d)
        if s.resize_mode not in ("no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"):
            raise UserError(f"download.resize_mode {s.resize_mode!r} is not an img2dataset mode")
        if s.encode_format not in ("jpg", "png"):
            raise UserError("download.encode_format must be jpg or png (what the loader reads)")
        if not 0 <= s.min_success_rate <= 1:
            raise UserError("download.min_success_rate must lie in [0, 1]")
        return s

    def to_dict(self) -> dict:
        return asdict(self)


def merged_settings(shared: dict | None, own: dict | None) -> dict:
    """A dataset's download settings: the shared ``download`` block, overridden by its own."""
    return DownloadSettings.from_dict({**(shared or {}), **(own or {})}).to_dict()


def shard_names(n: int) -> list[str]:
    return [f"{i:05d}" for i in range(n)]


def url_slice(urls: pd.DataFrame, shard: int, n_shards: int) -> pd.DataFrame:
    """Rows of slice ``shard`` of ``n_shards`` contiguous slices (table in row-id order)."""
    if not 0 <= shard < n_shards:
        raise UserError(f"URL shard {shard} is outside 0..{n_shards - 1}")
    bounds = np.linspace(0, len(urls), n_shards + 1).round().astype(int)
    return urls.iloc[bounds[shard] : bounds[shard + 1]].reset_index(drop=True)


def read_urls(path: str | Path) -> pd.DataFrame:
    try:
        urls = pd.read_parquet(path)
    except FileNotFoundError:
        raise UserError(f"URL table {path} is missing: run the step that writes it") from None
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise UserError(f"cannot read URL table {path}: {e}") from None
    missing = [c for c in ("row_id", "url") if c not in urls.columns]
    if missing:
        raise UserError(f"URL table {path} lacks column(s) {', '.join(missing)}")
    if urls["row_id"].duplicated().any():
        raise UserError(f"URL table {path} repeats row ids")
    return urls.sort_values("row_id").reset_index(drop=True)


def fingerprint(rows: pd.DataFrame, settings: DownloadSettings) -> str:
    h = hashlib.sha256()
    content = {k: getattr(settings, k) for k in DownloadSettings.CONTENT}
    h.update(json.dumps(content, sort_keys=True).encode())
    h.update(rows["row_id"].to_numpy(np.int64).tobytes())
    h.update(pd.util.hash_pandas_object(rows["url"].fillna(""), index=False).to_numpy().tobytes())
    return h.hexdigest()


def _stop_children(signum=None, frame=None) -> None:
    """Terminate img2dataset's worker and logger processes (SIGTERM would orphan them)."""
    import multiprocessing

    kids = multiprocessing.active_children()
    for p in kids:
        p.terminate()
    for p in kids:
        p.join(5)
        if p.is_alive():
            p.kill()
    if signum is not None:
        os._exit(128 + signum)


def run_img2dataset(
    url_file: Path, folder: Path, settings: DownloadSettings, verify_md5: bool = False
) -> None:
    """One ``img2dataset.download`` call (must run under a ``__main__`` guard: it spawns).
    ``verify_md5``: the URL file's ``md5`` column holds each image's hash, and a download whose
    original bytes differ (a placeholder served for a deleted photo) counts as failed."""
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"  # else every worker queries the package index
    os.environ.setdefault("WANDB_MODE", "disabled")
    from img2dataset import download

    previous = signal.signal(signal.SIGTERM, _stop_children)
    try:
        download(
            url_list=str(url_file),
            input_format="parquet",
            url_col="url",
            caption_col="caption",
            save_additional_columns=["row_id"],
            compute_hash="md5" if verify_md5 else "sha256",
            verify_hash=["md5", "md5"] if verify_md5 else None,
            output_format="webdataset",
            output_folder=str(folder),
            image_size=settings.image_size,
            resize_mode=settings.resize_mode,
            resize_only_if_bigger=settings.resize_only_if_bigger,
            skip_reencode=settings.skip_reencode,
            encode_format=settings.encode_format,
            encode_quality=settings.encode_quality,
            processes_count=settings.processes,
            thread_count=settings.threads,
            retries=settings.retries,
            timeout=settings.timeout,
            number_sample_per_shard=settings.samples_per_shard,
            user_agent_token=settings.user_agent_token,
            incremental_mode="incremental",
            enable_wandb=False,
        )
    except SystemExit:  # img2dataset's SIGINT handler exits 0
        raise UserError(f"download into {folder} was interrupted; rerun to resume") from None
    finally:
        _stop_children()
        signal.signal(signal.SIGTERM, previous)


def reason_key(message: str) -> str:
    """A failure reason with object addresses blanked, so equal causes count together."""
    return re.sub(r"0x[0-9a-fA-F]+", "0x?", str(message))


def read_img2dataset_stats(folder: Path, n_shards: int) -> list[dict]:
    """The ``_stats.json`` of img2dataset shards 0..n-1; missing ones raise UserError."""
    out, missing = [], []
    for i in range(n_shards):
        path = folder / f"{i:05d}_stats.json"
        if not path.exists():
            missing.append(path.name)
            continue
        out.append({"file": f"{i:05d}", **json.loads(path.read_text())})
    if missing:
        raise UserError(
            f"{len(missing)} of {n_shards} img2dataset shards in {folder} did not finish "
            f"(e.g. {missing[0]}); rerun to resume them"
        )
    return out


def summarise(shard: str, n_urls: int, parts: list[dict]) -> dict:
    reasons: Counter = Counter()
    for p in parts:
        for k, v in p.get("status_dict", {}).items():
            if k != "success":
                reasons[reason_key(k)] += int(v)
    successes = sum(int(p["successes"]) for p in parts)
    return {
        "shard": shard,
        "n_urls": n_urls,
        "successes": successes,
        "failures": n_urls - successes,
        "failed_to_download": sum(int(p["failed_to_download"]) for p in parts),
        "failed_to_resize": sum(int(p["failed_to_resize"]) for p in parts),
        "success_rate": successes / n_urls if n_urls else None,
        "by_reason": dict(reasons.most_common()),
        "img2dataset_shards": [p["file"] for p in parts],
    }


def check_success_rate(stats: dict, settings: DownloadSettings, where: str) -> None:
    rate = stats["success_rate"]
    if rate is None or rate >= settings.min_success_rate:
        return
    top = "; ".join(f"{k} ({v})" for k, v in list(stats["by_reason"].items())[:3]) or "none"
    raise UserError(
        f"{where}: {stats['successes']} of {stats['n_urls']} images downloaded "
        f"({rate:.1%}), below min_success_rate {settings.min_success_rate:.0%}; "
        f"top failures: {top}. Fix the cause, delete {where}/img2dataset and rerun "
        "(or lower download.min_success_rate)"
    )


def download_shard(
    urls_path: str | Path,
    shard: int,
    settings: DownloadSettings,
    work_dir: str | Path,
    out: str | Path,
) -> dict:
    """Download URL slice ``shard`` into ``work_dir``; write and return its stats."""
    work = Path(work_dir)
    rows = url_slice(read_urls(urls_path), shard, settings.url_shards)
    verify_md5 = "md5" in rows.columns  # a URL table with hashes (Birdsnap's) has them checked
    work.mkdir(parents=True, exist_ok=True)
    folder = work / "img2dataset"
    name = f"{shard:05d}"
    if len(rows) == 0:
        stats = summarise(name, 0, [])
    else:
        fp = fingerprint(rows, settings)
        fp_file = work / "fingerprint.txt"
        if folder.exists() and (not fp_file.exists() or fp_file.read_text().strip() != fp):
            log.info("%s: the URL slice or image settings changed; starting afresh", work)
            shutil.rmtree(folder)
        slice_file = work / "urls.parquet"
        with atomic_path(slice_file, suffix=".parquet") as tmp:
            cols = rows[["url", "row_id"]].copy()
            cols["caption"] = rows.get("caption", None)
            if verify_md5:
                cols["md5"] = rows["md5"]
            cols.to_parquet(tmp, index=False)
        with atomic_path(fp_file) as tmp:
            tmp.write_text(fp + "\n")
        n_parts = math.ceil(len(rows) / settings.samples_per_shard)
        done = len(list(folder.glob("*_stats.json"))) if folder.exists() else 0
        log.info(
            "%s: %d URLs in %d img2dataset shards (%d already done)", work, len(rows), n_parts, done
        )
        if done < n_parts:
            run_img2dataset(slice_file, folder, settings, verify_md5)
        stats = summarise(name, len(rows), read_img2dataset_stats(folder, n_parts))
    log.info(
        "%s: %d of %d downloaded; failures by reason: %s",
        work,
        stats["successes"],
        stats["n_urls"],
        stats["by_reason"],
    )
    check_success_rate(stats, settings, str(work))
    write_json(out, stats)
    return stats


def write_manifest(dataset: str, stats_files: Iterable[str | Path], out: str | Path) -> dict:
    """The dataset's download manifest: totals, failures by reason, and every shard's stats."""
    shards = [read_json(p) for p in stats_files]
    reasons: Counter = Counter()
    for s in shards:
        reasons.update(s["by_reason"])
    n = sum(s["n_urls"] for s in shards)
    ok = sum(s["successes"] for s in shards)
    manifest = {
        "dataset": dataset,
        "n_urls": n,
        "successes": ok,
        "failures": n - ok,
        "success_rate": ok / n if n else None,
        "by_reason": dict(reasons.most_common()),
        "shards": shards,
    }
    write_json(out, manifest)
    return manifest


def iter_successes(work_dir: str | Path, img2dataset_shards: Iterable[str]) -> Iterator[tuple]:
    """``(row_id, extension, bytes)`` of every image a shard job downloaded."""
    import webdataset as wds

    folder = Path(work_dir) / "img2dataset"
    for part in img2dataset_shards:
        meta = pd.read_parquet(folder / f"{part}.parquet", columns=["key", "status", "row_id"])
        ok = meta[meta["status"] == "success"]
        row_of = dict(zip(ok["key"], ok["row_id"].astype(np.int64), strict=True))
        seen = 0
        tar = folder / f"{part}.tar"
        for sample in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False):
            rid = row_of.get(sample["__key__"])
            ext = next((e for e in ("jpg", "png") if e in sample), None)
            if rid is None or ext is None:
                continue
            seen += 1
            yield int(rid), ext, sample[ext]
        if seen != len(row_of):
            raise UserError(
                f"{tar} holds {seen} of the {len(row_of)} images its parquet lists; delete "
                f"{folder} and rerun the download"
            )
