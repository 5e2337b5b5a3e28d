"""World model: concepts, their visual facets and popularity; datasets drawn from them.

* **Concepts** are real ImageNet classes: the evaluated ones (ImageNet-100 by default) and a few
  hundred further classes that appear only in web corpora (open-world concepts). Names come from
  open_clip, WordNet lemmas and definitions from timm.
* **Facets.** Every concept has one value per facet (colour, shape, pattern, context, size); the
  class is visually *defined* by that combination, and captions name the same words. Concepts
  come in groups of hard neighbours that differ in one or two facets only, and every facet value
  is shared by many concepts — text about a common attribute teaches about rare classes too.
* **Popularity.** A latent score per concept; each dataset perturbs it, so frequencies of
  different corpora are correlated but not identical. It is independent of facets and groups.

Everything is deterministic given the world seed and the dataset seed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import ndtri

from tailstudy.concepts import Concept, concept_subset, imagenet_concepts
from tailstudy.embedded import text
from tailstudy.embedded.render import render_images
from tailstudy.io import UserError

log = logging.getLogger("tailstudy.embedded")

# facet -> values; each value is the word captions use for it
FACETS: dict[str, tuple[str, ...]] = {
    "colour": (
        "red",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "pink",
        "brown",
        "black",
        "white",
    ),
    "shape": (
        "round",
        "square",
        "triangular",
        "star-shaped",
        "ring-shaped",
        "cross-shaped",
        "diamond-shaped",
        "oval",
    ),
    "pattern": ("plain", "striped", "spotted", "checkered", "banded", "speckled"),
    "context": ("grass", "water", "sand", "snow", "sky", "indoor"),
    "size": ("small", "medium", "large"),
}
FACET_NAMES = tuple(FACETS)

WORLD_KEYS = {"seed", "eval_concepts", "n_open_world", "image_size", "group_size"}
DATASET_KEYS = {"style", "captions", "profile", "open_world_fraction", "diversity", "seed", "probe"}
PROBE_TASKS = ("concepts", *FACET_NAMES)  # a transfer task's labels: the concept or one facet
PROBE_METRICS = ("top1", "mean_per_class")
PROFILE_SHAPES = ("curated", "longtail", "balanced")
LONGTAIL_SIGMA = 1.75
POPULARITY_CORRELATION = 0.8  # between a dataset's class ranking and the world's


def _check_keys(spec: dict, allowed: set[str], required: set[str], what: str) -> None:
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise UserError(f"{what}: unknown key(s) {', '.join(unknown)}")
    missing = sorted(required - set(spec))
    if missing:
        raise UserError(f"{what}: missing key(s) {', '.join(missing)}")


@dataclass(frozen=True)
class WorldConcept:
    concept: Concept
    facets: tuple[int, ...]  # value index per facet, in FACET_NAMES order
    group: int
    popularity: float
    evaluated: bool

    def attributes(self) -> dict[str, str]:
        return {f: FACETS[f][v] for f, v in zip(FACET_NAMES, self.facets, strict=True)}


class World:
    """Concepts with facets, groups and popularity, from the ``world`` block of the config."""

    def __init__(self, spec: dict):
        _check_keys(spec, WORLD_KEYS, WORLD_KEYS, "world")
        self.spec = dict(spec)
        self.seed = int(spec["seed"])
        self.image_size = int(spec["image_size"])
        if self.image_size < 32:
            raise UserError("world.image_size must be at least 32 (the CLIP ResNet minimum)")
        rng = np.random.default_rng([self.seed, 0])
        evaluated = concept_subset(spec["eval_concepts"])
        eval_ids = {c.wnid for c in evaluated}
        others = [c for c in imagenet_concepts() if c.wnid not in eval_ids]
        n_open = int(spec["n_open_world"])
        if n_open > len(others):
            raise UserError(f"world.n_open_world is {n_open}, but only {len(others)} are left")
        open_world = [others[i] for i in sorted(rng.choice(len(others), n_open, replace=False))]
        concepts = list(evaluated) + open_world
        facets, groups = _assign_facets(len(concepts), int(spec["group_size"]), rng)
        popularity = rng.standard_normal(len(concepts))
        self.concepts = tuple(
            WorldConcept(
                c,
                tuple(int(v) for v in facets[i]),
                int(groups[i]),
                float(popularity[i]),
                i < len(evaluated),
            )
            for i, c in enumerate(concepts)
        )
        self.eval_concepts = tuple(c.concept for c in self.concepts if c.evaluated)
        self.open_concepts = tuple(c.concept for c in self.concepts if not c.evaluated)
        self.facets = {k: list(v) for k, v in FACETS.items()}
        self._by_wnid = {c.concept.wnid: c for c in self.concepts}

    def attributes(self, wnid: str) -> dict[str, str]:
        return self._by_wnid[wnid].attributes()


def _assign_facets(n: int, group_size: int, rng: np.random.Generator):
    """Unique facet combinations; groups of ``group_size`` differ from their group's base in one
    or two facets. Returns (n × facets value indices, group id per concept)."""
    sizes = [len(v) for v in FACETS.values()]
    taken: set[tuple[int, ...]] = set()
    out, groups = [], []
    g = 0
    while len(out) < n:
        base = tuple(int(rng.integers(s)) for s in sizes)
        if base in taken:
            continue
        members = [base]
        tries = 0
        while len(members) < group_size and tries < 100:
            tries += 1
            combo = list(base)
            for f in rng.choice(len(sizes), int(rng.integers(1, 3)), replace=False):
                combo[f] = int(rng.integers(sizes[f]))
            combo = tuple(combo)
            if combo not in taken and combo not in members:
                members.append(combo)
        for m in members[: n - len(out)]:
            taken.add(m)
            out.append(m)
            groups.append(g)
        g += 1
    order = rng.permutation(n)  # groups must not line up with label order or popularity
    return np.array(out)[order], np.array(groups)[order]


def class_counts(
    profile: dict, n_classes: int, rng: np.random.Generator, scores=None
) -> np.ndarray:
    """Per-class image counts summing to about ``profile['n']``.

    * ``curated`` — ImageNet-Captions-like: log-counts spread evenly between median/2.1 and
      2.1 × median (max/median ≈ 2.1), a short tail of the rarest 5 %, exactly one empty class;
    * ``longtail`` — web-like: log-normal quantiles (σ = 1.75: max/median ≈ 320 at 1000 classes
      and ≈ 90 at 100), the rarest rounding to zero;
    * ``balanced`` — ``n // n_classes`` each.

    ``scores`` (higher = more popular) decide which class gets which count; random if None.
    """
    _check_keys(profile, {"shape", "n"}, {"shape", "n"}, "profile")
    shape, n = profile["shape"], int(profile["n"])
    if shape not in PROFILE_SHAPES:
        raise UserError(f"profile.shape {shape!r} is not one of {', '.join(PROFILE_SHAPES)}")
    if shape == "balanced":
        return np.full(n_classes, n // n_classes, dtype=np.int64)
    if scores is None:
        scores = rng.standard_normal(n_classes)
    rank = np.empty(n_classes)
    rank[np.argsort(scores, kind="stable")] = np.arange(n_classes)
    q = (rank + 0.5) / n_classes  # 0 = rarest, 1 = most popular
    if shape == "curated":
        w = 2.1 ** (2 * q - 1)
        tail = q < 0.05
        w[tail] *= (q[tail] / 0.05) ** 1.5
        w[rank == 0] = 0.0
    else:
        w = np.exp(LONGTAIL_SIGMA * ndtri(q))
    counts = np.floor(w / w.sum() * n + 0.5).astype(np.int64)
    if shape == "curated":
        counts[rank == 0] = 0
        counts[(rank > 0) & (counts == 0)] = 1
    return counts


def _dataset_scores(world: World, concepts, rng: np.random.Generator) -> np.ndarray:
    base = np.array([c.popularity for c in concepts])
    noise = rng.standard_normal(len(concepts))
    return POPULARITY_CORRELATION * base + np.sqrt(1 - POPULARITY_CORRELATION**2) * noise


def image_facets(members, concept_idx, diversity: float, rng: np.random.Generator) -> np.ndarray:
    """Per-image facet values: the concept's own, except that the context (background) departs
    from the concept's usual one with probability 0.4·d and the size by one step with
    probability 0.25·d (d = min(1, diversity)). Captions describe these per-image values."""
    d = min(1.0, diversity)
    f = np.array([members[i].facets for i in concept_idx], dtype=np.int64).reshape(-1, 5)
    n = len(f)
    ctx, size = FACET_NAMES.index("context"), FACET_NAMES.index("size")
    move = rng.random(n) < 0.4 * d
    f[move, ctx] = rng.integers(0, len(FACETS["context"]), int(move.sum()))
    step = (rng.random(n) < 0.25 * d) * rng.choice([-1, 1], n)
    f[:, size] = np.clip(f[:, size] + step, 0, len(FACETS["size"]) - 1)
    return f


def attributes_of(facets) -> dict[str, str]:
    return {f: FACETS[f][int(v)] for f, v in zip(FACET_NAMES, facets, strict=True)}


def sample_dataset(world: World, spec: dict, name: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The records of a dataset (before rendering): one row per image, and its facets."""
    _check_keys(spec, DATASET_KEYS, {"style", "captions", "profile"}, f"dataset {name}")
    style, captions = spec["style"], spec["captions"]
    if style not in ("curated", "web"):
        raise UserError(f"dataset {name}: style must be curated or web, not {style!r}")
    if captions not in ("fields", "alttext"):
        raise UserError(f"dataset {name}: captions must be fields or alttext, not {captions!r}")
    seed = int(spec.get("seed", 0))
    rng = np.random.default_rng([world.seed, 1, seed])
    evaluated = [c for c in world.concepts if c.evaluated]
    open_world = [c for c in world.concepts if not c.evaluated]
    counts = class_counts(
        spec["profile"], len(evaluated), rng, _dataset_scores(world, evaluated, rng)
    )
    concept_idx = np.repeat(np.arange(len(evaluated)), counts)
    n_open = int(round(float(spec.get("open_world_fraction", 0.0)) * int(spec["profile"]["n"])))
    if n_open and not open_world:
        raise UserError(f"dataset {name} asks for open-world images but world.n_open_world is 0")
    if n_open:
        oc = class_counts(
            {"shape": "longtail", "n": n_open},
            len(open_world),
            rng,
            _dataset_scores(world, open_world, rng),
        )
        concept_idx = np.concatenate(
            [concept_idx, len(evaluated) + np.repeat(np.arange(len(oc)), oc)]
        )
    concept_idx = concept_idx[rng.permutation(len(concept_idx))]
    members = evaluated + open_world
    labels = np.where(concept_idx < len(evaluated), concept_idx, -1)
    facets = image_facets(members, concept_idx, float(spec.get("diversity", 1.0)), rng)
    rows = text.captions_for(members, concept_idx, facets, captions, rng, world)
    index = pd.DataFrame(rows)
    index.insert(0, "key", [f"{name}-{i:07d}" for i in range(len(index))])
    index.insert(1, "label", labels.astype(np.int32))
    index["wnid"] = [members[i].concept.wnid for i in concept_idx]
    return index, facets


def build_dataset(world: World, spec: dict, out_dir: str | Path, name: str) -> None:
    """Generate a dataset and write it in the project's on-disk format."""
    from tailstudy.data.format import write_dataset

    t0 = time.perf_counter()
    index, facets = sample_dataset(world, spec, name)
    seed = int(spec.get("seed", 0))
    images = render_images(
        facets,
        world.image_size,
        style=spec["style"],
        diversity=float(spec.get("diversity", 1.0)),
        seed=[world.seed, 2, seed],
    )
    t1 = time.perf_counter()
    classes = [(c.wnid, c.name) for c in world.eval_concepts]
    extra = None
    if spec.get("probe"):
        index, classes, extra = probe_task(index, facets, classes, spec["probe"], name)
    write_dataset(
        out_dir,
        name,
        index,
        images,
        classes,
        {"source": "embedded", "world": world.spec, "dataset": spec},
        extra=extra,
    )
    log.info(
        "dataset %s: %d images (%d labelled) generated in %.1f s, written in %.1f s",
        name,
        len(index),
        int((index["label"] >= 0).sum()),
        t1 - t0,
        time.perf_counter() - t1,
    )


def probe_task(
    index: pd.DataFrame, facets: np.ndarray, classes: list, probe: dict, name: str
) -> tuple[pd.DataFrame, list, dict]:
    """A linear-probe transfer task (METHODS §1.4's layout): rows labelled by their concept
    (``task: concepts``, open-world rows dropped) or by one facet of the image (``task: shape``,
    ...: attribute prediction, a label space no training set has), split at random (seeded by
    ``probe.seed``) into ``train`` / ``val`` / ``test`` by ``probe.fractions``; the manifest
    names the probe's ``metric``."""
    task = probe.get("task", "concepts")
    if task not in PROBE_TASKS:
        raise UserError(f"dataset {name}: probe.task {task!r}; use one of {', '.join(PROBE_TASKS)}")
    metric = probe.get("metric", "top1")
    if metric not in PROBE_METRICS:
        raise UserError(f"dataset {name}: probe.metric {metric!r}; use one of {PROBE_METRICS}")
    index = index.copy()
    if task == "concepts":
        keep = (index["label"] >= 0).to_numpy()
    else:
        f = FACET_NAMES.index(task)
        index["label"] = facets[:, f].astype(np.int32)
        classes = [(v, v) for v in FACETS[task]]
        keep = np.ones(len(index), dtype=bool)
    train, val = probe.get("fractions", [0.6, 0.2])
    rng = np.random.default_rng([int(probe.get("seed", 0)), 7])
    u = rng.random(len(index))
    index["split"] = np.where(u < train, "train", np.where(u < train + val, "val", "test"))
    index.loc[~keep, "split"] = "unused"
    counts = index.loc[keep, "split"].value_counts().to_dict()
    if set(counts) != {"train", "val", "test"}:
        raise UserError(f"dataset {name}: the probe task leaves a split empty ({counts}); grow n")
    extra = {"metric": metric, "task": task, "splits": {k: int(v) for k, v in counts.items()}}
    return index, classes, extra
