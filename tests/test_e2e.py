"""The whole embedded study, end to end, as a user runs it (slow: about a quarter of an hour)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_all_figures_end_to_end_and_claims_hold(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-c2",
        "all_figures",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(REPO / "config.yaml"),
        "--show-failed-logs",
    ]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.time() - t0
    assert res.returncode == 0, res.stderr[-5000:]
    print(f"embedded all_figures: {elapsed:.0f} s")
    results = tmp_path / "results"
    import yaml

    figures = yaml.safe_load((REPO / "config.yaml").read_text())["figures"]
    assert len(figures) == 14
    for fig in figures:
        for ext in ("pdf", "png", "csv"):
            assert (results / "figures" / f"{fig}.{ext}").stat().st_size > 0
    corr = pd.read_csv(results / "figures" / "fig13-corpus-correlation.csv")
    assert len(corr) == 6 and corr["rho"].between(-1, 1).all()  # 3 pairs x 2 concept sets
    tail = pd.read_csv(results / "figures" / "table01-tail-classes.csv")
    assert (tail["count"] < 10).all() and tail["count"].is_monotonic_decreasing
    fig3 = pd.read_csv(results / "figures" / "fig03-descriptiveness.csv")
    assert len(fig3) == 14 and fig3[["rho_acc", "rho_pred", "top1"]].notna().all().all()
    natural = fig3[fig3["group"] == "CLIP natural"]["variant"].tolist()
    assert natural == figures["fig03-descriptiveness"]["descriptiveness"]  # lightest to darkest
    assert fig3["in_top1_fit"].dtype == bool
    claims = pd.read_csv(results / "claims.tsv", sep="\t")
    print(claims.to_string())
    assert set(claims["claim"]) == {"F1", "F2", "F3a", "F3b", "F6", "F7"}
    assert (claims.groupby("claim")["seed"].nunique() == 3).all()
    f3a = claims[claims["claim"] == "F3a"]
    assert set(f3a["statistic"]) == {"top1", "rho_acc"}
    # F3a (full text vs title only) is reported, not asserted: on the embedded world title-only
    # CLIP has measured above full text on top-1 (the small text tower; see README); so is F7
    # (DINO's probe scores on the embedded transfer tasks are within seed noise).
    print(f"F3a holds: {bool(f3a['claim_holds'].all())}")
    scale = pd.read_csv(results / "figures" / "fig05-scale.csv")
    stats = ["top1", "rho_acc", "mean_nc1", "mean_nc2_M"]
    assert scale[stats].notna().all().all()
    clip = scale[scale["objective"] == "clip"]
    assert clip.groupby("recipe")["n_train"].nunique().to_dict() == {
        r: 4 for r in ("clip", "clip-frozen", "clip-init", "clip-lm")
    }
    assert sorted(scale[scale["objective"] == "sl"]["recipe"]) == ["sl", "sl-frozen"]
    binned = pd.read_csv(results / "figures" / "fig15a-binned.csv")
    per_panel = binned.groupby(["series", "statistic"])["n"].sum()
    assert len(per_panel) == 4 and (per_panel == 100).all()  # every evaluated class, once
    web = pd.read_csv(results / "figures" / "fig06b-web-cls.csv").set_index(["arm", "category"])
    assert (
        web.loc[("SL", "web"), "value"].tolist() == web.loc[("SL", "web-cls-f2"), "value"].tolist()
    )
    assert web.loc[("CLIP", "web"), "value"].isna().all()  # pre-trained elsewhere: a note
    # F6 (more data: higher top-1, lower rho(freq, acc)) is reported, not asserted: at the
    # embedded budget rho rises with scale as the smaller fractions leave chance (see README)
    f6 = claims[claims["claim"] == "F6"]
    print(f"F6 holds: {bool(f6['claim_holds'].all())}")
    f7 = claims[claims["claim"] == "F7"]
    print(f"F7 holds: {bool(f7['claim_holds'].all())}")
    delta = pd.read_csv(results / "figures" / "fig10-dino-transfer.csv")
    assert set(delta["dataset"]) == {"probe-style", "probe-shape", "Avg"}
    assert delta["delta"].notna().all()
    cmp = pd.read_csv(results / "compare_to_paper.tsv", sep="\t")
    computed = cmp[cmp["ours"].notna()]
    # ours where this config draws the figure: Fig. 11a, Fig. 13's embedded corpora are not the
    # paper's (no row of theirs), Table 1's frequencies, the §3 size of incaps-full
    assert {"Fig. 11a", "Table 1", "§3 sizes"} <= set(computed["item"])
    assert (computed["comparable"] == "no").all() and computed["reason"].str.len().gt(0).all()
    assert (results / "compare_to_paper.html").stat().st_size > 0
    asserted = claims[claims["claim"].isin(["F1", "F2", "F3b"])]
    failing = asserted[~asserted["holds"]]
    assert failing.empty, f"claims that do not hold:\n{failing.to_string()}"
    again = subprocess.run(cmd + ["-n"], capture_output=True, text=True)
    assert "Nothing to be done" in again.stdout, again.stdout[-3000:]
