"""img2dataset downloads against a loopback HTTP server (127.0.0.1 only): the rule family end to
end with bad rows, a killed download that resumes, and a download where nothing arrives.

Each img2dataset call costs 10-20 s of start-up, so these tests are few and marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from smk import REPO, smk
from standins import closed_port, image_bytes, loopback_server, silent_port
from tailstudy.concepts import imagenet_concepts
from tailstudy.data.format import read_index, read_manifest

pytestmark = pytest.mark.slow

TEST_DOWNLOAD = {
    "url_shards": 1,
    "processes": 1,
    "threads": 8,
    "retries": 0,
    "timeout": 2,
    "samples_per_shard": 20,
    "min_success_rate": 0.5,
}


def _serve_images(www: Path, n: int) -> dict[str, bytes]:
    www.mkdir(parents=True, exist_ok=True)
    files = {}
    for i in range(n):
        data = image_bytes(24 + i % 5, 30, i)
        (www / f"{i}.jpg").write_bytes(data)
        files[f"{i}.jpg"] = data
    full = image_bytes(40, 40, 999)
    (www / "half.jpg").write_bytes(full[: len(full) // 2])
    (www / "garbage.jpg").write_bytes(os.urandom(500))
    return files


def _stored_images(root: Path) -> dict[str, bytes]:
    import webdataset as wds

    out = {}
    for tar in sorted((root / "shards").glob("*.tar")):
        for s in wds.WebDataset(str(tar), shardshuffle=False):
            out[s["__key__"]] = s["jpg"]
    return out


def test_downloads_end_to_end_through_the_workflow(tmp_path):
    """LAIONet and a -Cls set from local metadata whose URLs hit a loopback server, bad rows
    included: failures are counted by reason, datasets hold exactly the images that arrived."""
    import torch

    from tailstudy.models.factory import create_clip

    www = tmp_path / "www"
    files = _serve_images(www, 30)
    torch.manual_seed(0)
    torch.save(create_clip("RN-tiny").state_dict(), tmp_path / "clip.pt")
    with loopback_server(www) as (base, _), silent_port() as silent:
        bad = {  # url -> the failure it must be counted under
            f"{base}/missing0.jpg": "HTTP Error 404",
            f"{base}/missing1.jpg": "HTTP Error 404",
            f"http://127.0.0.1:{closed_port()}/x.jpg": "Connection refused",
            f"http://127.0.0.1:{silent}/x.jpg": "timed out",
            "": "unknown url type",
            "foo://127.0.0.1/x.jpg": "unknown url type",
            f"{base}/html": "Image decoding error",
            f"{base}/half.jpg": "Image decoding error",
            f"{base}/garbage.jpg": "Image decoding error",
        }
        good = [f"{base}/{i}.jpg" for i in range(30)]
        # -Cls metadata: a headerless TSV; row 1 matches two classes
        captions = ["a tench", "goldfish with a tench", "tench!", "Goldfish"]
        lines = [f"{u}\t{captions[i % 4]}" for i, u in enumerate(good[:20])]
        lines += [f"{u}\tmy goldfish" for u in bad]
        lines.append(f"{good[20]}\tno class at all")
        (tmp_path / "cc.tsv").write_text("\n".join(lines) + "\n")
        # LAION-like metadata: multi-label and unlabelled rows never reach the download
        texts = ["tench", "Tinca tinca", "goldfish", "goldfish and tench", "nothing", "goldfish"]
        laion = pd.DataFrame(
            {
                "URL": good[20:26] + [next(iter(bad))],
                "TEXT": texts + ["tench"],
                "NSFW": ["UNLIKELY"] * 6 + ["UNLIKELY"],
                "similarity": 0.3,
            }
        )
        laion.to_parquet(tmp_path / "part-00000.parquet")

        config = yaml.safe_load((REPO / "config.yaml").read_text())
        config["download"] = TEST_DOWNLOAD
        config["datasets"]["webcls"] = {
            "source": "cls",
            "metadata": [str(tmp_path / "cc.tsv")],
            "header": False,
            "url_column": "0",
            "caption_column": "1",
            "image_size": 32,
        }
        config["datasets"]["lnet"] = {
            "source": "laionet",
            "metadata": [str(tmp_path / "part-00000.parquet")],
            "threshold": -1.0,
            "image_size": 32,
            "text_encoder": {"open_clip": "RN-tiny", "checkpoint": str(tmp_path / "clip.pt")},
        }
        config["variants"]["webcls-half"] = {
            "dataset": "webcls",
            "labelled": True,
            "sample": {"fraction": 0.5},
        }
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        smk(
            tmp_path,
            "-c2",
            "results/variants/webcls-half/index.parquet",
            "results/data/lnet/manifest.json",
            configfile=path,
        )

    m = json.loads((tmp_path / "results/downloads/webcls/manifest.json").read_text())
    assert m["n_urls"] == 20 + len(bad) and m["successes"] == 20 and m["failures"] == len(bad)
    expected: dict[str, int] = {}
    for reason in bad.values():
        expected[reason] = expected.get(reason, 0) + 1
    counted = {r: sum(n for k, n in m["by_reason"].items() if r in k) for r in expected}
    assert counted == expected and sum(m["by_reason"].values()) == len(bad), m["by_reason"]
    assert m["shards"][0]["by_reason"] == m["by_reason"]

    root = tmp_path / "results/data/webcls"
    idx = read_index(root)
    assert read_manifest(root)["undecodable"] == 0
    assert set(idx["url"]) == set(good[:20])  # only successes; the unmatched row never went
    two = idx[idx["url"] == good[1]]
    assert sorted(two["label"]) == [0, 1] and len(idx) == 25  # 5 "goldfish with a tench" rows x2
    stored = _stored_images(root)
    for key, url in zip(idx["key"], idx["url"], strict=True):
        assert stored[key] == files[url.rsplit("/", 1)[1]]  # original bytes, not re-encoded
    half = read_index(tmp_path / "results/variants/webcls-half")
    assert set(half["key"]) <= set(idx["key"]) and sorted(half["label"].unique()) == [0, 1]

    lnet = read_index(tmp_path / "results/data/lnet")
    wnids = {c.wnid: c.index for c in imagenet_concepts()}
    assert lnet["caption"].tolist() == ["tench", "Tinca tinca", "goldfish", "goldfish"]
    assert lnet["label"].tolist() == [wnids[w] for w in lnet["wnid"]]
    assert lnet["row_id"].tolist() == [0, 1, 2, 5] and lnet["key"].tolist() == ["0", "1", "2", "5"]
    assert lnet["similarity"].between(-1, 1).all() and lnet["nsfw"].eq("UNLIKELY").all()
    lm = json.loads((tmp_path / "results/downloads/lnet/manifest.json").read_text())
    assert (
        lm["n_urls"] == 5 and lm["successes"] == 4
    )  # the 404 row passed the filter, not the download


def _children(pid: int) -> set[int]:
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids = (task / "children").read_text().split()
        except OSError:
            continue
        for k in map(int, kids):
            out |= {k} | _children(k)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_download_resumes_and_ends_with_the_same_images(tmp_path):
    www = tmp_path / "www"
    files = _serve_images(www, 60)
    with loopback_server(www, delay=0.25) as (base, requests):
        urls = pd.DataFrame(
            {
                "row_id": np.arange(100, 160, dtype=np.int64),
                "url": [f"{base}/slow/{i}.jpg" for i in range(60)],
                "caption": "tench",
                "wnid": "n01440764",
                "similarity": np.float32(0.8),
            }
        )
        dl = tmp_path / "downloads"
        dl.mkdir()
        urls.to_parquet(dl / "urls.parquet")
        settings = tmp_path / "settings.json"
        settings.write_text(
            json.dumps({"download": {**TEST_DOWNLOAD, "threads": 2, "samples_per_shard": 10}})
        )
        cmd = [
            sys.executable,
            "-m",
            "tailstudy",
            "acquire",
            "download",
            "--urls",
            str(dl / "urls.parquet"),
            "--shard",
            "0",
            "--settings",
            str(settings),
            "--work",
            str(dl / "00000"),
            "--out",
            str(dl / "00000/stats.json"),
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        with open(tmp_path / "first.log", "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        folder = dl / "00000/img2dataset"
        deadline = time.time() + 120
        while len(list(folder.glob("*_stats.json"))) < 2:
            assert proc.poll() is None and time.time() < deadline, "download ended before the kill"
            time.sleep(0.2)
        kids = _children(proc.pid)
        assert kids, "img2dataset started no worker processes"
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(30) != 0
            end = time.time() + 15
            while any(_alive(k) for k in kids) and time.time() < end:
                time.sleep(0.2)
            assert not any(_alive(k) for k in kids), "worker processes outlived the killed job"
        finally:
            for k in kids:  # never leave orphans behind, even when the check fails
                if _alive(k):
                    os.kill(k, signal.SIGKILL)
        done = {p.name: p.stat().st_mtime_ns for p in folder.glob("*_stats.json")}
        assert 2 <= len(done) < 6 and not (dl / "00000/stats.json").exists()
        finished_urls = set()
        for name in done:
            finished_urls |= set(
                pd.read_parquet(folder / name.replace("_stats.json", ".parquet"))["url"]
            )
        requests.clear()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr[-2000:]

    assert {
        p.name: p.stat().st_mtime_ns for p in folder.glob("*_stats.json") if p.name in done
    } == done
    again = {f"{base}{p}" for p in requests}
    assert again and not again & finished_urls  # finished shards were not fetched again
    stats = json.loads((dl / "00000/stats.json").read_text())
    assert stats["successes"] == stats["n_urls"] == 60 and stats["by_reason"] == {}

    from tailstudy.acquire.build import build_downloaded
    from tailstudy.acquire.download import write_manifest

    write_manifest("resumed", [dl / "00000/stats.json"], dl / "manifest.json")
    build_downloaded({"source": "laionet", "image_size": 32}, tmp_path / "ds", "resumed", dl)
    idx = read_index(tmp_path / "ds")
    assert idx["row_id"].tolist() == list(range(100, 160))  # every row once, none twice
    stored = _stored_images(tmp_path / "ds")
    assert all(stored[str(100 + i)] == files[f"{i}.jpg"] for i in range(60))


def test_no_successful_download_is_one_clear_error_and_removes_nothing(tmp_path):
    port = closed_port()
    lines = [f"http://127.0.0.1:{port}/{i}.jpg\ta tench" for i in range(12)]
    (tmp_path / "cc.tsv").write_text("\n".join(lines) + "\n")
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["download"] = TEST_DOWNLOAD
    config["datasets"]["webcls"] = {
        "source": "cls",
        "metadata": [str(tmp_path / "cc.tsv")],
        "header": False,
        "url_column": "0",
        "caption_column": "1",
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    res = smk(tmp_path, "-c1", "results/data/webcls/manifest.json", configfile=path, check=False)
    assert res.returncode != 0
    log = (tmp_path / "results/logs/download_shard/webcls/00000.log").read_text().strip()
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and log.splitlines()[-1] == errors[0]
    assert "0 of 12 images downloaded (0.0%), below min_success_rate 50%" in errors[0]
    assert "Connection refused> (12)" in errors[0]
    d = tmp_path / "results/downloads/webcls"
    assert (d / "urls.parquet").exists() and (
        tmp_path / "results/sources/webcls/match/00000.parquet"
    ).exists()
    assert (d / "00000/img2dataset/00000_stats.json").exists()  # kept: the evidence, and for resume
    assert not (d / "00000/stats.json").exists() and not (d / "manifest.json").exists()
    assert not (tmp_path / "results/data/webcls").exists()


def test_birdsnap_downloads_through_the_workflow(tmp_path):
    """Birdsnap from its release's lists whose URLs hit a loopback server: dead URLs and images
    whose bytes are not the listed ones (md5) counted as failures, the transfer set holds the
    served bytes of the images that arrived, split as the reference."""
    import hashlib

    from test_birdsnap import write_release

    www = tmp_path / "www"
    files = _serve_images(www, 30)
    images, test = write_release(tmp_path / "birdsnap", n=33)
    with loopback_server(www) as (base, _):
        # images 0-29 are served; 30-32 are 404s
        images["url"] = [f"{base}/{i}.jpg" if i < 30 else f"{base}/gone{i}.jpg" for i in range(33)]
        images["md5"] = [hashlib.md5(files.get(f"{i}.jpg", b"")).hexdigest() for i in range(33)]
        images.loc[7, "md5"] = "0" * 32  # image 7 is served, but not the photo the list names
        images.to_csv(tmp_path / "birdsnap" / "images.txt", sep="\t", index=False)
        config = yaml.safe_load((REPO / "config.yaml").read_text())
        config["download"] = TEST_DOWNLOAD
        config["datasets"]["bs"] = {
            "source": "birdsnap",
            "root": str(tmp_path / "birdsnap"),
            "image_size": 32,
        }
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        smk(tmp_path, "-c2", "results/data/bs/manifest.json", configfile=path)

    root = tmp_path / "results/data/bs"
    m = read_manifest(root)
    assert (m["n_urls"], m["images"], m["dead_urls"], m["metric"]) == (33, 29, 4, "top1")
    dl = json.loads((tmp_path / "results/downloads/bs/manifest.json").read_text())
    assert dl["by_reason"]["hash mismatch"] == 1
    idx = read_index(root)
    arrived = {p for p in images["path"] if int(p.split("/")[1][:-4]) < 30} - {images["path"][7]}
    assert set(idx[idx["split"] == "test"]["path"]) == test & arrived
    assert images["path"][7] not in set(idx["path"])
    assert not set(idx[idx["split"] != "test"]["path"]) & test
    stored = _stored_images(root)
    for key, url in zip(idx["key"], idx["url"], strict=True):
        assert stored[key] == files[url.rsplit("/", 1)[1]]
