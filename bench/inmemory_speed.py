"""Training images/s of the in-memory path, two versions of the package side by side.

    python bench/inmemory_speed.py --old /path/to/old/src [--new src] [--rounds 3]

Trains a CLIP and an SL run (RN-tiny, 32 px, tests/runs.py's dataset enlarged to 600 rows, one
CPU thread) with each package in its own process, rounds interleaved so that load on a shared
machine hits both sides alike, and prints the median of the runs' ``images_per_s`` (epochs
after the first) per side and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PER_CLASS = (200, 150, 100, 80, 50, 20)


def worker(work: Path, out: Path) -> None:
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO / "tests"))
    from runs import make_dataset, run_config
    from tailstudy.data.loader import load_split
    from tailstudy.train.loop import fit

    ds = work / "tiny"
    if not ds.exists():
        make_dataset(ds, per_class=PER_CLASS)
    data = load_split(ds, progress=False)
    rates = {}
    for objective in ("clip", "sl"):
        cfg = run_config(objective, epochs=4, batch_size=32)
        hist = fit(cfg, data, out / objective, out / objective / "ckpt", device="cpu")
        rates[objective] = statistics.median(h["images_per_s"] for h in hist[1:])
    (out / "rates.json").write_text(json.dumps(rates))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, type=Path, help="src/ folder of the old package")
    ap.add_argument("--new", default=REPO / "src", type=Path, help="src/ of the new package")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--_worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._worker:
        worker(*a._worker)
        return 0
    work = Path(tempfile.mkdtemp(prefix="inmemory-speed-"))
    rates: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for r in range(a.rounds):
        for side, src in (("old", a.old), ("new", a.new)):
            out = work / f"{side}{r}"
            env = {**os.environ, "PYTHONPATH": str(src.resolve()), "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, __file__, "--old", str(a.old), "--_worker", str(work), str(out)]
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            for k, v in json.loads((out / "rates.json").read_text()).items():
                rates[side].setdefault(k, []).append(v)
    for objective in ("clip", "sl"):
        old = statistics.median(rates["old"][objective])
        new = statistics.median(rates["new"][objective])
        print(
            f"{objective}: old {old:.0f} img/s, new {new:.0f} img/s, new/old {new / old:.2f} "
            f"(rounds old {[round(x) for x in rates['old'][objective]]}, "
            f"new {[round(x) for x in rates['new'][objective]]})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
