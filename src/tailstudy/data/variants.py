"""Dataset variants: index files over one dataset's shards (no image is copied).

A variant is built in stages, each a small pure function over a pandas index::

    rows  = the dataset's index, with captions built by ``captions`` (below) if given
    rows  = rows with a class label                       if labelled
    rows  = rows of a class subset, labels remapped       if classes    (own label space)
    rows  = one selection: sample | trim | threshold | match             (at most one)

and written as ``index.parquet``, ``classes.tsv`` (its label space), ``counts.tsv`` (label counts,
METHODS §0.3) and ``manifest.json`` (the spec, sizes, and the tail set T_N of a trim).

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

import logging
import random
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.concepts import concept_subset, imagenet_concepts, names_for, openai_templates
from tailstudy.data.format import label_counts, read_classes, read_index, write_classes, write_index
from tailstudy.data.spec import SELECTIONS, check_spec
from tailstudy.io import UserError, atomic_path, write_json

FIELD_ORDER = ("title", "tags", "description")
log = logging.getLogger("tailstudy.variants")
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
    names = dict(
        zip(classes["label"], names_for(classes["wnid"], classes["name"], "caption"), strict=True)
    )
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
            getattr(row, "title", ""),
            getattr(row, "tags", None),
            getattr(row, "description", ""),
            fields,
        )
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


def subset_wnids(spec: dict) -> list[str]:
    """The wnids of a ``classes`` block: a named subset (imagenet100) or an explicit list."""
    if "subset" in spec:
        try:
            return [c.wnid for c in concept_subset(spec["subset"])]
        except ValueError as e:
            raise UserError(str(e)) from None
    return list(spec["wnids"])


def subset_classes(
    rows: pd.DataFrame, classes: pd.DataFrame, wnids
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows of the classes ``wnids`` with labels remapped to their rank among the kept labels
    (dataset label order), the original label kept as ``label_ori`` (METHODS §3.2, IN-Caps-100).
    Returns (rows, the new label space)."""
    wanted = set(wnids)
    missing = sorted(wanted - set(classes["wnid"]))
    if missing:
        raise UserError(
            f"{len(missing)} of the {len(wanted)} classes are not in the dataset's label space "
            f"(e.g. {', '.join(missing[:3])})"
        )
    keep = classes[classes["wnid"].isin(wanted)].sort_values("label")
    rank = dict(zip(keep["label"].tolist(), range(len(keep)), strict=True))
    out = rows[rows["label"].isin(rank)].copy()
    out["label_ori"] = out["label"]
    out["label"] = out["label"].map(rank).astype(rows["label"].dtype)
    new = pd.DataFrame(
        {
            "label": np.arange(len(keep)),
            "wnid": keep["wnid"].to_numpy(),
            "name": keep["name"].to_numpy(),
        }
    )
    return out.reset_index(drop=True), new


def sample_rows(
    rows: pd.DataFrame,
    fraction: float | None = None,
    seed: int = 42,
    *,
    n: int | None = None,
    sort_by: str | None = None,
    top_up: bool | None = None,
) -> pd.DataFrame:
    """``rows.sample(frac=fraction | n=n, random_state=seed)``, back in index order.

    ``sort_by``: sort the rows by that column first (stable), so that variants whose rows are
    the same images in another order draw the same images (METHODS §3.2, IN-Caps (10%)); the
    result is then in that order. ``top_up`` (default: with ``fraction`` only, METHODS §3.4–3.5):
    add back the first row (in index order) of every labelled class the draw lost.
    """
    if (fraction is None) == (n is None):
        raise UserError("sample needs exactly one of fraction and n")
    if sort_by is not None:
        rows = rows.sort_values(sort_by, kind="stable").reset_index(drop=True)
    if n is not None:
        if n > len(rows):
            raise UserError(f"sample n={n} exceeds the {len(rows)} rows")
        drawn = rows.sample(n=n, random_state=seed)
    else:
        drawn = rows.sample(frac=fraction, random_state=seed)
    if not (fraction is not None if top_up is None else top_up):
        return drawn.sort_index().reset_index(drop=True)
    labelled = rows[rows["label"] >= 0]
    first = labelled.drop_duplicates("label", keep="first")
    lost = first[~first["label"].isin(drawn["label"])]
    return pd.concat([drawn, lost]).sort_index().reset_index(drop=True)


def tail_classes(counts: np.ndarray, n: int) -> np.ndarray:
    """T_N: the ``n`` rarest classes, by a stable ascending sort of ``counts`` (ties: lower label
    first). The one order used wherever the tail is needed (METHODS §3.3, §5.6)."""
    return np.argsort(np.asarray(counts), kind="stable")[:n]


def trim_tail(
    rows: pd.DataFrame, num_classes: int, tail: int, ceil: int, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Cap each of the ``tail`` rarest classes at ``ceil`` rows; the rows dropped from a class
    are drawn uniformly (one generator seeded ``seed``, classes in label order); the others keep
    their order (METHODS §3.3). Returns (rows, T_N in rarity order)."""
    if not 1 <= tail <= num_classes:
        raise UserError(f"trim tail {tail} must be between 1 and the {num_classes} classes")
    labels = rows["label"].to_numpy()
    tail_labels = tail_classes(label_counts(labels, num_classes), tail)
    rng = np.random.default_rng(seed)
    keep = np.ones(len(rows), dtype=bool)
    for c in np.sort(tail_labels):
        pos = np.flatnonzero(labels == c)
        if len(pos) > ceil:
            keep[rng.choice(pos, len(pos) - ceil, replace=False)] = False
    return rows[keep].reset_index(drop=True), tail_labels


def threshold_sample(
    rows: pd.DataFrame, min_similarity: float, n: int, seed: int = 42, drop_from_top: int = 10
) -> tuple[pd.DataFrame, dict]:
    """LAIONet at a similarity threshold, at a fixed size (METHODS §3.4)::

        one_per_cls = first row (index order) of each class, taken BEFORE thresholding
        D = rows[similarity >= t].sample(n=n, random_state=seed)
        D += the one_per_cls rows of classes absent from D
        if len(D) > n: drop len(D) - n rows, drawn (random_state=seed) from the rows of the
                       ``drop_from_top`` most frequent classes of D (ties: lower label first)
        sort by row_id

    Returns (rows, counts of each step)."""
    labelled = rows[rows["label"] >= 0]
    one_per = labelled.drop_duplicates("label", keep="first")
    above = rows[rows["similarity"] >= min_similarity]
    if len(above) < n:
        raise UserError(
            f"only {len(above)} rows have similarity >= {min_similarity}, fewer than n={n}"
        )
    d = above.sample(n=n, random_state=seed)
    lost = one_per[~one_per["label"].isin(d["label"])]
    d = pd.concat([d, lost])
    excess = len(d) - n
    if excess > 0:
        counts = d.loc[d["label"] >= 0, "label"].value_counts()
        order = sorted(counts.index, key=lambda c: (-counts[c], c))[:drop_from_top]
        pool = d[d["label"].isin(order)]
        if len(pool) < excess:
            raise UserError(
                f"{excess} rows over n={n} but the {drop_from_top} largest classes hold only "
                f"{len(pool)}"
            )
        d = d.drop(pool.sample(n=excess, random_state=seed).index)
    stats = {
        "above_threshold": int(len(above)),
        "topped_up": int(len(lost)),
        "dropped": int(max(excess, 0)),
    }
    return d.sort_values("row_id", kind="stable").reset_index(drop=True), stats


def match_counts(
    rows: pd.DataFrame, target: np.ndarray, seed: int = 0, supplement: pd.DataFrame | None = None
) -> tuple[pd.DataFrame, dict]:
    """Per class c (label order): min(|A_c|, target_c) rows of ``rows`` drawn uniformly without
    replacement; if still short, up to the shortfall from the ``supplement`` rows of c; the union
    sorted by ``row_id`` (METHODS §3.6, LAIONet =freq). The main and supplement draws use two
    generators spawned from ``seed``, so a supplement never changes the main draw.

    Returns (rows, counts of each source)."""
    main_seq, sup_seq = np.random.SeedSequence(seed).spawn(2)
    main_rng, sup_rng = np.random.default_rng(main_seq), np.random.default_rng(sup_seq)
    groups = {int(k): v for k, v in rows.groupby("label").indices.items()}
    sup_groups = (
        {}
        if supplement is None
        else {int(k): v for k, v in supplement.groupby("label").indices.items()}
    )
    empty = np.empty(0, dtype=np.int64)
    main_pos, sup_pos = [empty], [empty]
    for c in np.flatnonzero(np.asarray(target) > 0):
        want = int(target[c])
        pos = groups.get(int(c), empty)
        k = min(len(pos), want)
        main_pos.append(np.sort(main_rng.choice(pos, k, replace=False)))
        extra = sup_groups.get(int(c), empty)
        if want > k and len(extra):
            sup_pos.append(np.sort(sup_rng.choice(extra, min(len(extra), want - k), replace=False)))
    parts = [rows.iloc[np.concatenate(main_pos)]]
    if supplement is not None:
        parts.append(supplement.iloc[np.concatenate(sup_pos)])
    out = pd.concat(parts).sort_values("row_id", kind="stable").reset_index(drop=True)
    n_sup = sum(len(p) for p in sup_pos)
    stats = {
        "target": int(np.asarray(target).sum()),
        "from_dataset": int(len(out) - n_sup),
        "from_supplement": int(n_sup),
    }
    return out, stats


def counts_by_wnid(root: str | Path) -> pd.Series:
    """Label counts of a dataset or variant folder (its index and classes.tsv), by wnid."""
    labels = read_index(root, columns=["label"])["label"].to_numpy()
    classes = read_classes(root)
    return pd.Series(label_counts(labels, len(classes)), index=classes["wnid"].to_numpy())


def align_counts(target: pd.Series, classes: pd.DataFrame, where: str) -> np.ndarray:
    """Counts by wnid → a vector in ``classes`` label order (classes absent from ``target``: 0)."""
    wanted = target[target > 0]
    missing = sorted(set(wanted.index) - set(classes["wnid"]))
    if missing:
        raise UserError(
            f"{where}: {len(missing)} classes with target counts are not in the variant's label "
            f"space (e.g. {', '.join(missing[:3])})"
        )
    return target.reindex(classes["wnid"]).fillna(0).astype(np.int64).to_numpy()


def _require(index: pd.DataFrame, columns, dataset: str, kind: str, variant: str) -> None:
    missing = [c for c in columns if c not in index.columns]
    if missing:
        raise UserError(
            f"variant {variant}: dataset {dataset} has no {', '.join(map(repr, missing))} "
            f"column, which {kind} needs (a LAIONet-style index: similarity, wnid, row_id)"
        )


def _extra_columns(spec: dict) -> list[str]:
    """Index columns the selection needs beyond key, label and caption."""
    if spec.get("threshold"):
        return ["similarity", "row_id"]
    if spec.get("match"):
        return ["row_id"]
    sort_by = (spec.get("sample") or {}).get("sort_by")
    return [sort_by] if sort_by and sort_by not in ("key", "label", "caption") else []


def _source_rows(index: pd.DataFrame, classes: pd.DataFrame, spec: dict, name: str) -> pd.DataFrame:
    extra = _extra_columns(spec)
    kind = next((k for k in SELECTIONS if spec.get(k)), "sample")
    _require(index, extra, spec["dataset"], kind, name)
    if spec.get("captions"):
        rows = build_captions(index, classes, spec["captions"])
        if extra:
            rows = rows.merge(index[["key", *extra]], on="key", how="left", validate="1:1")
        return rows
    return index[["key", "label", "caption", *extra]].copy()


def _supplement_rows(root: Path, classes: pd.DataFrame, spec: dict, name: str) -> pd.DataFrame:
    """The supplement's rows, labelled in the variant's label space by wnid (others dropped)."""
    sup = spec["match"]["supplement"]
    index = read_index(root)
    _require(index, ["row_id"], sup, "match", name)
    wnid_of = read_classes(root).set_index("label")["wnid"]
    label_of = classes.set_index("wnid")["label"]
    rows = index[["key", "label", "caption", "row_id"]].copy()
    rows["label"] = rows["label"].map(wnid_of).map(label_of)
    rows = rows[rows["label"].notna()].astype({"label": "int32"})
    rows["dataset"] = sup
    return rows.reset_index(drop=True)


OUTPUT_COLUMNS = ("key", "label", "caption", "label_ori", "row_id", "dataset")


def build_variant(
    dataset_root: str | Path,
    spec: dict,
    out_dir: str | Path,
    name: str,
    supplement_root: str | Path | None = None,
    counts_root: str | Path | None = None,
) -> dict:
    """Write ``out_dir/index.parquet``, ``classes.tsv`` (the variant's label space),
    ``counts.tsv`` (class<TAB>count, label order) and a manifest; return the manifest.

    ``counts_root``: the dataset or variant folder whose label counts a ``match`` follows;
    ``supplement_root``: the folder of ``match.supplement``."""
    check_spec(name, spec)
    dataset_root, out_dir = Path(dataset_root), Path(out_dir)
    index = read_index(dataset_root)
    classes = read_classes(dataset_root)
    rows = _source_rows(index, classes, spec, name)
    extra: dict = {}
    if spec.get("labelled"):
        rows = rows[rows["label"] >= 0].reset_index(drop=True)
    if spec.get("classes"):
        rows, classes = subset_classes(rows, classes, subset_wnids(spec["classes"]))
        extra["label_space"] = classes["wnid"].tolist()
        log.info("variant %s: %d classes kept, %d rows", name, len(classes), len(rows))
    if spec.get("sample"):
        s = spec["sample"]
        rows = sample_rows(
            rows,
            s.get("fraction"),
            s.get("seed", 42),
            n=s.get("n"),
            sort_by=s.get("sort_by"),
            top_up=s.get("top_up"),
        )
    elif spec.get("trim"):
        t = spec["trim"]
        before = label_counts(rows["label"].to_numpy(), len(classes))
        rows, tail = trim_tail(rows, len(classes), t["tail"], t["ceil"], t.get("seed", 0))
        extra["tail"] = {
            "n": int(t["tail"]),
            "ceil": int(t["ceil"]),
            "labels": tail.tolist(),  # rarity order
            "wnids": classes["wnid"].to_numpy()[tail].tolist(),
            "counts_before": before[tail].tolist(),
        }
    elif spec.get("threshold"):
        t = spec["threshold"]
        rows, extra["steps"] = threshold_sample(
            rows, t["min_similarity"], t["n"], t.get("seed", 42), t.get("drop_from_top", 10)
        )
    elif spec.get("match"):
        m = spec["match"]
        if counts_root is None:
            raise UserError(
                f"variant {name}: match needs the folder of its counts_of (--counts-of)"
            )
        if m.get("supplement") and supplement_root is None:
            raise UserError(
                f"variant {name}: pass the folder of dataset {m['supplement']} (--supplement)"
            )
        target = align_counts(counts_by_wnid(counts_root), classes, f"variant {name}")
        sup = None
        if m.get("supplement"):
            rows["dataset"] = spec["dataset"]
            sup = _supplement_rows(Path(supplement_root), classes, spec, name)
        rows, extra["steps"] = match_counts(rows, target, m.get("seed", 0), sup)
    if rows.empty:
        raise UserError(
            f"variant {name} has no rows; check its captions, labelled and selection keys"
        )
    write_index(out_dir / "index.parquet", rows[[c for c in OUTPUT_COLUMNS if c in rows.columns]])
    write_classes(out_dir, list(zip(classes["wnid"], classes["name"], strict=True)))
    counts = label_counts(rows["label"].to_numpy(), len(classes))
    write_counts(out_dir / "counts.tsv", classes["name"].tolist(), counts)
    manifest = {
        "variant": name,
        "dataset": spec["dataset"],
        "spec": spec,
        "n_rows": int(len(rows)),
        "n_classes": int(len(classes)),
        "nonzero_classes": int((counts > 0).sum()),
        **extra,
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
