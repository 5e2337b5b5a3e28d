"""Head/tail accuracy (§5.6), classifier affinity and intra-class similarity (§5.9), and the
metrics.npz contract (§5.5) on hand-made inputs."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tailstudy.data.variants import tail_classes
from tailstudy.evaluate.auxiliary import (
    classifier_affinity,
    first_per_class,
    intra_class_similarities,
    similarity_density,
)
from tailstudy.evaluate.metrics import NC_KEYS, head_tail_accuracy, neural_collapse
from tailstudy.evaluate.outputs import METRICS_KEYS, read_metrics, write_metrics
from tailstudy.io import UserError


def test_head_tail_accuracy():
    acc = np.array([1.0, 0.5, 0.0, 0.25, np.nan, 0.75])
    split = head_tail_accuracy(acc, np.array([2, 3, 4]))
    assert split["tail"] == pytest.approx(0.125)  # class 4 has no samples: skipped
    assert split["head_mid"] == pytest.approx(0.75)
    assert np.isnan(head_tail_accuracy(acc, np.array([4]))["tail"])
    # the trim's T_N splits the classes
    counts = np.array([50, 3, 0, 3, 80, 1])
    split = head_tail_accuracy(acc, tail_classes(counts, 2))  # classes 2 and 5
    assert split["tail"] == pytest.approx(0.375) and split["head_mid"] == pytest.approx(1.75 / 3)
    with pytest.raises(UserError, match=r"tail labels must lie in \[0, 6\)"):
        head_tail_accuracy(acc, np.array([6]))
    with pytest.raises(UserError, match="repeat a class"):
        head_tail_accuracy(acc, np.array([1, 1]))


def test_classifier_affinity_of_a_trimmed_run_takes_the_recorded_tail():
    """Ceil 0 leaves the tail's counts all 0: the trim's T_N (rarest first) gives the tail rows
    and their order; the head rows are drawn as from the untrimmed counts."""
    rng = np.random.default_rng(1)
    c, d, n = 20, 6, 4
    head = rng.normal(size=(c, d))
    before = rng.permutation(np.arange(c) * 7 + 3)
    t_n = tail_classes(before, n)
    after = before.copy()
    after[t_n] = 0
    untrimmed = classifier_affinity(head, before, n_tail=n, n_head=5)
    trimmed = classifier_affinity(head, after, n_tail=n, n_head=5, tail=t_n)
    assert trimmed["classes"].tolist() == untrimmed["classes"].tolist()
    assert trimmed["classes"][-n:].tolist() == t_n[::-1].tolist()  # rarest last
    with pytest.raises(UserError, match="the tail has 4 classes, not n_tail = 3"):
        classifier_affinity(head, after, n_tail=3, n_head=5, tail=t_n)


def test_classifier_affinity_orders_rows_and_draws_head_classes():
    rng = np.random.default_rng(0)
    c, d = 30, 8
    head = rng.normal(size=(c, d))
    counts = rng.permutation(np.r_[np.arange(c - 2) * 10 + 5, 0, 0])  # a tie among the rarest
    out = classifier_affinity(head, counts, n_tail=5, n_head=4, seed=42)
    classes, aff = out["classes"], out["affinity"]
    assert classes.shape == (9,) and aff.shape == (9, 9)
    # the last rows are T_N, rarest last; the head rows come from the other classes
    assert set(classes[4:]) == set(tail_classes(counts, 5))
    assert np.all(np.diff(counts[classes[4:]]) <= 0)
    desc = np.argsort(counts, kind="stable")[::-1]
    np.random.seed(42)
    assert classes[:4].tolist() == desc[np.random.choice(c - 5, 4, replace=False)].tolist()
    assert not set(classes[:4]) & set(classes[4:])
    unit = head / np.linalg.norm(head, axis=1, keepdims=True)
    np.testing.assert_allclose(aff, unit[classes] @ unit[classes].T, atol=1e-12)
    np.testing.assert_allclose(np.diag(aff), 1.0)
    # a head whose classes share one direction has affinity 1 everywhere
    same = classifier_affinity(np.outer(np.arange(1, c + 1), np.ones(d)), counts, 5, 4)
    np.testing.assert_allclose(same["affinity"], 1.0)
    with pytest.raises(UserError, match="cannot draw 26 head classes and 5 tail classes"):
        classifier_affinity(head, counts, n_tail=5, n_head=26)


def test_first_per_class_is_groupby_head():
    labels = np.array([2, 0, 2, -1, 1, 2, 0, 2, 1])
    got = first_per_class(labels, k=2)
    assert got.tolist() == [0, 1, 2, 4, 6, 8]
    df = pd.DataFrame({"label": labels})
    ref = df[df.label >= 0].groupby("label").head(2).index
    assert got.tolist() == ref.tolist()


def test_intra_class_similarities_and_density():
    e = np.array([[1, 0], [2, 0], [0, 3], [1, 1], [1, -1.0]])
    y = np.array([0, 0, 1, 2, 2])
    sims = intra_class_similarities(e, y)
    # class 0: two parallel vectors (4 ones); class 1: one vector (1); class 2: orthogonal pair
    np.testing.assert_allclose(sims, [1, 1, 1, 1, 1, 1, 0, 0, 1], atol=1e-6)
    assert sims.dtype == np.float32
    dens, edges = similarity_density(np.r_[sims, 1.0000001, 0.55, 0.05], bins=9, lo=0.1)
    assert len(edges) == 10 and edges[0] == pytest.approx(0.1) and edges[-1] == 1.0
    assert np.sum(dens * np.diff(edges)) == pytest.approx(1.0)
    # 9 values in [0.1, 1]: eight ones (the round-off above 1 counts in the last bin) and 0.55
    assert dens[-1] * 0.1 == pytest.approx(8 / 9) and dens[4] * 0.1 == pytest.approx(1 / 9)
    with pytest.raises(UserError, match="no similarity is >= 0.1"):
        similarity_density([0.0, -0.5])
    with pytest.raises(UserError, match="embedding is zero"):
        intra_class_similarities(np.zeros((2, 3)), np.array([0, 0]))


def _evaluation(seed=0, c=6):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(c), 5)
    h = rng.normal(size=(c, 4))[y] + 0.3 * rng.normal(size=(len(y), 4))
    pred = np.where(rng.random(len(y)) < 0.7, y, rng.integers(0, c, len(y)))
    confusion = np.zeros((c, c), int)
    np.add.at(confusion, (y, pred), 1)
    return confusion, neural_collapse(h, y, rng.normal(size=(4, c)))


def test_metrics_round_trip_and_summary(tmp_path):
    confusion, nc = _evaluation()
    freq = np.array([500, 20, 300, 1, 80, 7])
    summary = write_metrics(
        tmp_path / "metrics.npz",
        tmp_path / "summary.json",
        confusion=confusion,
        top5=0.9,
        nc=nc,
        freq=freq,
        tail=np.array([3, 5]),
        extra={"run_id": "r1"},
    )
    m = read_metrics(tmp_path / "metrics.npz")
    assert set(METRICS_KEYS) <= set(m)
    np.testing.assert_array_equal(m["confusion"], confusion)
    acc = np.diag(confusion) / confusion.sum(1)
    np.testing.assert_allclose(m["acc"], acc)
    np.testing.assert_array_equal(m["pred"], confusion.sum(0))
    np.testing.assert_array_equal(m["freq"], freq)
    for k in NC_KEYS:
        np.testing.assert_array_equal(m[k], nc[k])
        assert m[k].dtype == np.float64
    assert m["top1"] == pytest.approx(acc.mean()) and m["top5"] == 0.9
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == pytest.approx(summary) and on_disk["run_id"] == "r1"
    assert summary["rho_acc"] == pytest.approx(stats.spearmanr(freq, acc).statistic)
    assert summary["rho_pred"] == pytest.approx(stats.spearmanr(freq, confusion.sum(0)).statistic)
    for k in NC_KEYS:
        assert summary[f"mean_{k}"] == pytest.approx(nc[k].mean())
        assert summary[f"rho_freq_{k}"] == pytest.approx(stats.spearmanr(freq, nc[k]).statistic)
        assert summary[f"rho_acc_{k}"] == pytest.approx(stats.spearmanr(acc, nc[k]).statistic)
    assert summary["acc_tail"] == pytest.approx(acc[[3, 5]].mean())
    assert summary["acc_head_mid"] == pytest.approx(acc[[0, 1, 2, 4]].mean())


def test_metrics_bad_input_and_old_files(tmp_path):
    confusion, nc = _evaluation()
    kw = {"confusion": confusion, "top5": 0.5, "nc": nc, "freq": np.arange(6)}
    with pytest.raises(UserError, match=r"freq must have one value per class \(6"):
        write_metrics(tmp_path / "a.npz", tmp_path / "a.json", **{**kw, "freq": np.arange(5)})
    with pytest.raises(UserError, match="top5 is a fraction"):
        write_metrics(tmp_path / "a.npz", tmp_path / "a.json", **{**kw, "top5": 45})
    with pytest.raises(UserError, match="lack nc2nn_W"):
        bad = {k: v for k, v in nc.items() if k != "nc2nn_W"}
        write_metrics(tmp_path / "a.npz", tmp_path / "a.json", **{**kw, "nc": bad})
    assert not list(tmp_path.iterdir())  # nothing half-written
    np.savez(tmp_path / "old.npz", confusion=confusion)
    with pytest.raises(UserError, match="old.npz lacks acc, pred, .*rerun its evaluation"):
        read_metrics(tmp_path / "old.npz")
    with pytest.raises(UserError, match="missing file .*none.npz"):
        read_metrics(tmp_path / "none.npz")


def test_each_evaluation_set_writes_its_own_folder_and_the_study_table_joins_them(tmp_path):
    from runs import run_config
    from tailstudy.analysis.collect import collect
    from tailstudy.evaluate.outputs import metrics_arrays, metrics_summary
    from tailstudy.evaluate.report import write_eval

    cfg = run_config("clip")  # default evaluation set "tiny"
    classes = pd.DataFrame({"label": [0, 1, 2], "wnid": ["n1", "n2", "n3"], "name": list("abc")})
    rng = np.random.default_rng(0)
    written = {}
    for dataset, hits in (("tiny", [5, 3, 1]), ("tiny-v2", [4, 2, 0])):
        conf = np.diag(hits) + 1
        h = rng.normal(size=(30, 4))
        y = np.repeat(np.arange(3), 10)
        nc = neural_collapse(h, y, rng.normal(size=(4, 3)))
        arrays = metrics_arrays(conf, 0.9, nc, np.array([30, 20, 10]))
        summary = metrics_summary(arrays, np.array([2]))
        write_eval(tmp_path / cfg.run_id / dataset, cfg, summary, arrays, classes, dataset)
        written[dataset] = summary
    on_disk = read_metrics(tmp_path / cfg.run_id / "tiny-v2" / "metrics.npz")
    assert on_disk["confusion"].tolist() == (np.diag([4, 2, 0]) + 1).tolist()
    from tailstudy.figures.pearson_spearman import per_class_path

    pc = pd.read_csv(per_class_path(tmp_path, cfg.run_id, "tiny"), sep="\t")  # as figures read it
    assert list(pc.columns) == ["label", "wnid", "name", "freq", "acc", "pred", *NC_KEYS]
    table = collect(
        "s",
        [tmp_path / cfg.run_id / "tiny", tmp_path / cfg.run_id / "tiny-v2"],
        tmp_path / "t.tsv",
    )
    assert len(table) == 1 and table.at[0, "eval_dataset"] == "tiny"
    row = table.iloc[0]
    assert row["top1"] == pytest.approx(written["tiny"]["top1"])
    assert row["tiny-v2.top1"] == pytest.approx(written["tiny-v2"]["top1"])
    assert row["acc_tail"] == pytest.approx(2 / 4)  # T_N = {2}: its row is [1, 1, 2]
    assert row["mean_nc1"] == pytest.approx(written["tiny"]["mean_nc1"])
    assert row["tiny-v2.acc_tail"] == pytest.approx(1 / 3)
    with pytest.raises(UserError, match="none on its default evaluation set"):
        collect("s", [tmp_path / cfg.run_id / "tiny-v2"], tmp_path / "u.tsv")
