"""The resolved configuration of one training run (the contract of ``results/runs/{run}/config.json``).

``RunConfig.from_dict`` is strict: unknown keys and wrong types are errors, so a run config
written by an older or newer version of the workflow is never silently misread.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from tailstudy.io import UserError

BACKENDS = ("nccl", "gloo")


@dataclass(frozen=True)
class Distributed:
    """Data-parallel training in ``processes`` processes (one per GPU), launched by torchrun."""

    processes: int
    backend: str = "nccl"  # nccl (CUDA) | gloo (CPU, or CUDA without NCCL)


# Recipe keys: the training hyper-parameters a recipe in config.yaml may set (with these defaults).
@dataclass(frozen=True)
class Recipe:
    epochs: int = 10
    batch_size: int = 256  # global batch
    lr: float = 1e-3
    weight_decay: float = 0.2
    optimizer: str = "adamw"  # adamw | sgd
    momentum: float = 0.9  # sgd only
    nesterov: bool = True  # sgd only
    schedule: str = "warmup-cosine"  # warmup-cosine | multistep | cosine-epochs
    warmup_steps: int = 0
    milestones: tuple[float, ...] = (1 / 3, 5 / 9, 7 / 9)  # multistep, fractions of training
    gamma: float = 0.1
    aug_scale: tuple[float, float] = (0.9, 1.0)  # RandomResizedCrop area range
    logit_scale_max: float = 100.0
    text_tower: str = "scratch"  # clip: scratch | frozen | init
    head: str = "random"  # sl: random | frozen
    head_prompt: str = "a {}"  # sl frozen head: prompt through the frozen text tower
    text_encoder: str | None = None  # name in config text_encoders (frozen/init text, frozen head)
    vocab_size: int | None = None  # sl: None = full vocabulary
    vocab_weighting: str = "linear"  # linear | sqrt | uniform
    vocab_group: int | None = None  # sl: local-batch size over which the vocabulary is drawn
    dino: dict | None = None  # dino: train.dino.DinoSpec keys (prototypes, subset, crops, ...)
    ckpt_every_steps: int | None = None  # also checkpoint every N steps (always at epoch end)
    gpus: int = 0
    distributed: Distributed | None = None  # None: one process
    recipe_version: int = 1  # bump to force retraining of every run using the recipe

    def __post_init__(self):
        d = self.distributed
        if isinstance(d, dict):
            d = _strict(Distributed, d, "distributed")
            object.__setattr__(self, "distributed", d)
        if d is None:
            return
        if d.processes < 1:
            raise UserError(f"distributed.processes must be at least 1, got {d.processes}")
        if d.backend not in BACKENDS:
            raise UserError(
                f"distributed.backend {d.backend!r} is unknown; use one of {', '.join(BACKENDS)}"
            )
        if self.batch_size % d.processes:
            raise UserError(
                f"batch_size {self.batch_size} (the global batch) does not split evenly over "
                f"distributed.processes {d.processes}"
            )
        if d.backend == "nccl" and self.gpus != d.processes:
            raise UserError(
                f"distributed.backend nccl runs one process per GPU: set gpus: {d.processes} "
                f"to match distributed.processes: {d.processes} (or use backend gloo on CPU)"
            )

    @property
    def processes(self) -> int:
        """Training processes (1 unless distributed)."""
        return self.distributed.processes if self.distributed else 1

    @property
    def local_batch_size(self) -> int:
        """Per-process batch: the global batch divided over the processes."""
        return self.batch_size // self.processes


@dataclass(frozen=True)
class RunConfig:
    run_id: str
    scale: str
    objective: str  # clip | sl | dino
    arch: str  # open_clip model name (RN50, RN-tiny, ...)
    dataset: str
    variant: str
    seed: int
    eval_dataset: str
    eval_templates: str  # openai80
    recipe_name: str
    recipe: Recipe
    text_source: dict | None = None  # {"run": id} | {"open_clip": arch, "pretrained": tag}
    factors: dict = field(default_factory=dict)  # study factors, for tables and figures

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        d = dict(d)
        d["recipe"] = _strict(Recipe, d.get("recipe", {}), "recipe")
        return _strict(cls, d, "run config")

    @classmethod
    def load(cls, path: str | Path) -> RunConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise UserError(
                f"run config {path} not found: write it with the workflow first"
            ) from None


def _check_type(value, tp, where: str):
    origin = typing.get_origin(tp)
    if tp is typing.Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is not None and any(dataclasses.is_dataclass(a) for a in args):
            # an optional nested mapping: report what is wrong inside it
            (inner,) = [a for a in args if a is not type(None)]
            return _check_type(value, inner, where)
        errors = []
        for arg in typing.get_args(tp):
            try:
                return _check_type(value, arg, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(f"{where}: {value!r} has the wrong type (expected {tp})")
    if tp is type(None):
        if value is not None:
            raise UserError(f"{where}: expected null, got {value!r}")
        return None
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise UserError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_check_type(v, args[0], where) for v in value)
        if len(args) != len(value):
            raise UserError(f"{where}: expected {len(args)} values, got {value!r}")
        return tuple(_check_type(v, a, where) for v, a in zip(value, args, strict=True))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where}: expected an integer, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else _strict(tp, value, where)
    if tp is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise UserError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _strict(cls, d: dict, what: str):
    if not isinstance(d, dict):
        raise UserError(f"{what}: expected a mapping, got {d!r}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise UserError(f"{what}: unknown key(s) {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in d.items():
        kwargs[name] = (
            value
            if dataclasses.is_dataclass(value)
            else _check_type(value, hints[name], f"{what}.{name}")
        )
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise UserError(f"{what}: {e}") from None
    except UserError as e:  # a check across keys (__post_init__)
        raise UserError(f"{what}: {e}") from None


def recipe_from_dict(d: dict, name: str = "recipe") -> Recipe:
    return _strict(Recipe, d, f"recipe {name}")
