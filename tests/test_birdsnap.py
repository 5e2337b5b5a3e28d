"""Birdsnap from its release's URL list: the URL table, the reference's splits with and without
its test leak, and the transfer set built from a download folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from tailstudy.acquire import birdsnap, build, download
from tailstudy.acquire.transfer import random_val
from tailstudy.data.format import read_classes, read_index, read_manifest
from tailstudy.evaluate.probe import metric_of
from tailstudy.io import UserError
from test_acquire import _fake_download

SPECIES = [
    (3, "Zebra Finch", "Taeniopygia", "Zebra_Finch"),
    (1, "Acadian Flycatcher", "E. v", "Acadian_Flycatcher"),
]


def write_release(root, n=40, species=SPECIES, test_every=5, extra_test=()):
    """images.txt with ``n`` images alternating between the species; every ``test_every``-th on
    the test list."""
    root.mkdir(parents=True, exist_ok=True)
    sp = pd.DataFrame(species, columns=["id", "common", "scientific", "dir"])
    sp.to_csv(root / "species.txt", sep="\t", index=False)
    rows = []
    for i in range(n):
        sid, d = species[i % len(species)][0], species[i % len(species)][3]
        rows.append(
            {
                "url": f"http://x/{i}.jpg",
                "md5": f"{i:032x}",
                "path": f"{d}/{i}.jpg",
                "species_id": sid,
                "bb_x1": 0,
                "bb_y1": 0,
            }
        )
    images = pd.DataFrame(rows)
    images.to_csv(root / "images.txt", sep="\t", index=False)
    test = [p for i, p in enumerate(images["path"]) if i % test_every == 0] + list(extra_test)
    pd.DataFrame({"path": test}).to_csv(root / "test_images.txt", sep="\t", index=False)
    return images, set(test)


def test_url_table_labels_species_by_id(tmp_path):
    images, test = write_release(tmp_path / "bs", n=6)
    classes, urls, got_test = birdsnap.read_release(tmp_path / "bs")
    # species id 1 is label 0 though species.txt lists it second
    assert classes == [("Acadian_Flycatcher", "Acadian Flycatcher"), ("Zebra_Finch", "Zebra Finch")]
    assert (
        urls["row_id"].tolist() == list(range(6)) and urls["url"].tolist() == images["url"].tolist()
    )
    assert urls["label"].tolist() == [1, 0, 1, 0, 1, 0] and (urls["caption"] == "").all()
    assert got_test == test == {"Zebra_Finch/0.jpg", "Acadian_Flycatcher/5.jpg"}


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "species.txt").unlink(), "species.txt is missing; expected"),
        (
            lambda r: (r / "images.txt").write_text("url\tpath\nx\ty\n"),
            "lacks column(s) md5, species_id",
        ),
        (
            lambda r: (r / "species.txt").write_text("id\tcommon\tdir\n1\tA\tA_\n"),
            "name a species not in",
        ),
        (
            lambda r: (r / "test_images.txt").write_text("path\nNo_Bird/1.jpg\n"),
            "lists 1 paths images.txt does not",
        ),
    ],
)
def test_a_damaged_release_is_one_line_naming_the_file(tmp_path, damage, message):
    write_release(tmp_path / "bs", n=6)
    damage(tmp_path / "bs")
    with pytest.raises(UserError, match="Birdsnap: ") as e:
        birdsnap.read_release(tmp_path / "bs")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_splits_leave_the_test_list_out_of_the_pool_unless_asked(tmp_path):
    images, test = write_release(tmp_path / "bs", n=60)
    _, urls, _ = birdsnap.read_release(tmp_path / "bs")
    arrived = urls[urls["row_id"] % 7 != 3].reset_index(drop=True)  # some URLs died
    fixed = birdsnap.splits(arrived, test)
    tested = fixed[fixed["split"] == "test"]
    assert set(tested["path"]) == test & set(arrived["path"])  # the test list, where it arrived
    pool = fixed[fixed["split"] != "test"]
    assert not set(pool["path"]) & test and not pool["row_id"].duplicated().any()
    candidates = arrived[~arrived["path"].isin(test)]
    assert len(pool) == len(candidates) - int(np.ceil(0.1 * len(candidates)))
    assert (pool["split"] == "val").sum() == int(np.floor(0.2 * len(pool)))

    # the reference: the pool drawn from every downloaded image, test images included
    leaky = birdsnap.splits(arrived, test, pool="all")
    ref, _ = train_test_split(arrived["row_id"].to_numpy(), test_size=0.1, random_state=0)
    lpool = leaky[leaky["split"] != "test"]
    assert lpool["row_id"].tolist() == ref.tolist()
    assert lpool["split"].eq("val").tolist() == random_val(len(ref)).tolist()
    assert set(lpool["path"]) & test  # the leak the default closes
    assert leaky[leaky["split"] == "test"]["row_id"].tolist() == tested["row_id"].tolist()
    assert birdsnap.splits(arrived, test).equals(fixed)  # seeded
    with pytest.raises(UserError, match="pool 'some' is not one of exclude-test, all"):
        birdsnap.splits(arrived, test, pool="some")


def test_transfer_set_from_a_download_folder(tmp_path):
    images, test = write_release(tmp_path / "bs", n=30)
    _, urls, _ = birdsnap.read_release(tmp_path / "bs")
    d = tmp_path / "downloads"
    d.mkdir()
    urls.to_parquet(d / "urls.parquet")
    dead = {4, 11, 12}  # their URLs failed; row 5 (a test image) arrives but does not decode
    stats = _fake_download(d / "00000", [(i, i not in dead) for i in range(30)], undecodable={5})
    download.write_manifest("bs", [stats], d / "manifest.json")
    spec = {"source": "birdsnap", "root": str(tmp_path / "bs"), "image_size": 32}
    m = build.build_real_dataset(spec, tmp_path / "out", "bs", d)
    assert (m["n_urls"], m["images"], m["dead_urls"], m["undecodable"]) == (30, 26, 3, 1)
    assert m["metric"] == metric_of(tmp_path / "out") == "top1" and m["pool"] == "exclude-test"
    idx = read_index(tmp_path / "out")
    assert m["splits"] == idx["split"].value_counts().to_dict()
    assert set(idx[idx["split"] == "test"]["row_id"]) == {0, 10, 15, 20, 25}  # 5 undecodable
    assert idx["key"].tolist() == [
        f"{s}-{r}" for s, r in zip(idx["split"], idx["row_id"], strict=True)
    ]
    assert idx["label"].tolist() == urls.set_index("row_id").loc[idx["row_id"], "label"].tolist()
    assert read_classes(tmp_path / "out")["name"].tolist() == ["Acadian Flycatcher", "Zebra Finch"]
    build.build_real_dataset({**spec, "pool": "all"}, tmp_path / "leaky", "bs", d)
    both = read_index(tmp_path / "leaky").groupby("row_id")["split"].agg(set)
    assert any(
        s >= {"test", "train"} or s >= {"test", "val"} for s in both
    )  # stored under both keys
    assert read_manifest(tmp_path / "leaky")["pool"] == "all"
