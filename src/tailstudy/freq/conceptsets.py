"""Class queries for caption matching (METHODS §2.3–2.4): phrases and negative words per class.

A :class:`ConceptSet` is a list of :class:`ClassQuery` in label order. Phrases and negatives are
raw lower-case strings; the matcher (reference or engine) normalises them with the same function
it applies to captions (§2.2).

Concept sets:

* ``imagenet`` (alias ``imagenet1k``): the 1000 ILSVRC-2012 classes. Names are ``NAMES_DESC``
  (open_clip's names with the four differences of §0.2). Synonyms ``SYN`` are the lower-cased
  WordNet lemmas that timm ships, with the curated lists of
  :data:`~tailstudy.freq.data.IMAGENET_SYNONYM_OVERRIDES`; the published synonym JSON (wnid ->
  list) can replace them. Negative words follow :data:`~tailstudy.freq.data.NEGATIVE_RULES`.
* ``imagenet100``: the same queries for the 100 classes of
  :data:`tailstudy.concepts.IMAGENET100_INDICES`, in that order.
* ``pets``, ``flowers102``, ``eurosat``: names from clip-benchmark's ``en_classnames.json``.
* ``cub``, ``food101``, ``places365``, ``dtd``: no installable package ships their class names, so
  these sets need a class-name file (see :func:`read_class_names`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tailstudy.freq.data import (
    IMAGENET_SYNONYM_OVERRIDES,
    NEGATIVE_RULES,
    SPECIAL_CASES,
)
from tailstudy.io import UserError

#: Every concept-set name :func:`load_concept_set` accepts.
CONCEPT_SETS: tuple[str, ...] = (
    "imagenet",
    "imagenet1k",
    "imagenet100",
    "cub",
    "food101",
    "pets",
    "flowers102",
    "places365",
    "eurosat",
    "dtd",
)

#: Concept sets whose names clip-benchmark ships (set -> key in ``en_classnames.json``).
CLIP_BENCHMARK_KEYS: dict[str, str] = {
    "pets": "pets",
    "flowers102": "flowers",
    "eurosat": "eurosat",
}

#: Concept sets that need a user-provided class-name file, with where the names come from.
NAME_FILE_SETS: dict[str, str] = {
    "cub": "CUB-200-2011 classes.txt",
    "food101": "Food-101 meta/classes.txt",
    "places365": "Places365 categories_places365.txt",
    "dtd": "the 47 DTD category folder names, one per line",
}


@dataclass(frozen=True)
class ClassQuery:
    """One class: its output name, its phrases (any one matches) and its negative phrases."""

    name: str
    phrases: tuple[str, ...]
    negatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConceptSet:
    """Class queries in label order."""

    name: str
    classes: tuple[ClassQuery, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def subset(self, indices: Sequence[int], name: str) -> ConceptSet:
        return ConceptSet(name, tuple(self.classes[i] for i in indices))


def remove_parenthesised(s: str) -> str:
    """Delete every ``(...)`` group and strip: ``'arcade (passageway)'`` -> ``'arcade'``."""
    return re.sub(r"\([^()]*\)", "", s).strip()


def name_phrases(name: str) -> tuple[str, ...]:
    """Phrases of a non-ImageNet class name (§2.3): lower-case, drop ``(...)``, split on
    ``" or "`` / ``" / "``, strip; empty pieces are dropped."""
    pieces = re.split(r" or | / ", remove_parenthesised(name.lower()))
    return tuple(p.strip() for p in pieces if p.strip())


def negatives_for(phrases: Sequence[str]) -> tuple[str, ...]:
    """The negative phrases of the first rule whose trigger is one of ``phrases`` (§2.4)."""
    for trigger, negatives in NEGATIVE_RULES:
        if trigger in phrases:
            return negatives
    return ()


def imagenet_desc_names() -> list[str]:
    """``NAMES_DESC``: the 1000 class names of the frequency files, in label order."""
    from tailstudy.concepts import imagenet_names

    return list(imagenet_names("frequency"))


def imagenet_synonyms() -> dict[str, tuple[str, ...]]:
    """The embedded ``SYN``: wnid -> lower-cased WordNet lemmas, or the curated override."""
    from tailstudy.concepts import imagenet_concepts

    out = {}
    for c in imagenet_concepts():
        lemmas = tuple(dict.fromkeys(x.lower() for x in c.lemmas))
        out[c.wnid] = IMAGENET_SYNONYM_OVERRIDES.get(c.wnid, lemmas)
    return out


def imagenet_concept_set(
    synonyms: Mapping[str, Sequence[str]] | None = None, names: Sequence[str] | None = None
) -> ConceptSet:
    """The ImageNet-1k queries; ``synonyms`` (wnid -> strings) replaces the embedded ``SYN``."""
    from tailstudy.concepts import imagenet_concepts

    concepts = imagenet_concepts()
    syn = imagenet_synonyms() if synonyms is None else synonyms
    missing = [c.wnid for c in concepts if c.wnid not in syn]
    if missing:
        raise UserError(f"the synonym table lacks {len(missing)} ImageNet wnids, e.g. {missing[0]}")
    names = imagenet_desc_names() if names is None else list(names)
    if len(names) != len(concepts):
        raise UserError(f"ImageNet needs {len(concepts)} class names, got {len(names)}")
    classes = []
    for c, name in zip(concepts, names, strict=True):
        phrases = tuple(remove_parenthesised(p.lower()) for p in syn[c.wnid])
        classes.append(ClassQuery(name, phrases, negatives_for(phrases)))
    return ConceptSet("imagenet", tuple(classes))


def named_concept_set(set_name: str, names: Sequence[str]) -> ConceptSet:
    """A non-ImageNet concept set from its class names, special cases of §2.3 applied."""
    special = SPECIAL_CASES.get(set_name, {})
    classes = []
    for name in names:
        phrases = name_phrases(name)
        for trigger, replacement in special.items():
            if trigger in phrases:
                phrases = replacement
                break
        if not phrases:
            raise UserError(f"{set_name}: class name {name!r} leaves no phrase")
        classes.append(ClassQuery(name, phrases))
    return ConceptSet(set_name, tuple(classes))


def clip_benchmark_classnames(key: str) -> list[str]:
    """Class names from clip-benchmark's ``en_classnames.json`` (read as package data)."""
    from importlib.resources import files

    try:
        text = files("clip_benchmark").joinpath("datasets", "en_classnames.json").read_text()
    except ModuleNotFoundError:
        raise UserError(
            "class names for this concept set come from clip-benchmark: "
            "pip install clip-benchmark==1.6.2 (or pass a class-name file)"
        ) from None
    return list(json.loads(text)[key])


_CUB_LINE = re.compile(r"^\d+\s+\d+\.(.+)$")  # CUB classes.txt: "1 001.Black_footed_Albatross"
_PLACES_LINE = re.compile(r"^/[a-z]/(.+?)\s+\d+$")  # categories_places365.txt: "/a/airfield 0"


def read_class_names(path: str | Path) -> list[str]:
    """Class names from a file, in label order.

    * ``.json``: an object (its keys, e.g. a descriptor file) or a list of names.
    * anything else: one name per line, blank lines skipped. Lines in the official CUB
      (``1 001.Black_footed_Albatross``) and Places365 (``/a/airfield 0``) formats are reduced to
      the name (``Black_footed_Albatross``, ``airfield``; ``/b/bakery/shop 30`` -> ``bakery/shop``).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"class-name file {path} does not exist") from None
    if path.suffix == ".json":
        obj = json.loads(text)
        names = list(obj.keys()) if isinstance(obj, dict) else list(obj)
    else:
        names = []
        for line in text.splitlines():
            line = line.strip()
            if not line:
                continue
            m = _CUB_LINE.match(line) or _PLACES_LINE.match(line)
            names.append(m.group(1) if m else line)
    if not names or not all(isinstance(n, str) for n in names):
        raise UserError(f"{path} holds no class names (expected strings)")
    return names


def read_synonyms(path: str | Path) -> dict[str, list[str]]:
    """A synonym table: JSON object wnid -> list of strings (the published ``SYN`` format)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"synonym file {path} does not exist") from None
    if not isinstance(obj, dict) or not all(isinstance(v, list) for v in obj.values()):
        raise UserError(f"{path}: expected a JSON object wnid -> list of strings")
    return obj


def load_concept_set(
    name: str,
    class_names: str | Path | Sequence[str] | None = None,
    synonyms: str | Path | Mapping[str, Sequence[str]] | None = None,
) -> ConceptSet:
    """A concept set by name; ``class_names`` (a file or a list) overrides the built-in names.

    ``synonyms`` (a file or a mapping) only applies to ``imagenet``/``imagenet100``.
    """
    if isinstance(class_names, str | Path):
        class_names = read_class_names(class_names)
    if isinstance(synonyms, str | Path):
        synonyms = read_synonyms(synonyms)
    if name not in CONCEPT_SETS:
        raise UserError(f"unknown concept set {name!r}; expected one of {', '.join(CONCEPT_SETS)}")
    if synonyms is not None and name not in ("imagenet", "imagenet1k", "imagenet100"):
        raise UserError("a synonym table only applies to the ImageNet concept sets")
    if name in ("imagenet", "imagenet1k"):
        return imagenet_concept_set(synonyms, class_names)
    if name == "imagenet100":
        from tailstudy.concepts import IMAGENET100_INDICES

        full = imagenet_concept_set(synonyms)
        sub = full.subset(IMAGENET100_INDICES, "imagenet100")
        if class_names is not None:
            if len(class_names) != len(sub):
                raise UserError(f"imagenet100 needs {len(sub)} class names, got {len(class_names)}")
            sub = ConceptSet(
                sub.name,
                tuple(
                    ClassQuery(n, c.phrases, c.negatives)
                    for n, c in zip(class_names, sub.classes, strict=True)
                ),
            )
        return sub
    if class_names is None:
        if name in NAME_FILE_SETS:
            raise UserError(
                f"no installable package ships the {name} class names: pass a class-name file "
                f"({NAME_FILE_SETS[name]})"
            )
        class_names = clip_benchmark_classnames(CLIP_BENCHMARK_KEYS[name])
    return named_concept_set(name, class_names)
