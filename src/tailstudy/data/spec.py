"""How a variant's kinds compose: pure checks over a variant spec (no pandas), shared by the
config check at workflow start and the variant builder."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class VariantRefs:
    """What a variant reads besides its own spec: the config names, each checked declared."""

    dataset: str  # the dataset it indexes
    counts_of: tuple[str, str] | None = None  # match: ("variant" | "dataset", name) it follows
    supplement: str | None = None  # match: the dataset that tops up its classes
    eval_dataset: str | None = None  # its own evaluation set (else the global one)


def variant_refs(config: dict, name: str) -> VariantRefs:
    """The datasets and variants that variant ``name`` names, one line when one is undeclared.

    The workflow wires a variant's inputs from this, and the config check walks it."""
    datasets, variants = config.get("datasets", {}), config.get("variants", {})
    spec = variants[name]
    if spec["dataset"] not in datasets:
        raise UserError(f"variant {name} uses unknown dataset {spec['dataset']!r}")
    own_eval = spec.get("evaluation", {}).get("dataset")
    if own_eval is not None and own_eval not in datasets:
        raise UserError(
            f"variant {name}: evaluation.dataset {own_eval!r} is not a declared dataset"
        )
    match = spec.get("match") or {}
    sup = match.get("supplement")
    if sup is not None and sup not in datasets:
        raise UserError(f"variant {name}: match.supplement {sup!r} is not a declared dataset")
    counts_of = None
    if match:
        of = match["counts_of"]
        kind = "variant" if "variant" in of else "dataset"
        ref = of[kind]
        if ref not in (variants if kind == "variant" else datasets):
            raise UserError(f"variant {name}: match.counts_of names unknown {kind} {ref!r}")
        counts_of = (kind, ref)
    return VariantRefs(spec["dataset"], counts_of, sup, own_eval)


def variant_chain(config: dict, name: str) -> list[str]:
    """``name`` and the variants whose counts it follows, transitively (a cycle is an error)."""
    chain, refs = [name], variant_refs(config, name)
    while refs.counts_of and refs.counts_of[0] == "variant":
        ref = refs.counts_of[1]
        if ref in chain:
            raise UserError(f"variant {name}: match.counts_of cycle {' -> '.join(chain + [ref])}")
        chain.append(ref)
        refs = variant_refs(config, ref)
    return chain
