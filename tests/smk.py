"""Running the workflow from tests: Snakemake in a subprocess, and reading its dry runs."""

from __future__ import annotations

import glob
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
PAPER = REPO / "workflow" / "configs" / "paper.yaml"
# SLURM_CONF for machines with SLURM's client tools but no controller: one nobody runs, given
# up on at once. Without it the SLURM executor plugin's start-up probe (`scontrol show config`)
# waits ~9 s in every snakemake call there.
UNREACHABLE_SLURM_CONF = """\
ClusterName=unreachable
SlurmctldHost=localhost(127.0.0.1)
MessageTimeout=1
NodeName=localhost CPUs=1
PartitionName=unreachable Nodes=localhost
"""


def smk(workdir: Path, *args: str, configfile: Path | None = None, check=True, replace=False):
    """Snakemake on the repository's Snakefile in ``workdir``; ``replace`` drops config.yaml
    (--replace-workflow-config) so ``configfile`` is the whole config, as at paper scale."""
    cmd = [
        *SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile or REPO / "config.yaml"),
        *(["--replace-workflow-config"] if replace else []),
        *args,
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return res


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run."""
    counts = {}
    table = output.split("Job stats:")[1].split("total")[0]
    for line in table.splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


def planned_jobs(output: str, rule: str) -> set[str]:
    """Wildcard values of the planned jobs of ``rule`` in a dry run (--quiet absent)."""
    runs = set()
    for block in output.split("\nrule ")[1:]:
        if block.startswith(f"{rule}:"):
            m = re.search(r"wildcards: run=([^,\s]+)", block)  # evaluation: then dataset=
            if m:
                runs.add(m.group(1))
    return runs


def _data_paths(node):
    if isinstance(node, dict):
        for v in node.values():
            yield from _data_paths(v)
    elif isinstance(node, list):
        for v in node:
            yield from _data_paths(v)
    elif isinstance(node, str) and node.startswith("data/"):
        yield node


def make_standins(config: dict, root: Path) -> Path:
    """An empty stand-in under ``root`` for every raw source (``data/...``) the config names: a
    file where the path has a suffix, a folder otherwise, one file for a glob. Returns root."""
    for p in _data_paths(config):
        target = root / (p.replace("*", "part-00000") if glob.has_magic(p) else p)
        if target.suffix:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
        else:
            target.mkdir(parents=True, exist_ok=True)
    for ds in config.get("datasets", {}).values():
        if ds.get("source") == "birdsnap":  # the release's lists, read from its root
            for name in ("images", "species", "test_images"):
                (root / ds["root"] / f"{name}.txt").touch()
    return root
