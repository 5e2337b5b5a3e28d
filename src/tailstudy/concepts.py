"""ImageNet concept metadata: label order, class names, WordNet lemmas and definitions.

Everything comes from packages that ship it (timm for WordNet metadata, open_clip for the
curated zero-shot names and prompt templates); nothing is downloaded.

Label index = position of the wnid in the lexicographically sorted list of the 1000 ILSVRC-2012
wnids (the torchvision ``ImageFolder`` order).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

# Tian et al.'s CMC ImageNet-100 classes, 0-based ImageNet-1k label indices, ascending.
_IMAGENET100 = """
15 45 54 57 64 74 90 99 119 120 122 131 137 151 155 157 158 166 167 169 176 180 209 211 222
228 234 236 242 246 267 268 272 275 277 281 299 305 313 317 331 342 368 374 407 421 431 449
452 455 479 494 498 503 508 544 560 570 592 593 599 606 608 619 620 653 659 662 665 667 674
682 703 708 717 724 748 758 765 766 772 775 796 798 830 854 857 858 872 876 882 904 908 936
938 953 959 960 993 994
"""
IMAGENET100_INDICES: tuple[int, ...] = tuple(int(i) for i in _IMAGENET100.split())


@dataclass(frozen=True)
class Concept:
    """One ImageNet-1k class."""

    index: int  # ImageNet-1k label index
    wnid: str
    name: str  # open_clip's curated zero-shot name (NAMES_ZS; see imagenet_names for the others)
    lemmas: tuple[str, ...]  # WordNet lemma names, '_' -> ' ', case kept
    definition: str  # WordNet gloss


def _timm_info_file(name: str) -> str:
    from importlib.resources import files

    return files("timm.data").joinpath("_info", name).read_text()


@cache
def _synset_table(name: str) -> dict[str, str]:
    out = {}
    for line in _timm_info_file(name).splitlines():
        if line.strip():
            wnid, value = line.split("\t", 1)
            out[wnid] = value.strip()
    return out


@cache
def imagenet_concepts() -> tuple[Concept, ...]:
    """The 1000 ImageNet-1k classes in label order."""
    import open_clip

    wnids = sorted(w for w in _timm_info_file("imagenet_synsets.txt").split() if w)
    if len(wnids) != 1000:
        raise RuntimeError(f"timm's imagenet_synsets.txt lists {len(wnids)} synsets, expected 1000")
    lemmas = _synset_table("imagenet_synset_to_lemma.txt")
    definitions = _synset_table("imagenet_synset_to_definition.txt")
    names = open_clip.IMAGENET_CLASSNAMES
    return tuple(
        Concept(
            index=i,
            wnid=w,
            name=names[i],
            lemmas=tuple(x.strip().replace("_", " ") for x in lemmas[w].split(",") if x.strip()),
            definition=definitions[w],
        )
        for i, w in enumerate(wnids)
    )


#: ImageNet label indices where the descriptor names (``NAMES_DESC``) differ from open_clip's
#: zero-shot names (``NAMES_ZS``): index -> ``NAMES_DESC`` name (METHODS §0.2).
DESC_NAME_OVERRIDES: dict[int, str] = {
    27: "eft",  # NAMES_ZS: newt
    638: "maillot",  # NAMES_ZS: tights
    744: "projectile",  # NAMES_ZS: missile
    836: "sunglass",  # NAMES_ZS: sunglasses
}

#: The class-name table each purpose uses (METHODS §0.2, §3.1, §4.4, §5.1): ``NAMES_ZS`` for
#: every zero-shot classifier; ``NAMES_DESC`` for the class name in the IN-Caps captions (the
#: prefix of the natural-language variants and the template variants), the SL frozen-head
#: prompts and the first column of the frequency files.
NAME_TABLE_OF_PURPOSE: dict[str, str] = {
    "zero-shot": "NAMES_ZS",
    "caption": "NAMES_DESC",
    "head-prompt": "NAMES_DESC",
    "frequency": "NAMES_DESC",
}


@cache
def imagenet_names(purpose: str) -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, in label order, of the table ``purpose`` uses (a key of
    :data:`NAME_TABLE_OF_PURPOSE`)."""
    if purpose not in NAME_TABLE_OF_PURPOSE:
        raise ValueError(
            f"unknown class-name purpose {purpose!r}; expected one of {sorted(NAME_TABLE_OF_PURPOSE)}"
        )
    zs = tuple(c.name for c in imagenet_concepts())
    if NAME_TABLE_OF_PURPOSE[purpose] == "NAMES_ZS":
        return zs
    return tuple(DESC_NAME_OVERRIDES.get(i, n) for i, n in enumerate(zs))


def names_for(wnids, names, purpose: str) -> list[str]:
    """The names a label space (parallel ``wnids`` and ``names``, e.g. a variant's classes.tsv)
    goes by for ``purpose``: an ImageNet-1k class takes its name in that purpose's table; any
    other class (a transfer set's) keeps its own name."""
    table = dict(zip((c.wnid for c in imagenet_concepts()), imagenet_names(purpose), strict=True))
    return [table.get(w, n) for w, n in zip(wnids, names, strict=True)]


def concept_subset(name: str) -> tuple[Concept, ...]:
    """A named ImageNet class subset: ``imagenet1k`` or ``imagenet100``."""
    allc = imagenet_concepts()
    if name == "imagenet1k":
        return allc
    if name == "imagenet100":
        return tuple(allc[i] for i in IMAGENET100_INDICES)
    raise ValueError(f"unknown concept set {name!r}; expected 'imagenet1k' or 'imagenet100'")


def openai_templates() -> tuple:
    """open_clip's 80 OpenAI ImageNet prompt templates (callables ``name -> prompt``)."""
    import open_clip

    return tuple(open_clip.OPENAI_IMAGENET_TEMPLATES)
