"""Birdsnap (METHODS §1.4), the one transfer set published only as a URL list.

The release (``birdsnap.tgz``, extracted into ``root``) lists the images, not their bytes::

    <root>/images.txt       tab-separated, header: url, md5, path, species_id, bb_x1, ... (one row
                            per image; path is <species dir>/<file>)
    <root>/species.txt      tab-separated, header: id, common, scientific, dir (500 species)
    <root>/test_images.txt  header ``path``, then the paths of the 2,443 test images

The images are downloaded by img2dataset like LAIONet's (:mod:`tailstudy.acquire.download`),
each checked against the list's md5 (a placeholder served for a deleted photo fails as a hash
mismatch); dead or changed URLs are counted in the download manifest and the dataset's. The splits follow the
reference linear-probe code (SSLT): test = the test list's images that arrived; the train pool =
90% of the candidates (``sklearn.model_selection.train_test_split(test_size=0.1,
random_state=0)``), of which a seeded 20% is validation. The reference takes every downloaded
image as a candidate, test images included (a leak); ``pool: exclude-test`` (the default) leaves
the test list out of the pool, ``pool: all`` reproduces the reference.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.io import UserError

log = logging.getLogger(__name__)

POOLS = ("exclude-test", "all")
TEST_FRACTION = 0.1  # of the candidates, left out of the pool (the reference's train_test_split)
LAYOUT = (
    "<root>/images.txt (url, md5, path, species_id, ...), <root>/species.txt (id, common, "
    "scientific, dir) and <root>/test_images.txt (path), tab-separated with headers, as "
    "birdsnap.tgz extracts"
)


def _table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"Birdsnap: {path} is missing; expected {LAYOUT}")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UserError(f"Birdsnap: cannot read {path} ({e}); expected {LAYOUT}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(
            f"Birdsnap: {path} lacks column(s) {', '.join(missing)} (has "
            f"{', '.join(df.columns[:6])}); expected {LAYOUT}"
        )
    return df


def read_release(root: str | Path) -> tuple[list[tuple[str, str]], pd.DataFrame, set[str]]:
    """The species (``(dir, common name)`` in label order: species id ascending), the URL table
    (``row_id`` = line number, ``url``, ``path``, ``md5``, ``label``, ``caption``), and the test
    paths."""
    root = Path(root)
    species = _table(root / "species.txt", ("id", "common", "dir"))
    try:
        species["id"] = species["id"].astype(int)
    except ValueError:
        raise UserError(f"Birdsnap: {root / 'species.txt'} has a non-integer id") from None
    species = species.sort_values("id").reset_index(drop=True)
    label_of = {sid: i for i, sid in enumerate(species["id"])}
    images = _table(root / "images.txt", ("url", "md5", "path", "species_id"))
    sid = pd.to_numeric(images["species_id"], errors="coerce")
    unknown = images[~sid.isin(list(label_of))]
    if len(unknown):
        r = unknown.iloc[0]
        raise UserError(
            f"Birdsnap: {root / 'images.txt'}: {len(unknown)} rows name a species not in "
            f"species.txt, e.g. {r['path']!r} (species_id {r['species_id']!r})"
        )
    urls = pd.DataFrame(
        {
            "row_id": np.arange(len(images), dtype=np.int64),
            "url": images["url"],
            "caption": "",
            "path": images["path"],
            "md5": images["md5"],
            "label": sid.map(label_of).astype(np.int32),
        }
    )
    test = set(_table(root / "test_images.txt", ("path",))["path"])
    absent = test - set(urls["path"])
    if absent:
        raise UserError(
            f"Birdsnap: {root / 'test_images.txt'} lists {len(absent)} paths images.txt does "
            f"not, e.g. {sorted(absent)[0]!r}"
        )
    classes = list(zip(species["dir"], species["common"], strict=True))
    return classes, urls, test


def splits(rows: pd.DataFrame, test: set[str], pool: str = "exclude-test") -> pd.DataFrame:
    """``rows`` (the downloaded images: ``row_id``, ``path``, in row-id order) with ``split``
    train / val / test; a row of the reference's leaky pool that is also a test image appears
    twice. Rows in neither (the 10% held out of the pool) are dropped."""
    from sklearn.model_selection import train_test_split

    from tailstudy.acquire.transfer import random_val

    if pool not in POOLS:
        raise UserError(f"Birdsnap: pool {pool!r} is not one of {', '.join(POOLS)}")
    is_test = rows["path"].isin(test).to_numpy()
    candidates = rows if pool == "all" else rows[~is_test]
    if len(candidates) < 2:
        raise UserError(f"Birdsnap: {len(candidates)} downloaded images outside the test list")
    kept, _ = train_test_split(
        candidates["row_id"].to_numpy(), test_size=TEST_FRACTION, random_state=0
    )
    by_id = rows.set_index("row_id")
    train = by_id.loc[kept].reset_index()
    train["split"] = np.where(random_val(len(train)), "val", "train")
    tested = rows[is_test].assign(split="test")
    return pd.concat([train, tested], ignore_index=True)


def build(spec: dict, out: Path, name: str, downloads: Path) -> dict:
    """The transfer set from its download folder (``urls.parquet``, ``manifest.json`` and the
    slices) and the release's lists."""
    from tailstudy.acquire.build import _image_size, _short_side, decodable
    from tailstudy.acquire.download import iter_successes, read_urls
    from tailstudy.data.format import ShardWriter, finish_dataset, shrink_to_short_side
    from tailstudy.io import read_json

    classes, _, test = read_release(spec["root"])
    urls = read_urls(downloads / "urls.parquet")
    manifest = read_json(downloads / "manifest.json")
    known = set(urls["row_id"])

    def downloaded():
        for s in manifest["shards"]:
            yield from iter_successes(downloads / s["shard"], s["img2dataset_shards"])

    # first pass: which images arrived and decode (the splits depend on all of them)
    ok: set[int] = set()
    bad: list[int] = []
    t0 = time.perf_counter()
    for rid, _, data in downloaded():
        if rid not in known:
            raise UserError(
                f"a download shard of {name} holds row {rid}, not in the URL table: delete "
                "the download folder's slices and rerun the download"
            )
        (ok.add(rid) if decodable(data) else bad.append(rid))
    log.info("%s: %d images arrived and decode (%.0f s)", name, len(ok), time.perf_counter() - t0)
    got = urls[urls["row_id"].isin(ok)].reset_index(drop=True)
    if got.empty:
        raise UserError(f"dataset {name}: no Birdsnap image was downloaded")
    pool = spec.get("pool", "exclude-test")
    rows = splits(got[["row_id", "path", "label", "url"]], test, pool)
    rows.insert(0, "key", rows["split"] + "-" + rows["row_id"].astype(str))
    rows["caption"] = ""
    keys_of = rows.groupby("row_id")["key"].agg(list).to_dict()
    # second pass: store the images of the splits (a leaky-pool test image under both keys)
    with ShardWriter(out, name) as writer:
        for rid, ext, data in downloaded():
            if rid in keys_of:
                data = shrink_to_short_side(data, ext, _short_side(spec))
                for key in keys_of.pop(rid):
                    writer.write(key, ext, data)
    images = ok
    counts = {k: int(v) for k, v in rows["split"].value_counts().items()}
    dead = int(manifest["n_urls"]) - len(images) - len(bad)
    log.info(
        "%s: %d of %d URLs downloaded (%d dead, %d undecodable); splits %s (pool: %s)",
        name,
        len(images),
        manifest["n_urls"],
        dead,
        len(bad),
        counts,
        pool,
    )
    return finish_dataset(
        out,
        name,
        rows,
        writer,
        classes,
        {"source": "birdsnap", **spec},
        _image_size(spec),
        {
            "metric": "top1",
            "splits": counts,
            "pool": pool,
            "n_urls": int(manifest["n_urls"]),
            "images": len(images),
            "dead_urls": dead,
            "undecodable": len(bad),
            "test_listed": len(test),
        },
    )
