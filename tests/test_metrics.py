import numpy as np
import pytest
from scipy import stats

from tailstudy.evaluate.metrics import (
    confusion_matrix,
    pearson,
    pearson_log,
    per_class,
    spearman,
    summarize,
)


def test_confusion_and_per_class():
    t = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 1, 0])
    m = confusion_matrix(t, p, 4)
    assert m[0, 0] == 1 and m[0, 1] == 1 and m[2, 1] == 1
    pc = per_class(m)
    assert np.allclose(pc["acc"][:3], [0.5, 1.0, 0.0]) and np.isnan(pc["acc"][3])
    assert pc["pred"].tolist() == [2, 4, 0, 0]


def test_correlations_match_scipy():
    rng = np.random.default_rng(0)
    f = rng.integers(0, 1000, 200)
    y = f * 0.001 + rng.normal(0, 0.3, 200)
    assert spearman(f, y) == pytest.approx(stats.spearmanr(f, y).statistic)
    assert pearson(f, y) == pytest.approx(stats.pearsonr(f, y).statistic)
    assert pearson_log(f, y) == pytest.approx(stats.pearsonr(np.log10(f + 1), y).statistic)
    # ties get average ranks, as scipy does
    ft = np.array([1, 1, 2, 2, 3, 5])
    yt = np.array([0.1, 0.2, 0.2, 0.4, 0.5, 0.5])
    assert spearman(ft, yt) == pytest.approx(stats.spearmanr(ft, yt).statistic)
    assert np.isnan(spearman([1, 1, 1, 1], [1, 2, 3, 4]))


def test_summary_top1_is_mean_per_class_accuracy():
    m = np.diag([5, 3, 0]) + np.array([[0, 0, 0], [2, 0, 0], [5, 0, 0]])
    s = summarize(m, np.array([10, 5, 1]))
    assert s["top1"] == pytest.approx((1 + 0.6 + 0) / 3)
    assert s["rho_pred"] == pytest.approx(stats.spearmanr([10, 5, 1], m.sum(0)).statistic)


def test_train_positions_align_evaluation_classes_by_wnid():
    from tailstudy.evaluate.metrics import train_positions
    from tailstudy.io import UserError

    train = ["n01", "n02", "n03", "n04"]
    assert train_positions(train, ["n04", "n02"]).tolist() == [3, 1]
    assert train_positions(train, train).tolist() == [0, 1, 2, 3]
    # a 1000-way run evaluated on 100 classes correlates with those classes' own counts
    counts = np.array([40, 30, 20, 10])
    assert counts[train_positions(train, ["n03", "n01"])].tolist() == [20, 40]
    with pytest.raises(UserError, match="2 evaluation classes .* not among the 4 classes run x"):
        train_positions(train, ["n09", "n01", "n08"], "run x")
