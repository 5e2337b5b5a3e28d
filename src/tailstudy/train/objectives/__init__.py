"""The registry of training objectives: ``objective`` name (a model's in config.yaml) → class.

A new objective is one module here beside ``clip.py``, ``sl.py`` and ``dino.py``, implementing
``base.Objective``, and one entry in ``OBJECTIVES``; ``fit``, the evaluation and the run table
find it by name.
"""

from __future__ import annotations

from typing import Any

from tailstudy.config import Recipe
from tailstudy.io import UserError
from tailstudy.train.objectives.base import Objective
from tailstudy.train.objectives.clip import CLIP
from tailstudy.train.objectives.dino import DINO
from tailstudy.train.objectives.sl import SL

OBJECTIVES: dict[str, type[Objective]] = {o.name: o for o in (CLIP, SL, DINO)}


def get(name: str) -> type[Objective]:
    if name not in OBJECTIVES:
        raise UserError(f"unknown objective {name!r}; expected one of {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]


def foreign_keys(name: str) -> tuple[str, ...]:
    """Recipe keys that other objectives read and objective ``name`` ignores."""
    own = set(get(name).recipe_keys)
    return tuple(
        k for o in OBJECTIVES.values() if o.name != name for k in o.recipe_keys if k not in own
    )


def run_factors(name: str, recipe: Recipe) -> dict[str, Any]:
    """Every objective's run-table columns: this objective's values, blanks for the others'."""
    blanks = {k: v for o in OBJECTIVES.values() for k, v in o.factor_blanks.items()}
    return {**blanks, **get(name).run_factors(recipe)}
