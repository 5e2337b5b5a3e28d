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
