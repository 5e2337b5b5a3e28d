"""A run's transfer by linear probes (METHODS §5.7): the steps the workflow runs.

* :func:`extract` — once per run: its frozen vision tower (a DINO run's teacher backbone)
  loaded once, the features of every split of every transfer set cached as
  ``<features>/<dataset>-<split>.npz`` (``linear_probe.cached_features``).
* :func:`probe` — once per (run, transfer set): the L-BFGS regularisation path on the cached
  features, the C chosen on ``val``, the refit on ``train`` + ``val``, the test score in the
  metric the transfer set's manifest names; one JSON.
* :func:`collect` — once per study: one row per run (its factors, one ``probe_<dataset>``
  column per transfer set, ``probe_mean`` over them, the paper's "Avg"), the table Fig. 10,
  Table 2 and the claims read.

Light to import (the workflow reads its names when it is parsed): torch, scikit-learn and
pandas are imported by the functions that use them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from tailstudy.config import RunConfig
from tailstudy.io import UserError, atomic_path, read_json, write_json

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("tailstudy.evaluate")

SPLITS = ("train", "val", "test")  # a transfer set's probe splits (METHODS §1.4)
PREFIX = "probe_"
MEAN = "probe_mean"


def features_path(features_dir: str | Path, dataset: str, split: str) -> Path:
    return Path(features_dir) / f"{dataset}-{split}.npz"


def metric_of(dataset_root: str | Path) -> str:
    """The probe metric a transfer set's manifest names (one line if it names none)."""
    from tailstudy.evaluate import linear_probe as lp

    manifest = read_json(Path(dataset_root) / "manifest.json")
    metric = manifest.get("metric")
    if metric not in lp.METRICS:
        raise UserError(
            f"dataset {manifest.get('name', dataset_root)} is not a transfer set (its manifest "
            f"names no probe metric of {', '.join(lp.METRICS)}): build it with source: transfer "
            "or an embedded probe task"
        )
    return metric


def extract(
    model: str | Path,
    arch: str,
    datasets: dict[str, Path],
    features_dir: str | Path,
    device: str = "cpu",
    batch: int = 256,
) -> None:
    """Cache the features of every split of each of ``datasets`` (name -> folder)."""
    from tailstudy.evaluate import linear_probe as lp

    for root in datasets.values():
        metric_of(root)  # a folder that is no transfer set stops before the model loads
    tower = lp.visual_encoder(model, arch).to(device)
    size = int(tower.image_size if isinstance(tower.image_size, int) else tower.image_size[0])
    for name, root in datasets.items():
        for split in SPLITS:
            out = features_path(features_dir, name, split)
            f = lp.cached_features(out, tower, root, split, size, device, batch)
            log.info("%s %s: %d × %d features", name, split, *f["features"].shape)


def probe(
    config: str | Path,
    dataset: str,
    dataset_root: str | Path,
    features_dir: str | Path,
    out: str | Path,
    max_iter: int = 100,
) -> dict:
    """Probe one transfer set on the run's cached features; writes and returns the result."""
    import numpy as np

    from tailstudy.evaluate import linear_probe as lp

    cfg = RunConfig.load(config)
    metric = metric_of(dataset_root)
    splits = {}
    for split in SPLITS:
        path = features_path(features_dir, dataset, split)
        if not path.exists():
            raise UserError(f"run {cfg.run_id}: no cached {dataset} {split} features at {path}")
        with np.load(path, allow_pickle=False) as z:
            splits[split] = lp.probe_arrays({k: z[k] for k in z.files})
    log.info(
        "run %s, %s: probing %s (%s)",
        cfg.run_id,
        dataset,
        ", ".join(f"{s} {len(v['features'])}" for s, v in splits.items()),
        metric,
    )
    res = lp.linear_probe(splits, metric, max_iter=max_iter, progress=False)
    result = {"run_id": cfg.run_id, "dataset": dataset, "factors": cfg.factors, **res}
    write_json(out, result)
    return result


def collect(study: str, results: list[Path], datasets: list[str], out: str | Path) -> pd.DataFrame:
    """One row per run: factors, ``probe_<dataset>`` in ``datasets``' order, ``probe_mean``."""
    import pandas as pd

    rows: dict[str, dict] = {}
    for path in results:
        r = read_json(path)
        row = rows.setdefault(r["run_id"], {"study": study, "run_id": r["run_id"], **r["factors"]})
        row[PREFIX + r["dataset"]] = r["test"]
    if not rows:
        raise UserError(f"study {study} has no linear-probe results")
    table = pd.DataFrame(list(rows.values())).sort_values("run_id").reset_index(drop=True)
    cols = [PREFIX + d for d in datasets]
    missing = [c for c in cols if c not in table or table[c].isna().any()]
    if missing:
        raise UserError(f"study {study}: runs lack probe results for {', '.join(missing)}")
    table[MEAN] = table[cols].mean(axis=1)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, sep="\t", index=False)
    return table
