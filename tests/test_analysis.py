"""Claims and the descriptiveness figure (Figs. 3/19) on hand-made study tables."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import rgb_to_hsv, to_rgb

from tailstudy.figures import descriptiveness
from tailstudy.io import UserError

matplotlib.use("Agg")


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
