"""Small fact tables for class-frequency estimation, typed in from METHODS.md §0.2 and §2.3–2.4.

Nothing here comes from the authors' repository; these are the facts the spec states.
"""

from __future__ import annotations

#: Curated ImageNet synonym lists (``SYN``) that differ from the lower-cased WordNet lemmas:
#: the disambiguating additions of METHODS §0.2 and the lists of the nine negative-word classes
#: of §2.4. Each entry replaces the class's whole list. ``crane bird`` replaces the bare lemma
#: ``crane`` of n02012849 (class 134 "simply needs both tokens crane and bird"), and the ram's list
#: is just ``ram``.
IMAGENET_SYNONYM_OVERRIDES: dict[str, tuple[str, ...]] = {
    "n01756291": (
        "sidewinder",
        "horned rattlesnake",
        "crotalus cerastes",
        "sidewinder rattlesnake",
    ),
    "n02012849": ("crane bird",),
    "n02277742": ("ringlet", "ringlet butterfly"),
    "n02389026": ("sorrel", "sorrel horse", "common sorrel horse"),
    "n02412080": ("ram",),
    "n02422699": ("impala", "aepyceros melampus", "impala antelope"),
    "n02879718": ("bow", "hunting bow"),
    "n03126707": ("crane", "construction crane"),
    "n03535780": ("horizontal bar", "high bar", "gymnastic horizontal bar"),
    "n04347754": ("submarine", "pigboat", "sub", "u-boat"),
}

#: Negative-word rules (ImageNet only), in the order they are tested: a class whose lower-cased,
#: parenthesis-stripped phrase list contains ``trigger`` exactly gets ``negatives``; the first
#: rule that fires wins (METHODS §2.4). A caption holding any token of any negative phrase does
#: not count for that class.
NEGATIVE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sorrel", ("plant", "herb", "flower", "leaf")),
    ("horizontal bar", ("chart", "plot", "graph", "diagram")),
    ("impala", ("car", "automobile", "vehicle", "chevy")),
    ("bow", ("tie",)),
    ("ringlet", ("hair",)),
    (
        "ram",
        (
            "car",
            "truck",
            "automobile",
            "vehicle",
            "dodge",
            "logo",
            "computer",
            "memory",
            "random access",
            "chip",
            "review",
        ),
    ),
    ("crane", ("bird", "fish", "water", "wing", "leg", "zoo")),
    ("sub", ("sandwich", "bread", "italian", "meatball", "grill", "menu")),
    ("sidewinder", ("missile", "army", "military", "resort", "park")),
)

#: The nine ImageNet label indices the negative rules fire for (a consistency check).
NEGATIVE_CLASSES: tuple[int, ...] = (68, 322, 339, 348, 352, 456, 517, 602, 833)

#: Per concept set: a phrase equal to the key replaces the class's whole phrase list (§2.3).
SPECIAL_CASES: dict[str, dict[str, tuple[str, ...]]] = {
    "places365": {
        "arcade": ("arcade passageway", "arcade walkway", "arcade hallway", "arcade corridor"),
        "lock_chamber": ("lock chamber canal", "lock chamber waterway", "lock chamber water"),
    },
    "cub": {"cardinal": ("cardinal bird", "northern cardinal", "red cardinal")},
}
