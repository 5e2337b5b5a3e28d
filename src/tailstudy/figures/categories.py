"""Statistics of chosen arms across training sets: Fig. 4b (LAIONet thresholds and =freq: top-1
and ρ(freq, acc), random-init vs frozen CLIP, IN-Caps as ■ at =freq) and Fig. 6a (IN-Caps-100,
IN-Caps (10%), IN-Caps evaluated on IN-100: ρ(freq, acc) and ρ(freq, #pred) of frozen-head CLIP
and SL).

x = the figure's ``categories`` (variants, labelled by their variant label or
``category_labels``); one line per
(``select`` arm, statistic), the arm matched in each category's runs. Colour = statistic (ρ(freq,
acc) blue, ρ(freq, #pred) orange, others after), marker = objective (CLIP •, SL ✖), dashed for SL
and for CLIP with a random-init text tower. With ``twin_axes`` the second statistic is read on the
right axis. ``dataset`` names the evaluation set the statistics are read from (default: each
run's own); each of ``references`` (label -> ``at``: a category, ``select``: a filter naming its
variant) is drawn as ■ at that category. Each point is the mean over seeds.

A category in ``elsewhere`` is a training set whose models this workflow does not train (Fig. 6b:
YFCC-15M itself, where the paper's CLIP is a pre-trained OpenCLIP model): its ``label`` names
the x position, an arm in its ``same_as`` (arm -> category) is drawn there with that category's
value (SL cannot use the unlabelled images, so the paper repeats its -Cls point), and every
other arm has no point there; its CSV row says why (``note``).
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns

from tailstudy.analysis.claims import select
from tailstudy.figures.kinds import ordered
from tailstudy.figures.style import legend_right
from tailstudy.io import UserError

NAMES = {
    "top1": "top-1",
    "rho_acc": "corr. freq vs acc",
    "rho_pred": "corr. freq vs #pred",
}


def _value(rows: pd.DataFrame, stat: str, dataset: str | None, what: str) -> pd.Series:
    """``stat`` of each row on ``dataset``: its own column where that is the run's default
    evaluation set, else the ``<dataset>.<stat>`` column of a further set."""
    own = rows["eval_dataset"] == dataset if dataset else pd.Series(True, index=rows.index)
    further = f"{dataset}.{stat}"
    if (~own).any() and further not in rows.columns:
        runs = ", ".join(rows.loc[~own, "run_id"].head(3))
        raise UserError(
            f"{what}: runs {runs} were not evaluated on {dataset}; add it to their variant's "
            "evaluation (also)"
        )
    if stat not in rows.columns:
        raise UserError(f"{what}: the study table has no statistic {stat!r}")
    values = rows[stat].where(own, rows.get(further))
    if values.isna().any():
        runs = ", ".join(rows.loc[values.isna(), "run_id"].head(3))
        where = f" on {dataset}" if dataset else ""
        raise UserError(
            f"{what}: runs {runs} have no {stat}{where}; evaluate them there (variant "
            "evaluation, also) or drop them from the arm"
        )
    return values


def series(table: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """One row per (arm, category, statistic): the mean over seeds and the number of seeds."""
    arms = ordered(spec)
    if not arms:
        raise UserError("the categories plot needs a 'select' block naming its arms")
    stats, dataset = spec["statistics"], spec.get("dataset")
    variant_label = {
        **table.drop_duplicates("variant").set_index("variant")["variant_label"].to_dict(),
        **(spec.get("category_labels") or {}),
    }
    rows = []

    def add(arm, flt, category, x, reference=False):
        runs = select(table, {**flt, "variant": category})
        if runs.empty:
            raise UserError(f"figure arm {arm}: no run of variant {category} matches {flt}")
        objective = runs["objective"].iloc[0]
        scratch = objective != "sl" and runs["text_tower"].iloc[0] == "scratch"
        for stat in stats:
            values = _value(runs, stat, dataset, f"figure arm {arm}")
            rows.append(
                {
                    "arm": arm,
                    "category": x,
                    "category_label": str(variant_label.get(x, x)),
                    "variant": category,
                    "statistic": stat,
                    "value": float(values.mean()),
                    "n_seeds": int(runs["seed"].nunique()),
                    "objective": objective,
                    "dashed": objective == "sl" or scratch,
                    "reference": reference,
                }
            )

    elsewhere = ordered(spec, "elsewhere")
    for name, e in elsewhere.items():
        if name not in spec["categories"]:
            raise UserError(f"figure category {name} in elsewhere is not one of its categories")
        for arm, at in (e.get("same_as") or {}).items():
            where = f"figure category {name}: same_as {arm}: {at}"
            if arm not in arms:
                raise UserError(f"{where}: {arm} is not an arm of select")
            if at not in spec["categories"]:
                raise UserError(f"{where}: {at} is not one of the figure's categories")
            if at in elsewhere:
                raise UserError(f"{where}: {at} is trained elsewhere too; name one trained here")
        variant_label[name] = e.get("label", variant_label.get(name, name))
    for arm, flt in arms.items():
        for category in spec["categories"]:
            if category not in elsewhere:
                add(arm, flt, category, category)
                continue
            same = (elsewhere[category].get("same_as") or {}).get(arm)
            if same is not None:
                add(arm, flt, same, category)
                continue
            for stat in stats:
                rows.append(
                    {
                        "arm": arm,
                        "category": category,
                        "category_label": str(variant_label[category]),
                        "statistic": stat,
                        "value": float("nan"),
                        "n_seeds": 0,
                        "reference": False,
                        "note": elsewhere[category].get("note", "not trained by this workflow"),
                    }
                )
    for label, ref in ordered(spec, "references").items():
        if ref["at"] not in spec["categories"]:
            raise UserError(f"figure reference {label}: 'at' {ref['at']} is not a category")
        flt = {k: v for k, v in ref["select"].items() if k != "variant"}
        add(label, flt, ref["select"]["variant"], ref["at"], reference=True)
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, spec: dict, eval_root):
    import matplotlib.pyplot as plt

    data = series(table, spec)
    stats = spec["statistics"]
    palette = sns.color_palette("tab10", 10)
    colours = {"rho_acc": palette[0], "rho_pred": palette[1]}
    others = iter(palette[2:])
    for stat in stats:
        colours.setdefault(stat, next(others))
    categories = list(spec["categories"])
    fig, ax = plt.subplots(figsize=(1.2 * len(categories) + 3, 3.6))
    axes = {stats[0]: ax}
    if spec.get("twin_axes") and len(stats) == 2:
        axes[stats[1]] = ax.twinx()
    for stat in stats:
        a = axes.get(stat, ax)
        part = data[data["statistic"] == stat]
        for arm, d in part[~part["reference"]].groupby("arm", sort=False):
            d = d[d["value"].notna()]  # no point where the arm's model is not trained here
            if d.empty:
                continue
            row = d.iloc[0]
            x = [categories.index(c) for c in d["category"]]
            a.plot(
                x,
                d["value"],
                marker="X" if row["objective"] == "sl" else "o",
                ls="--" if row["dashed"] else "-",
                color=colours[stat],
                label=f"{arm}: {NAMES.get(stat, stat)}",
            )
        for r in part[part["reference"]].itertuples():
            a.plot(
                [categories.index(r.category)],
                [r.value],
                marker="s",
                ls="",
                color=colours[stat],
                label=f"{r.arm}: {NAMES.get(stat, stat)}",
            )
        a.set_ylabel(NAMES.get(stat, stat) if len(axes) > 1 else "")
    missing = data[data["value"].isna()]
    for category, d in missing.groupby("category", sort=False):  # ``elsewhere`` gaps, named
        arms = ", ".join(dict.fromkeys(d["arm"]))
        ax.text(
            categories.index(category),
            0.03,
            f"{arms}: trained elsewhere,\nnot evaluated yet",
            transform=ax.get_xaxis_transform(),
            ha="center",
            fontsize=7,
            color="0.4",
        )
    labels = data.drop_duplicates("category").set_index("category")["category_label"]
    ax.set_xticks(range(len(categories)), [labels.get(c, c) for c in categories])
    ax.set_xlabel("training set")
    legend_right(fig, list(axes.values()))
    return fig, data
