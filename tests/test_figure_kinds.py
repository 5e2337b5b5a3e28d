"""Figure kinds are one list: the schema's ``plot`` enum, the checks and the plotting read it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tailstudy import study
from tailstudy.figures import drawer
from tailstudy.figures.kinds import FREQUENCY, KINDS, PROBES, RUNS
from tailstudy.freq import plan as freq_plan
from tailstudy.io import UserError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_schema_plot_enum_is_the_registry():
    schema = yaml.safe_load(SCHEMA.read_text())
    enum = schema["properties"]["figures"]["additionalProperties"]["properties"]["plot"]["enum"]
    assert enum == list(KINDS)


@pytest.mark.parametrize("plot", list(KINDS))
def test_every_kind_draws(plot):
    assert callable(drawer(plot))
    assert KINDS[plot].source in (RUNS, FREQUENCY, PROBES)


def test_unknown_kind_is_one_line():
    with pytest.raises(UserError, match="unknown plot 'pie'; known: descriptiveness"):
        drawer("pie")


def _config(**figure):
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["figures"] = {"f": {"paper_label": "Fig. 0", "caption": "c", **figure}}
    return cfg


def test_run_figures_need_studies_and_frequency_figures_their_keys():
    with pytest.raises(UserError, match=r"figure f \(descriptiveness\) needs studies"):
        study.check(_config(plot="descriptiveness"))
    with pytest.raises(UserError, match=r"figure f \(frequency-zoom\) needs pairs"):
        freq_plan.check(_config(plot="frequency-zoom", rank_by="web"))


def test_figure_runs_follow_the_kind():
    cfg = _config(plot="descriptiveness", studies=["caption-scratch"])
    table = study.expand(cfg)
    assert study.figure_runs(cfg, table, "f") == sorted(table.studies["caption-scratch"])
    cfg["figures"]["f"] = {"plot": "label-curves", "corpora": ["web"], "studies": ["x"]}
    assert study.figure_runs(cfg, table, "f") == []


def test_scale_figure_draws_the_seed_means_per_mode_and_size(tmp_path):
    import numpy as np
    import pandas as pd

    from tailstudy.figures import FigureInputs, render

    rows = []
    for recipe, label in (("clip", "Rand init head"), ("clip-lm", "Frozen LM head")):
        for n in (1000, 2000, 4000):
            for seed in (0, 1):
                rows.append(
                    {
                        "run_id": f"v{n}_clip_{recipe}_s{seed}",
                        "objective": "clip",
                        "recipe": recipe,
                        "recipe_label": label,
                        "seed": seed,
                        "n_train": n,
                        "top1": n / 10_000 + seed / 100,
                        "rho_acc": -np.log(n) / 10,
                        "mean_nc1": 1.0 + seed,
                        "mean_nc2_M": 0.1,
                    }
                )
    rows.append(
        {
            **rows[0],
            "run_id": "v4000_sl_sl_s0",
            "objective": "sl",
            "recipe": "sl",
            "recipe_label": "Rand init head",
            "n_train": 4000,
        }
    )
    table_path = tmp_path / "scale.tsv"
    pd.DataFrame(rows).to_csv(table_path, sep="\t", index=False)
    spec = {"plot": "scale", "studies": ["s"], "paper_label": "Fig. 5", "caption": "c"}
    render(spec, FigureInputs([table_path]), tmp_path / "fig.pdf")
    data = pd.read_csv(tmp_path / "fig.csv")
    assert len(data) == 2 * 3 + 1  # two CLIP modes at three sizes, one SL point
    assert sorted(data["n_seeds"]) == [1] + [2] * 6
    lm = data[(data["recipe"] == "clip-lm") & (data["n_train"] == 2000)].iloc[0]
    assert lm["top1"] == pytest.approx(0.2 + 0.005) and lm["mean_nc1"] == pytest.approx(1.5)
    assert (tmp_path / "fig.png").stat().st_size > 0
    with pytest.raises(UserError, match="needs n_train"):
        render(spec, FigureInputs([_without(table_path, "n_train", tmp_path)]), tmp_path / "x.pdf")
    # a third seed at the end points only (a claim's arms): the line keeps the shared seeds
    extra = [
        {**r, "run_id": r["run_id"][:-1] + "2", "seed": 2, "top1": 9.0}
        for r in rows
        if r["recipe"] == "clip" and r["n_train"] in (1000, 4000) and r["seed"] == 0
    ]
    pd.DataFrame(rows + extra).to_csv(table_path, sep="\t", index=False)
    render(spec, FigureInputs([table_path]), tmp_path / "fig.pdf")
    again = pd.read_csv(tmp_path / "fig.csv")
    pd.testing.assert_frame_equal(again, data)
    only_ends = pd.DataFrame([r for r in rows + extra if r["seed"] == 2 or r["recipe"] != "clip"])
    only_ends.loc[only_ends["n_train"] == 4000, "seed"] = 3
    only_ends.to_csv(table_path, sep="\t", index=False)
    with pytest.raises(UserError, match="has no seed shared by all its training sizes"):
        render(spec, FigureInputs([table_path]), tmp_path / "x.pdf")


def _without(path, column, tmp_path):
    import pandas as pd

    out = tmp_path / "without.tsv"
    pd.read_csv(path, sep="\t").drop(columns=[column]).to_csv(out, sep="\t", index=False)
    return out


def test_tail_trim_figure_splits_by_ceil_and_part(tmp_path):
    import pandas as pd

    from tailstudy.figures import FigureInputs, render

    rows = []
    for obj, recipe, label in (("clip", "clip", "Rand init head"), ("sl", "sl-frozen", "Frozen")):
        for n in (5, 50):
            for ceil in (1, 0):
                for seed in (0, 1):
                    rows.append(
                        {
                            "run_id": f"t{n}c{ceil}_{obj}_{recipe}_s{seed}",
                            "objective": obj,
                            "recipe": recipe,
                            "recipe_label": label,
                            "seed": seed,
                            "tail_n": n,
                            "tail_ceil": ceil,
                            "acc_head_mid": 0.6 - n / 1000,
                            "acc_tail": 0.1 * ceil + seed / 10,
                        }
                    )
    rows.append({**rows[0], "run_id": "full_clip_clip_s0", "tail_n": None, "tail_ceil": None})
    path = tmp_path / "trim.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    spec = {"plot": "tail-trim", "studies": ["s"], "paper_label": "Fig. 8", "caption": "c"}
    render(spec, FigureInputs([path]), tmp_path / "fig.pdf")
    data = pd.read_csv(tmp_path / "fig.csv")
    assert len(data) == 2 * 2 * 2 and (data["n_seeds"] == 2).all()  # untrimmed run left out
    one_shot = data[(data["series"] == "CLIP Rand init head") & (data["tail_ceil"] == 1)]
    assert one_shot["acc_tail"].tolist() == pytest.approx([0.15, 0.15])
    with pytest.raises(UserError, match="needs tail_n, tail_ceil"):
        render(
            spec,
            FigureInputs([_without(_without(path, "tail_n", tmp_path), "tail_ceil", tmp_path)]),
            tmp_path / "x.pdf",
        )


def test_tail_case_figure_reads_the_runs_metrics(tmp_path):
    """Fig. 9 on hand-made metrics files: (a) the affinity matrices of the first two series,
    (b) the tail's accuracy and #pred in descending pre-trim frequency."""
    import numpy as np
    import pandas as pd

    from tailstudy.evaluate.metrics import NC_KEYS
    from tailstudy.evaluate.outputs import metrics_arrays, save_arrays
    from tailstudy.figures import FigureInputs, render
    from tailstudy.figures.tail_case import metrics_path

    c, d, tail = 12, 4, np.array([7, 2, 9])  # T_N rarest first
    rng = np.random.default_rng(0)
    rows = []
    for i, recipe in enumerate(("sl", "sl-frozen", "sl-frozen-sub")):
        run = f"trim_sl_{recipe}_s0"
        conf = np.diag(np.arange(c) + 1 + i) + 1
        freq = np.arange(c) * 10 + 20
        freq[tail] = 0
        nc = {k: np.zeros(c) for k in NC_KEYS}
        arrays = metrics_arrays(conf, 0.5, nc, freq, rng.normal(size=(c, d)), tail)
        path = metrics_path(tmp_path / "eval", run, "val")
        path.parent.mkdir(parents=True)
        save_arrays(path, arrays)
        rows.append(
            {"run_id": run, "model": "sl", "recipe": recipe, "seed": 0, "eval_dataset": "val"}
        )
    table = _study_table(tmp_path, rows)
    spec = {
        **_run_figure("tail-case", "Fig. 9"),
        "n_head": 5,
        "select": {
            "Rand": {"recipe": "sl"},
            "Frozen": {"recipe": "sl-frozen"},
            "Sub": {"recipe": "sl-frozen-sub"},
        },
    }
    render(spec, FigureInputs([table], eval_root=tmp_path / "eval"), tmp_path / "fig.pdf")
    data = pd.read_csv(tmp_path / "fig.csv")
    a, b = data[data["panel"] == "a"], data[data["panel"] == "b"]
    assert set(a["series"]) == {"Rand", "Frozen"} and len(a) == 2 * (5 + 3) ** 2
    diag = a[a["row"] == a["col"]]
    assert np.allclose(diag["cosine"], 1.0, atol=1e-3)  # float16 class vectors
    sub = b[b["series"] == "Sub"]
    assert sub["class"].tolist() == [9, 2, 7]  # descending frequency before the trim
    conf = np.diag(np.arange(c) + 3) + 1
    acc = np.diag(conf) / conf.sum(1)
    assert sub["acc"].to_numpy() == pytest.approx(acc[[9, 2, 7]], abs=1e-4)
    assert sub["pred"].tolist() == conf.sum(0)[[9, 2, 7]].tolist()
    untrimmed = {**spec, "select": {"Rand": {"recipe": "sl"}}}
    save_arrays(
        metrics_path(tmp_path / "eval", "trim_sl_sl_s0", "val"),
        metrics_arrays(np.eye(c, dtype=int), 1.0, {k: np.zeros(c) for k in NC_KEYS}, np.ones(c)),
    )
    with pytest.raises(UserError, match="metrics.npz has no class_vectors: it predates them"):
        render(untrimmed, FigureInputs([table], eval_root=tmp_path / "eval"), tmp_path / "x.pdf")


def test_binned_figure_bins_each_series_by_decade_and_draws_pending_panels(tmp_path):
    import numpy as np
    import pandas as pd

    from tailstudy.figures import FigureInputs, render
    from tailstudy.figures.pearson_spearman import per_class_path

    freq = np.array([0, 3, 7, 20, 50, 500])
    rows = []
    for run, acc in (("a_sl_sl_s0", [0, 0, 0.2, 0.4, 0.6, 1.0]), ("a_clip_clip_s0", [0.1] * 6)):
        path = per_class_path(tmp_path / "eval", run, "val")
        path.parent.mkdir(parents=True)
        pd.DataFrame({"freq": freq, "acc": acc, "pred": freq // 2}).to_csv(path, sep="\t")
        rows.append({"run_id": run, "model": run.split("_")[1], "seed": 0, "eval_dataset": "val"})
    table = _study_table(tmp_path, rows)
    spec = {
        **_run_figure("binned", "Fig. 15a"),
        "select": {"CLIP": {"model": "clip"}, "SL": {"model": "sl"}},
        "key_order": {"select": ["SL", "CLIP"]},
        "pending": {"Other": "not evaluated yet"},
    }
    render(spec, FigureInputs([table], eval_root=tmp_path / "eval"), tmp_path / "fig.pdf")
    data = pd.read_csv(tmp_path / "fig.csv")
    assert list(dict.fromkeys(data["series"])) == ["SL", "CLIP", "Other"]
    sl = data[(data["series"] == "SL") & (data["statistic"] == "acc")]
    assert sl["bin_high"].tolist() == [1, 10, 100, 1000]  # [0, 1), then decades
    assert sl["n"].tolist() == [1, 2, 2, 1]
    assert sl["mean"].tolist() == pytest.approx([0, 0.1, 0.5, 1.0])
    assert sl["std"].tolist() == pytest.approx([0, 0.1, 0.1, 0])
    other = data[data["series"] == "Other"]
    assert len(other) == 2 and (other["note"] == "not evaluated yet").all()
    spec["pending"] = {"SL": "x"}
    with pytest.raises(UserError, match="SL is both selected and pending"):
        render(spec, FigureInputs([table], eval_root=tmp_path / "eval"), tmp_path / "x.pdf")


def _study_table(tmp_path, rows):
    import pandas as pd

    path = tmp_path / "study.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def _run_figure(plot: str, paper_label: str) -> dict:
    return {"plot": plot, "studies": ["s"], "paper_label": paper_label, "caption": "c"}
