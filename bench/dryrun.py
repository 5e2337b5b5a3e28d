"""How long Snakemake takes to plan the paper-scale DAG (goal: a dry run of `all` in <= 10 s).

    python bench/dryrun.py [--repeat 3]

Runs `snakemake -n all` on workflow/configs/paper.yaml in a scratch directory whose data/ holds
empty stand-ins for the raw sources, and prints the wall time of each repeat and the job counts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from smk import PAPER, UNREACHABLE_SLURM_CONF, job_counts, make_standins, smk  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--target", default="all")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_standins(yaml.safe_load(PAPER.read_text()), Path(tmp))
        if shutil.which("scontrol") and "SLURM_CONF" not in os.environ:
            # SLURM's tools without a cluster: the SLURM plugin's probe would wait ~9 s per call
            (root / "slurm.conf").write_text(UNREACHABLE_SLURM_CONF)
            os.environ["SLURM_CONF"] = str(root / "slurm.conf")
            print(
                "scontrol without a reachable controller: SLURM_CONF set to one given up on at once"
            )
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            res = smk(root, "-n", a.target, configfile=PAPER, replace=True)
            times.append(time.perf_counter() - t0)
        counts = job_counts(res.stdout)
    print(f"snakemake -n {a.target} (paper config): {sum(counts.values())} jobs")
    for rule, n in sorted(counts.items()):
        print(f"  {rule:<22}{n:>6}")
    print("wall s: " + ", ".join(f"{t:.2f}" for t in times) + f"  (best {min(times):.2f})")
    status = "met" if min(times) <= 10 else "MISSED"
    print(f"goal <= 10 s: {status}")


if __name__ == "__main__":
    main()
