"""``tailstudy freq ...``: class-frequency estimation from the command line.

Subcommands:

* ``count``: per-class caption-matching counts of caption shards (``--captions``) or of a
  MetaCLIP datacard (``--datacard``). Writes the label-order table at ``--out`` and its
  count-sorted sibling (``x_ori.tsv`` -> ``x.tsv``; otherwise ``x.tsv`` -> ``x_sorted.tsv``).
* ``merge``: sum count tables (e.g. per shard), aligned by class name.
* ``correlate``: pairwise Spearman matrix of frequency tables, aligned by class name.
* ``wordnet``: make an NLTK data folder holding WordNet 3.0.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from tailstudy.io import UserError


def _concepts(a: argparse.Namespace):
    from tailstudy.freq.conceptsets import load_concept_set

    return load_concept_set(a.concepts, a.class_names, a.synonyms)


def cmd_count(a: argparse.Namespace) -> None:
    from tailstudy.freq.count import count_captions, count_datacard
    from tailstudy.freq.sources import write_count_tables

    concepts = _concepts(a)
    nltk_data = str(a.nltk_data) if a.nltk_data else None
    if a.datacard:
        res = count_datacard(a.datacard, concepts, keep_digits=a.keep_digits, nltk_data=nltk_data)
    else:
        if not a.column:
            raise UserError(
                "--captions needs --column (a column name, or an index with --no-header)"
            )
        res = count_captions(
            a.captions,
            a.column,
            concepts,
            workers=a.workers,
            keep_digits=a.keep_digits,
            header=not a.no_header,
            nltk_data=nltk_data,
            batch_size=a.batch_size,
        )
    if a.per_shard:
        for shard, counts in res.per_shard.items():
            name = Path(shard).name.split(".")[0]
            write_count_tables(
                a.per_shard / f"{name}_ori.tsv", res.names, counts, sorted_copy=False
            )
    for p in write_count_tables(a.out, res.names, res.counts, sorted_copy=not a.no_sorted):
        logging.getLogger("tailstudy").info("wrote %s", p)
    logging.getLogger("tailstudy").info(
        "%d texts, %d classes non-zero, total %d",
        res.n_texts,
        int((res.counts > 0).sum()),
        int(res.counts.sum()),
    )


def cmd_merge(a: argparse.Namespace) -> None:
    from tailstudy.freq.sources import align_by_name, read_table, write_count_tables

    tables = [(str(p), *read_table(p)) for p in a.tables]
    names, m = align_by_name(tables)
    write_count_tables(a.out, names, m.sum(axis=1, dtype=np.int64), sorted_copy=not a.no_sorted)


def cmd_correlate(a: argparse.Namespace) -> None:
    from tailstudy.freq.correlate import read_labelled_tables, spearman_matrix, write_matrix

    tables = read_labelled_tables(a.tables)
    if len(tables) < 2:
        raise UserError("correlate needs at least two NAME=TABLE arguments")
    write_matrix(a.out, spearman_matrix(tables, intersect=a.common_only))


def cmd_wordnet(a: argparse.Namespace) -> None:
    from tailstudy.freq.wordnet import ensure_wordnet

    print(ensure_wordnet(a.data_dir))


def add_commands(parent) -> None:
    """The ``freq`` command group, under the project's parser (``parent``: its subparsers)."""
    doc = __doc__.splitlines()[0]
    p = parent.add_parser("freq", help="class frequencies by caption matching", description=doc)
    sub = p.add_subparsers(dest="freq_command", required=True, metavar="COMMAND")

    s = sub.add_parser("count", help="caption-matching class frequencies (METHODS §2)")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--captions",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="Parquet/TSV caption shards, or folders of them",
    )
    src.add_argument("--datacard", type=Path, help="MetaCLIP datacard JSON {entry: count}")
    s.add_argument("--column", help="caption column (0-based index with --no-header)")
    s.add_argument("--no-header", action="store_true", help="TSV shards have no header line")
    s.add_argument(
        "--concepts",
        default="imagenet",
        help="imagenet | imagenet100 | cub | food101 | pets | flowers102 | places365 "
        "| eurosat | dtd (default: imagenet)",
    )
    s.add_argument(
        "--class-names", type=Path, help="class-name file (needed for cub, food101, places365, dtd)"
    )
    s.add_argument(
        "--synonyms",
        type=Path,
        help="ImageNet synonym JSON (wnid -> list), replacing the embedded table",
    )
    s.add_argument("--out", required=True, type=Path, help="label-order table, e.g. x_ori.tsv")
    s.add_argument("--no-sorted", action="store_true", help="skip the count-sorted sibling")
    s.add_argument("--per-shard", type=Path, metavar="DIR", help="also write one table per shard")
    s.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    s.add_argument(
        "--keep-digits",
        action="store_true",
        help="the paper's normalisation: keep digits (default: drop them, as the code)",
    )
    s.add_argument("--batch-size", type=int, default=65_536, help="captions per batch")
    s.add_argument(
        "--nltk-data", type=Path, help="NLTK data folder with WordNet (see the wordnet subcommand)"
    )
    s.set_defaults(func=cmd_count)

    s = sub.add_parser("merge", help="sum count tables, aligned by class name")
    s.add_argument("tables", nargs="+", type=Path, metavar="TABLE")
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--no-sorted", action="store_true", help="skip the count-sorted sibling")
    s.set_defaults(func=cmd_merge)

    s = sub.add_parser("correlate", help="pairwise Spearman matrix of frequency tables")
    s.add_argument("tables", nargs="+", metavar="NAME=TABLE")
    s.add_argument("--out", required=True, type=Path, help="square TSV")
    s.add_argument(
        "--common-only",
        action="store_true",
        help="use the class names common to all tables (default: they must agree)",
    )
    s.set_defaults(func=cmd_correlate)

    s = sub.add_parser("wordnet", help="make an NLTK data folder holding WordNet 3.0")
    s.add_argument("--data-dir", required=True, type=Path)
    s.set_defaults(func=cmd_wordnet)


def main(argv: list[str] | None = None) -> int:
    """``tailstudy freq ARGV``; returns the exit status (2 for input errors, printed as one line)."""
    from tailstudy.cli import main as project_main

    return project_main(["freq", *(sys.argv[1:] if argv is None else argv)])
