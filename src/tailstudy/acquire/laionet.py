"""LAIONet (METHODS §1.2, Shirali & Hardt's construction, re-thresholded at 0.7).

1. Lemma table: every WordNet lemma of the 1000 ILSVRC synsets that belongs to exactly one of
   them (case-sensitive); synsets left without a lemma are dropped.
2. Substring labelling of each metadata part: ``t' = " " + TEXT with every ASCII punctuation
   character replaced by a space + " "`` (case kept); a row gets the wnid of every lemma ``L``
   with ``" " + L + " "`` in ``t'``. Global row id = ``part * 10**8 + row``.
3. Rows with exactly one wnid are kept (multi-label captions are dropped).
4. Similarity: cosine between the CLIP text embeddings of the caption (``"None"`` if missing)
   and of ``"<head lemma> which is <WordNet definition>"`` of its wnid (tokenizer truncation).
5. Keep rows whose NSFW tag is allowed (``UNLIKELY``) and whose similarity is > threshold.

The substring test is implemented as a lookup of the caption's space-separated word n-grams,
which is exactly equivalent (both sides of a match are spaces; lemmas hold single spaces) and
linear in the caption length; ``label_reference`` is the literal definition, for tests.
"""

from __future__ import annotations

import logging
import string
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from tailstudy.acquire.metadata import iter_metadata, row_ids
from tailstudy.concepts import Concept, imagenet_concepts
from tailstudy.io import UserError, atomic_path

log = logging.getLogger(__name__)

_PUNCT = str.maketrans({c: " " for c in string.punctuation})

#: Columns of a labelled part (and, with ``similarity``, of a similarity part).
LABEL_COLUMNS = ("row_id", "url", "caption", "wnid")


# --- step 1 -------------------------------------------------------------------------------------


def lemma_table(concepts: Sequence[Concept] | None = None) -> dict[str, str]:
    """Lemma -> wnid for the lemmas that occur in exactly one synset (case-sensitive)."""
    concepts = imagenet_concepts() if concepts is None else concepts
    owners: dict[str, set[str]] = {}
    for c in concepts:
        for lemma in c.lemmas:
            owners.setdefault(lemma, set()).add(c.wnid)
    return {lemma: next(iter(w)) for lemma, w in owners.items() if len(w) == 1}


def write_lemmas(path: str | Path, table: dict[str, str]) -> None:
    """``lemma<TAB>wnid`` lines, sorted by wnid then lemma, with a header."""
    rows = sorted(table.items(), key=lambda kv: (kv[1], kv[0]))
    with atomic_path(path) as tmp:
        tmp.write_text("lemma\twnid\n" + "".join(f"{lemma}\t{w}\n" for lemma, w in rows))


def read_lemmas(path: str | Path) -> dict[str, str]:
    try:
        df = pd.read_csv(path, sep="\t", quoting=3, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise UserError(f"lemma table {path} is missing: run its step first") from None
    if list(df.columns) != ["lemma", "wnid"]:
        raise UserError(f"{path} is not a lemma table (expected columns lemma, wnid)")
    return dict(zip(df["lemma"], df["wnid"], strict=True))


# --- steps 2-3 ----------------------------------------------------------------------------------


def normalise(text: str | None) -> str:
    """``" " + text.translate(punctuation -> " ") + " "``; ``None`` counts as empty."""
    return " " + (text if isinstance(text, str) else "").translate(_PUNCT) + " "


def label_reference(text: str | None, table: dict[str, str]) -> set[str]:
    """The wnids of a caption by the literal substring rule (slow; the definition)."""
    t = normalise(text)
    return {w for lemma, w in table.items() if f" {lemma} " in t}


class Labeller:
    """The wnids of captions by word n-gram lookup (equivalent to ``label_reference``)."""

    def __init__(self, table: dict[str, str]):
        self.table = {lemma: w for lemma, w in table.items() if lemma and lemma == lemma.strip()}
        self.max_words = max((len(lemma.split(" ")) for lemma in self.table), default=1)
        self.first_words = {lemma.split(" ")[0] for lemma in self.table}

    def __call__(self, text: str | None) -> set[str]:
        words = normalise(text).split(" ")
        table, first, out = self.table, self.first_words, set()
        n = len(words)
        for i, w in enumerate(words):
            if w not in first:
                continue
            for k in range(1, min(self.max_words, n - i) + 1):
                hit = table.get(" ".join(words[i : i + k]))
                if hit is not None:
                    out.add(hit)
        return out


def label_part(
    path: str | Path,
    part: int,
    table: dict[str, str],
    out: str | Path,
    *,
    url_column: str = "URL",
    caption_column: str = "TEXT",
    nsfw_column: str | None = "NSFW",
) -> dict:
    """Label one LAION metadata part; write its single-label rows; return counts."""
    labeller = Labeller(table)
    columns = {url_column: "url", caption_column: "caption"}
    if nsfw_column:
        columns[nsfw_column] = "nsfw"
    optional = {"similarity": "laion_similarity", "LICENSE": "license"}
    kept, counts, start, t0 = [], Counter(), 0, time.perf_counter()
    for batch in iter_metadata(path, columns, optional=optional):
        ids = row_ids(part, start, len(batch))
        start += len(batch)
        labels = [labeller(t) for t in batch["caption"].tolist()]
        sizes = np.fromiter((len(s) for s in labels), dtype=np.int64, count=len(labels))
        counts["rows"] += len(batch)
        counts["labelled"] += int((sizes > 0).sum())
        counts["multi_label"] += int((sizes > 1).sum())
        single = np.flatnonzero(sizes == 1)
        if len(single):
            rows = batch.iloc[single].copy()
            rows.insert(0, "row_id", ids[single])
            rows["wnid"] = [next(iter(labels[i])) for i in single]
            kept.append(rows)
        log.info(
            "part %d: %d rows labelled (%.0f rows/s), %d single-label so far",
            part,
            start,
            start / max(time.perf_counter() - t0, 1e-9),
            sum(len(k) for k in kept),
        )
    df = pd.concat(kept, ignore_index=True) if kept else _empty_labelled(nsfw_column)
    counts["single_label"] = len(df)
    counts["classes"] = int(df["wnid"].nunique())
    _write_parquet(out, df)
    return dict(counts)


def _empty_labelled(nsfw_column) -> pd.DataFrame:
    cols = {"row_id": pd.Series([], dtype=np.int64)}
    cols.update({c: pd.Series([], dtype=object) for c in ("url", "caption", "wnid")})
    if nsfw_column:
        cols["nsfw"] = pd.Series([], dtype=object)
    return pd.DataFrame(cols)


def _write_parquet(path: str | Path, df: pd.DataFrame) -> None:
    with atomic_path(path, suffix=".parquet") as tmp:
        df.to_parquet(tmp, index=False)


# --- step 4 -------------------------------------------------------------------------------------


def synset_query(concept: Concept) -> str:
    """``"<head lemma> which is <definition>"`` (the synset's head name, '_' -> ' ')."""
    return f"{concept.lemmas[0].replace('_', ' ')} which is {concept.definition}"


def load_text_encoder(spec: dict, device: str = "cpu"):
    """An open_clip model and tokenizer from ``{open_clip: arch, pretrained: tag or file}`` or
    ``{open_clip: arch, checkpoint: file}`` (a state dict, or a ``model.pt`` of this project),
    built with the activation the weights were trained with (QuickGELU for OpenAI's weights:
    open_clip's pretrained config says; a ``model.pt`` records it; a local OpenAI weights file
    needs the ``-quickgelu`` architecture, e.g. ``ViT-B-32-quickgelu``)."""
    import open_clip

    from tailstudy.models.factory import (
        create_clip,
        get_tokenizer,
        load_pretrained_clip,
        read_checkpoint,
        register_presets,
    )

    register_presets()
    arch = spec.get("open_clip")
    if not arch:
        raise UserError("text_encoder needs open_clip (an architecture, e.g. ViT-B-32)")
    if arch not in open_clip.list_models():
        raise UserError(f"text_encoder: open_clip has no architecture {arch!r}")
    if spec.get("checkpoint"):
        path = Path(spec["checkpoint"])
        if not path.is_file():
            raise UserError(f"text_encoder checkpoint {path} does not exist")
        state, quick_gelu = read_checkpoint(path)
        model = create_clip(arch, quick_gelu)
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).splitlines()[0]
            raise UserError(
                f"text_encoder checkpoint {path} does not fit {arch}: {first}"
            ) from None
    elif spec.get("pretrained"):
        try:
            model = load_pretrained_clip(arch, spec["pretrained"])
        except (RuntimeError, OSError, ValueError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise UserError(
                f"text_encoder {arch}/{spec['pretrained']} could not be loaded ({first}); "
                "download the weights where there is internet, or give a local file"
            ) from None
    else:
        raise UserError("text_encoder needs pretrained (a tag or a file) or checkpoint")
    model.eval().to(device)
    return model, get_tokenizer(arch)


def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 1024):
    """L2-normalised text embeddings (float32, on the CPU), batch by batch."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            tokens = tokenizer(list(texts[i : i + batch_size])).to(device)
            out.append(F.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.empty(0, 0)


def similarity_part(
    rows_path: str | Path,
    encoder: dict,
    out: str | Path,
    *,
    batch_size: int = 1024,
    device: str = "cpu",
) -> dict:
    """Add ``similarity`` (caption vs. its synset's query) to one labelled part."""
    import torch

    df = pd.read_parquet(rows_path)
    by_wnid = {c.wnid: c for c in imagenet_concepts()}
    unknown = sorted(set(df["wnid"]) - set(by_wnid))
    if unknown:
        raise UserError(f"{rows_path}: wnids {unknown[:3]} are not ImageNet-1k classes")
    model, tokenizer = load_text_encoder(encoder, device)
    wnids = sorted(set(df["wnid"]))
    queries = encode_texts(model, tokenizer, [synset_query(by_wnid[w]) for w in wnids])
    q_index = {w: i for i, w in enumerate(wnids)}
    sims = np.empty(len(df), dtype=np.float32)
    captions = [c if isinstance(c, str) and c else "None" for c in df["caption"].tolist()]
    qi = torch.as_tensor(df["wnid"].map(q_index).to_numpy(np.int64))
    t0, step = time.perf_counter(), max(batch_size, 1) * 64
    for start in range(0, len(df), step):
        emb = encode_texts(model, tokenizer, captions[start : start + step], batch_size)
        sims[start : start + len(emb)] = (emb * queries[qi[start : start + len(emb)]]).sum(-1)
        done = start + len(emb)
        log.info(
            "similarity: %d / %d captions (%.0f/s)",
            done,
            len(df),
            done / max(time.perf_counter() - t0, 1e-9),
        )
    df["similarity"] = sims
    _write_parquet(out, df)
    return {"rows": len(df), "mean_similarity": float(sims.mean()) if len(sims) else None}


# --- step 5 -------------------------------------------------------------------------------------


def filter_rows(
    paths: Iterable[str | Path],
    threshold: float,
    nsfw_keep: Sequence[str] | None,
) -> tuple[pd.DataFrame, dict]:
    """Concatenate similarity parts, keep allowed NSFW tags and similarity > threshold, sorted by
    row id; return the rows and counts."""
    parts = [pd.read_parquet(p) for p in paths]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if df.empty:
        raise UserError("LAIONet: no single-label rows in any metadata part; check the captions")
    counts = {"single_label": len(df)}
    if nsfw_keep:
        if "nsfw" not in df.columns:
            raise UserError("LAIONet: nsfw_keep is set but the metadata has no NSFW column")
        df = df[df["nsfw"].isin(list(nsfw_keep))]
        counts["nsfw_kept"] = len(df)
    df = df[df["similarity"] > threshold]
    counts["kept"] = len(df)
    counts["classes"] = int(df["wnid"].nunique())
    if df.empty:
        raise UserError(
            f"LAIONet: no row has similarity > {threshold} (of {counts['single_label']} "
            "single-label rows); lower the threshold or check the text encoder"
        )
    return df.sort_values("row_id").reset_index(drop=True), counts
