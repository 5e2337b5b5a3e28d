"""How a variant's kinds compose: pure checks over a variant spec (no pandas), shared by the
config check at workflow start and the variant builder."""

from __future__ import annotations

from tailstudy.io import UserError

SELECTIONS = ("sample", "trim", "threshold", "match")  # a variant takes at most one


def check_spec(name: str, spec: dict) -> None:
    """How a variant's kinds compose (the package's own guard; the schema checks types)."""
    chosen = [k for k in SELECTIONS if spec.get(k)]
    if len(chosen) > 1:
        raise UserError(
            f"variant {name} combines {' and '.join(chosen)}; a variant takes at most one of "
            f"{', '.join(SELECTIONS)}"
        )
    sample = spec.get("sample")
    if sample and ("fraction" in sample) == ("n" in sample):
        raise UserError(f"variant {name}: sample needs exactly one of fraction and n")
    cls = spec.get("classes")
    if cls and ("subset" in cls) == ("wnids" in cls):
        raise UserError(f"variant {name}: classes needs exactly one of subset and wnids")
    match = spec.get("match")
    if match:
        of = match.get("counts_of") or {}
        if len(set(of) & {"variant", "dataset"}) != 1:
            raise UserError(
                f"variant {name}: match.counts_of needs exactly one of variant, dataset"
            )
        if match.get("supplement") and spec.get("captions"):
            raise UserError(
                f"variant {name}: captions are built from one dataset's fields; a supplemented "
                "variant keeps each dataset's own captions (drop captions or the supplement)"
            )
        if match.get("supplement") == spec["dataset"]:
            raise UserError(f"variant {name}: match.supplement is the variant's own dataset")
