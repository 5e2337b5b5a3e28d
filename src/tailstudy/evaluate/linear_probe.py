"""Linear probing of frozen image features on the transfer sets (METHODS §5.7, §1.4).

* **Features**: a run's frozen image encoder (a DINO run's teacher backbone: the 1024-d
  attention-pool output) over a transfer set's ``train``, ``val`` and ``test`` rows, each image
  resized (shorter side, bicubic) and centre-cropped to the model's input size and normalised
  with OpenAI's mean/std (the reference's ``-n openai``; METHODS §8 item 17). Cached as one
  ``.npz`` per (run, dataset, split): :func:`cached_features`.
* **Classifier**: scikit-learn ``LogisticRegression(solver="lbfgs")`` (multinomial for more
  than two classes; default ``max_iter`` 100) along 45 regularisation strengths
  λ = logspace(−6, 5), C = 1/λ, from C = 1e6 down to 1e-5. As in the reference, one estimator
  with ``warm_start`` runs the whole path: each fit starts from the previous solution, and the
  final fit too.
* **Selection**: the C with the best validation score (the first one on a tie) is refit on
  train + val and scored on test.
* **Metrics** (``metric`` in the transfer set's manifest): ``top1``; ``mean_per_class``, the
  mean over the test classes of their recall (the confusion matrix's diagonal over its row
  sums; scikit-learn's ``balanced_accuracy_score``); ``map11`` for multi-label VOC2007: one
  binary logistic regression per class, decision-function scores, PASCAL VOC 2007's 11-point
  interpolated AP per class (images showing the class only as difficult objects left out of
  that class's AP), averaged over classes. Scores are percentages.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tailstudy.evaluate.probe import SPLITS
from tailstudy.io import UserError, atomic_path

if TYPE_CHECKING:  # torch is imported where features are computed: probing needs only numpy
    import torch

log = logging.getLogger("tailstudy.evaluate")

METRICS = ("top1", "mean_per_class", "map11")
#: regularisation strengths λ (C = 1/λ), in the order the path is run
LAMBDAS = np.logspace(-6, 5, 45)


# ---- metrics -------------------------------------------------------------------------------------


def voc07_ap(y_true: np.ndarray, scores: np.ndarray) -> float:
    """PASCAL VOC 2007's 11-point interpolated average precision of one class: the mean over
    recall thresholds t = 0, 0.1, …, 1 of the highest precision at recall ≥ t (0 if none)."""
    from sklearn.metrics import precision_recall_curve

    y_true = np.asarray(y_true).astype(bool)
    if not y_true.any():
        return float("nan")  # undefined without a positive example
    precision, recall, _ = precision_recall_curve(y_true, scores)
    return float(
        np.mean(
            [
                precision[recall >= t].max() if (recall >= t).any() else 0.0
                for t in np.linspace(0, 1, 11)
            ]
        )
    )


def map11(y: np.ndarray, scores: np.ndarray, difficult: np.ndarray | None = None) -> float:
    """Mean over classes of :func:`voc07_ap` (percent). ``y`` and ``scores`` are (N, C);
    ``difficult`` (N, C) marks images left out of that class's AP. Classes without a positive
    example in ``y`` have no AP and are left out of the mean (VOC2007's splits have none)."""
    aps = []
    for c in range(y.shape[1]):
        keep = ~difficult[:, c] if difficult is not None else slice(None)
        aps.append(voc07_ap(y[keep, c], scores[keep, c]))
    aps = np.asarray(aps)
    if np.isnan(aps).all():
        raise UserError("mAP: no class has a positive example in this split")
    if np.isnan(aps).any():
        log.warning(
            "mAP over %d of %d classes (the others have no positive)",
            (~np.isnan(aps)).sum(),
            len(aps),
        )
    return 100.0 * float(np.nanmean(aps))


def score(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Top-1 or mean per-class accuracy (percent) of single-label predictions."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    if metric == "top1":
        return 100.0 * float(accuracy_score(y_true, y_pred))
    if metric == "mean_per_class":
        with warnings.catch_warnings():  # predicted classes absent from y_true do not count
            warnings.simplefilter("ignore", UserWarning)
            return 100.0 * float(balanced_accuracy_score(y_true, y_pred))
    raise UserError(f"unknown probe metric {metric!r} (one of {', '.join(METRICS)})")


# ---- the probe -----------------------------------------------------------------------------------


def _fit_score(clf, metric: str, train: dict, test: dict) -> float:
    """Fit ``clf`` (warm start kept) on ``train`` and score ``test``."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter 100, as the reference
        if metric != "map11":
            clf.fit(train["features"], train["label"])
            return score(metric, test["label"], clf.predict(test["features"]))
        scores = np.zeros(test["labels"].shape, dtype=np.float64)
        for c in range(train["labels"].shape[1]):  # one binary problem per class, same estimator
            y = train["labels"][:, c]
            if y.min() == y.max():  # a class all or none of the training images show: no ranking
                continue
            clf.fit(train["features"], y)
            scores[:, c] = clf.decision_function(test["features"])
        return map11(test["labels"], scores, test.get("difficult"))


def _concat(a: dict, b: dict) -> dict:
    return {k: np.concatenate([a[k], b[k]]) for k in a if k in b}


def linear_probe(
    splits: dict[str, dict[str, np.ndarray]],
    metric: str,
    lambdas: np.ndarray = LAMBDAS,
    max_iter: int = 100,
    progress: bool = True,
) -> dict:
    """Select C on ``val``, refit on ``train`` + ``val``, score ``test``.

    ``splits[s]`` holds ``features`` (N, D) and ``label`` (N,), or for ``map11`` ``labels``
    (N, C) 0/1 and optionally ``difficult`` (N, C) bool. Returns ``metric``, ``C`` (selected),
    ``val_scores`` (one per λ, in order), ``lambdas`` and ``test`` (the score).
    """
    from sklearn.linear_model import LogisticRegression

    if metric not in METRICS:
        raise UserError(f"unknown probe metric {metric!r} (one of {', '.join(METRICS)})")
    missing = [s for s in SPLITS if s not in splits or not len(splits[s]["features"])]
    if missing:
        raise UserError(
            f"linear probe: no {', '.join(missing)} rows (the transfer set needs all of {SPLITS})"
        )
    target = "labels" if metric == "map11" else "label"
    for s in SPLITS:
        if target not in splits[s]:
            raise UserError(f"linear probe ({metric}): split {s} has no {target!r}")
    clf = LogisticRegression(solver="lbfgs", warm_start=True, max_iter=max_iter)
    val_scores = []
    steps = list(lambdas)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="linear probe: C path", unit="C", mininterval=5)
    for lam in steps:
        clf.set_params(C=1.0 / float(lam))
        val_scores.append(_fit_score(clf, metric, splits["train"], splits["val"]))
    best = int(np.argmax(val_scores))  # the first of equal best scores, as a strict '>' scan
    c = 1.0 / float(lambdas[best])
    clf.set_params(C=c)
    test = _fit_score(clf, metric, _concat(splits["train"], splits["val"]), splits["test"])
    log.info(
        "linear probe: best C %.3g (val %.2f), test %s %.2f", c, val_scores[best], metric, test
    )
    return {
        "metric": metric,
        "C": c,
        "val_best": float(val_scores[best]),
        "val_scores": [float(v) for v in val_scores],
        "lambdas": [float(x) for x in lambdas],
        "test": float(test),
    }


# ---- features -----------------------------------------------------------------------------------


def multi_hot(lists, num_classes: int) -> np.ndarray:
    """(N, C) uint8 from per-row lists of class indices (the index's ``labels`` / ``difficult``)."""
    out = np.zeros((len(lists), num_classes), dtype=np.uint8)
    for i, row in enumerate(lists):
        if row is not None and len(row):
            out[i, np.asarray(row, dtype=np.int64)] = 1
    return out


def split_rows(dataset_root: str | Path, split: str):
    """The index rows of one probe split of a transfer set (built by ``acquire.transfer``)."""
    from tailstudy.data.format import index_columns, read_index

    if split not in SPLITS:
        raise UserError(f"unknown probe split {split!r} (one of {', '.join(SPLITS)})")
    cols = index_columns(dataset_root)
    if "split" not in cols:
        raise UserError(
            f"{dataset_root} has no split column: it is not a transfer set; build it with "
            "source: transfer"
        )
    want = ["key", "shard", "label", "split"] + [c for c in ("labels", "difficult") if c in cols]
    index = read_index(dataset_root, columns=want)
    return index[index["split"] == split].reset_index(drop=True)


def image_batches(dataset_root: str | Path, rows, size: int, batch: int) -> Iterator[torch.Tensor]:
    """Probe inputs of ``rows`` (``key``, ``shard``), in their order: images resized (shorter
    side, bicubic) and centre-cropped to ``size``, OpenAI-normalised, float NCHW, ``batch`` at a
    time. Each run of consecutive rows in one shard is decoded in one pass over that shard."""
    import torch

    from tailstudy.data.augment import normalize, resize_center_crop, to_float
    from tailstudy.data.format import load_images

    keys = rows["key"].astype(str).tolist()
    shards = rows["shard"].tolist()
    start = 0
    while start < len(keys):
        end = start
        while end < len(keys) and shards[end] == shards[start]:
            end += 1
        images = torch.from_numpy(load_images(dataset_root, keys[start:end]))
        for i in range(0, len(images), batch):
            yield normalize(resize_center_crop(to_float(images[i : i + batch]), size))
        start = end


def extract_features(
    encoder: Callable[[torch.Tensor], torch.Tensor],
    batches,
    device: torch.device | str = "cpu",
    total: int | None = None,
    desc: str = "features",
) -> np.ndarray:
    """(N, D) float32 features of ``encoder`` (frozen, eval mode) over the image ``batches``."""
    import torch
    from tqdm import tqdm

    if isinstance(encoder, torch.nn.Module):
        encoder.eval()
    out = []
    with torch.no_grad():
        for x in tqdm(batches, total=total, desc=desc, unit="batch", mininterval=5):
            out.append(encoder(x.to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _runs(values: list) -> list[list]:
    """Consecutive runs of equal values."""
    out: list[list] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1].append(v)
        else:
            out.append([v])
    return out


def cached_features(
    cache: str | Path,
    encoder: Callable[[torch.Tensor], torch.Tensor],
    dataset_root: str | Path,
    split: str,
    size: int,
    device: torch.device | str = "cpu",
    batch: int = 256,
) -> dict[str, np.ndarray]:
    """The features of one split, from ``cache`` (an ``.npz``) when it holds exactly this
    split's rows, else computed and written there.

    Arrays: ``key``, ``features`` (N, D), ``label`` (N,); multi-label sets also ``labels`` and
    ``difficult`` (N, C, uint8).
    """
    from tailstudy.data.format import read_classes

    cache = Path(cache)
    rows = split_rows(dataset_root, split)
    keys = rows["key"].astype(str).tolist()
    if cache.exists():
        with np.load(cache, allow_pickle=False) as z:
            if z["key"].tolist() == keys:
                return {k: z[k] for k in z.files}
        log.info("%s holds other rows than %s's %s split: recomputing", cache, dataset_root, split)
    n_batches = sum(-(-len(g) // batch) for g in _runs(rows["shard"].tolist()))
    features = extract_features(
        encoder,
        image_batches(dataset_root, rows, size, batch),
        device,
        total=n_batches,
        desc=f"{Path(dataset_root).name} {split}",
    )
    out = {
        "key": np.asarray(keys),
        "features": features.astype(np.float32),
        "label": rows["label"].to_numpy(np.int64),
    }
    if "labels" in rows:
        n = len(read_classes(dataset_root))
        out["labels"] = multi_hot(rows["labels"], n)
        out["difficult"] = (
            multi_hot(rows["difficult"], n) if "difficult" in rows else np.zeros_like(out["labels"])
        )
    with atomic_path(cache, suffix=".npz") as tmp:
        np.savez(tmp, **out)
    return out


def probe_arrays(features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays :func:`linear_probe` reads, from one split's :func:`cached_features`."""
    out = {"features": features["features"], "label": features["label"]}
    if "labels" in features:
        out["labels"] = features["labels"]
        out["difficult"] = features["difficult"].astype(bool)
    return out


def visual_encoder(model_path: str | Path, arch: str) -> torch.nn.Module:
    """The frozen vision tower of a run's ``model.pt`` (its ``visual.*`` weights: a CLIP or SL
    run's tower, a DINO run's teacher backbone) on open_clip's ``arch``."""
    import torch

    from tailstudy.models import factory

    obj = torch.load(model_path, map_location="cpu", weights_only=True)
    state = obj["model"] if isinstance(obj, dict) and "model" in obj else obj
    visual = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
    if not visual:
        raise UserError(f"{model_path} holds no visual.* weights: not a model of this project")
    tower = factory.create_clip(arch).visual
    try:
        tower.load_state_dict(visual, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0]
        raise UserError(f"{model_path} does not fit architecture {arch} ({first})") from None
    for p in tower.parameters():
        p.requires_grad_(False)
    return tower.eval()
