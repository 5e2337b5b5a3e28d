"""Captions of the embedded world.

Curated records carry ImageNet-Captions' three fields, with its field presence (title ≈ 99 %,
tags ≈ 91 %, description ≈ 60 %):

* ``title`` — the class name, a WordNet lemma, or unrelated words;
* ``tags`` — lemmas, attribute words, a co-occurring concept, generic photo words;
* ``description`` — a sentence naming some of the image's attributes, sometimes the class name,
  sometimes a piece of the WordNet definition, often opened by everyday photographic phrasing
  ("a blurry photo of ...") as real captions are.

Web records carry one alt-text string: noisier, sometimes without the class name, sometimes
naming a second concept. Every attribute word in a caption is a facet actually drawn in the image.
"""

from __future__ import annotations

import numpy as np

PRESENCE = {"title": 0.99, "tags": 0.91, "description": 0.60}
CONTEXT_PHRASE = {
    "grass": "on the grass",
    "water": "in the water",
    "sand": "on the sand",
    "snow": "in the snow",
    "sky": "against the sky",
    "indoor": "indoors",
}
SIZE_WORD = {"small": "small", "medium": "medium-sized", "large": "large"}
UNRELATED_TITLES = (
    "untitled",
    "my photo",
    "holiday pictures",
    "IMG 2041",
    "DSC 0193",
    "summer trip",
    "new camera test",
    "weekend",
    "from the archive",
)
GENERIC_TAGS = (
    "photo",
    "flickr",
    "nikon",
    "canon",
    "2008",
    "nature",
    "travel",
    "explore",
    "macro",
    "outdoor",
)
WEB_NOISE = (
    "free",
    "download",
    "stock",
    "image",
    "best",
    "2019",
    "hd",
    "wallpaper",
    "buy",
    "online",
    "cheap",
    "photo",
    "vector",
    "high",
    "quality",
    "new",
    "sale",
)
NOUNS = ("object", "thing", "item", "shape")
# everyday photographic phrasing that opens many real captions ("a blurry photo of ...")
OPENERS = (
    "a photo of",
    "a picture of",
    "a close-up photo of",
    "a blurry photo of",
    "a bright photo of",
    "a dark photo of",
    "a cropped photo of",
    "my photo of",
    "a nice picture of",
    "an image of",
    "a good photo of",
    "a low resolution photo of",
)


def _definition_piece(definition: str) -> str:
    return definition.split(";")[0].split(",")[0].strip()


def _attribute_words(attrs: dict[str, str], rng: np.random.Generator, p: float) -> list[str]:
    """Single attribute words (context as its noun), each facet kept with probability ``p``."""
    return [v for f, v in attrs.items() if f != "size" and rng.random() < p]


def _description(wc, attrs: dict[str, str], rng: np.random.Generator) -> str:
    keep = {f: rng.random() < 0.6 for f in attrs}
    if sum(keep.values()) < 2:  # at least two attributes
        for f in rng.choice(list(attrs), 2, replace=False):
            keep[f] = True
    name = wc.concept.name if rng.random() < 0.35 else str(rng.choice(NOUNS))
    words = [str(rng.choice(OPENERS)), "a"] if rng.random() < 0.7 else ["a"]
    if keep["size"]:
        words.append(SIZE_WORD[attrs["size"]])
    if keep["colour"]:
        words.append(attrs["colour"])
    if keep["shape"]:
        words.append(attrs["shape"])
    words.append(name)
    if keep["pattern"]:
        words.append(
            f"with a {attrs['pattern']} pattern"
            if attrs["pattern"] != "plain"
            else "with no pattern"
        )
    if keep["context"]:
        words.append(CONTEXT_PHRASE[attrs["context"]])
    sentence = " ".join(words)
    if rng.random() < 0.5:
        sentence += ", " + _definition_piece(wc.concept.definition)
    return sentence


def _title(wc, rng: np.random.Generator) -> str:
    u = rng.random()
    if u < 0.5:
        return wc.concept.name
    if u < 0.75:
        return str(rng.choice(wc.concept.lemmas))
    return str(rng.choice(UNRELATED_TITLES))


def _tags(wc, attrs, other, rng: np.random.Generator) -> list[str]:
    tags = [lem for lem in wc.concept.lemmas if rng.random() < 0.4]
    tags += _attribute_words(attrs, rng, 0.45)
    if other is not None:
        tags.append(other.concept.name)
    tags += list(rng.choice(GENERIC_TAGS, int(rng.integers(1, 3)), replace=False))
    order = rng.permutation(len(tags))
    return [tags[i] for i in order]


def _alttext(wc, attrs, other, rng: np.random.Generator) -> str:
    parts = list(rng.choice(WEB_NOISE, int(rng.integers(0, 3)), replace=False))
    if rng.random() < 0.3:
        parts += [str(rng.choice(OPENERS)), "the"]
    parts += _attribute_words(attrs, rng, 0.3)
    u = rng.random()
    if u < 0.55:
        parts.append(wc.concept.name)
    elif u < 0.75:
        parts.append(str(rng.choice(wc.concept.lemmas)))
    if other is not None:
        parts += ["and", other.concept.name]
    parts += list(rng.choice(WEB_NOISE, int(rng.integers(1, 3)), replace=False))
    return " ".join(parts)


def captions_for(
    members, concept_idx, facets, kind: str, rng: np.random.Generator, world
) -> list[dict]:
    """One record (caption fields + concepts depicted or named) per image; attribute words
    describe the image's own facets (``facets``, one row per image)."""
    from tailstudy.embedded.world import attributes_of

    rows = []
    for i, f in zip(concept_idx, facets, strict=True):
        wc = members[i]
        attrs = attributes_of(f)
        if kind == "fields":
            other = (
                world.concepts[int(rng.integers(len(world.concepts)))]
                if rng.random() < 0.2
                else None
            )
            title = _title(wc, rng) if rng.random() < PRESENCE["title"] else ""
            tags = _tags(wc, attrs, other, rng) if rng.random() < PRESENCE["tags"] else []
            desc = _description(wc, attrs, rng) if rng.random() < PRESENCE["description"] else ""
            caption = " ".join(x for x in (title, " ".join(tags), desc) if x)
            rows.append(
                {
                    "caption": caption,
                    "title": title,
                    "tags": tags,
                    "description": desc,
                    "concepts": [wc.concept.wnid] + ([other.concept.wnid] if other else []),
                }
            )
        else:
            other = (
                world.concepts[int(rng.integers(len(world.concepts)))]
                if rng.random() < 0.15
                else None
            )
            rows.append(
                {
                    "caption": _alttext(wc, attrs, other, rng),
                    "concepts": [wc.concept.wnid] + ([other.concept.wnid] if other else []),
                }
            )
    return rows
