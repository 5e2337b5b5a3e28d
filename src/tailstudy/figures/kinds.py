"""The figure kinds: the one list of ``plot`` values that the config schema, the study checks,
the frequency planning and the plotting read.

A kind says what a figure of it is drawn from (``runs``: study tables and per-class
evaluations; ``frequency``: frequency tables; ``probes``: linear-probe tables of DINO studies), which figure keys it needs, and which function
draws it (``module:function`` under ``tailstudy.figures``, imported only when drawn). Adding a
kind: one entry here, its drawing function, and its name in the schema's ``plot`` enum (a test
checks the enum is this list).
"""

from __future__ import annotations

from dataclasses import dataclass

from tailstudy.io import UserError

RUNS, FREQUENCY, PROBES = "runs", "frequency", "probes"


@dataclass(frozen=True)
class FigureKind:
    source: str  # RUNS | FREQUENCY | PROBES (the linear-probe tables of DINO studies)
    draw: str  # "module:function" under tailstudy.figures
    needs: tuple[str, ...] = ()  # figure keys that must be set (non-empty)
    one_concept_set: bool = False  # draws one concept set (else one panel per concept set)
    one_corpus: bool = False  # its `corpora` lists one corpus


KINDS: dict[str, FigureKind] = {
    "descriptiveness": FigureKind(RUNS, "descriptiveness:plot", ("studies",)),
    "pearson-spearman": FigureKind(RUNS, "pearson_spearman:plot", ("studies",)),
    "scale": FigureKind(RUNS, "scale:plot", ("studies",)),
    "tail-trim": FigureKind(RUNS, "tail_trim:plot", ("studies",)),
    "tail-case": FigureKind(RUNS, "tail_case:plot", ("studies", "select")),
    "binned": FigureKind(RUNS, "binned:plot", ("studies", "select")),
    "categories": FigureKind(
        RUNS, "categories:plot", ("studies", "categories", "statistics", "select")
    ),
    "frequency-ranks": FigureKind(FREQUENCY, "frequency:ranks", ("panels", "rank_by"), True),
    "label-curves": FigureKind(FREQUENCY, "frequency:label_curves", ("corpora",), True),
    "frequency-correlation": FigureKind(FREQUENCY, "frequency:correlation", ("corpora",)),
    "frequency-zoom": FigureKind(FREQUENCY, "frequency:zoom", ("pairs", "rank_by"), True),
    "tail-classes": FigureKind(FREQUENCY, "frequency:tail_classes", ("corpora",), True, True),
    "probe-delta": FigureKind(PROBES, "probes:delta", ("studies", "baseline")),
    "probe-table": FigureKind(PROBES, "probes:table", ("studies",)),
}


#: figure keys whose entries' order matters (series, panels, legend); spec files are written with
#: sorted keys, so a figure's spec records their config order as ``key_order`` (``Pipeline.spec``)
ORDERED_KEYS = ("select", "pending", "references", "elsewhere")


def ordered(spec: dict, key: str = "select") -> dict:
    """The mapping ``spec[key]`` (one of :data:`ORDERED_KEYS`) in the config's order."""
    entries = spec.get(key) or {}
    order = [k for k in (spec.get("key_order") or {}).get(key, []) if k in entries]
    return {k: entries[k] for k in [*order, *(k for k in entries if k not in order)]}


def series_runs(table, spec: dict) -> dict[str, tuple[str, str]]:
    """Each selected series' run, in the config's order: the lowest-seed run its filter matches
    in the study ``table``, with that run's default evaluation set: label -> (run, dataset)."""
    from tailstudy.analysis.claims import select

    out = {}
    for label, flt in ordered(spec).items():
        rows = select(table, flt).sort_values("seed")
        if rows.empty:
            raise UserError(f"figure series {label}: no run matches {flt}")
        out[label] = (rows.iloc[0]["run_id"], rows.iloc[0]["eval_dataset"])
    return out


def kind_of(spec: dict, name: str = "") -> FigureKind:
    """The kind of a figure spec; an unknown ``plot`` is one line naming the known ones."""
    plot = spec["plot"]
    if plot not in KINDS:
        where = f"figure {name}: " if name else ""
        raise UserError(f"{where}unknown plot {plot!r}; known: {', '.join(KINDS)}")
    return KINDS[plot]


def check_needs(spec: dict, name: str) -> None:
    """The keys a figure's kind needs are set."""
    kind = kind_of(spec, name)
    for key in kind.needs:
        if not spec.get(key):
            raise UserError(f"figure {name} ({spec['plot']}) needs {key}")
    if kind.one_corpus and len(spec.get("corpora", [])) > 1:
        raise UserError(f"figure {name} ({spec['plot']}) lists one corpus; name one")
