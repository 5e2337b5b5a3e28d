"""Numbers the paper prints that this workflow computes, typed in (METHODS §3, §6.3).

Wen et al., NeurIPS 2024: the Fig. 11 Pearson/Spearman table, the Fig. 13 Spearman matrices,
Table 1 (frequencies and accuracies of YFCC-15M's tail classes), Table 2 (DINO linear probing)
and the dataset sizes of §3. :mod:`tailstudy.analysis.compare` sets them beside ours.
"""

from __future__ import annotations

#: Corpora of Fig. 13 in the paper's order, by the labels the paper config gives them.
FIG13_CORPORA = ("CC-12M", "YFCC-15M", "LAION-400M", "MetaCLIP-400M", "LAION-2B", "MetaCLIP-2.5B")
_ABBR = dict(zip(("CC", "YF", "L4", "M4", "L2", "M25"), FIG13_CORPORA, strict=True))
_FIG13_PAIRS = [
    "YF/CC",
    "L4/CC",
    "L4/YF",
    "M4/CC",
    "M4/YF",
    "M4/L4",
    "L2/CC",
    "L2/YF",
    "L2/L4",
    "L2/M4",
    "M25/CC",
    "M25/YF",
    "M25/L4",
    "M25/M4",
    "M25/L2",
]
_FIG13_ROWS = {
    "imagenet": ".82 .93 .78 .76 .69 .76 .93 .77 .99 .76 .77 .68 .77 1 .78",
    "cub": ".70 .74 .85 .50 .49 .52 .74 .85 .97 .52 .50 .49 .52 1 .52",
    "food101": ".87 .88 .85 .68 .63 .67 .89 .86 .99 .66 .68 .63 .67 1 .66",
    "pets": ".64 .79 .81 .63 .68 .77 .82 .85 .94 .80 .66 .66 .76 .98 .81",
    "flowers102": ".85 .89 .95 .73 .82 .83 .90 .95 .99 .82 .73 .82 .83 1 .82",
    "places365": ".91 .97 .91 .77 .80 .82 .97 .91 1 .81 .77 .80 .83 1 .81",
    "eurosat": ".96 1 .96 .89 .89 .89 1 .96 1 .89 .89 .89 .89 1 .89",
    "dtd": ".92 .91 .84 .93 .84 .90 .92 .85 1 .91 .93 .84 .89 1 .90",
}
#: Fig. 13: (concept set, corpus a, corpus b) -> Spearman ρ, lower triangle (a below b).
FIG13 = {
    (cs, _ABBR[p.split("/")[0]], _ABBR[p.split("/")[1]]): float(v)
    for cs, row in _FIG13_ROWS.items()
    for p, v in zip(_FIG13_PAIRS, row.split(), strict=True)
}

#: Fig. 11: (panel, model, statistic, correlation) -> value; "—" cells are left out.
#: Panel a: IN-Caps; b: LAIONet; c: YFCC-15M.
FIG11 = {}
for _panel, _rows in {
    "a": {
        ("SL", "acc"): (0.55, None, 0.52),
        ("CLIP", "acc"): (0.27, None, 0.28),
        ("SL", "pred"): (0.59, None, 0.57),
        ("CLIP", "pred"): (0.05, None, 0.08),
    },
    "b": {
        ("SL", "acc"): (0.32, 0.58, 0.63),
        ("CLIP", "acc"): (0.27, 0.50, 0.52),
        ("SL", "pred"): (0.60, 0.62, 0.76),
        ("CLIP", "pred"): (0.26, 0.34, 0.32),
    },
    "c": {
        ("SL", "acc"): (0.20, 0.56, 0.64),
        ("CLIP", "acc"): (0.11, 0.38, 0.41),
        ("SL", "pred"): (0.91, 0.41, 0.82),
        ("CLIP", "pred"): (0.03, 0.08, 0.14),
    },
}.items():
    for (_model, _stat), _vals in _rows.items():
        for _corr, _v in zip(("pearson", "pearson_log", "spearman"), _vals, strict=True):
            if _v is not None:
                FIG11[(_panel, _model, _stat, _corr)] = _v

#: Table 1: YFCC-15M caption frequencies below 10 (descending) and RN50/yfcc15m IN-val
#: accuracies (%) of the same classes, in the paper's row order.
TABLE1_FREQ = [
    int(x)
    for x in [
        "9",
        "9",
        "8",
        "6",
        "5",
        "5",
        "5",
        "5",
        "5",
        "4",
        "4",
        "4",
        "4",
        "3",
        "3",
        "3",
        "2",
        "2",
        "2",
        "2",
        "2",
        "1",
        "1",
        "1",
        "1",
        "1",
        "1",
        "0",
        "0",
    ]
]
TABLE1_ACC = [
    int(x)
    for x in [
        "46",
        "34",
        "44",
        "98",
        "14",
        "10",
        "44",
        "48",
        "42",
        "62",
        "52",
        "50",
        "90",
        "88",
        "94",
        "100",
        "16",
        "12",
        "50",
        "22",
        "74",
        "82",
        "0",
        "44",
        "72",
        "22",
        "6",
        "48",
        "20",
    ]
]

#: Table 2 (DINO linear probing, 100 epochs): (pretrain, vocabulary, dataset) -> value.
TABLE2_DATASETS = [
    "Aircraft",
    "Birdsnap",
    "Caltech101",
    "Cars",
    "CIFAR10",
    "CIFAR100",
    "DTD",
    "Flowers",
    "Food",
    "Pets",
    "SUN397",
    "VOC2007",
    "Avg",
]
_TABLE2_ROWS = {
    (
        "ImageNet (vanilla)",
        65536,
    ): "27.0 37.1 82.3 23.6 86.4 62.9 68.7 80.8 55.8 66.4 57.0 81.6 60.8",
    (
        "LAIONet (vanilla)",
        16384,
    ): "29.7 28.2 78.2 22.5 83.6 60.7 67.9 78.3 49.5 55.0 55.9 76.1 57.1",
    (
        "LAIONet (vanilla)",
        65536,
    ): "26.7 24.6 77.8 24.6 83.5 60.0 67.1 79.3 48.6 55.5 55.4 77.3 56.7",
    ("LAIONet + sub voc", 1024): "30.8 27.2 78.6 23.8 83.9 61.4 68.1 80.5 50.7 57.7 56.0 77.2 58.0",
    ("LAIONet + sub voc", 4096): "30.3 30.1 78.9 24.8 84.6 63.4 69.5 77.7 53.3 61.0 56.9 78.6 59.1",
    (
        "LAIONet + sub voc",
        16384,
    ): "32.2 31.2 79.4 25.2 85.4 63.9 70.2 79.1 54.3 62.2 57.7 79.0 60.0",
}
TABLE2 = {
    (pre, vocab, ds): float(v)
    for (pre, vocab), row in _TABLE2_ROWS.items()
    for ds, v in zip(TABLE2_DATASETS, row.split(), strict=True)
}

#: Dataset sizes of §3 by the variant names of the paper config: (rows, non-empty classes);
#: None where the paper prints no class count.
SIZES = {
    "incaps-full": (448_896, 999),
    "incaps100": (44_548, 100),
    "incaps10pct": (44_548, 997),
    "incaps-trim5-ceil1": (448_855, None),
    "incaps-trim20-ceil1": (448_320, None),
    "incaps-trim50-ceil1": (445_253, None),
    "incaps-trim100-ceil1": (436_103, None),
    "incaps-trim200-ceil1": (410_293, None),
    "incaps-trim500-ceil1": (295_594, None),
    "incaps-trim5-ceil0": (448_851, None),
    "incaps-trim20-ceil0": (448_301, None),
    "incaps-trim50-ceil0": (445_204, None),
    "incaps-trim100-ceil0": (436_004, None),
    "incaps-trim200-ceil0": (410_094, None),
    "incaps-trim500-ceil0": (295_095, None),
    "laionet-t070": (448_896, 943),
    "laionet-t075": (448_896, 943),
    "laionet-t080": (448_896, 943),
    "laionet-t082": (448_896, 943),
    "laionet-eqfreq": (416_489, 999),
    "laionet-f1": (3_256_561, 943),
    "laionet-f2": (1_628_287, 943),
    "laionet-f4": (814_158, 943),
    "laionet-f8": (407_100, 943),
    "laionet-f16": (203_580, 943),
    "laionet-f32": (101_848, 943),
    "yfcc15m-cls": (2_898_096, 947),
    "cc12m-cls": (3_480_797, 984),
}
#: LAIONet rows above each similarity threshold before the draw (§3.4; manifest
#: ``steps.above_threshold`` of the threshold variants).
ABOVE_THRESHOLD = {
    "laionet-t070": 3_256_561,
    "laionet-t075": 1_925_250,
    "laionet-t080": 879_460,
    "laionet-t082": 576_276,
}
