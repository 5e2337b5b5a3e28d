"""The workflow on SLURM through profiles/slurm: resources per rule, and a small study on a real
one-node cluster (tests/slurm/start_cluster.sh, fixture ``slurm_cluster``).

The cluster tests are slow and skip, saying why, where no cluster can be started (not root, the
Debian packages missing, daemons failing). SLURM's ports are fixed: one cluster per machine, so
never run these tests in parallel with each other.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
PARTITION = "debug"  # the test cluster's one partition (tests/slurm/start_cluster.sh)
CPU_RUN = "incaps-full_sl_sl-long_s0"  # gpus: 0, long enough to be cancelled mid-run
GPU_RUN = "incaps-full_clip_clip-gpu_s0"  # gpus: 1, long enough to be preempted mid-run


def slurm_test_profile(dest: Path) -> Path:
    """profiles/slurm with the local cluster's values: its partition, no account, and squeue
    for status checks (there is no slurmdbd, so no sacct); 1 thread per job on its 2 CPUs."""
    prof = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    defaults = prof["default-resources"]
    assert defaults.pop("slurm_account") == "CHANGE-ME"  # the site placeholders, replaced here
    assert defaults["slurm_partition"] == "CHANGE-ME"
    defaults["slurm_partition"] = PARTITION
    for rule in ("train_model", "evaluate_run"):
        assert prof["set-resources"][rule]["slurm_partition"] == "CHANGE-ME-gpu"
        prof["set-resources"][rule]["slurm_partition"] = PARTITION
    prof.update(
        {
            "slurm-no-account": True,
            "slurm-status-command": "squeue",
            "slurm-init-seconds-before-status-checks": 1,  # MinJobAge (300) must stay >= 3x
            "set-threads": {"train_model": 1, "evaluate_run": 1},
            "latency-wait": 5,
        }
    )
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(yaml.safe_dump(prof, sort_keys=False))
    return dest


def tiny_study(dest: Path) -> Path:
    """The embedded config cut to two small runs: SL on the CPU, CLIP asking for one GPU."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["datasets"] = {
        "incaps": {**config["datasets"]["incaps"], "profile": {"shape": "curated", "n": 1200}},
        "val": {**config["datasets"]["val"], "profile": {"shape": "balanced", "n": 200}},
    }
    config["variants"] = {"incaps-full": config["variants"]["incaps-full"]}
    config.pop("text_encoders")
    config.pop("frequency")
    config.pop("probe")  # no DINO run: no transfer tasks to probe
    config["recipes"] = {
        "sl-long": {**config["recipes"]["sl"], "epochs": 3, "batch_size": 32},
        "clip-gpu": {**config["recipes"]["clip"], "epochs": 3, "batch_size": 64, "gpus": 1},
    }
    config["studies"] = {
        "slurm": [
            {"variant": ["incaps-full"], "model": ["sl"], "recipe": ["sl-long"], "seed": [0]},
            {"variant": ["incaps-full"], "model": ["clip"], "recipe": ["clip-gpu"], "seed": [0]},
        ]
    }
    fig = config["figures"]["fig11a-pearson-spearman"]
    config["figures"] = {"fig11a-pearson-spearman": {**fig, "studies": ["slurm"]}}
    config["claims"] = []
    path = dest / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def smk_cmd(workdir: Path, configfile: Path, *args: str) -> list[str]:
    """A snakemake command line (targets first: --configfile takes several values)."""
    return [
        *SNAKEMAKE,
        *args,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
    ]


def dry_run_jobs(output: str, rule: str) -> dict[str, dict]:
    """{run: {"threads": n, resource: value}} of the planned jobs of ``rule`` in a dry run."""
    jobs = {}
    for block in output.split("\nrule ")[1:]:
        if not block.startswith(f"{rule}:"):
            continue
        run = re.search(r"wildcards: run=([^,\s]+)", block).group(1)  # then e.g. dataset=
        res = dict(kv.split("=", 1) for kv in re.search(r"resources: (.*)", block)[1].split(", "))
        threads = re.search(r"threads: (\d+)", block)
        jobs[run] = {**res, "threads": threads.group(1) if threads else "1"}
    return jobs


def test_slurm_profile_requests_the_gpus_each_recipe_asks_for(tmp_path):
    """A dry run through profiles/slurm: training jobs request `gpu` = their recipe's gpus
    (cpus_per_gpu, memory and threads per GPU), evaluation one GPU for GPU runs, none else;
    the site's partitions reach the jobs."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["recipes"]["sl"]["gpus"] = 2  # every SL recipe extends it
    cfg = tmp_path / "gpus.yaml"
    cfg.write_text(yaml.safe_dump(config))
    targets = [
        "results/eval/incaps-full_sl_sl-k5_s0/val/summary.json",
        "results/eval/incaps-full_clip_clip_s0/val/summary.json",
    ]
    cmd = smk_cmd(
        tmp_path, cfg, *targets, "-n", "--cores", "64", "--profile", str(REPO / "profiles/slurm")
    )
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    train = dry_run_jobs(res.stdout, "train_model")
    sl, clip = train["incaps-full_sl_sl-k5_s0"], train["incaps-full_clip_clip_s0"]
    assert (sl["gpu"], sl["cpus_per_gpu"], sl["threads"]) == ("2", "8", "16")
    assert (clip["gpu"], clip["threads"]) == ("0", "1")
    # memory and time limits (minutes, first attempt) from the work: tailstudy.cost
    from tailstudy import cost, study

    runs = study.expand(config).runs
    for run, job in (("incaps-full_sl_sl-k5_s0", sl), ("incaps-full_clip_clip_s0", clip)):
        want = cost.time_limit_min(config, cost.train_cost(config, runs[run]))
        assert (job["mem_mb"], job["runtime"]) == (
            str(cost.train_mem_mb(config, runs[run])),
            str(want),
        )
    assert int(sl["mem_mb"]) > int(clip["mem_mb"])  # loader workers and their queued batches
    assert int(sl["runtime"]) < int(clip["runtime"])  # 2 GPUs at the same per-device speed
    assert sl["slurm_partition"] == "CHANGE-ME-gpu" and sl["slurm_account"] == "CHANGE-ME"
    ev = dry_run_jobs(res.stdout, "evaluate_run")
    assert (
        ev["incaps-full_sl_sl-k5_s0"]["gpu"] == "1" and ev["incaps-full_clip_clip_s0"]["gpu"] == "0"
    )
    assert ev["incaps-full_sl_sl-k5_s0"]["cpus_per_gpu"] == "8"
    data = dry_run_jobs(
        res.stdout.replace("wildcards: dataset=", "wildcards: run="), "build_dataset"
    )
    assert data and all(j["slurm_partition"] == "CHANGE-ME" for j in data.values())


# ---------------------------------------------------------------------------- on a real cluster


def slurm_job(job_id: int) -> dict[str, str]:
    """``scontrol show -d job`` as key=value pairs (finished jobs stay visible for MinJobAge)."""
    out = subprocess.run(
        ["scontrol", "show", "-d", "job", str(job_id)], capture_output=True, text=True, check=True
    ).stdout
    return dict(m.groups() for m in re.finditer(r"(\w+)=(\S*)", out))


def train_rows(workdir: Path, run: str) -> list[dict]:
    path = workdir / "results/runs" / run / "train_log.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def queued_job(rule: str, run: str) -> int:
    """The id of the one queued or running SLURM job of ``rule`` for ``run``."""
    queue = subprocess.run(
        ["squeue", "-h", "-o", "%i %k"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    ids = [int(line.split()[0]) for line in queue if rule in line and run in line]
    assert len(ids) == 1, queue
    return ids[0]


def preempt(job_id: int) -> None:
    """What preemption with PreemptMode=REQUEUE does: SIGTERM, then back into the queue with the
    same id. SLURM holds a requeued job for 2 minutes; the test lets it start again at once."""
    subprocess.run(["scontrol", "requeue", str(job_id)], check=True)
    for _ in range(100):
        time.sleep(0.2)
        if slurm_job(job_id)["JobState"] == "PENDING":
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)
            return
    pytest.fail(f"job {job_id} was not requeued: {slurm_job(job_id)['JobState']}")


def wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str, log: Path):
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"snakemake ended before {what}:\n{log.read_text()[-4000:]}")
        if time.time() > deadline:
            proc.terminate()
            pytest.fail(f"no {what} after {timeout} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)


@pytest.mark.slow
def test_study_on_slurm_gpu_scancel_and_preemption(slurm_cluster, tmp_path):
    """Two runs through the SLURM profile: every job runs as a SLURM job and records its id;
    the GPU run gets the (fake) GPU and, torch seeing no CUDA device, trains on the CPU and
    says so. Mid-training, the CPU run is cancelled with scancel: its retry resumes from the
    checkpoint and ends with the weights and losses of an uninterrupted run; the GPU run is
    preempted (requeued): the same job starts again and resumes."""
    workdir = tmp_path / "w"
    cfg = tiny_study(tmp_path)
    profile = slurm_test_profile(tmp_path / "profile")
    targets = [f"results/eval/{r}/val/summary.json" for r in (CPU_RUN, GPU_RUN)]
    log = tmp_path / "snakemake.log"
    t0 = time.time()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            smk_cmd(workdir, cfg, *targets, "--profile", str(profile)),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    ckpt = workdir / "results/runs" / CPU_RUN / "ckpt/latest.pt"
    wait_for(ckpt.exists, proc, 300, "checkpoint of the CPU run", log)
    cancelled = queued_job("train_model", CPU_RUN)
    subprocess.run(["scancel", str(cancelled)], check=True)
    ckpt_gpu = workdir / "results/runs" / GPU_RUN / "ckpt/latest.pt"
    wait_for(ckpt_gpu.exists, proc, 300, "checkpoint of the GPU run", log)
    preempted = queued_job("train_model", GPU_RUN)
    preempt(preempted)
    assert proc.wait(timeout=600) == 0, log.read_text()[-6000:]
    print(f"two runs through SLURM, one cancelled, one preempted: {time.time() - t0:.0f} s")

    # every job ran under SLURM, and recorded the job it ran in
    cpu_rows, gpu_rows = train_rows(workdir, CPU_RUN), train_rows(workdir, GPU_RUN)
    for run, rows in ((CPU_RUN, cpu_rows), (GPU_RUN, gpu_rows)):
        for job_id in {r["slurm_job_id"] for r in rows}:
            job = slurm_job(job_id)
            assert job["Comment"].startswith("rule_train_model") and run in job["Comment"]
        summary = json.loads((workdir / "results/eval" / run / "val/summary.json").read_text())
        job = slurm_job(summary["job"]["slurm_job_id"])
        assert job["Comment"].startswith("rule_evaluate_run") and run in job["Comment"]
        assert job["JobState"] == "COMPLETED" and summary["job"]["host"] == rows[0]["host"]
    # the GPU run's job held the GPU; training fell back to the CPU, and said so
    gpu_job = slurm_job(preempted)
    assert gpu_job["JOB_GRES"] == "gpu:1" and gpu_job["JobState"] == "COMPLETED"
    # preempted and requeued: the same job ran again and resumed from its checkpoint
    assert gpu_job["Restarts"] == "1" and {r["slurm_job_id"] for r in gpu_rows} == {preempted}
    assert slurm_job(cpu_rows[-1]["slurm_job_id"])["JOB_GRES"] == "(null)"
    gpu_log = (workdir / "results/logs/train_model" / f"{GPU_RUN}.log").read_text()
    assert "CUDA_VISIBLE_DEVICES=0" in gpu_log
    if not torch.cuda.is_available():
        assert "asks for 1 GPU(s) but torch sees no CUDA device" in gpu_log
        assert {r["device"] for r in gpu_rows} == {"cpu"}
    assert re.search(rf"resumed from \S+/{GPU_RUN}/ckpt/latest.pt at step [1-9]", gpu_log), gpu_log
    # the cancelled run: epoch 1 in the cancelled job, the rest in its retry, resumed
    assert slurm_job(cancelled)["JobState"] == "CANCELLED"
    assert [r["slurm_job_id"] for r in cpu_rows][0] == cancelled
    retry = cpu_rows[-1]["slurm_job_id"]
    assert retry != cancelled and slurm_job(retry)["JobState"] == "COMPLETED"
    cpu_log = (workdir / "results/logs/train_model" / f"{CPU_RUN}.log").read_text()
    m = re.search(
        rf"resumed from {re.escape(str(Path('results/runs') / CPU_RUN / 'ckpt'))}"
        r"/latest.pt at step (\d+)/(\d+)",
        cpu_log,
    )
    assert m and 0 < int(m.group(1)) < int(m.group(2)), cpu_log

    # the same run uninterrupted, outside SLURM: identical weights and losses
    ref = tmp_path / "ref"
    run_dir = workdir / "results/runs" / CPU_RUN
    subprocess.run(
        [
            sys.executable,
            "-m",
            "tailstudy",
            "train",
            "--config",
            str(run_dir / "config.json"),
            "--dataset",
            str(workdir / "results/data/incaps"),
            "--index",
            str(workdir / "results/variants/incaps-full/index.parquet"),
            "--out",
            str(ref),
            "--ckpt-dir",
            str(ref / "ckpt"),
            "--threads",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    a = torch.load(ref / "model.pt", weights_only=True)["model"]
    b = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref_rows = [json.loads(x) for x in (ref / "train_log.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in ref_rows] == [r["loss"] for r in cpu_rows]
    from tailstudy import jobinfo

    assert {r["slurm_job_id"] for r in ref_rows} == {jobinfo.current()["slurm_job_id"]}
