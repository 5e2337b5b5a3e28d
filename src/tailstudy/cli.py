"""Command line: ``python -m tailstudy <command> ...`` — thin adapters over the package.

Every workflow step is one of these commands, so each can also be run by hand on a compute node.
Errors caused by input are printed as one line (``error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from tailstudy.io import Stopped, UserError, read_json

log = logging.getLogger("tailstudy")


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def cmd_dataset(a: argparse.Namespace) -> None:
    spec = read_json(a.spec)
    ds = spec["dataset"]
    if ds["source"] != "embedded":
        from tailstudy.acquire.build import build_real_dataset

        m = build_real_dataset(ds, a.out, spec["name"], a.downloads)
        log.info("dataset %s: %d samples, %d classes", spec["name"], m["n_samples"], m["n_classes"])
        return
    from tailstudy.embedded import World, build_dataset

    world_spec = spec.get("world")
    if not world_spec:
        raise UserError("embedded datasets need a 'world' block in the configuration")
    params = {k: v for k, v in ds.items() if k != "source"}
    build_dataset(World(world_spec), params, a.out, spec["name"])


def cmd_variant(a: argparse.Namespace) -> None:
    from tailstudy.data.variants import build_variant

    spec = read_json(a.spec)
    m = build_variant(a.dataset, spec["variant"], a.out, spec["name"], a.supplement, a.counts_of)
    log.info(
        "variant %s: %d rows, %d/%d classes non-empty",
        m["variant"],
        m["n_rows"],
        m["nonzero_classes"],
        m["n_classes"],
    )


def _train_args(a: argparse.Namespace) -> list[str]:
    """The ``train`` command line as given, for the processes of a distributed run.

    Forwarded whole, so every option reaches the ranks; options given again later (the launch
    appends ``--threads``) take precedence, as argparse keeps the last value.
    """
    argv = list(a.argv)
    return argv[argv.index("train") + 1 :]


def cmd_train(a: argparse.Namespace) -> None:
    from tailstudy.config import RunConfig

    cfg = RunConfig.load(a.config)
    spec = cfg.recipe.distributed
    if a.worker and spec is None:
        raise UserError(f"--worker: run {cfg.run_id} is not distributed (its recipe sets none)")
    if spec is not None and not a.worker:  # the run config asks for N processes: launch them
        from tailstudy.train.launch import launch

        rc, signum = launch(spec, _train_args(a), a.threads)
        if signum is not None and rc != 0:  # the ranks were stopped and wrote their checkpoint
            raise Stopped(
                f"run {cfg.run_id}: {signal.Signals(signum).name}: its {spec.processes} "
                f"processes stopped (torchrun exit status {rc}); a rerun resumes from "
                f"{Path(a.ckpt_dir)}",
                signum,
            )
        if rc != 0:
            raise UserError(
                f"run {cfg.run_id}: a training process failed (torchrun exit status {rc}); "
                "its error is in the lines above"
            )
        return
    _threads(a.threads)
    from tailstudy.data.loader import open_split
    from tailstudy.train import stop
    from tailstudy.train.loop import fit

    stop.install()  # SIGTERM (scancel, preemption, time limit): checkpoint at the step, exit 143
    ranks, device = None, a.device
    if spec is not None:
        from torch import distributed as dist

        from tailstudy.train.distributed import init_from_launcher

        ranks, dev = init_from_launcher(spec, a.device)
        device = str(dev)
        if not ranks.main:  # rank 0 alone reports progress; warnings and errors still show
            logging.getLogger().setLevel(logging.WARNING)
            logging.getLogger("tailstudy").setLevel(logging.WARNING)
    try:
        data = open_split(
            a.dataset,
            a.index,
            a.classes,
            objective=cfg.objective,
            aug_scale=cfg.recipe.aug_scale,
            in_memory_max_mb=a.in_memory_max_mb,
            workers=a.workers,
            progress=ranks is None or ranks.main,
        )
        fit(
            cfg,
            data,
            a.out,
            a.ckpt_dir,
            a.text_checkpoint,
            device,
            a.keep_ckpt,
            ranks,
            a.text_cache,
        )
    finally:
        if ranks is not None:
            dist.destroy_process_group()


def cmd_evaluate(a: argparse.Namespace) -> None:
    _threads(a.threads)
    import numpy as np

    from tailstudy import jobinfo
    from tailstudy.config import RunConfig
    from tailstudy.data.format import read_classes
    from tailstudy.data.loader import open_eval_split
    from tailstudy.data.variants import read_counts
    from tailstudy.evaluate.classify import evaluate
    from tailstudy.evaluate.report import write_eval
    from tailstudy.train.loop import resolve_device

    cfg = RunConfig.load(a.config)
    log.info("run %s: evaluating, %s", cfg.run_id, jobinfo.describe())
    data = open_eval_split(
        a.dataset,
        objective=cfg.objective,
        in_memory_max_mb=a.in_memory_max_mb,
        workers=a.workers,
    )
    counts = read_counts(a.train_counts)
    train_classes = read_classes(a.train_classes or Path(a.train_counts).parent)
    if counts["name"].tolist() != train_classes["name"].tolist():
        raise UserError(f"{a.train_counts} and its classes.tsv list different classes")
    trim = read_json(a.train_manifest).get("tail") or {} if a.train_manifest else {}
    tail = trim.get("wnids")
    summary, arrays = evaluate(
        cfg,
        a.model,
        data,
        train_classes,
        counts["count"].to_numpy(np.int64),
        resolve_device(a.device, cfg.recipe.gpus),
        tail_wnids=tail,
    )
    if trim:  # the trim's N and ceil (Fig. 8's axes)
        summary["tail_n"], summary["tail_ceil"] = trim["n"], trim["ceil"]
    write_eval(a.out, cfg, summary, arrays, data.classes, a.eval_dataset)
    log.info(
        "run %s on %s: top-1 %.3f, rho(freq, acc) %.3f, rho(freq, #pred) %.3f",
        cfg.run_id,
        a.eval_dataset or cfg.eval_dataset,
        summary["top1"],
        summary["rho_acc"],
        summary["rho_pred"],
    )


def cmd_probe_features(a: argparse.Namespace) -> None:
    _threads(a.threads)
    from tailstudy.config import RunConfig
    from tailstudy.evaluate.probe import extract
    from tailstudy.train.loop import resolve_device

    cfg = RunConfig.load(a.config)
    datasets = {}
    for item in a.dataset:
        name, sep, root = item.partition("=")
        if not sep:
            raise UserError(f"--dataset expects NAME=FOLDER, got {item!r}")
        datasets[name] = Path(root)
    device = resolve_device(a.device, min(1, cfg.recipe.gpus))
    extract(a.model, cfg.arch, datasets, a.out, device)


def cmd_probe(a: argparse.Namespace) -> None:
    _threads(a.threads)
    from tailstudy.evaluate.probe import probe

    probe(a.config, a.name, a.dataset, a.features, a.out, a.max_iter)


def cmd_probe_collect(a: argparse.Namespace) -> None:
    from tailstudy.evaluate.probe import collect

    collect(a.study, a.results, a.datasets, a.out)


def cmd_collect(a: argparse.Namespace) -> None:
    from tailstudy.analysis.collect import collect

    collect(a.study, a.evals, a.out)


def cmd_plot(a: argparse.Namespace) -> None:
    from tailstudy.figures import FigureInputs, render

    freq = {}
    for item in a.freq:
        key, sep, path = item.partition("=")
        if not sep or "@" not in key:
            raise UserError(f"--freq expects CORPUS@CONCEPTS=TABLE, got {item!r}")
        freq[key] = Path(path)
    render(read_json(a.spec), FigureInputs(a.tables, a.eval_root, freq), a.out)


def cmd_claims(a: argparse.Namespace) -> None:
    from tailstudy.analysis.claims import evaluate_claims

    evaluate_claims(read_json(a.spec)["claims"], a.tables, a.out)


def cmd_compare(a: argparse.Namespace) -> None:
    from tailstudy.analysis import compare

    spec = read_json(a.spec)
    table = compare.build(
        a.results,
        spec["scale"],
        published=spec["published"],
        variants=spec["variants"],
        figures=spec["figures"],
    )
    compare.write(table, a.out)
    compare.write_html(table, a.html)
    n = len(table)
    log.info(
        "%d numbers of the paper: %d computed here, %d comparable (%s scale)",
        n,
        int(table["ours"].notna().sum()),
        int((table["comparable"] == "yes").sum()),
        spec["scale"],
    )


def cmd_plan(a: argparse.Namespace) -> None:
    import yaml

    from tailstudy import cost, study

    if not a.cost:
        raise UserError("plan: say what to plan (--cost)")
    try:
        config = yaml.safe_load(Path(a.configfile).read_text())
    except FileNotFoundError:
        raise UserError(f"config {a.configfile} not found") from None
    if a.seeds:
        config["seeds"] = a.seeds
    study.check(config)
    print(f"{a.configfile}, seeds {config.get('seeds', [0])}")
    print(cost.format_plan(config))


def _loader_options(s: argparse.ArgumentParser) -> None:
    """How a split is read (the workflow passes them from the config's ``resources``)."""
    from tailstudy.cost import DEFAULTS

    limit = DEFAULTS["in_memory_max_mb"]
    s.add_argument(
        "--in-memory-max-mb",
        type=float,
        default=limit,
        help=f"splits whose decoded images take more MiB than this stream from their shards "
        f"(default {limit})",
    )
    s.add_argument(
        "--workers",
        type=int,
        default=2,
        help="loader worker processes per training process when streaming (default 2)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The one parser tree: every command, and the ``freq`` and ``acquire`` groups."""
    from tailstudy.acquire.cli import add_commands as add_acquire
    from tailstudy.freq.cli import add_commands as add_freq

    p = argparse.ArgumentParser(prog="tailstudy", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("dataset", help="build a dataset (embedded or real) from its spec")
    s.add_argument("--spec", required=True, help="JSON: {name, dataset[, world]}")
    s.add_argument("--out", required=True, type=Path, help="dataset folder")
    s.add_argument("--downloads", type=Path, help="download folder (laionet and cls sources)")
    s.set_defaults(func=cmd_dataset)

    s = sub.add_parser("variant", help="build a dataset variant (an index over the dataset)")
    s.add_argument("--spec", required=True, help="JSON: {name, variant}")
    s.add_argument("--dataset", required=True, type=Path, help="dataset folder")
    s.add_argument("--out", required=True, type=Path, help="variant folder")
    s.add_argument("--counts-of", type=Path, help="match: the dataset/variant folder to follow")
    s.add_argument("--supplement", type=Path, help="match: the supplementary dataset folder")
    s.set_defaults(func=cmd_variant)

    s = sub.add_parser("train", help="train one run from its config.json")
    s.add_argument("--config", required=True, help="results/runs/{run}/config.json")
    s.add_argument(
        "--dataset",
        required=True,
        nargs="+",
        type=Path,
        help="dataset folder(s) holding the shards (a supplemented variant: both)",
    )
    s.add_argument("--index", required=True, type=Path, help="variant index.parquet")
    s.add_argument("--classes", type=Path, help="label space (default: classes.tsv beside --index)")
    s.add_argument("--out", required=True, type=Path, help="writes model.pt, train_log.jsonl")
    s.add_argument("--ckpt-dir", required=True, type=Path, help="resumable checkpoints")
    s.add_argument("--text-checkpoint", help="model.pt holding the pre-trained text tower")
    s.add_argument(
        "--text-cache", help="folder keeping a frozen language model's caption states (reused)"
    )
    s.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default: auto)")
    s.add_argument(
        "--threads", type=int, help="torch CPU threads (shared among a distributed run's processes)"
    )
    s.add_argument("--keep-ckpt", action="store_true", help="keep checkpoints after success")
    _loader_options(s)
    s.add_argument(
        "--worker",
        action="store_true",
        help="run as one rank of a distributed run (set by the torchrun launch, not by hand)",
    )
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="evaluate one trained run")
    s.add_argument("--config", required=True)
    s.add_argument("--model", required=True, help="model.pt")
    s.add_argument("--dataset", required=True, type=Path, help="evaluation dataset folder")
    s.add_argument("--train-counts", required=True, help="label counts of the training variant")
    s.add_argument("--train-classes", help="its classes.tsv (default: beside --train-counts)")
    s.add_argument(
        "--train-manifest", help="the training variant's manifest.json (a trim's tail set)"
    )
    s.add_argument(
        "--eval-dataset", help="the evaluation set's name (default: the run's default one)"
    )
    s.add_argument("--out", required=True, type=Path, help="evaluation folder")
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int)
    _loader_options(s)
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("probe-features", help="cache a run's features on the transfer sets")
    s.add_argument("--config", required=True, help="the run's config.json")
    s.add_argument("--model", required=True, help="the run's model.pt")
    s.add_argument(
        "--dataset", action="append", required=True, metavar="NAME=FOLDER", help="repeatable"
    )
    s.add_argument("--out", required=True, type=Path, help="features folder")
    s.add_argument("--device", default="auto")
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=cmd_probe_features)

    s = sub.add_parser("probe", help="linear probe of one run on one transfer set")
    s.add_argument("--config", required=True, help="the run's config.json")
    s.add_argument("--name", required=True, help="the transfer set's dataset name")
    s.add_argument("--dataset", required=True, type=Path, help="the transfer set's folder")
    s.add_argument("--features", required=True, type=Path, help="the run's features folder")
    s.add_argument("--max-iter", type=int, default=100, help="L-BFGS iterations per fit")
    s.add_argument("--out", required=True, type=Path, help="result JSON")
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=cmd_probe)

    s = sub.add_parser("probe-collect", help="gather a study's linear probes into one table")
    s.add_argument("--study", required=True)
    s.add_argument("--datasets", nargs="+", required=True, help="transfer sets, in order")
    s.add_argument("--results", nargs="+", required=True, type=Path, help="probe JSONs")
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=cmd_probe_collect)

    s = sub.add_parser("collect", help="gather a study's evaluations into one table")
    s.add_argument("--study", required=True)
    s.add_argument("--evals", nargs="+", required=True, type=Path, help="evaluation folders")
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=cmd_collect)

    s = sub.add_parser("plot", help="draw one figure")
    s.add_argument("--spec", required=True, help="figure spec JSON")
    s.add_argument("--tables", nargs="*", default=[], type=Path, help="study tables")
    s.add_argument("--eval-root", default=Path("results/eval"), type=Path, help="results/eval")
    s.add_argument(
        "--freq",
        action="append",
        default=[],
        metavar="CORPUS@CONCEPTS=TABLE",
        help="a frequency table (CONCEPTS is 'labels' for label counts); repeatable",
    )
    s.add_argument("--out", required=True, type=Path, help="figure .pdf (.png, .csv beside it)")
    s.set_defaults(func=cmd_plot)

    s = sub.add_parser("plan", help="what the configured study will cost, before running it")
    s.add_argument("--cost", action="store_true", help="runs and GPU-hours per study and in all")
    s.add_argument(
        "--configfile", default="config.yaml", help="study config (default: config.yaml)"
    )
    s.add_argument("--seeds", type=int, nargs="+", help="override the config's seeds")
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser("claims", help="check the study's claims seed by seed")
    s.add_argument("--spec", required=True, help="claims spec JSON")
    s.add_argument("--tables", nargs="+", required=True, type=Path)
    s.add_argument("--out", required=True, type=Path)
    s.set_defaults(func=cmd_claims)

    s = sub.add_parser("compare", help="the paper's printed numbers beside ours")
    s.add_argument("--spec", required=True, help="compare spec JSON")
    s.add_argument("--results", required=True, type=Path, help="the results folder")
    s.add_argument("--out", required=True, type=Path, help="compare_to_paper.tsv")
    s.add_argument("--html", required=True, type=Path, help="the same table as an HTML page")
    s.set_defaults(func=cmd_compare)

    add_freq(sub)
    add_acquire(sub)
    return p


def dispatch(parser: argparse.ArgumentParser, argv: list[str]) -> int:
    """Parse, set up logging to stderr, run the command; input errors → one line, exit 2; a
    step stopped by a signal (after saving its state) → one line, exit 128 + signal."""
    args = parser.parse_args(argv)
    args.argv = list(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
        )
    try:
        args.func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Stopped as e:
        print(f"stopped: {e}", file=sys.stderr)
        return e.exit_status
    return 0


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser(), sys.argv[1:] if argv is None else argv)
