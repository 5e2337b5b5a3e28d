"""Dataset variants: index files over one dataset's shards (no image is copied).

ImageNet-Captions caption variants (METHODS-style §3.1)::

    body    = " ".join([title] + [" ".join(tags)] + [description])   # chosen fields, present only
    caption = TEMPLATE(name)                    if no fields (template-only)
            = TEMPLATE(name) + " " + body       if prefix (TEMPLATE = "{}" for natural language)
            = body                              otherwise
    rows whose caption is empty (ignoring spaces) are dropped

``name`` is the class name or a WordNet lemma of the class drawn once per image; TEMPLATE for
``openai80`` is one of open_clip's 80 OpenAI ImageNet templates drawn once per image. Captions are
static: drawn at construction, not per epoch.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.concepts import imagenet_concepts, openai_templates
from tailstudy.data.format import read_classes, read_index, write_index
from tailstudy.data.loader import label_counts
from tailstudy.io import UserError, atomic_path, write_json

FIELD_ORDER = ("title", "tags", "description")
_WS = re.compile(r"[\r\n\t]")


def _template(kind: str) -> Callable[[random.Random], Callable[[str], str]]:
    if kind == "plain":
        return lambda rng: "{}".format
    if kind == "a":
        return lambda rng: "a {}".format
    if kind == "openai80":
        templates = openai_templates()
        return lambda rng: rng.choice(templates)
    raise UserError(f"unknown caption template {kind!r}; expected plain, a or openai80")


def caption_body(title: str, tags, description: str, fields) -> str:
    parts = []
    for f in FIELD_ORDER:
        if f not in fields:
            continue
        if f == "title" and title:
            parts.append(title)
        elif f == "tags" and tags is not None and len(tags) > 0:
            parts.append(" ".join(tags))
        elif f == "description" and description:
            parts.append(description)
    return _WS.sub(" ", " ".join(parts))


def build_captions(index: pd.DataFrame, classes: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """Apply a caption spec to an ImageNet-Captions-style index → (key, label, caption) rows."""
    fields = list(spec.get("fields", []))
    missing = [f for f in fields if f not in index.columns]
    if missing:
        raise UserError(
            f"caption fields {missing} are not in the dataset index; is it a captions set?"
        )
    prefix = spec.get("prefix", True)
    if not fields and not prefix:
        raise UserError("a caption variant without fields needs prefix: true (template-only)")
    pick_template = _template(spec.get("template", "plain"))
    use_synset = spec.get("name", "class") == "synset"
    names = classes.set_index("label")["name"].to_dict()
    lemmas = {}
    if use_synset:
        by_wnid = {c.wnid: c.lemmas for c in imagenet_concepts()}
        for label, wnid in classes.set_index("label")["wnid"].items():
            if wnid not in by_wnid:
                raise UserError(f"class {wnid} has no WordNet lemmas; use name: class")
            lemmas[label] = by_wnid[wnid]
    rng = random.Random(spec.get("seed", 0))
    captions = []
    for row in index.itertuples(index=False):
        label = int(row.label)
        if label < 0:
            captions.append("")
            continue
        name = rng.choice(lemmas[label]) if use_synset else names[label]
        body = caption_body(
            getattr(row, "title", ""), getattr(row, "tags", None), getattr(row, "description", ""),
            fields,
        )  # fmt: skip
        if not fields:
            cap = pick_template(rng)(name)
        elif prefix:
            cap = pick_template(rng)(name) + " " + body
        else:
            cap = body
        captions.append(_WS.sub(" ", cap).strip())
    out = index[["key", "label"]].copy()
    out["caption"] = captions
    keep = (out["label"] >= 0) & (out["caption"].str.replace(" ", "", regex=False) != "")
    return out[keep].reset_index(drop=True)


def sample_rows(rows: pd.DataFrame, fraction: float, seed: int = 42) -> pd.DataFrame:
    """``rows.sample(frac=fraction, random_state=seed)`` plus the first row (in index order) of
    every labelled class the draw lost, back in index order (METHODS §3.4–3.5)."""
    drawn = rows.sample(frac=fraction, random_state=seed)
    labelled = rows[rows["label"] >= 0]
    first = labelled.drop_duplicates("label", keep="first")
    lost = first[~first["label"].isin(drawn["label"])]
    return pd.concat([drawn, lost]).sort_index().reset_index(drop=True)


def build_variant(dataset_root: str | Path, spec: dict, out_dir: str | Path, name: str) -> dict:
    """Write ``out_dir/index.parquet``, ``counts.tsv`` (class<TAB>count, label order) and a
    manifest; return the manifest."""
    dataset_root, out_dir = Path(dataset_root), Path(out_dir)
    index = read_index(dataset_root)
    classes = read_classes(dataset_root)
    if spec.get("captions"):
        rows = build_captions(index, classes, spec["captions"])
    else:
        rows = index[["key", "label", "caption"]].copy()
    if spec.get("labelled"):
        rows = rows[rows["label"] >= 0].reset_index(drop=True)
    if spec.get("sample"):
        rows = sample_rows(rows, spec["sample"]["fraction"], spec["sample"].get("seed", 42))
    if rows.empty:
        raise UserError(f"variant {name} has no rows; check its captions, labelled and sample keys")
    write_index(out_dir / "index.parquet", rows)
    counts = label_counts(rows["label"].to_numpy(), len(classes))
    write_counts(out_dir / "counts.tsv", classes["name"].tolist(), counts)
    manifest = {
        "variant": name,
        "dataset": spec["dataset"],
        "spec": spec,
        "n_rows": int(len(rows)),
        "n_classes": int(len(classes)),
        "nonzero_classes": int((counts > 0).sum()),
    }
    write_json(out_dir / "manifest.json", manifest)
    return manifest


def write_counts(path: str | Path, names: list[str], counts: np.ndarray) -> None:
    """Label-count file: ``<class name>\\t<count>`` per class in label order, no header."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{n}\t{int(c)}\n" for n, c in zip(names, counts, strict=True)))


def read_counts(path: str | Path) -> pd.DataFrame:
    df = pd.read_csv(path, sep="\t", header=None, names=["name", "count"], quoting=3)
    return df.astype({"count": np.int64})
