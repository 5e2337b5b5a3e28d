"""Claims and the descriptiveness figure (Figs. 3/19) on hand-made study tables."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import matplotlib
import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib.colors import rgb_to_hsv, to_rgb

from tailstudy.analysis.claims import check_claims, evaluate_claims
from tailstudy.figures import descriptiveness
from tailstudy.io import UserError

matplotlib.use("Agg")
REPO = Path(__file__).resolve().parents[1]


def _claims_table() -> pd.DataFrame:
    """Three seeds: full text beats title only on top-1 on every seed, but its ρ(freq, acc) is
    lower on seeds 0 and 1 only; SL's ρ(freq, #pred) is above template CLIP's on every seed."""
    rows = []
    for seed, (full_acc, title_acc) in enumerate([(0.2, 0.3), (0.1, 0.4), (0.5, 0.45)]):
        rows += [
            {"variant": "full", "model": "clip", "recipe": "clip", "seed": seed,
             "top1": 0.5 + 0.01 * seed, "rho_acc": full_acc, "rho_pred": 0.1},
            {"variant": "title", "model": "clip", "recipe": "clip", "seed": seed,
             "top1": 0.4, "rho_acc": title_acc, "rho_pred": 0.2},
            {"variant": "tmpl", "model": "clip", "recipe": "clip", "seed": seed,
             "top1": 0.6, "rho_acc": 0.3, "rho_pred": 0.15 + 0.01 * seed},
            {"variant": "full", "model": "sl", "recipe": "sl", "seed": seed,
             "top1": 0.7, "rho_acc": 0.5, "rho_pred": 0.6},
        ]  # fmt: skip
    return pd.DataFrame(rows).assign(study="s")


FULL, TITLE = {"model": "clip", "variant": "full"}, {"model": "clip", "variant": "title"}


def _claim(cid, a, b, **tests):
    return {"id": cid, "text": cid, "study": "s", "a": a, "b": b, **tests}


def test_a_claim_with_several_statistics_holds_only_when_each_holds_on_every_seed():
    both = [{"statistic": "top1", "expect": "greater"}, {"statistic": "rho_acc", "expect": "less"}]
    claims = [
        _claim("both", FULL, TITLE, tests=both),
        _claim("top1", FULL, TITLE, tests=both[:1]),
        _claim("F3b", {"model": "clip", "variant": "tmpl"}, {"model": "sl", "recipe": "sl"},
               statistic="rho_pred", expect="less"),
    ]  # fmt: skip
    res = check_claims(claims, {"s": _claims_table()})
    assert len(res) == 3 * 2 + 3 + 3  # one row per claim, statistic and seed
    holds = res.groupby("claim")["claim_holds"].first()
    assert holds.to_dict() == {"F3b": True, "both": False, "top1": True}
    both_rows = res[res["claim"] == "both"].set_index(["statistic", "seed"])["holds"]
    assert both_rows["top1"].all()
    assert both_rows["rho_acc"].to_dict() == {0: True, 1: True, 2: False}
    rho = res[(res["claim"] == "both") & (res["statistic"] == "rho_acc")]
    assert (rho["expect"] == "a < b").all() and rho["a"].tolist() == [0.2, 0.1, 0.5]


def test_a_claim_fails_if_one_statistic_fails_on_every_seed():
    flipped = [{"statistic": "top1", "expect": "less"}, {"statistic": "rho_pred", "expect": "less"}]
    res = check_claims([_claim("x", FULL, TITLE, tests=flipped)], {"s": _claims_table()})
    by_stat = res.groupby("statistic")["holds"].all()
    assert not by_stat["top1"] and by_stat["rho_pred"] and not res["claim_holds"].any()


@pytest.mark.parametrize(
    ("a", "tables", "message"),
    [
        ({"model": "clip"}, None, "arm a matches several runs per seed"),
        (FULL, {}, "no table for study s"),
    ],
)
def test_claims_refuse_ambiguous_arms_and_missing_tables(a, tables, message):
    tables = {"s": _claims_table()} if tables is None else tables
    with pytest.raises(UserError, match=message):
        check_claims([_claim("x", a, TITLE, statistic="top1", expect="greater")], tables)


def test_claims_tsv_from_study_tables(tmp_path):
    table = tmp_path / "s.tsv"
    _claims_table().to_csv(table, sep="\t", index=False)
    tests = [
        {"statistic": "top1", "expect": "greater"},
        {"statistic": "rho_pred", "expect": "less"},
    ]
    out = tmp_path / "claims.tsv"
    evaluate_claims([_claim("F3a", FULL, TITLE, tests=tests)], [table], out)
    res = pd.read_csv(out, sep="\t")
    assert list(res.columns) == ["claim", "text", "statistic", "expect", "seed", "a", "b", "holds",
                                 "claim_holds"]  # fmt: skip
    assert len(res) == 6 and res["claim_holds"].all()


@pytest.mark.parametrize(
    ("change", "valid"),
    [
        ({}, True),
        ({"tests": [{"statistic": "top1", "expect": "greater"}]}, True),
        ({"statistic": "top1", "expect": "greater"}, False),  # both forms at once
        ({"tests": [{"statistic": "top1"}]}, False),  # a test without its direction
        ({"tests": []}, False),
    ],
)
def test_the_schema_takes_one_test_or_a_list_of_tests(change, valid):
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    f3a = next(c for c in config["claims"] if c["id"] == "F3a")
    assert len(f3a["tests"]) == 2
    f3a.update(change)
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(config))
    assert (not errors) == valid, errors


# --- Figs. 3/19 ----------------------------------------------------------------------------

ORDER = ["desc", "title", "tags", "full"]  # least to most descriptive
# natural-language variants listed in an order that is neither descriptiveness nor label order
NATURAL = {"full": 0.45, "tags": 0.12, "desc": 0.35, "title": 0.3}  # top-1
LABELS = {
    "desc": "Description Only",
    "title": "Title Only",
    "tags": "Tags Only",
    "full": "Full Text",
}


def _figure_table() -> pd.DataFrame:
    rows = []
    for i, (v, top1) in enumerate(NATURAL.items()):
        rows.append(
            {"objective": "clip", "variant": v, "recipe": "clip", "variant_label": LABELS[v],
             "recipe_label": "Rand init head", "caption_kind": "natural", "vocab_size": 0,
             "top1": top1, "rho_acc": 0.1 + 0.05 * i, "rho_pred": 0.1}
        )  # fmt: skip
    for v, top1 in (("tmpl", 0.6), ("syn", 0.55)):
        rows.append(
            {"objective": "clip", "variant": v, "recipe": "clip", "variant_label": v,
             "recipe_label": "Rand init head", "caption_kind": "template", "vocab_size": 0,
             "top1": top1, "rho_acc": 0.3, "rho_pred": 0.1 + top1 / 10}
        )  # fmt: skip
    for k, top1 in ((0, 0.7), (5, 0.6)):
        rows.append(
            {"objective": "sl", "variant": "full", "recipe": f"sl-k{k}", "variant_label": "Full Text",
             "recipe_label": f"K={k}", "caption_kind": "natural", "vocab_size": k,
             "top1": top1, "rho_acc": 0.5 - k / 100, "rho_pred": 0.6 - k / 100}
        )  # fmt: skip
    return pd.DataFrame(rows)


def _spec(**extra):
    return {"name": "fig03", "plot": "descriptiveness", "paper_label": "Fig. 3", **extra}


def test_natural_language_greens_darken_with_descriptiveness():
    import matplotlib.pyplot as plt

    fig, data = descriptiveness.plot(_figure_table(), _spec(descriptiveness=ORDER), None)
    plt.close(fig)
    natural = data[data["group"] == "CLIP natural"]
    assert natural["variant"].tolist() == ORDER
    value = [rgb_to_hsv(to_rgb(c))[2] for c in natural["color"]]  # brightness
    assert all(np.diff(value) < 0), value  # Description Only lightest ... Full Text darkest
    # the legend follows the same order
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert [lab for lab in labels if lab in LABELS.values()] == [LABELS[v] for v in ORDER]


def test_descriptiveness_must_name_every_natural_language_variant_drawn():
    with pytest.raises(UserError, match="figure fig03: natural-language variant.*tags.*missing"):
        descriptiveness.plot(
            _figure_table(), _spec(descriptiveness=["desc", "title", "full"]), None
        )


def _green_fit_slope(ax) -> float:
    (line,) = [ln for ln in ax.get_lines() if ln.get_color() == "tab:green"]
    x, y = line.get_data()
    return (y[-1] - y[0]) / (x[-1] - x[0])


@pytest.mark.parametrize("threshold", [0.2, 0.32])
def test_top1_fit_uses_only_natural_language_points_above_the_threshold(threshold):
    import matplotlib.pyplot as plt

    spec = _spec(descriptiveness=ORDER, fit_min_top1=threshold)
    fig, data = descriptiveness.plot(_figure_table(), spec, None)
    plt.close(fig)
    natural = data[data["group"] == "CLIP natural"]
    kept = natural[natural["top1"] > threshold]
    assert natural["in_top1_fit"].tolist() == (natural["top1"] > threshold).tolist()
    assert (
        len(kept) < len(natural) and data.loc[data["group"] != "CLIP natural", "in_top1_fit"].all()
    )
    slope_b = np.polyfit(kept["rho_acc"], kept["top1"], 1)[0]
    assert _green_fit_slope(fig.axes[1]) == pytest.approx(slope_b)
    slope_all = np.polyfit(natural["rho_acc"], natural["top1"], 1)[0]
    assert slope_b != pytest.approx(slope_all)
    # panel (a) fits every natural-language point
    slope_a = np.polyfit(natural["rho_acc"], natural["rho_pred"], 1)[0]
    assert _green_fit_slope(fig.axes[0]) == pytest.approx(slope_a, abs=1e-9)


def test_top1_fit_threshold_defaults_to_the_papers_twenty_percent():
    import matplotlib.pyplot as plt

    fig, data = descriptiveness.plot(_figure_table(), _spec(), None)
    plt.close(fig)
    assert descriptiveness.FIT_MIN_TOP1 == 0.2
    natural = data[data["group"] == "CLIP natural"]
    assert natural.loc[~natural["in_top1_fit"], "variant"].tolist() == ["tags"]


def test_pearson_spearman_reads_per_class_files_and_draws_log_frequency(tmp_path):
    from scipy.stats import pearsonr, spearmanr

    from tailstudy.figures import pearson_spearman

    rng = np.random.default_rng(0)
    freq = np.array([0, 1, 2, 5, 9, 20, 50, 120, 300, 1000])
    rows = []
    for run, model, slope in (
        ("r_sl_s1", "sl", 0.08),
        ("r_sl_s0", "sl", 0.1),
        ("r_clip_s0", "clip", 0.02),
    ):
        acc = np.clip(slope * np.log1p(freq) + rng.uniform(0, 0.1, freq.size), 0, 1)
        pred = (acc * 50).round()
        folder = pearson_spearman.per_class_path(tmp_path, run, "val").parent
        folder.mkdir(parents=True)
        pd.DataFrame({"label": range(freq.size), "freq": freq, "acc": acc, "pred": pred}).to_csv(
            folder / "per_class.tsv", sep="\t", index=False
        )
        rows.append({"run_id": run, "model": model, "seed": int(run[-1]), "eval_dataset": "val"})
    table = pd.DataFrame(rows)
    spec = {"select": {"SL": {"model": "sl"}, "CLIP": {"model": "clip"}}, "log_frequency": True}
    fig, data = pearson_spearman.plot(table, spec, tmp_path)
    assert {ax.get_xscale() for ax in fig.axes} == {"symlog"}
    assert set(data["run_id"]) == {"r_sl_s0", "r_clip_s0"}  # each series' lowest seed
    sl = pd.read_csv(pearson_spearman.per_class_path(tmp_path, "r_sl_s0", "val"), sep="\t")
    got = data[data["series"] == "SL"].iloc[0]
    assert got["pearson_acc"] == pytest.approx(pearsonr(sl["freq"], sl["acc"])[0])
    assert got["spearman_pred"] == pytest.approx(spearmanr(sl["freq"], sl["pred"])[0])
    fig, _ = pearson_spearman.plot(table, {**spec, "log_frequency": False}, tmp_path)
    assert {ax.get_xscale() for ax in fig.axes} == {"linear"}


def _category_table() -> pd.DataFrame:
    """CLIP (random-init and frozen) and SL runs on three training sets, two seeds each; the
    ``big`` runs are evaluated on ``val`` by default and on ``val100`` as a further set."""
    rows = []
    for variant, label in (("small", "Small"), ("mid", "Mid"), ("big", "Big")):
        for model, recipe, tower in (
            ("clip", "clip", "scratch"),
            ("clip", "clip-frozen", "frozen"),
            ("sl", "sl-frozen", ""),
        ):
            for seed in (0, 1):
                base = {"small": 0.1, "mid": 0.2, "big": 0.3}[variant] + 0.01 * seed
                base += {"clip": 0.0, "clip-frozen": 0.05, "sl-frozen": 0.5}[recipe]
                row = {
                    "run_id": f"{variant}_{recipe}_s{seed}",
                    "variant": variant,
                    "variant_label": label,
                    "model": model,
                    "objective": model,
                    "recipe": recipe,
                    "text_tower": tower,
                    "seed": seed,
                    "eval_dataset": "val100",
                    "top1": base,
                    "rho_acc": -base,
                    "rho_pred": 2 * base,
                }
                if variant == "big":  # its own set is val; val100 a further one
                    row.update(eval_dataset="val", rho_acc=9.0, rho_pred=9.0)
                    row["val100.rho_acc"], row["val100.rho_pred"] = -base, 2 * base
                rows.append(row)
    return pd.DataFrame(rows)


def test_categories_reads_each_arm_per_training_set_and_evaluation_set():
    from tailstudy.figures import categories

    table = _category_table()
    spec = {
        "categories": ["small", "mid", "big"],
        "category_labels": {"big": "All"},
        "dataset": "val100",
        "statistics": ["rho_acc", "rho_pred"],
        "select": {"CLIP": {"recipe": "clip-frozen"}, "SL": {"model": "sl"}},
    }
    fig, data = categories.plot(table, spec, None)
    got = data.set_index(["arm", "category", "statistic"])
    # the mean over seeds; on big, read from its val100 columns, not its own (9.0)
    assert got.loc[("CLIP", "big", "rho_acc"), "value"] == pytest.approx(-(0.35 + 0.36) / 2)
    assert got.loc[("SL", "small", "rho_pred"), "value"] == pytest.approx(2 * 0.605)
    assert (got["n_seeds"] == 2).all() and len(data) == 2 * 3 * 2
    assert data.drop_duplicates("category")["category_label"].tolist() == ["Small", "Mid", "All"]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Small", "Mid", "All"]
    styles = {line.get_label(): (line.get_linestyle(), line.get_marker()) for line in ax.lines}
    assert styles["CLIP: corr. freq vs acc"] == ("-", "o")  # frozen CLIP solid
    assert styles["SL: corr. freq vs #pred"] == ("--", "X")  # SL dashed crosses
    colours = {line.get_label(): line.get_color() for line in ax.lines}
    assert colours["CLIP: corr. freq vs acc"] == colours["SL: corr. freq vs acc"]

    # Fig. 4b: two statistics on twin axes, random-init dashed, a reference square at one category
    spec = {
        "categories": ["small", "mid"],
        "statistics": ["top1", "rho_acc"],
        "twin_axes": True,
        "select": {"Rand": {"recipe": "clip"}, "Frozen": {"recipe": "clip-frozen"}},
        "references": {
            "Big frozen": {"at": "mid", "select": {"variant": "big", "recipe": "clip-frozen"}}
        },
    }
    fig, data = categories.plot(table, spec, None)
    assert len(fig.axes) == 2
    rand = [ln for ln in fig.axes[0].lines if ln.get_label() == "Rand: top-1"][0]
    assert rand.get_linestyle() == "--" and list(rand.get_ydata()) == pytest.approx([0.105, 0.205])
    ref = data[data["reference"]].set_index("statistic")
    assert ref.loc["top1", "category"] == "mid" and ref.loc["top1", "value"] == pytest.approx(0.355)
    assert ref.loc["rho_acc", "value"] == 9.0  # its own evaluation set: no dataset given
    square = [ln for ln in fig.axes[1].lines if ln.get_label() == "Big frozen: corr. freq vs acc"]
    assert square[0].get_marker() == "s" and list(square[0].get_xdata()) == [1]


def test_categories_elsewhere_repeats_same_as_arms_and_leaves_the_others_out():
    """Fig. 6b: a training set this workflow does not train on; SL repeats its -Cls point there,
    CLIP (a model pre-trained elsewhere) has no point and its CSV rows say why."""
    from tailstudy.figures import categories

    spec = {
        "categories": ["small", "corpus"],
        "elsewhere": {
            "corpus": {
                "label": "Corpus",
                "note": "pre-trained elsewhere",
                "same_as": {"SL": "small"},
            }
        },
        "dataset": "val100",
        "statistics": ["rho_acc"],
        "select": {"CLIP": {"recipe": "clip"}, "SL": {"model": "sl"}},
    }
    fig, data = categories.plot(_category_table(), spec, None)
    got = data.set_index(["arm", "category"])
    assert got.loc[("SL", "corpus"), "value"] == got.loc[("SL", "small"), "value"]
    assert got.loc[("SL", "corpus"), "variant"] == "small"
    assert np.isnan(got.loc[("CLIP", "corpus"), "value"])
    assert got.loc[("CLIP", "corpus"), "note"] == "pre-trained elsewhere"
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Small", "Corpus"]
    clip = [ln for ln in ax.lines if ln.get_label().startswith("CLIP")][0]
    assert list(clip.get_xdata()) == [0]  # no CLIP point at the corpus
    assert any("CLIP: trained elsewhere" in t.get_text() for t in ax.texts)
    bad = {**spec, "elsewhere": {"corpus": {"same_as": {"SL": "corpus"}}}}
    with pytest.raises(UserError, match="same_as SL: corpus: corpus is trained elsewhere too"):
        categories.series(_category_table(), bad)


def test_categories_name_what_is_missing():
    from tailstudy.figures import categories

    table = _category_table().drop(columns=["val100.rho_acc", "val100.rho_pred"])
    spec = {
        "categories": ["small", "big"],
        "dataset": "val100",
        "statistics": ["rho_acc"],
        "select": {"CLIP": {"recipe": "clip"}},
    }
    with pytest.raises(
        UserError, match="runs big_clip_s0, big_clip_s1 were not evaluated on val100"
    ):
        categories.series(table, spec)
    partly = _category_table()  # the column exists (other runs have it), this arm's are empty
    partly.loc[partly["recipe"] == "clip", "val100.rho_acc"] = np.nan
    with pytest.raises(UserError, match="runs big_clip_s0, big_clip_s1 have no rho_acc on val100"):
        categories.series(partly, spec)
    with pytest.raises(UserError, match="no run of variant huge matches"):
        categories.series(_category_table(), {**spec, "categories": ["huge"]})
    bad = {**spec, "references": {"R": {"at": "nowhere", "select": {"variant": "big"}}}}
    with pytest.raises(UserError, match="'at' nowhere is not a category"):
        categories.series(_category_table(), bad)
