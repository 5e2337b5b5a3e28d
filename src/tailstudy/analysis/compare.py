"""``compare_to_paper.tsv``: every number the paper prints that this workflow computes, beside ours.

One row per number (:mod:`tailstudy.analysis.paper`): the paper's value, ours (read from the
workflow's result files), their difference, the scale ours was computed at, and whether the two
are comparable, with the reason when they are not:

* ours is missing (the figure or variant is not in this config, or not built yet);
* a source changed since the paper (:data:`CHANGES`: LAION's metadata, images fetched by URL);
* ours comes from the embedded synthetic world. Rows computed only from published frequency
  tables (Fig. 13, Table 1's frequencies, when the config's corpora are ``table:`` sources)
  are comparable at either scale.

Where ours come from (under the results folder): the CSV of the figure whose ``paper_label``
names the paper's (``figures``: paper label -> CSV; :data:`FIGURE_FILES` by default) -- Fig. 11a-c
(columns ``series``, ``pearson_acc``, ``pearson_log_acc``, ``spearman_acc`` and the ``_pred``
three), Fig. 13 (``concept_set``, ``a``, ``b``, ``rho``), Table 1 (``count``; ``acc`` in [0, 1]
once the YFCC-15M model is evaluated), Table 2 (``score`` by ``paper_row`` and
``paper_dataset``) -- and ``variants/{variant}/manifest.json`` (``n_rows``,
``nonzero_classes``, ``steps.above_threshold``).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from tailstudy.analysis import paper
from tailstudy.io import UserError, atomic_path

RELAION = (
    "LAION took its datasets offline in Dec 2023 and re-released LAION-5B as Re-LAION-5B "
    "(Aug 2024, 5,526,641,167 pairs): today's LAION metadata is not the paper's"
)
LINK_ROT = "images are downloaded by URL today; links have died since the paper's download"

#: Sources that changed since the paper, by the labels the rows name them with.
CHANGES = {
    "LAION-400M": RELAION,
    "LAION-2B": RELAION,
    "LAIONet": f"LAIONet is built from LAION-400M metadata ({RELAION}) and {LINK_ROT}",
    "YFCC-15M-Cls": f"YFCC-15M-Cls: {LINK_ROT}",
    "CC-12M-Cls": f"CC-12M-Cls: {LINK_ROT}",
    "Birdsnap": f"Birdsnap (a transfer set, in Avg too): {LINK_ROT}",
}

NOT_DRAWN = "not drawn by this config"

COLUMNS = [
    "item",
    "quantity",
    "paper",
    "ours",
    "diff",
    "scale",
    "comparable",
    "reason",
    "ours_from",
]

#: Fig. 11 panels: the sources each panel's numbers rest on.
FIG11_SOURCES = {"a": ("IN-Caps",), "b": ("LAIONet",), "c": ("YFCC-15M-Cls",)}

#: The paper's figures and tables this table reads, by paper label -> CSV under the results
#: folder (the names the paper config gives them; a config's own come from its ``paper_label``s).
FIGURE_FILES = {
    "Fig. 11a": "figures/fig11a-pearson-spearman.csv",
    "Fig. 11b": "figures/fig11b-pearson-spearman.csv",
    "Fig. 11c": "figures/fig11c-pearson-spearman.csv",
    "Fig. 13": "figures/fig13-corpus-correlation.csv",
    "Table 1": "figures/table01-tail-classes.csv",
    "Table 2": "figures/table02-dino-probe.csv",
}
_CORR_NAMES = {"pearson": "Pearson", "pearson_log": "Pearson (log)", "spearman": "Spearman"}


def _csv(path: Path | None) -> pd.DataFrame | None:
    """A figure's CSV; None where this config draws no such figure or it is not drawn yet."""
    return pd.read_csv(path) if path is not None and path.is_file() else None


def _manifest(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e}); rebuild that variant") from None


def _fig11(results: Path, files: Mapping[str, str], series: Mapping[str, str]) -> list[dict]:
    rows = []
    for (panel, model, stat, corr), value in paper.FIG11.items():
        item, sources = f"Fig. 11{panel}", FIG11_SOURCES[panel]
        src = files.get(item)
        path = results / src if src else None
        df, ours = _csv(path), math.nan
        col = f"{corr}_{stat}"
        if df is not None:
            if col not in df.columns or "series" not in df.columns:
                raise UserError(f"{path} has no column {col!r}; redraw that figure")
            hit = df.loc[df["series"] == series.get(model, model), col]
            if hit.empty:  # the figure may use the paper's own name
                hit = df.loc[df["series"] == model, col]
            ours = float(hit.iloc[0]) if len(hit) else math.nan
        stat_name = "acc" if stat == "acc" else "#pred"
        rows.append(
            {
                "item": item,
                "quantity": f"{model} {stat_name}: {_CORR_NAMES[corr]}",
                "paper": value,
                "ours": ours,
                "sources": sources,
                "ours_from": src or f"{item}: {NOT_DRAWN}",
            }
        )
    return rows


def _fig13(results: Path, src: str | None) -> list[dict]:
    df = _csv(results / src if src else None)
    found: dict[tuple, float] = {}
    if df is not None:
        for r in df.itertuples(index=False):
            found[(r.concept_set, r.a, r.b)] = found[(r.concept_set, r.b, r.a)] = float(r.rho)
    return [
        {
            "item": "Fig. 13",
            "quantity": f"{cs}: Spearman {a} vs {b}",
            "paper": value,
            "ours": found.get((cs, a, b), math.nan),
            "sources": (a, b),
            "tables": (a, b),
            "ours_from": src or f"Fig. 13: {NOT_DRAWN}",
        }
        for (cs, a, b), value in paper.FIG13.items()
    ]


def _table1(results: Path, src: str | None, corpus: str) -> list[dict]:
    df = _csv(results / src if src else None)
    src = src or f"Table 1: {NOT_DRAWN}"
    counts = acc = None
    if df is not None:
        counts = df["count"].to_numpy()
        acc = df["acc"].to_numpy() * 100 if "acc" in df.columns else None
    rows = []

    def add(quantity, value, ours, sources=(corpus,), tables=(corpus,)):
        rows.append(
            {
                "item": "Table 1",
                "quantity": quantity,
                "paper": value,
                "ours": ours,
                "sources": sources,
                "tables": tables,
                "ours_from": src,
            }
        )

    n = len(paper.TABLE1_FREQ)
    for i, value in enumerate(paper.TABLE1_FREQ):
        ours = int(counts[i]) if counts is not None and i < len(counts) else math.nan
        add(f"frequency of tail class {i + 1} of {n}", value, ours)
    for label, test in (
        ("classes below 10", lambda c: c < 10),
        ("classes below 5", lambda c: c < 5),
        ("classes with count 1", lambda c: c == 1),
        ("classes with count 0", lambda c: c == 0),
    ):
        value = sum(test(c) for c in paper.TABLE1_FREQ)
        add(label, value, int(test(counts).sum()) if counts is not None else math.nan)
    model = ("OpenCLIP RN50/yfcc15m", corpus)
    for i, value in enumerate(paper.TABLE1_ACC):
        ours = float(acc[i]) if acc is not None and i < len(acc) else math.nan
        add(f"accuracy (%) of tail class {i + 1} of {n}", value, ours, model, ())
    add(
        "tail classes with accuracy >= 50%",
        sum(a >= 50 for a in paper.TABLE1_ACC),
        int((acc >= 50).sum()) if acc is not None else math.nan,
        model,
        (),
    )
    return rows


def _table2(results: Path, src: str | None) -> list[dict]:
    df = _csv(results / src if src else None)
    found = {}
    if df is not None and {"paper_row", "paper_dataset", "score"} <= set(df.columns):
        for r in df.dropna(subset=["paper_row", "paper_dataset"]).itertuples():
            pretrain, vocab = str(r.paper_row).rsplit("/", 1)
            found[(pretrain, int(vocab), r.paper_dataset)] = float(r.score)
    return [
        {
            "item": "Table 2",
            "quantity": f"{pre}, vocabulary {vocab}: {ds}",
            "paper": value,
            "ours": found.get((pre, vocab, ds), math.nan),
            "sources": (
                "LAIONet" if pre.startswith("LAIONet") else "ImageNet",
                *(("Birdsnap",) if ds in ("Birdsnap", "Avg") else ()),
            ),
            "ours_from": src or f"Table 2: {NOT_DRAWN}",
        }
        for (pre, vocab, ds), value in paper.TABLE2.items()
    ]


def _source_of(variant: str) -> str:
    if variant.startswith("laionet"):
        return "LAIONet"
    if variant.startswith("yfcc15m-cls"):
        return "YFCC-15M-Cls"
    if variant.startswith("cc12m-cls"):
        return "CC-12M-Cls"
    return "IN-Caps"


def _sizes(results: Path, variants: Mapping[str, str]) -> list[dict]:
    rows = []
    for name, (n_rows, n_classes) in paper.SIZES.items():
        ours_name = variants.get(name, name)
        src = f"variants/{ours_name}/manifest.json"
        m = _manifest(results / src) or {}
        sources = (_source_of(name),)
        wanted = [("rows", n_rows, m.get("n_rows"))]
        if n_classes is not None:
            wanted.append(("non-empty classes", n_classes, m.get("nonzero_classes")))
        if name in paper.ABOVE_THRESHOLD:
            above = (m.get("steps") or {}).get("above_threshold")
            wanted.append(("rows above the threshold", paper.ABOVE_THRESHOLD[name], above))
        for what, value, ours in wanted:
            rows.append(
                {
                    "item": "§3 sizes",
                    "quantity": f"{name}: {what}",
                    "paper": value,
                    "ours": math.nan if ours is None else ours,
                    "sources": sources,
                    "ours_from": src,
                }
            )
    return rows


def published_labels(config: Mapping) -> set[str]:
    """Labels of the config's frequency corpora that are published tables (``table:``)."""
    corpora = (config.get("frequency") or {}).get("corpora") or {}
    return {spec.get("label", name) for name, spec in corpora.items() if "table" in spec}


def _verdict(row: dict, scale: str, published: set[str], changes: Mapping[str, str]):
    if row["ours"] is None or (isinstance(row["ours"], float) and math.isnan(row["ours"])):
        if row["ours_from"].endswith(NOT_DRAWN):
            return "no", f"not computed: {row['ours_from']}"
        return "no", f"not computed: {row['ours_from']} is missing or lacks this number"
    tables = row.get("tables", ())
    from_published = bool(tables) and all(t in published for t in tables)
    if not from_published:
        reasons = [changes[s] for s in row["sources"] if s in changes and s not in published]
        if reasons:
            return "no", "; ".join(dict.fromkeys(reasons))
        if scale != "paper":
            return "no", f"{scale}: computed on the embedded synthetic world, not the paper's data"
    return "yes", "from the published frequency tables" if from_published else ""


def build(
    results: str | Path,
    scale: str,
    *,
    published: Iterable[str] = (),
    changes: Mapping[str, str] | None = None,
    series: Mapping[str, str] | None = None,
    variants: Mapping[str, str] | None = None,
    figures: Mapping[str, str] | None = None,
    table1_corpus: str = "YFCC-15M",
) -> pd.DataFrame:
    """The comparison table. ``published``: labels of the corpora whose counts are the published
    frequency tables; ``changes``: source label -> what changed (default :data:`CHANGES`);
    ``series``: Fig. 11 series names (``SL``, ``CLIP``) -> the labels the figures use (a figure
    holding the paper's name itself is read too);
    ``variants``: the paper config's variant names -> this config's; ``figures``: paper label ->
    the CSV (under ``results``) of this config's figure with that label, a label it lacks being
    a figure this config does not draw (default :data:`FIGURE_FILES`, the paper config's)."""
    results = Path(results)
    published = set(published)
    changes = CHANGES if changes is None else changes
    files = dict(FIGURE_FILES if figures is None else figures)
    rows = [
        *_fig11(results, files, series or {}),
        *_fig13(results, files.get("Fig. 13")),
        *_table1(results, files.get("Table 1"), table1_corpus),
        *_table2(results, files.get("Table 2")),
        *_sizes(results, variants or {}),
    ]
    for r in rows:
        r["comparable"], r["reason"] = _verdict(r, scale, published, changes)
        r["scale"] = scale
        ours, value = r["ours"], r["paper"]
        r["diff"] = ours - value if not (isinstance(ours, float) and math.isnan(ours)) else math.nan
    return pd.DataFrame(rows)[COLUMNS]


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float) and not v.is_integer():
        return f"{v:.4f}".rstrip("0").rstrip(".")
    return str(int(v))


def write(table: pd.DataFrame, out: str | Path) -> None:
    """``compare_to_paper.tsv``: numbers as printed (integers whole, others to 4 decimals)."""
    t = table.copy()
    for c in ("paper", "ours", "diff"):
        t[c] = t[c].map(_fmt)
    with atomic_path(out) as tmp:
        t.to_csv(tmp, sep="\t", index=False)


def to_html(table: pd.DataFrame) -> str:
    """A self-contained HTML page of the table for the report: a count of comparable rows per
    item, then every row (not comparable rows greyed, the reason beside them)."""
    counts = table.groupby("item", sort=False)["comparable"].agg(
        rows="size", comparable=lambda s: int((s == "yes").sum())
    )
    summary = "".join(
        f"<tr><td>{html.escape(str(i))}</td><td>{r.rows}</td><td>{r.comparable}</td></tr>"
        for i, r in counts.iterrows()
    )
    body = []
    for r in table.itertuples(index=False):
        cls = "yes" if r.comparable == "yes" else "no"
        cells = [r.item, r.quantity, _fmt(r.paper), _fmt(r.ours), _fmt(r.diff), r.scale]
        cells += [r.comparable, r.reason]
        body.append(
            f'<tr class="{cls}">'
            + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + "</tr>"
        )
    head = "".join(f"<th>{c}</th>" for c in COLUMNS[:-1])
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>Compared with the paper</title>"
        "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
        "tr.no td{color:#888}</style></head><body>\n"
        "<h2>Numbers printed in the paper, beside this workflow's</h2>\n"
        "<table><tr><th>item</th><th>rows</th><th>comparable</th></tr>"
        f"{summary}</table>\n<p></p><table><tr>{head}</tr>\n" + "\n".join(body) + "\n</table>"
        "</body></html>\n"
    )


def write_html(table: pd.DataFrame, out: str | Path) -> None:
    with atomic_path(out, suffix=".html") as tmp:
        tmp.write_text(to_html(table), encoding="utf-8")
