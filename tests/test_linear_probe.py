"""Linear probe (tailstudy.evaluate.linear_probe): C selection and refit, metrics, features."""

import numpy as np
import pytest
import torch

from standins import image_bytes
from tailstudy.evaluate import linear_probe as lp
from tailstudy.io import UserError


def blobs(rng, n_per_class, centers, scale=0.3):
    x = np.concatenate(
        [rng.normal(c, scale, size=(n, 2)) for n, c in zip(n_per_class, centers, strict=True)]
    )
    y = np.concatenate([np.full(n, k) for k, n in enumerate(n_per_class)])
    return {"features": x, "label": y}


def test_grid_is_45_log_spaced_strengths_from_weak_to_strong():
    assert len(lp.LAMBDAS) == 45
    assert lp.LAMBDAS[0] == pytest.approx(1e-6) and lp.LAMBDAS[-1] == pytest.approx(1e5)
    np.testing.assert_allclose(np.diff(np.log10(lp.LAMBDAS)), 11 / 44)


def test_selection_picks_the_best_validation_c_and_refits_on_train_and_val(monkeypatch):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    centers = [(0, 0), (4, 0), (0, 4)]
    train = blobs(rng, [30, 10, 10], centers)
    # every validation image sits in class 1's blob but is labelled 0, the majority class: only
    # a classifier regularised down to its intercepts (tiny C) gets them right
    val = {"features": rng.normal((4, 0), 0.3, size=(8, 2)), "label": np.zeros(8, dtype=int)}
    test = blobs(rng, [5, 5, 5], centers)
    fits = []
    real_fit = LogisticRegression.fit

    def spy(self, x, y, *a, **kw):
        fits.append((len(x), self.C, self.warm_start, self.solver, self.max_iter))
        return real_fit(self, x, y, *a, **kw)

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    out = lp.linear_probe({"train": train, "val": val, "test": test}, "top1", progress=False)
    v = np.asarray(out["val_scores"])
    assert len(v) == 45 and v[0] == 0 and v[-1] == 100  # weak C: class 1; strong C: majority
    best = int(np.flatnonzero(v == 100)[0])  # the first C reaching the best score
    assert out["C"] == pytest.approx(1 / lp.LAMBDAS[best]) and out["val_best"] == 100
    # the path: 45 fits on train from C = 1e6 down, warm-started L-BFGS, then one refit on
    # train + val with the chosen C
    assert [f[0] for f in fits] == [50] * 45 + [58]
    np.testing.assert_allclose([f[1] for f in fits[:45]], 1 / lp.LAMBDAS)
    assert fits[-1][1] == pytest.approx(out["C"])
    assert all(f[2:] == (True, "lbfgs", 100) for f in fits)
    # the test score is the refit model's: recompute it the same way (warm start included)
    monkeypatch.setattr(LogisticRegression, "fit", real_fit)
    clf = LogisticRegression(solver="lbfgs", warm_start=True)
    for lam in lp.LAMBDAS:
        clf.set_params(C=1 / lam).fit(train["features"], train["label"])
    both = lp._concat(train, val)
    clf.set_params(C=out["C"]).fit(both["features"], both["label"])
    assert out["test"] == pytest.approx(
        100 * (clf.predict(test["features"]) == test["label"]).mean()
    )


def test_voc_11_point_map_on_a_hand_made_example():
    # class 0: ranked TP FP TP FP TP -> precision 1 up to recall 1/3, 2/3 up to 2/3, 3/5 at 1
    y0, s0 = [1, 0, 1, 0, 1], [0.9, 0.8, 0.7, 0.6, 0.2]
    assert lp.voc07_ap(y0, s0) == pytest.approx((4 * 1 + 3 * 2 / 3 + 4 * 0.6) / 11)
    # class 1: the top-scored image shows the class only as a difficult object: left out, the
    # rest ranks TP FP FP TP -> precision 1 up to recall 1/2, then 1/2
    y1, s1 = [0, 1, 0, 0, 1], [0.95, 0.5, 0.4, 0.3, 0.1]
    difficult = np.zeros((5, 2), dtype=bool)
    difficult[0, 1] = True
    y, s = np.array([y0, y1]).T, np.array([s0, s1]).T
    ap0, ap1 = (4 + 2 + 2.4) / 11, (6 * 1 + 5 * 0.5) / 11
    assert lp.map11(y, s, difficult) == pytest.approx(100 * (ap0 + ap1) / 2)
    # counting it as a negative (a false positive ranked first) lowers that class's AP
    assert lp.map11(y, s) < lp.map11(y, s, difficult)
    assert lp.voc07_ap([0, 0, 0], [1, 2, 3]) != lp.voc07_ap([0, 0, 0], [1, 2, 3])  # nan


def test_mean_per_class_accuracy_and_top1_per_dataset():
    from tailstudy.acquire.transfer import OWN_SETS, TRANSFER_SETS

    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 0, 0, 1, 0, 2])
    assert lp.score("top1", y_true, y_pred) == pytest.approx(75.0)
    assert lp.score("mean_per_class", y_true, y_pred) == pytest.approx(100 * (1 + 0.5 + 0.5) / 3)
    # a class predicted but absent from the test labels has no row: not averaged in
    assert lp.score("mean_per_class", np.array([0, 0, 1]), np.array([0, 3, 1])) == pytest.approx(75)
    # METHODS §1.4: which metric each transfer set reports
    metric = {k: v[3] for k, v in TRANSFER_SETS.items()} | OWN_SETS
    assert metric == {
        "aircraft": "mean_per_class",
        "caltech101": "mean_per_class",
        "flowers": "mean_per_class",
        "pets": "mean_per_class",
        "cars": "top1",
        "cifar10": "top1",
        "cifar100": "top1",
        "dtd": "top1",
        "food": "top1",
        "sun397": "top1",
        "voc2007": "map11",
    }
    assert set(metric.values()) == set(lp.METRICS)
    with pytest.raises(UserError, match="unknown probe metric 'acc'"):
        lp.score("acc", y_true, y_pred)


def test_multi_label_probe_fits_one_binary_classifier_per_class():
    rng = np.random.default_rng(1)

    def split(n):
        labels = rng.integers(0, 2, size=(n, 3)).astype(np.uint8)
        labels[:2] = [[1, 1, 1], [0, 0, 0]]  # every class has positives and negatives
        x = labels * 2.0 + rng.normal(0, 0.4, size=(n, 3))  # feature c says class c
        return {"features": x, "labels": labels, "difficult": np.zeros((n, 3), dtype=bool)}

    out = lp.linear_probe(
        {"train": split(40), "val": split(20), "test": split(20)}, "map11", progress=False
    )
    assert out["metric"] == "map11" and out["test"] > 90 and len(out["val_scores"]) == 45
    with pytest.raises(UserError, match="split train has no 'label'"):
        lp.linear_probe({s: split(5) for s in lp.SPLITS}, "top1", progress=False)


def _tiny_voc(root):
    from tailstudy.acquire.transfer import build_transfer

    base = root / "src/VOCdevkit/VOC2007"
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (base / d).mkdir(parents=True)
    objects = {"train": ["car", "dog"], "val": ["car"], "test": ["dog", "cat"]}
    n = 0
    for split, classes in objects.items():
        ids = []
        for c in classes:
            n += 1
            image_id = f"{n:06d}"
            ids.append(image_id)
            body = f"<object><name>{c}</name><difficult>0</difficult></object>"
            body += "<object><name>person</name><difficult>1</difficult></object>"
            (base / "Annotations" / f"{image_id}.xml").write_text(
                f"<annotation>{body}</annotation>"
            )
            (base / "JPEGImages" / f"{image_id}.jpg").write_bytes(image_bytes(20, 24, n))
        (base / "ImageSets/Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    build_transfer(
        {"dataset": "voc2007", "root": str(root / "src"), "image_size": 16}, root / "voc", "voc"
    )
    return root / "voc"


def test_features_are_cached_per_split_with_the_multi_label_columns(tmp_path):
    from tailstudy.acquire.transfer import VOC_CLASSES

    voc = _tiny_voc(tmp_path)
    calls = []

    def encoder(x):  # a stand-in tower: per-channel means of the normalised crop
        calls.append(tuple(x.shape))
        return x.mean(dim=(2, 3))

    cache = tmp_path / "feats/run/voc/test.npz"
    f = lp.cached_features(cache, encoder, voc, "test", size=12, batch=1)
    assert calls == [(1, 3, 12, 12)] * 2 and cache.exists()
    assert f["features"].shape == (2, 3) and f["features"].dtype == np.float32
    c = {name: i for i, name in enumerate(VOC_CLASSES)}
    assert f["labels"].shape == (2, 20)
    assert [np.flatnonzero(r).tolist() for r in f["labels"]] == [[c["dog"]], [c["cat"]]]
    assert f["difficult"][:, c["person"]].tolist() == [1, 1] and f["difficult"].sum() == 2
    # OpenAI normalisation of the resized centre crop
    from tailstudy.data.augment import normalize, resize_center_crop, to_float
    from tailstudy.data.format import load_images

    img = torch.from_numpy(load_images(voc, [str(f["key"][0])]))
    expect = normalize(resize_center_crop(to_float(img), 12)).mean(dim=(2, 3))
    np.testing.assert_allclose(f["features"][0], expect[0].numpy(), rtol=1e-5)

    again = lp.cached_features(cache, encoder, voc, "test", size=12, batch=1)
    assert len(calls) == 2  # read back, not recomputed
    assert all(np.array_equal(f[k], again[k]) for k in f)
    lp.cached_features(cache, encoder, voc, "val", size=12)  # other rows in the file: recomputed
    assert len(calls) == 3
    arrays = lp.probe_arrays(again)
    assert arrays["difficult"].dtype == bool and "label" in arrays

    with pytest.raises(UserError, match="unknown probe split 'trainval'"):
        lp.cached_features(cache, encoder, voc, "trainval", size=12)


def test_visual_encoder_loads_a_runs_tower(tmp_path):
    from tailstudy.models import factory

    model = factory.create_clip("RN-tiny")
    torch.save({"model": model.state_dict()}, tmp_path / "model.pt")
    tower = lp.visual_encoder(tmp_path / "model.pt", "RN-tiny")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(tower(x), model.visual.eval()(x))
    assert not any(p.requires_grad for p in tower.parameters())
    torch.save({"model": {"head": torch.zeros(2)}}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="holds no visual"):
        lp.visual_encoder(tmp_path / "bad.pt", "RN-tiny")


def test_features_follow_the_row_order_across_shards(tmp_path):
    import pandas as pd

    from tailstudy.data.format import write_dataset

    # 6 one-colour images over 3 shards; the val rows interleave shards
    images = np.stack([np.full((8, 8, 3), 40 * i, dtype=np.uint8) for i in range(6)])
    index = pd.DataFrame(
        {
            "key": [f"k{i}" for i in range(6)],
            "label": [0, 1, 0, 1, 0, 1],
            "caption": "",
            "split": ["val", "train", "val", "test", "val", "train"],
        }
    )
    write_dataset(tmp_path / "d", "d", index, images, [("a", "a"), ("b", "b")], {}, shard_size=2)
    calls = []

    def encoder(x):
        calls.append(len(x))
        return x[:, :1].mean(dim=(2, 3))

    f = lp.cached_features(tmp_path / "val.npz", encoder, tmp_path / "d", "val", size=8, batch=4)
    assert f["key"].tolist() == ["k0", "k2", "k4"] and calls == [1, 1, 1]  # one run per shard
    assert np.all(np.diff(f["features"][:, 0]) > 0)  # brighter image, larger feature: in order
    assert f["label"].tolist() == [0, 0, 0] and "labels" not in f
