"""Real data acquisition without network: builders, LAIONet and -Cls steps on local stand-ins."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from standins import image_bytes, write_captions_json, write_class_tree
from tailstudy.acquire import build, cls, download, laionet
from tailstudy.cli import main
from tailstudy.concepts import IMAGENET100_INDICES, concept_subset, imagenet_concepts
from tailstudy.data.format import read_classes, read_index, read_manifest
from tailstudy.data.loader import load_split
from tailstudy.data.variants import build_variant
from tailstudy.io import UserError

REPO = Path(__file__).resolve().parents[1]
CONCEPTS = imagenet_concepts()
BY_WNID = {c.wnid: c for c in CONCEPTS}


def run_cli(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


# --- LAIONet --------------------------------------------------------------------------------------


def test_lemma_table_keeps_lemmas_unique_to_one_synset():
    table = laionet.lemma_table()
    assert table["tench"] == "n01440764" and table["Tinca tinca"] == "n01440764"
    # "crane" names a bird and a machine: it labels neither
    owners = [c.wnid for c in CONCEPTS if "crane" in c.lemmas]
    assert len(owners) == 2 and "crane" not in table
    dropped = {c.wnid for c in CONCEPTS} - set(table.values())
    assert len(dropped) == 6  # synsets all of whose lemmas are shared
    for w in dropped:
        assert all(sum(lemma in c.lemmas for c in CONCEPTS) > 1 for lemma in BY_WNID[w].lemmas)


def test_labeller_is_the_literal_substring_rule():
    table = laionet.lemma_table()
    lab = laionet.Labeller(table)
    assert lab("a tench, caught today!") == {"n01440764"}
    assert lab("A Tench") == set()  # case is kept
    assert lab("tenches") == set() and lab("Tinca  tinca") == set()
    assert lab("Tinca tinca") == {"n01440764"}
    assert lab("tench & goldfish") == {"n01440764", BY_WNID["n01443537"].wnid}
    assert lab(None) == set()
    rng = random.Random(1)
    lemmas = list(table)
    noise = ["the", "a", "of", ",", ".", "!", "(", ")", "-", "'s", "photo", "  ", "x"]
    for _ in range(3000):
        parts = [
            rng.choice(lemmas) if rng.random() < 0.3 else rng.choice(noise)
            for _ in range(rng.randint(0, 12))
        ]
        text = rng.choice([" ", "", "-", ", "]).join(parts)
        assert lab(text) == laionet.label_reference(text, table), text


def _laion_part(path, texts, nsfw=None):
    n = len(texts)
    pd.DataFrame(
        {
            "SAMPLE_ID": np.arange(n),
            "URL": [f"http://127.0.0.1:9/{i}.jpg" for i in range(n)],
            "TEXT": texts,
            "NSFW": nsfw or ["UNLIKELY"] * n,
            "similarity": np.linspace(0.2, 0.4, n),
            "LICENSE": ["?"] * n,
        }
    ).to_parquet(path)
    return path


def test_label_part_keeps_single_label_rows_with_global_row_ids(tmp_path):
    texts = [
        "my tench",  # 0: one class
        "tench and goldfish",  # 1: two classes -> dropped
        "nothing here",  # 2: none
        None,  # 3: no caption
        "Tinca tinca, a tench",  # 4: two lemmas, one class
        "goldfish.",  # 5
    ]
    part = _laion_part(tmp_path / "p.parquet", texts)
    out = tmp_path / "label.parquet"
    counts = laionet.label_part(part, 3, laionet.lemma_table(), out)
    df = pd.read_parquet(out)
    assert df["row_id"].tolist() == [300_000_000, 300_000_004, 300_000_005]
    assert df["wnid"].tolist() == ["n01440764", "n01440764", "n01443537"]
    assert {"url", "caption", "nsfw", "laion_similarity", "license"} <= set(df.columns)
    assert counts == {"rows": 6, "labelled": 4, "multi_label": 1, "single_label": 3, "classes": 2}


def test_malformed_metadata_fails_with_one_line_naming_the_file(tmp_path, capsys):
    lemmas = tmp_path / "lemmas.tsv"
    assert run_cli(capsys, "acquire", "lemmas", "--out", lemmas)[0] == 0
    bad = tmp_path / "part.parquet"
    pd.DataFrame({"URL": ["u"], "caption": ["tench"]}).to_parquet(bad)
    rc, err = run_cli(
        capsys,
        "acquire",
        "laionet-label",
        "--metadata",
        bad,
        "--part",
        0,
        "--lemmas",
        lemmas,
        "--out",
        tmp_path / "o.parquet",
    )
    assert rc == 2 and str(bad) in err and "'TEXT'" in err and len(err.strip().splitlines()) == 1
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    rc, err = run_cli(
        capsys,
        "acquire",
        "laionet-label",
        "--metadata",
        broken,
        "--part",
        0,
        "--lemmas",
        lemmas,
        "--out",
        tmp_path / "o.parquet",
    )
    assert rc == 2 and f"cannot read Parquet file {broken}" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "o.parquet").exists()


@pytest.fixture(scope="module")
def tiny_text_encoder(tmp_path_factory):
    """A random RN-tiny CLIP saved as a local checkpoint: the 'pretrained' text encoder."""
    import torch

    from tailstudy.models.factory import create_clip

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enc") / "clip.pt"
    torch.save(create_clip("RN-tiny").state_dict(), path)
    return path


def test_similarity_compares_caption_with_name_and_definition(tmp_path, tiny_text_encoder):
    tench, goldfish = BY_WNID["n01440764"], BY_WNID["n01443537"]
    assert laionet.synset_query(tench).startswith("tench which is freshwater dace-like")
    rows = pd.DataFrame(
        {
            "row_id": np.array([5, 7, 9], dtype=np.int64),
            "url": ["a", "b", "c"],
            "caption": [laionet.synset_query(tench), "a goldfish bowl", None],
            "wnid": [tench.wnid, goldfish.wnid, goldfish.wnid],
        }
    )
    rows.to_parquet(tmp_path / "label.parquet")
    sims = {}
    for how in ("checkpoint", "pretrained"):
        enc = {"open_clip": "RN-tiny", how: str(tiny_text_encoder)}
        laionet.similarity_part(
            tmp_path / "label.parquet", enc, tmp_path / f"{how}.parquet", batch_size=2
        )
        sims[how] = pd.read_parquet(tmp_path / f"{how}.parquet")["similarity"].to_numpy()
    np.testing.assert_allclose(sims["checkpoint"], sims["pretrained"], atol=1e-6)
    model, tok = laionet.load_text_encoder(
        {"open_clip": "RN-tiny", "checkpoint": str(tiny_text_encoder)}
    )
    e = laionet.encode_texts(
        model, tok, ["a goldfish bowl", "None", laionet.synset_query(goldfish)]
    )
    s = sims["checkpoint"]
    assert s[0] == pytest.approx(1.0, abs=1e-5)  # the caption is the query itself
    assert s[1] == pytest.approx(float(e[0] @ e[2]), abs=1e-5)
    assert s[2] == pytest.approx(float(e[1] @ e[2]), abs=1e-5)  # a missing caption reads "None"


def test_text_encoder_errors_are_one_line(tmp_path, tiny_text_encoder):
    with pytest.raises(UserError, match="does not exist"):
        laionet.load_text_encoder({"open_clip": "RN-tiny", "checkpoint": str(tmp_path / "x.pt")})
    with pytest.raises(UserError, match="no architecture"):
        laionet.load_text_encoder({"open_clip": "nope", "checkpoint": str(tiny_text_encoder)})
    with pytest.raises(UserError, match="does not fit RN50"):
        laionet.load_text_encoder({"open_clip": "RN50", "checkpoint": str(tiny_text_encoder)})


def test_filter_keeps_allowed_nsfw_tags_and_similarity_strictly_above(tmp_path):
    df = pd.DataFrame(
        {
            "row_id": np.array([9, 3, 5, 1, 7], dtype=np.int64),
            "url": list("abcde"),
            "caption": list("vwxyz"),
            "wnid": ["n01440764"] * 5,
            "nsfw": ["UNLIKELY", "UNLIKELY", "NSFW", "UNLIKELY", "UNSURE"],
            "similarity": np.array([0.9, 0.7, 0.95, 0.7001, 0.99], dtype=np.float32),
        }
    )
    df.iloc[:2].to_parquet(tmp_path / "a.parquet")
    df.iloc[2:].to_parquet(tmp_path / "b.parquet")
    parts = [tmp_path / "a.parquet", tmp_path / "b.parquet"]
    rows, counts = laionet.filter_rows(parts, 0.7, ["UNLIKELY"])
    assert rows["row_id"].tolist() == [1, 9]  # 0.7 itself is not above 0.7; sorted by row id
    assert counts == {"single_label": 5, "nsfw_kept": 3, "kept": 2, "classes": 1}
    rows, _ = laionet.filter_rows(parts, 0.7, [])
    assert rows["row_id"].tolist() == [1, 5, 7, 9]
    with pytest.raises(UserError, match="no row has similarity > 0.999"):
        laionet.filter_rows(parts, 0.999, None)


# --- -Cls -----------------------------------------------------------------------------------------


def test_cls_matcher_is_pandas_case_insensitive_regex():
    patterns = cls.class_patterns()
    assert patterns[0] == r"\b(tench|Tinca tinca)\b"
    m = cls.Matcher.for_imagenet()
    rng = random.Random(2)
    lemmas = [lemma for c in CONCEPTS for lemma in c.lemmas]
    noise = ["the", "photo", ",", "-", "'s", "R.V.", "RxVx", "\u017f", "\u212a", "\u0130", "2020"]
    caps = [None, "", "TENCH!", "tenches", "a Tinca-tinca", "Goldfish and tench"]
    for _ in range(1500):
        parts = []
        for _ in range(rng.randint(1, 10)):
            w = rng.choice(lemmas) if rng.random() < 0.3 else rng.choice(noise)
            parts.append(rng.choice([w, w.upper(), w + "s", w.title()]))
        caps.append(rng.choice([" ", "", ", "]).join(parts))
    got = [x.tolist() for x in m(caps)]
    assert got == cls.match_reference(caps, patterns)
    assert m.classes("TENCH!") == [0] and m.classes("tenches") == []
    assert m.classes("Goldfish and tench") == [0, 1]


def test_cls_match_reads_headerless_tsv_and_a_caption_counts_for_each_class(tmp_path, capsys):
    tsv = tmp_path / "cc12m.tsv"
    lines = [
        "http://h/0.jpg\ta goldfish and a tench",
        "http://h/1.jpg\tjust a tench",
        "http://h/2.jpg\tno class here",
        "http://h/3.jpg\tGOLDFISH",
    ]
    tsv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "m.parquet"
    rc, err = run_cli(
        capsys,
        "acquire",
        "cls-match",
        "--metadata",
        tsv,
        "--part",
        1,
        "--url-column",
        "0",
        "--caption-column",
        "1",
        "--no-header",
        "--out",
        out,
    )
    assert rc == 0, err
    m = pd.read_parquet(out)
    assert list(zip(m["label"], m["row_id"], strict=True)) == [
        (0, 100_000_000),
        (0, 100_000_001),
        (1, 100_000_000),
        (1, 100_000_003),
    ]
    urls, counts = cls.collect_urls([out])
    assert urls["row_id"].tolist() == [100_000_000, 100_000_001, 100_000_003]
    assert [list(x) for x in urls["labels"]] == [[0, 1], [0], [1]]
    assert counts == {"rows": 4, "classes": 2, "images": 3}
    rc, err = run_cli(
        capsys,
        "acquire",
        "cls-match",
        "--metadata",
        tsv,
        "--part",
        0,
        "--url-column",
        "0",
        "--caption-column",
        "2",
        "--no-header",
        "--out",
        out,
    )
    assert rc == 2 and str(tsv) in err and len(err.strip().splitlines()) == 1
    with_header = tmp_path / "yfcc.tsv"
    with_header.write_text("id\turl\tcaption\n1\thttp://h/0.jpg\ttench\n")
    rc, err = run_cli(
        capsys,
        "acquire",
        "cls-match",
        "--metadata",
        with_header,
        "--part",
        0,
        "--url-column",
        "URL",
        "--caption-column",
        "caption",
        "--out",
        out,
    )
    assert rc == 2 and "no column 'URL'" in err and "columns: id, url, caption" in err


# --- local folders ----------------------------------------------------------------------------------


def test_image_folder_imagenet100_by_wnid_and_by_index(tmp_path):
    in100 = concept_subset("imagenet100")
    files = write_class_tree(tmp_path / "val", [c.wnid for c in in100] + ["n99999999"])
    spec = {
        "source": "image-folder",
        "root": str(tmp_path / "val"),
        "layout": "wnid",
        "classes": "imagenet100",
        "image_size": 32,
    }
    m = build.build_image_folder(spec, tmp_path / "out", "in100")
    idx, classes = read_index(tmp_path / "out"), read_classes(tmp_path / "out")
    assert m["n_samples"] == 200 and len(classes) == 100  # the extra folder is ignored
    assert classes["wnid"].tolist() == [c.wnid for c in in100]
    assert (idx.groupby("label").size() == 2).all() and idx["label"].max() == 99
    assert idx.loc[idx["wnid"] == in100[7].wnid, "label"].unique().tolist() == [7]
    data = load_split(tmp_path / "out", progress=False)  # JPEG and PNG, sizes differ: 32x32
    assert tuple(data.images.shape) == (200, 32, 32, 3)
    import webdataset as wds

    from tailstudy.data.format import load_images

    stored = {
        s["__key__"]: s.get("jpg", s.get("png"))
        for s in wds.WebDataset(str(tmp_path / "out/shards/in100-000000.tar"), shardshuffle=False)
    }
    row = idx.iloc[0]
    assert stored[row["key"]] == files[row["path"]]
    assert load_images(tmp_path / "out", [row["key"]]).shape == (1, 32, 32, 3)

    write_class_tree(tmp_path / "v2", [str(i) for i in IMAGENET100_INDICES], per_folder=1)
    spec = {
        "source": "image-folder",
        "root": str(tmp_path / "v2"),
        "layout": "index",
        "classes": "imagenet100",
    }
    build.build_image_folder(spec, tmp_path / "out2", "v2")
    idx = read_index(tmp_path / "out2")
    assert idx["label"].tolist() == list(range(100))
    assert idx["path"].iloc[3] == f"{IMAGENET100_INDICES[3]}/img0.png"
    assert read_manifest(tmp_path / "out2")["image_size"] == [224, 224]


def test_image_folder_missing_classes_are_named(tmp_path, capsys):
    write_class_tree(tmp_path / "val", [c.wnid for c in CONCEPTS[:998]], per_folder=1)
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "name": "val",
                "dataset": {
                    "source": "image-folder",
                    "root": str(tmp_path / "val"),
                    "layout": "wnid",
                },
            }
        )
    )
    rc, err = run_cli(capsys, "dataset", "--spec", spec, "--out", tmp_path / "out")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "lacks the folders of 2 of 1000 imagenet1k classes" in err
    assert f"{CONCEPTS[998].wnid} ({CONCEPTS[998].name})" in err and CONCEPTS[999].wnid in err


def _incaps_tree(tmp_path):
    wnids = ["n01440764", "n01443537", "n01484850"]
    train = tmp_path / "train"
    records = []
    for k, w in enumerate(wnids):
        (train / w).mkdir(parents=True)
        for i in range(3 + k):
            fname = f"{w}_{i}.JPEG"
            (train / w / fname).write_bytes(image_bytes(30 + i, 40, 10 * k + i))
            records.append(
                {
                    "filename": fname,
                    "wnid": w,
                    "title": f"title {i}" if i else "",
                    "tags": ["t1", "t2"][: i % 3],
                    "description": "line\tone\nend",
                }
            )
    records.append(
        {
            "filename": "n00000001_1.JPEG",
            "wnid": "n00000001",
            "title": "x",
            "tags": [],
            "description": "",
        }
    )  # not an ImageNet-1k class: dropped
    records.append(dict(records[0]))  # a duplicated record keeps both rows
    write_captions_json(tmp_path / "imagenet_captions.json", records)
    return {
        "source": "imagenet-captions",
        "captions_json": str(tmp_path / "imagenet_captions.json"),
        "imagenet_train": str(train),
        "image_size": 32,
    }


def test_imagenet_captions_feeds_the_caption_variants(tmp_path):
    spec = _incaps_tree(tmp_path)
    m = build.build_imagenet_captions(spec, tmp_path / "incaps", "incaps")
    idx = read_index(tmp_path / "incaps")
    assert m["n_samples"] == 13 and m["nonzero_classes"] == 3 and m["n_classes"] == 1000
    assert (
        idx["key"].tolist()[:2] == ["n01440764_0", "n01440764_1"]
        and idx["key"].iloc[-1] == "n01440764_0-1"
    )
    assert idx["label"].tolist()[:3] == [0, 0, 0] and idx["label"].iloc[3] == 1
    row = idx.iloc[2]
    assert row["title"] == "title 2" and list(row["tags"]) == ["t1", "t2"]
    assert row["caption"] == "title 2 t1 t2 line one end"
    v = build_variant(
        tmp_path / "incaps",
        {"dataset": "incaps", "captions": {"fields": ["title", "tags"]}},
        tmp_path / "v",
        "v",
    )
    vi = read_index(tmp_path / "v")
    assert v["n_rows"] == 13 and vi["caption"].iloc[2] == "tench title 2 t1 t2"
    assert tuple(
        load_split(tmp_path / "incaps", tmp_path / "v/index.parquet", False).images.shape
    ) == (13, 32, 32, 3)


def test_imagenet_captions_input_errors(tmp_path):
    spec = _incaps_tree(tmp_path)
    (tmp_path / "train/n01443537/n01443537_2.JPEG").unlink()
    with pytest.raises(
        UserError, match=r"1 ImageNet-Captions images are not in .*n01443537_2.JPEG"
    ):
        build.build_imagenet_captions(spec, tmp_path / "o", "incaps")
    import shutil

    shutil.rmtree(tmp_path / "train/n01484850")
    with pytest.raises(
        UserError, match=r"lacks the folders of 1 of 3 .*n01484850 \(great white shark\)"
    ):
        build.build_imagenet_captions(spec, tmp_path / "o", "incaps")
    (tmp_path / "imagenet_captions.json").write_text(
        '[{"filename": "a.JPEG", "wnid": "n01440764"}]'
    )
    with pytest.raises(UserError, match="record 0 lacks title, tags, description"):
        build.build_imagenet_captions(spec, tmp_path / "o", "incaps")
    (tmp_path / "imagenet_captions.json").write_text("[{")
    with pytest.raises(UserError, match="imagenet_captions.json is not valid JSON"):
        build.build_imagenet_captions(spec, tmp_path / "o", "incaps")


# --- downloads without a download ----------------------------------------------------------------


def test_url_slices_cover_the_table_and_fingerprints_track_content():
    urls = pd.DataFrame(
        {"row_id": np.arange(10, dtype=np.int64), "url": [f"u{i}" for i in range(10)]}
    )
    parts = [download.url_slice(urls, s, 3) for s in range(3)]
    assert [len(p) for p in parts] == [3, 4, 3]
    assert pd.concat(parts)["row_id"].tolist() == list(range(10))
    s = download.DownloadSettings()
    fp = download.fingerprint(parts[0], s)
    assert fp == download.fingerprint(
        parts[0].copy(), download.DownloadSettings(processes=2, retries=0)
    )
    assert fp != download.fingerprint(parts[0], download.DownloadSettings(image_size=128))
    changed = parts[0].copy()
    changed.loc[1, "url"] = "other"
    assert fp != download.fingerprint(changed, s)
    with pytest.raises(UserError, match="unknown key"):
        download.DownloadSettings.from_dict({"thread": 4})


def test_download_defaults_are_the_documented_ones():
    import yaml

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    props = schema["$defs"]["download"]["properties"]
    defaults = download.DownloadSettings().to_dict()
    assert set(props) == set(defaults)
    for key, value in defaults.items():
        shown = json.dumps(value) if isinstance(value, bool) else value
        shown = "none" if value is None else shown
        assert f"(default {shown})" in props[key]["description"], key


def _fake_download(work, rows, seed=0, undecodable=()):
    """An img2dataset output folder for ``rows`` (row_id, ok): successes in the tar, every row in
    the parquet, counts in _stats.json."""
    import webdataset as wds

    folder = work / "img2dataset"
    folder.mkdir(parents=True)
    meta, status = [], {}
    with wds.TarWriter(str(folder / "00000.tar")) as sink:
        for i, (rid, ok) in enumerate(rows):
            key = f"{i:09d}"
            if ok:
                data = image_bytes(20, 30, seed + i)
                if rid in undecodable:
                    data = data[:-2]  # cut before the end marker: OpenCV reads it, PIL does not
                sink.write({"__key__": key, "jpg": data, "txt": "c"})
            meta.append(
                {
                    "key": key,
                    "row_id": rid,
                    "status": "success" if ok else "failed_to_download",
                    "error_message": None if ok else "HTTP Error 404: File not found",
                }
            )
            reason = "success" if ok else "HTTP Error 404: File not found"
            status[reason] = status.get(reason, 0) + 1
    pd.DataFrame(meta).to_parquet(folder / "00000.parquet")
    n_ok = status.get("success", 0)
    stats = {
        "count": len(rows),
        "successes": n_ok,
        "failed_to_download": len(rows) - n_ok,
        "failed_to_resize": 0,
        "status_dict": status,
    }
    (folder / "00000_stats.json").write_text(json.dumps(stats))
    parts = download.read_img2dataset_stats(folder, 1)
    summary = download.summarise(work.name, len(rows), parts)
    (work / "stats.json").write_text(json.dumps(summary))
    return work / "stats.json"


def test_laionet_and_cls_are_built_from_downloads(tmp_path):
    d = tmp_path / "downloads"
    ids = np.array([100_000_002, 5, 7, 300_000_000], dtype=np.int64)
    urls = pd.DataFrame(
        {
            "row_id": ids,
            "url": list("abcd"),
            "caption": ["w", "x", None, "z"],
            "wnid": ["n01440764", "n01443537", "n01440764", "n01484850"],
            "similarity": np.float32([0.8, 0.75, 0.9, 0.71]),
        }
    ).sort_values("row_id")
    d.mkdir()
    urls.to_parquet(d / "urls.parquet")
    s0 = _fake_download(d / "00000", [(5, True), (7, False)])
    s1 = _fake_download(
        d / "00001", [(100_000_002, True), (300_000_000, True)], undecodable={300_000_000}
    )
    m = download.write_manifest("laionet", [s0, s1], d / "manifest.json")
    assert m["successes"] == 3 and m["by_reason"] == {"HTTP Error 404: File not found": 1}
    spec = {"source": "laionet", "image_size": 32}
    out = build.build_downloaded(spec, tmp_path / "laionet", "laionet", d)
    idx = read_index(tmp_path / "laionet")
    assert idx["key"].tolist() == ["5", "100000002"] and out["undecodable"] == 1
    assert idx["row_id"].tolist() == [5, 100_000_002] and idx["label"].tolist() == [1, 0]
    assert idx["similarity"].dtype == np.float32 and idx["wnid"].tolist() == [
        "n01443537",
        "n01440764",
    ]
    assert tuple(load_split(tmp_path / "laionet", progress=False).images.shape) == (2, 32, 32, 3)

    # -Cls: an image that matched two classes is a row of each
    urls = pd.DataFrame(
        {
            "row_id": np.array([5, 7], dtype=np.int64),
            "url": ["a", "b"],
            "caption": ["tench goldfish", "tench"],
            "labels": [[0, 1], [0]],
        }
    )
    urls.to_parquet(d / "urls.parquet")
    import shutil

    shutil.rmtree(d / "00000")
    shutil.rmtree(d / "00001")
    s0 = _fake_download(d / "00000", [(5, True), (7, True)])
    download.write_manifest("cls", [s0], d / "manifest.json")
    build.build_downloaded({"source": "cls", "image_size": 32}, tmp_path / "cls", "cls", d)
    idx = read_index(tmp_path / "cls")
    assert list(zip(idx["key"], idx["label"], strict=True)) == [("5-0", 0), ("7-0", 0), ("5-1", 1)]
    imgs = load_split(tmp_path / "cls", progress=False).images
    assert (imgs[0] == imgs[2]).all() and not (imgs[0] == imgs[1]).all()


def test_success_rate_below_the_minimum_is_one_clear_error():
    stats = download.summarise(
        "00003",
        40,
        [
            {
                "file": "00000",
                "count": 40,
                "successes": 2,
                "failed_to_download": 38,
                "failed_to_resize": 0,
                "status_dict": {"success": 2, "<urlopen error [Errno 111] Connection refused>": 38},
            }
        ],
    )
    with pytest.raises(UserError) as e:
        download.check_success_rate(
            stats, download.DownloadSettings(min_success_rate=0.5), "dl/x/00003"
        )
    msg = str(e.value)
    assert "2 of 40 images downloaded (5.0%), below min_success_rate 50%" in msg
    assert "Connection refused> (38)" in msg and "delete dl/x/00003/img2dataset" in msg
    assert "\n" not in msg
    download.check_success_rate(stats, download.DownloadSettings(min_success_rate=0.05), "x")


# --- DINO transfer sets -------------------------------------------------------------------------


def _fake_dtd(root):
    base = root / "dtd/dtd"
    files = {}
    for split, n in (("train", 4), ("val", 2), ("test", 3)):
        lines = []
        for c in ("banded", "zigzagged"):
            for i in range(n):
                rel = f"{c}/{c}_{split}{i}.jpg"
                (base / "images" / c).mkdir(parents=True, exist_ok=True)
                files[rel] = image_bytes(20, 20, len(files))
                (base / "images" / rel).write_bytes(files[rel])
                lines.append(rel)
        (base / "labels").mkdir(parents=True, exist_ok=True)
        (base / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")
    return files


def test_transfer_sets_from_torchvision_layouts(tmp_path):
    from tailstudy.acquire.transfer import build_transfer, random_val

    files = _fake_dtd(tmp_path / "dtd-root")
    m = build_transfer(
        {"dataset": "dtd", "root": str(tmp_path / "dtd-root"), "image_size": 32},
        tmp_path / "dtd",
        "dtd",
    )
    idx = read_index(tmp_path / "dtd")
    assert m["splits"] == {"train": 8, "val": 4, "test": 6} and m["metric"] == "top1"
    assert read_classes(tmp_path / "dtd")["name"].tolist() == ["banded", "zigzagged"]
    row = idx[idx["path"] == "dtd/dtd/images/zigzagged/zigzagged_val1.jpg"].iloc[0]
    assert row["split"] == "val" and row["label"] == 1
    import webdataset as wds

    stored = {
        s["__key__"]: s["jpg"]
        for t in sorted((tmp_path / "dtd/shards").glob("*.tar"))
        for s in wds.WebDataset(str(t), shardshuffle=False)
    }
    assert stored[row["key"]] == files["zigzagged/zigzagged_val1.jpg"]

    # Food-101 has no validation split: the first 20% of seed 0's permutation of train
    food = tmp_path / "food-root/food-101"
    meta = {"train": {}, "test": {}}
    for split, n in (("train", 7), ("test", 2)):
        for c in ("apple_pie", "waffles"):
            meta[split][c] = [f"{c}/{split}{i}" for i in range(n)]
            (food / "images" / c).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (food / "images" / c / f"{split}{i}.jpg").write_bytes(image_bytes(16, 16, i))
    (food / "meta").mkdir()
    for split in meta:
        (food / "meta" / f"{split}.json").write_text(json.dumps(meta[split]))
    build_transfer(
        {"dataset": "food", "root": str(tmp_path / "food-root")}, tmp_path / "food", "food"
    )
    idx = read_index(tmp_path / "food")
    train = idx[idx["key"].str.startswith("train-")]
    np.random.seed(0)
    first = set(np.random.permutation(14)[:2])
    assert set(np.flatnonzero(train["split"].to_numpy() == "val")) == first
    assert (idx[idx["key"].str.startswith("test-")]["split"] == "test").all()

    # Oxford-IIIT Pets' class decodes images itself: they are stored as PNG, pixels kept
    pets = tmp_path / "pets-root/oxford-iiit-pet"
    (pets / "images").mkdir(parents=True)
    (pets / "annotations").mkdir()
    for split, ids in (
        ("trainval", ["Abyssinian_1", "beagle_2"]),
        ("test", ["Abyssinian_4", "beagle_3"]),
    ):
        lines = []
        for image_id in ids:
            label = 1 if image_id.startswith("Aby") else 2
            (pets / "images" / f"{image_id}.jpg").write_bytes(image_bytes(18, 22, len(lines)))
            lines.append(f"{image_id} {label} {label} 1")
        (pets / "annotations" / f"{split}.txt").write_text("\n".join(lines) + "\n")
    m = build_transfer(
        {"dataset": "pets", "root": str(tmp_path / "pets-root")}, tmp_path / "pets", "pets"
    )
    assert m["metric"] == "mean_per_class" and read_index(tmp_path / "pets")["label"].tolist() == [
        0,
        1,
        0,
        1,
    ]
    from PIL import Image

    img = load_images_raw(tmp_path / "pets", "test-000001")
    src = np.asarray(Image.open(pets / "images/beagle_3.jpg").convert("RGB"))
    assert (np.asarray(Image.open(io.BytesIO(img))) == src).all()

    with pytest.raises(
        UserError, match=r"root .*nowhere is not a folder; expected <root>/dtd/dtd/"
    ):
        build_transfer({"dataset": "dtd", "root": str(tmp_path / "nowhere")}, tmp_path / "x", "x")
    # extracted one level too shallow: torchvision's class cannot read it; the layout is named
    shallow = tmp_path / "shallow"
    (shallow / "dtd").mkdir(parents=True)
    (tmp_path / "dtd-root/dtd/dtd/images").rename(shallow / "dtd/images")
    with pytest.raises(
        UserError, match=r"torchvision's DTD cannot read .*expected <root>/dtd/dtd/"
    ):
        build_transfer({"dataset": "dtd", "root": str(shallow)}, tmp_path / "x", "x")
    assert random_val(10).sum() == 2 and random_val(9).sum() == 1


def _stored(root):
    import webdataset as wds

    return {
        s["__key__"]: s.get("jpg", s.get("png"))
        for t in sorted((root / "shards").glob("*.tar"))
        for s in wds.WebDataset(str(t), shardshuffle=False)
    }


def _seed0_val(n):
    np.random.seed(0)
    return set(np.random.permutation(n)[: int(n * 0.2)])


def test_caltech101_keeps_background_and_reads_sslt_splits(tmp_path):
    from tailstudy.acquire.transfer import build_transfer

    root = tmp_path / "caltech"
    cats = root / "caltech101/101_ObjectCategories"
    names = ["accordion", "BACKGROUND_Google", "Faces", "car_side"]  # sorted: B, F, a, c
    files, lines = {}, {"train": [], "test": []}
    for c_i, c in enumerate(names):
        (cats / c).mkdir(parents=True)
        for i in range(1, 6):
            rel = f"{c}/image_{i:04d}.jpg"
            files[rel] = image_bytes(12, 14, 10 * c_i + i)
            (cats / rel).write_bytes(files[rel])
            label = sorted(names).index(c)
            # SSLT's lines carry the label; a bare path and the folder prefix are read too
            line = {0: f"{rel} {label}", 1: rel}.get(c_i, f"101_ObjectCategories/{rel}")
            lines["train" if i <= 3 else "test"].append(line)
    (root / "caltech101-splits").mkdir()
    spec = {"dataset": "caltech101", "root": str(root)}
    with pytest.raises(UserError, match="caltech101-splits/train.txt is missing") as e:
        build_transfer(spec, tmp_path / "x", "x")
    assert "\n" not in str(e.value)
    for split in lines:
        (root / "caltech101-splits" / f"{split}.txt").write_text("\n".join(lines[split]) + "\n")

    m = build_transfer(spec, tmp_path / "c101", "c101")
    assert m["metric"] == "mean_per_class" and m["n_classes"] == 4
    assert m["splits"] == {"train": 10, "val": 2, "test": 8}
    classes = read_classes(tmp_path / "c101")
    assert classes["wnid"].tolist() == ["BACKGROUND_Google", "Faces", "accordion", "car_side"]
    idx = read_index(tmp_path / "c101")
    train = idx[idx["key"].str.startswith("train-")]
    assert set(np.flatnonzero(train["split"].to_numpy() == "val")) == _seed0_val(12)
    row = idx[idx["path"] == "caltech101/101_ObjectCategories/BACKGROUND_Google/image_0005.jpg"]
    assert row["split"].item() == "test" and row["label"].item() == 0
    assert (
        _stored(tmp_path / "c101")[row["key"].item()] == files["BACKGROUND_Google/image_0005.jpg"]
    )

    (root / "caltech101-splits/test.txt").write_text("accordion/image_0001.jpg 3\n")
    with pytest.raises(UserError, match=r"test.txt:1: 'accordion/image_0001.jpg 3' is not"):
        build_transfer(spec, tmp_path / "x", "x")


def test_sun397_reads_partition_01_and_names_classes(tmp_path):
    from tailstudy.acquire.transfer import build_transfer, sun397_name

    root = tmp_path / "sun"
    classes = ["/a/abbey", "/a/airport_terminal", "/b/bakery/shop"]
    (root / "SUN397").mkdir(parents=True)
    (root / "SUN397/ClassName.txt").write_text("\n".join(classes) + "\n")
    files, parts = {}, {"Training_01.txt": [], "Testing_01.txt": []}
    for c_i, c in enumerate(classes):
        (root / "SUN397" / c.strip("/")).mkdir(parents=True)
        for i in range(4):
            rel = f"{c}/sun_{c_i}{i}.jpg"
            files[rel] = image_bytes(10, 12, 7 * c_i + i)
            (root / "SUN397" / rel.lstrip("/")).write_bytes(files[rel])
            parts["Training_01.txt" if i < 3 else "Testing_01.txt"].append(rel)
    spec = {"dataset": "sun397", "root": str(root)}
    with pytest.raises(UserError, match="Partitions/Training_01.txt is missing"):
        build_transfer(spec, tmp_path / "x", "x")
    (root / "Partitions").mkdir()
    for f, lines in parts.items():
        (root / "Partitions" / f).write_text("\n".join(lines) + "\n")

    m = build_transfer(spec, tmp_path / "s", "s")
    assert m["metric"] == "top1" and m["splits"] == {"train": 8, "val": 1, "test": 3}
    got = read_classes(tmp_path / "s")
    assert got["wnid"].tolist() == classes
    assert got["name"].tolist() == ["abbey", "airport terminal", "bakery (shop)"]
    assert sun397_name("/t/theater/indoor_procenium") == "theater (indoor procenium)"
    idx = read_index(tmp_path / "s")
    train = idx[idx["key"].str.startswith("train-")]
    assert set(np.flatnonzero(train["split"].to_numpy() == "val")) == _seed0_val(9)
    row = idx[idx["path"] == "SUN397/b/bakery/shop/sun_23.jpg"]
    assert row["split"].item() == "test" and row["label"].item() == 2
    assert _stored(tmp_path / "s")[row["key"].item()] == files["/b/bakery/shop/sun_23.jpg"]

    (root / "SUN397/b/bakery/shop/sun_23.jpg").unlink()
    with pytest.raises(UserError, match="1 listed images are missing, e.g. .*sun_23.jpg"):
        build_transfer(spec, tmp_path / "x", "x")


def _voc_xml(objects):
    body = "".join(
        f"<object><name>{c}</name><difficult>{int(d)}</difficult></object>" for c, d in objects
    )
    return f"<annotation><filename>x.jpg</filename>{body}</annotation>"


def test_voc2007_is_multi_label_without_difficult_only_classes(tmp_path):
    from tailstudy.acquire.transfer import VOC_CLASSES, build_transfer
    from tailstudy.data.format import write_index

    base = tmp_path / "voc/VOCdevkit/VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / d).mkdir(parents=True)
    images = {
        "train": {"000005": [("chair", 0), ("dog", 0), ("chair", 1)], "000007": [("car", 0)]},
        "val": {"000009": [("horse", 0), ("person", 1)], "000012": [("car", 0)]},
        "test": {"000001": [("tvmonitor", 1)], "000002": [("aeroplane", 0), ("train", 0)]},
    }
    files = {}
    for split, ids in images.items():
        for image_id, objects in ids.items():
            (base / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(objects))
            files[image_id] = image_bytes(16, 20, int(image_id))
            (base / "JPEGImages" / f"{image_id}.jpg").write_bytes(files[image_id])
        (base / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    spec = {"dataset": "voc2007", "root": str(tmp_path / "voc")}
    m = build_transfer(spec, tmp_path / "v", "v")
    assert m["metric"] == "map11" and m["splits"] == {"train": 2, "val": 2, "test": 2}
    assert read_classes(tmp_path / "v")["wnid"].tolist() == list(VOC_CLASSES)
    idx = read_index(tmp_path / "v").set_index("path")
    c = {name: i for i, name in enumerate(VOC_CLASSES)}
    got = {
        p.split("/")[-1][:-4]: (list(r["labels"]), list(r["difficult"])) for p, r in idx.iterrows()
    }
    assert got == {
        "000005": ([c["chair"], c["dog"]], []),  # a difficult chair next to a plain one: a chair
        "000007": ([c["car"]], []),
        "000009": ([c["horse"]], [c["person"]]),  # only a difficult person: no person
        "000012": ([c["car"]], []),
        "000001": ([], [c["tvmonitor"]]),
        "000002": ([c["aeroplane"], c["train"]], []),
    }
    assert (idx["label"] == -1).all()
    assert idx.loc["VOCdevkit/VOC2007/JPEGImages/000009.jpg", "split"] == "val"
    stored = _stored(tmp_path / "v")
    assert stored[idx.loc["VOCdevkit/VOC2007/JPEGImages/000002.jpg", "key"]] == files["000002"]

    # the list columns stay list<int32> through read_index / write_index
    import pyarrow.parquet as pq

    write_index(tmp_path / "again.parquet", read_index(tmp_path / "v"))
    for path in (tmp_path / "v/index.parquet", tmp_path / "again.parquet"):
        schema = pq.read_schema(path)
        assert str(schema.field("labels").type) == "list<element: int32>"
        assert str(schema.field("difficult").type) == "list<element: int32>"
    again = read_index(tmp_path / "again.parquet")
    assert [list(x) for x in again["labels"]] == [
        list(x) for x in read_index(tmp_path / "v")["labels"]
    ]

    (base / "ImageSets/Main/val.txt").unlink()
    with pytest.raises(UserError, match="ImageSets/Main/val.txt is missing") as e:
        build_transfer(spec, tmp_path / "x", "x")
    assert "\n" not in str(e.value)
    # the devkit folder itself given as root: one level too deep
    with pytest.raises(
        UserError,
        match=r"VOCdevkit/VOCdevkit/VOC2007/ImageSets/Main/train.txt is missing.*laid out",
    ):
        build_transfer(
            {"dataset": "voc2007", "root": str(tmp_path / "voc/VOCdevkit")}, tmp_path / "x", "x"
        )


@pytest.mark.parametrize(
    "key",
    [
        "aircraft",
        "cars",
        "cifar10",
        "cifar100",
        "dtd",
        "flowers",
        "food",
        "pets",
        "caltech101",
        "sun397",
        "voc2007",
    ],
)
def test_transfer_root_missing_or_empty_names_the_set_and_its_layout(tmp_path, key):
    from tailstudy.acquire.transfer import LAYOUTS, build_transfer

    for root in (tmp_path / "nowhere", tmp_path / "empty"):
        if root.name == "empty":
            root.mkdir()
        with pytest.raises(UserError) as e:
            build_transfer({"dataset": key, "root": str(root)}, tmp_path / "x", "x")
        msg = str(e.value)
        assert "\n" not in msg and f"transfer set {key}" in msg, msg
        assert LAYOUTS[key].split(" ")[0] in msg, msg  # the folder it expects under the root
    assert not (tmp_path / "x" / "index.parquet").exists()


def load_images_raw(root, key):
    import webdataset as wds

    for t in sorted((root / "shards").glob("*.tar")):
        for s in wds.WebDataset(str(t), shardshuffle=False):
            if s["__key__"] == key:
                return s.get("png", s.get("jpg"))
    raise KeyError(key)


def test_laionet_text_encoder_of_openai_weights_uses_quick_gelu(no_hub):
    """The paper's similarity encoder (ViT-B-32, OpenAI's weights) with the activation its
    weights were trained with; open_clip's ViT-B-32 config alone builds GELU."""
    import torch
    from open_clip.transformer import QuickGELU

    model, _ = laionet.load_text_encoder({"open_clip": "ViT-B-32", "pretrained": "openai"})
    acts = {type(m) for m in model.transformer.modules()}
    assert QuickGELU in acts and torch.nn.GELU not in acts and len(no_hub) == 1


@pytest.mark.parametrize("short_side", [22, 0])
def test_builders_keep_aspect_ratio_and_the_configured_short_side(tmp_path, short_side):
    import io

    import webdataset as wds
    from PIL import Image

    in100 = concept_subset("imagenet100")
    files = write_class_tree(tmp_path / "val", [c.wnid for c in in100], per_folder=3)
    spec = {
        "source": "image-folder",
        "root": str(tmp_path / "val"),
        "classes": "imagenet100",
        "short_side": short_side,
    }
    build.build_image_folder(spec, tmp_path / "out", "val")
    idx = read_index(tmp_path / "out").set_index("key")
    shrunk = 0
    for s in wds.WebDataset(str(tmp_path / "out/shards/val-000000.tar"), shardshuffle=False):
        ext = "jpg" if "jpg" in s else "png"
        src = files[idx.loc[s["__key__"], "path"]]
        w0, h0 = Image.open(io.BytesIO(src)).size
        w, h = Image.open(io.BytesIO(s[ext])).size
        if not short_side or min(w0, h0) <= short_side:
            assert s[ext] == src  # small enough: the source bytes, untouched
            continue
        shrunk += 1
        assert min(w, h) == short_side and (w < h) == (w0 < h0)  # not cropped to a square
        assert max(w, h) == round(max(w0, h0) * short_side / min(w0, h0))
        assert Image.open(io.BytesIO(s[ext])).format == ("PNG" if ext == "png" else "JPEG")
    assert shrunk > 0 if short_side else shrunk == 0
