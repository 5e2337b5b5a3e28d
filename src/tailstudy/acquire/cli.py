"""``tailstudy acquire ...``: the steps of real data acquisition, one command per workflow rule.

Subcommands:

* ``lemmas``: LAIONet's unique-lemma table of the 1000 ILSVRC synsets.
* ``laionet-label``: substring-label one LAION metadata part; keep single-label rows.
* ``laionet-similarity``: caption-to-definition similarity of one labelled part.
* ``laionet-filter``: NSFW filter and threshold over all parts -> the URL table.
* ``cls-match``: match one caption metadata file against the classes' WordNet lemmas.
* ``cls-urls``: gather the matches into the URL table (one row per image).
* ``birdsnap-urls``: Birdsnap's URL table from its release's ``images.txt``.
* ``download``: img2dataset over one slice of a URL table (resumable).
* ``download-manifest``: gather the slices' stats into the dataset's download manifest.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from tailstudy.io import read_json

log = logging.getLogger("tailstudy")


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _write_table(df, path: Path) -> None:
    from tailstudy.io import atomic_path

    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)


def cmd_lemmas(a: argparse.Namespace) -> None:
    from tailstudy.acquire.laionet import lemma_table, write_lemmas
    from tailstudy.concepts import imagenet_concepts

    table = lemma_table()
    write_lemmas(a.out, table)
    dropped = sorted({c.wnid for c in imagenet_concepts()} - set(table.values()))
    log.info(
        "%d unique lemmas for %d synsets; %d synsets have none: %s",
        len(table),
        len(set(table.values())),
        len(dropped),
        ", ".join(dropped),
    )


def cmd_laionet_label(a: argparse.Namespace) -> None:
    from tailstudy.acquire.laionet import label_part, read_lemmas

    counts = label_part(
        a.metadata,
        a.part,
        read_lemmas(a.lemmas),
        a.out,
        url_column=a.url_column,
        caption_column=a.caption_column,
        nsfw_column=a.nsfw_column or None,
    )
    log.info("part %d: %s", a.part, counts)


def cmd_laionet_similarity(a: argparse.Namespace) -> None:
    from tailstudy.acquire.laionet import similarity_part

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    encoder = json.loads(a.encoder)
    res = similarity_part(a.rows, encoder, a.out, batch_size=a.batch_size, device=_device(a.device))
    log.info("%s: %s", a.rows, res)


def cmd_laionet_filter(a: argparse.Namespace) -> None:
    from tailstudy.acquire.laionet import filter_rows

    rows, counts = filter_rows(a.rows, a.threshold, a.nsfw_keep)
    _write_table(rows, a.out)
    log.info("LAIONet URL table: %s", counts)


def cmd_cls_match(a: argparse.Namespace) -> None:
    from tailstudy.acquire.cls import match_part

    counts = match_part(
        a.metadata,
        a.part,
        a.out,
        url_column=a.url_column,
        caption_column=a.caption_column,
        header=not a.no_header,
    )
    log.info("%s: %s", a.metadata, counts)


def cmd_cls_urls(a: argparse.Namespace) -> None:
    from tailstudy.acquire.cls import collect_urls

    urls, counts = collect_urls(a.matches)
    _write_table(urls, a.out)
    log.info("-Cls URL table: %s", counts)


def cmd_birdsnap_urls(a: argparse.Namespace) -> None:
    from tailstudy.acquire.birdsnap import read_release

    classes, urls, test = read_release(a.root)
    _write_table(urls, a.out)
    log.info(
        "Birdsnap URL table: %d images of %d species, %d on the test list",
        len(urls),
        len(classes),
        len(test),
    )


def cmd_download(a: argparse.Namespace) -> None:
    from tailstudy.acquire.download import DownloadSettings, download_shard

    settings = DownloadSettings.from_dict(read_json(a.settings)["download"])
    download_shard(a.urls, a.shard, settings, a.work, a.out)


def cmd_download_manifest(a: argparse.Namespace) -> None:
    from tailstudy.acquire.download import write_manifest

    m = write_manifest(a.dataset, a.stats, a.out)
    rate = m["success_rate"]
    log.info(
        "%s: %d of %d images downloaded (%s)",
        a.dataset,
        m["successes"],
        m["n_urls"],
        "n/a" if rate is None else f"{rate:.1%}",
    )


def add_commands(parent) -> None:
    """The ``acquire`` command group (alias ``data``), under the project's parser."""
    doc = __doc__.splitlines()[0]
    p = parent.add_parser(
        "acquire", aliases=["data"], help="real data acquisition steps", description=doc
    )
    sub = p.add_subparsers(dest="acquire_command", required=True, metavar="COMMAND")

    s = sub.add_parser("lemmas", help="LAIONet's unique-lemma table")
    s.add_argument("--out", required=True, type=Path, help="lemma<TAB>wnid table")
    s.set_defaults(func=cmd_lemmas)

    s = sub.add_parser("laionet-label", help="label one LAION metadata part")
    s.add_argument("--metadata", required=True, type=Path, help="a LAION-400M metadata part")
    s.add_argument("--part", required=True, type=int, help="part number (row id = part*1e8+row)")
    s.add_argument("--lemmas", required=True, type=Path, help="lemma table")
    s.add_argument("--url-column", default="URL")
    s.add_argument("--caption-column", default="TEXT")
    s.add_argument("--nsfw-column", default="NSFW", help="'' when the metadata has none")
    s.add_argument("--out", required=True, type=Path, help="single-label rows (Parquet)")
    s.set_defaults(func=cmd_laionet_label)

    s = sub.add_parser("laionet-similarity", help="caption-to-definition similarity of a part")
    s.add_argument("--rows", required=True, type=Path, help="labelled part (Parquet)")
    s.add_argument(
        "--encoder",
        required=True,
        help='JSON: {"open_clip": arch, "pretrained": tag|file} or {..., "checkpoint"}',
    )
    s.add_argument("--batch-size", type=int, default=1024)
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    s.add_argument("--threads", type=int, help="torch CPU threads")
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=cmd_laionet_similarity)

    s = sub.add_parser("laionet-filter", help="NSFW filter and threshold -> URL table")
    s.add_argument("--rows", required=True, nargs="+", type=Path, help="similarity parts")
    s.add_argument("--threshold", required=True, type=float, help="keep similarity > this")
    s.add_argument(
        "--nsfw-keep", nargs="*", default=["UNLIKELY"], help="NSFW tags kept (none: no NSFW filter)"
    )
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=cmd_laionet_filter)

    s = sub.add_parser("cls-match", help="match one caption file against the classes' lemmas")
    s.add_argument("--metadata", required=True, type=Path, help="Parquet or TSV")
    s.add_argument("--part", required=True, type=int, help="file number (row id = part*1e8+row)")
    s.add_argument("--url-column", required=True)
    s.add_argument("--caption-column", required=True)
    s.add_argument("--no-header", action="store_true", help="TSV without header: columns 0, 1")
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=cmd_cls_match)

    s = sub.add_parser("cls-urls", help="gather -Cls matches into the URL table")
    s.add_argument("--matches", required=True, nargs="+", type=Path)
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=cmd_cls_urls)

    s = sub.add_parser("birdsnap-urls", help="Birdsnap's URL table from its release's images.txt")
    s.add_argument("--root", required=True, type=Path, help="where birdsnap.tgz is extracted")
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=cmd_birdsnap_urls)

    s = sub.add_parser("download", help="img2dataset over one slice of a URL table")
    s.add_argument("--urls", required=True, type=Path, help="URL table (Parquet)")
    s.add_argument("--shard", required=True, type=int, help="slice number")
    s.add_argument("--settings", required=True, type=Path, help='JSON with a "download" block')
    s.add_argument("--work", required=True, type=Path, help="the slice's working folder")
    s.add_argument("--out", required=True, type=Path, help="the slice's stats.json")
    s.set_defaults(func=cmd_download)

    s = sub.add_parser("download-manifest", help="gather download stats into one manifest")
    s.add_argument("--dataset", required=True)
    s.add_argument("--stats", required=True, nargs="+", type=Path)
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=cmd_download_manifest)


def main(argv: list[str] | None = None) -> int:
    """``tailstudy acquire ARGV``; returns the exit status."""
    from tailstudy.cli import main as project_main

    return project_main(["acquire", *(sys.argv[1:] if argv is None else argv)])
