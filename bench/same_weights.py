"""Do two versions of the trainer train bit-identical weights? (CPU, one thread per process)

    python bench/same_weights.py --old /path/to/old/src [--new src] [--work DIR] [--cases a,b]

Trains a sample of tiny runs (tests/runs.py's dataset and recipes) once with each package
(``PYTHONPATH=<src>``, each side in its own process with ``OMP_NUM_THREADS=1``), evaluates every
run, and compares exactly: the model.pt state dicts, classes and configs, the losses, learning
rates and logit scales of train_log.jsonl, and the evaluation summaries and arrays. Prints one
line per run and exits 1 if any differ. Both sides use only the public calls ``fit`` /
``evaluate`` / ``tailstudy train``, so an older checkout can be compared as it is, e.g.
``git archive 5435df7 src | tar -x -C /tmp/old``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GLOO2 = {"processes": 2, "backend": "gloo"}

#: name -> (objective, recipe overrides, run whose model.pt holds the text tower, processes)
CASES = {
    "clip-scratch": ("clip", {}, None),
    "clip-frozen-text": ("clip", {"text_tower": "frozen", "text_encoder": "x"}, "clip-scratch"),
    "clip-init-text": ("clip", {"text_tower": "init", "text_encoder": "x"}, "clip-scratch"),
    "sl-random-vocab": ("sl", {"vocab_size": 2, "vocab_group": 4}, None),
    "sl-random-vocab-sqrt-adamw": (
        "sl",
        {"vocab_size": 3, "vocab_weighting": "sqrt", "optimizer": "adamw", "lr": 1e-3},
        None,
    ),
    "sl-random-full-odd-batch": ("sl", {"batch_size": 7, "schedule": "cosine-epochs"}, None),
    "sl-frozen-head": ("sl", {"head": "frozen", "text_encoder": "x"}, "clip-scratch"),
    "sl-frozen-head-vocab": (
        "sl",
        {"head": "frozen", "text_encoder": "x", "vocab_size": 3},
        "clip-scratch",
    ),
    "clip-ddp-gloo2": ("clip", {"distributed": GLOO2}, None),
    "sl-ddp-gloo2-vocab": ("sl", {"distributed": GLOO2, "vocab_size": 3}, None),
}
LOG_KEYS = ("epoch", "step", "loss", "lr", "logit_scale")  # images_per_s, host, ...: not compared


def _config(name: str):
    from runs import run_config
    from tailstudy.config import RunConfig

    objective, recipe, text_run = CASES[name]
    d = run_config(objective, name=name, **recipe).to_dict()
    if text_run is not None:
        d["text_source"] = {"run": text_run}
    return RunConfig.from_dict(d)


def worker(work: Path, side: Path, cases: list[str]) -> None:
    """Train and evaluate ``cases`` with the package this process imports; writes under side/."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import tailstudy
    from tailstudy.data.format import read_classes
    from tailstudy.data.loader import load_split
    from tailstudy.evaluate.classify import evaluate
    from tailstudy.train.loop import fit

    print(f"{side.name}: tailstudy from {Path(tailstudy.__file__).parent}", flush=True)
    ds, index = work / "data" / "tiny", work / "data" / "v" / "index.parquet"
    data = load_split(ds, index, progress=False)
    classes = read_classes(ds)
    counts = data.label_counts()
    for name in cases:
        cfg, out = _config(name), side / name
        _, _, text_run = CASES[name]
        text = str(side / text_run / "model.pt") if text_run else None
        t0 = time.perf_counter()
        if cfg.recipe.distributed is None:
            fit(cfg, data, out, out / "ckpt", text, "cpu")
        else:  # through the command line: torchrun, 2 gloo processes of one thread each
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(cfg.to_json())
            cmd = [sys.executable, "-m", "tailstudy", "train", "--config", str(out / "config.json")]
            cmd += ["--dataset", str(ds), "--index", str(index), "--out", str(out)]
            cmd += ["--ckpt-dir", str(out / "ckpt"), "--threads", "2", "--device", "cpu"]
            cmd += ["--text-checkpoint", text] if text else []
            subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        summary, arrays = evaluate(cfg, str(out / "model.pt"), data, classes, counts, "cpu")
        (out / "summary.json").write_text(json.dumps(summary, sort_keys=True))
        np.savez(out / "eval.npz", **arrays)
        print(f"{side.name}: {name} trained and evaluated in {time.perf_counter() - t0:.1f} s")


def compare(a: Path, b: Path) -> list[str]:
    """What differs between two runs' outputs (empty: identical)."""
    import numpy as np
    import torch

    diffs = []
    ma = torch.load(a / "model.pt", weights_only=True)
    mb = torch.load(b / "model.pt", weights_only=True)
    # a key only the new side writes, holding its old implied default (False/None/0), is
    # metadata both sides agree on (e.g. quick_gelu: False for weights trained from scratch)
    added = {k for k in set(mb) - set(ma) if mb[k]}
    if set(ma) - set(mb) or added:
        diffs.append(f"model.pt keys {sorted(ma)} != {sorted(mb)}")
    for key in ("config", "classes"):
        if ma.get(key) != mb.get(key):
            diffs.append(f"model.pt {key} differs")
    sa, sb = ma["model"], mb["model"]
    if sa.keys() != sb.keys():
        diffs.append(f"state dict keys differ: {sorted(set(sa) ^ set(sb))[:5]}")
    bad = [k for k in sa if k in sb and not torch.equal(sa[k], sb[k])]
    if bad:
        diffs.append(f"{len(bad)} of {len(sa)} tensors differ, e.g. {bad[0]}")
    la, lb = ([json.loads(x) for x in (p / "train_log.jsonl").open()] for p in (a, b))
    if [[r[k] for k in LOG_KEYS] for r in la] != [[r[k] for k in LOG_KEYS] for r in lb]:
        diffs.append("train_log.jsonl losses / lr / logit scales differ")
    if la and lb and set(la[0]) != set(lb[0]):
        diffs.append(f"train_log.jsonl fields differ: {sorted(set(la[0]) ^ set(lb[0]))}")
    if json.loads((a / "summary.json").read_text()) != json.loads((b / "summary.json").read_text()):
        diffs.append("evaluation summary differs")
    ea, eb = np.load(a / "eval.npz"), np.load(b / "eval.npz")
    if sorted(ea.files) != sorted(eb.files) or any(
        not np.array_equal(ea[k], eb[k]) for k in ea.files
    ):
        diffs.append("evaluation arrays differ")
    return diffs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, type=Path, help="src/ folder of the old package")
    ap.add_argument("--new", default=REPO / "src", type=Path, help="src/ of the new package")
    ap.add_argument("--work", default=Path("/tmp/same-weights"), type=Path)
    ap.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated, of: " + ", ".join(CASES)
    )
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    cases = a.cases.split(",")
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        ap.error(f"unknown case(s) {', '.join(unknown)}")
    for c in cases:  # a run whose text tower comes from another trains after it
        dep = CASES[c][2]
        if dep and dep not in cases[: cases.index(c)]:
            ap.error(f"case {c} needs {dep} before it in --cases")
    if a.worker is not None:
        worker(a.work, a.worker, cases)
        return 0

    sys.path.insert(0, str(a.new))
    sys.path.insert(0, str(REPO / "tests"))
    from runs import make_dataset
    from tailstudy.data.variants import build_variant

    a.work.mkdir(parents=True, exist_ok=True)
    data = a.work / "data"
    if not (data / "v" / "index.parquet").exists():
        data.mkdir(exist_ok=True)
        ds = make_dataset(data / "tiny")
        build_variant(ds, {"dataset": "tiny"}, data / "v", "v")
    for side, src in (("old", a.old), ("new", a.new)):
        env = {
            **os.environ,
            "PYTHONPATH": f"{Path(src).resolve()}:{REPO / 'tests'}",
            "OMP_NUM_THREADS": "1",
        }
        cmd = [sys.executable, __file__, "--old", str(a.old), "--work", str(a.work)]
        cmd += ["--cases", ",".join(cases), "--worker", str(a.work / side)]
        subprocess.run(cmd, env=env, check=True)
    failed = 0
    for c in cases:
        diffs = compare(a.work / "old" / c, a.work / "new" / c)
        failed += bool(diffs)
        print(f"{c:32s} {'identical' if not diffs else 'DIFFERENT: ' + '; '.join(diffs)}")
    print(f"{len(cases) - failed} of {len(cases)} runs identical (weights, logs, evaluation)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
