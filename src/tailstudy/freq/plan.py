"""The frequency section of the config: corpora, concept sets, and the tables figures need.

``frequency.corpora`` names every source of class frequencies (METHODS §2.1):

* caption matching over captions: ``dataset: NAME`` or ``variant: NAME`` (the ``caption`` column
  of a generated or built index), ``captions: [PATH or GLOB, ...]`` with ``column`` (Parquet/TSV
  shards: one counting job per shard), ``datacard: PATH`` (MetaCLIP entry counts), or
  ``table: PATH`` (a published ``name<TAB>count`` table, used as given);
* label counts: ``labels: VARIANT`` (the variant's ``counts.tsv``; no concept set applies).

A caption-matching table is keyed by (corpus, concept set); figures name the pairs they need and
the workflow counts only those. Paths here are the workflow's, relative to its working directory.
"""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

from tailstudy import layout as L
from tailstudy.figures.kinds import FREQUENCY, check_needs, kind_of
from tailstudy.io import UserError

SOURCE_KEYS = ("dataset", "variant", "captions", "datacard", "table", "labels")
LABELS = "labels"  # the concept-set slot of a label-count table


@dataclass(frozen=True)
class Shard:
    """One counting job: a caption file (``column``) or a datacard."""

    corpus: str
    name: str
    path: str
    kind: str  # "captions" | "datacard"
    column: str = "caption"
    header: bool = True  # TSV shards: a header line names the columns (else column = index)


def corpus_kind(spec: dict, name: str = "") -> str:
    keys = [k for k in SOURCE_KEYS if k in spec]
    if len(keys) != 1:
        raise UserError(
            f"corpus {name or '?'} needs exactly one of {', '.join(SOURCE_KEYS)}; got {keys}"
        )
    return keys[0]


def _shard_name(path: str) -> str:
    name = Path(path).name
    for suffix in (".parquet", ".tsv.gz", ".tsv", ".txt", ".csv"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def shards(config: dict, corpus: str) -> dict[str, Shard]:
    """The counting jobs of a caption-matching corpus, by shard name (sorted)."""
    spec = config["frequency"]["corpora"][corpus]
    kind = corpus_kind(spec, corpus)
    if kind == "dataset":
        path = L.path(L.DATASET_INDEX, dataset=spec["dataset"])
        return {"index": Shard(corpus, "index", path, "captions")}
    if kind == "variant":
        path = L.path(L.VARIANT_INDEX, variant=spec["variant"])
        return {"index": Shard(corpus, "index", path, "captions")}
    if kind == "datacard":
        return {"datacard": Shard(corpus, "datacard", str(spec["datacard"]), "datacard")}
    if kind == "captions":
        paths: list[str] = []
        for pattern in spec["captions"]:
            pattern = str(pattern)
            hits = (
                sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(pattern) else [pattern]
            )
            if not hits:
                raise UserError(f"corpus {corpus}: no caption shard matches {pattern!r}")
            paths.extend(str(h) for h in hits)
        out: dict[str, Shard] = {}
        for p in paths:
            name = _shard_name(p)
            if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
                raise UserError(f"corpus {corpus}: shard file name {name!r} is not a plain name")
            if name in out:
                raise UserError(f"corpus {corpus}: two shards are named {name!r} ({p})")
            out[name] = Shard(corpus, name, p, "captions", spec["column"], spec.get("header", True))
        return dict(sorted(out.items()))
    raise UserError(f"corpus {corpus} ({kind}) has no counting job")


def table_path(config: dict, corpus: str, concepts: str) -> str:
    """Where the label-order table of (corpus, concept set) lies once built."""
    spec = config["frequency"]["corpora"][corpus]
    kind = corpus_kind(spec)
    if kind == "labels":
        return L.path(L.VARIANT_COUNTS, variant=spec["labels"])
    if kind == "table":
        return str(spec["table"])
    return L.path(L.FREQ_TABLE, corpus=corpus, concepts=concepts)


def table_key(config: dict, corpus: str, concepts: str) -> str:
    """``corpus@concepts`` (``corpus@labels`` for label counts): how figures name a table."""
    kind = corpus_kind(config["frequency"]["corpora"][corpus])
    return f"{corpus}@{LABELS if kind == 'labels' else concepts}"


def figure_tables(config: dict, figure: str) -> dict[str, str]:
    """Every frequency table a figure reads: ``table_key`` -> path."""
    spec = config["figures"][figure]
    out = {}
    for corpus in figure_corpora(spec):
        for concepts in figure_concept_sets(spec):
            out[table_key(config, corpus, concepts)] = table_path(config, corpus, concepts)
    return out


def figure_concept_sets(spec: dict) -> list[str]:
    """The concept sets a figure's caption-matching tables use (default: ImageNet)."""
    return list(spec.get("concept_sets") or ["imagenet"])


def figure_corpora(spec: dict) -> list[str]:
    """The corpora a figure names (in ``corpora``, ``panels``, ``pairs`` and ``rank_by``)."""
    names: list[str] = list(spec.get("corpora", []))
    for group in (*spec.get("panels", []), *spec.get("pairs", [])):
        names.extend(group)
    if spec.get("rank_by"):
        names.append(spec["rank_by"])
    return list(dict.fromkeys(names))


def check(config: dict) -> None:
    """Cross-references of the frequency section and of the figures that read it."""
    from tailstudy.freq.conceptsets import CONCEPT_SETS, NAME_FILE_SETS

    freq = config.get("frequency", {})
    corpora = freq.get("corpora", {})
    concept_sets = freq.get("concept_sets", {})
    datasets, variants = config.get("datasets", {}), config.get("variants", {})
    for name, spec in corpora.items():
        kind = corpus_kind(spec, name)
        ref = spec[kind]
        if kind == "dataset" and ref not in datasets:
            raise UserError(f"corpus {name} reads unknown dataset {ref!r}")
        if kind in ("variant", "labels") and ref not in variants:
            raise UserError(f"corpus {name} reads unknown variant {ref!r}")
        if kind == "captions" and "column" not in spec:
            raise UserError(f"corpus {name}: caption shards need a column (e.g. column: TEXT)")
        for key in ("column", "header"):
            if kind != "captions" and key in spec:
                raise UserError(f"corpus {name}: {key} only applies to captions shards")
        if kind != "table" and "concept_set" in spec:
            raise UserError(f"corpus {name}: concept_set only applies to a published table")
    for name, spec in concept_sets.items():
        if name not in CONCEPT_SETS:
            raise UserError(
                f"unknown concept set {name!r}; expected one of {', '.join(CONCEPT_SETS)}"
            )
        if name in NAME_FILE_SETS and not (spec or {}).get("class_names"):
            raise UserError(
                f"concept set {name} needs class_names: a file with {NAME_FILE_SETS[name]}"
            )
        if (spec or {}).get("synonyms") and name not in ("imagenet", "imagenet1k", "imagenet100"):
            raise UserError(f"concept set {name}: a synonym table only applies to ImageNet")
    for fig, spec in config.get("figures", {}).items():
        kind = kind_of(spec, fig)
        if kind.source == FREQUENCY:
            check_needs(spec, fig)
            if kind.one_concept_set and len(figure_concept_sets(spec)) > 1:
                raise UserError(f"figure {fig} ({spec['plot']}) draws one concept set; name one")
        for corpus in figure_corpora(spec):
            if corpus not in corpora:
                raise UserError(f"figure {fig} names unknown corpus {corpus!r}")
        matched = [c for c in figure_corpora(spec) if corpus_kind(corpora[c], c) != "labels"]
        if not matched:
            continue
        for cs in figure_concept_sets(spec):
            if cs not in concept_sets:
                raise UserError(
                    f"figure {fig} uses concept set {cs!r}, not in frequency.concept_sets"
                )
            for c in matched:
                own = corpora[c].get("concept_set", "imagenet")
                if corpus_kind(corpora[c], c) == "table" and own != cs:
                    raise UserError(
                        f"figure {fig} needs corpus {c} for concept set {cs}, but its table "
                        f"is for {own}"
                    )


def needed_tables(config: dict) -> list[tuple[str, str]]:
    """Every (caption-matching corpus, concept set) some figure reads and the workflow counts."""
    pairs = set()
    corpora = config.get("frequency", {}).get("corpora", {})
    for fig in config.get("figures", {}):
        spec = config["figures"][fig]
        for corpus in figure_corpora(spec):
            if corpus_kind(corpora[corpus]) in ("labels", "table"):
                continue
            for concepts in figure_concept_sets(spec):
                pairs.add((corpus, concepts))
    return sorted(pairs)
