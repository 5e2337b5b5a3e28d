"""The objective protocol: each objective's loss on a hand-made batch against its formula, the
registry the run table reads, and a toy third objective trained (and resumed) by ``fit``."""

import math
import signal

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from runs import run_config
from tailstudy.data.loader import InMemorySet, Rows
from tailstudy.io import Stopped
from tailstudy.train import objectives, stop
from tailstudy.train.objectives.base import Objective, one_crop
from tailstudy.train.objectives.clip import CLIP
from tailstudy.train.objectives.dino import DINO
from tailstudy.train.objectives.sl import SL
from tailstudy.train.vocab import subsample_vocabulary

CPU = torch.device("cpu")


def tiny_set(labels, n_classes=6, size=32, seed=0) -> InMemorySet:
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    images = torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)
    classes = pd.DataFrame(
        {"label": range(n_classes), "wnid": [f"n{i:08d}" for i in range(n_classes)]}
    ).assign(name=[f"class {i}" for i in range(n_classes)])
    return InMemorySet(images, torch.tensor(labels), [f"a photo of {i}" for i in labels], classes)


def test_clip_loss_is_symmetric_infonce_at_the_logit_scale():
    data = tiny_set([0, 1, 2, 3, 4])
    obj = CLIP(run_config("clip"))
    torch.manual_seed(0)
    obj.setup(obj.build(data.classes["name"].tolist(), None), data, CPU)
    g = torch.Generator().manual_seed(1)
    img = F.normalize(torch.randn(5, 16, generator=g), dim=-1)
    txt = F.normalize(torch.randn(5, 16, generator=g), dim=-1)
    scale = torch.tensor(7.5)

    def net(images, tokens):  # a hand-made batch of features, whatever the input
        assert images.shape == (5, 3, 32, 32) and tokens.shape[0] == 5
        return img, txt, scale

    batch = obj.batch(data, Rows(torch.arange(5)), torch.Generator().manual_seed(2))
    assert torch.equal(batch["tokens"], obj.tokenizer(data.captions))
    loss = obj.loss(net, batch, torch.Generator())
    want = 0.0
    for i in range(5):  # image i's caption among all captions, and caption i's image
        row = [scale * img[i] @ txt[j] for j in range(5)]
        col = [scale * img[j] @ txt[i] for j in range(5)]
        want += -row[i] + torch.logsumexp(torch.stack(row), 0)
        want += -col[i] + torch.logsumexp(torch.stack(col), 0)
    assert torch.allclose(loss, want / 10, atol=1e-6)


def _sl_setup(**recipe):
    labels = [0, 0, 1, 1, 2, 3, 3, 3, 4, 4, 5, 0]
    data = tiny_set(labels)
    obj = SL(run_config("sl", **recipe))
    torch.manual_seed(0)
    model = obj.build(data.classes["name"].tolist(), None)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(12.0))
        model.head.mul_(torch.linspace(0.5, 3.0, 6)[:, None])  # rows of different norms
    obj.setup(model.eval(), data, CPU)  # eval: BatchNorm per sample, features reproducible
    x = one_crop(data, torch.arange(len(labels)), obj.recipe, torch.Generator(), CPU)
    with torch.no_grad():
        f = F.normalize(model.visual(x), dim=-1)
        protos = model.head / model.head.norm(dim=-1, keepdim=True)
    return obj, model, data, {"images": x, "labels": torch.tensor(labels)}, f, protos


def test_sl_loss_is_cross_entropy_over_scaled_cosines_to_normalised_prototypes():
    obj, model, _, batch, f, protos = _sl_setup()
    loss = obj.loss(model, batch, torch.Generator())
    logits = 12.0 * f @ protos.T
    y = batch["labels"]
    want = (logits.logsumexp(1) - logits[torch.arange(len(y)), y]).mean()
    assert torch.allclose(loss, want, atol=1e-5)


def test_sl_subsampled_loss_is_cross_entropy_over_each_groups_vocabulary():
    obj, model, data, batch, f, protos = _sl_setup(vocab_size=4, vocab_group=4)
    assert torch.equal(obj.class_weights, torch.tensor(data.label_counts(), dtype=torch.float64))
    gen = torch.Generator().manual_seed(3)
    replay = torch.Generator()
    replay.set_state(gen.get_state())
    loss = obj.loss(model, batch, gen)
    y, total = batch["labels"], 0.0
    for start in (0, 4, 8):  # three groups of 4, each with its own vocabulary
        yg = y[start : start + 4]
        vocab, _ = subsample_vocabulary(yg, 4, obj.class_weights, replay)
        vocab = vocab.tolist()
        assert set(yg.tolist()) <= set(vocab) and len(vocab) == 4
        for i, c in zip(range(start, start + 4), yg.tolist(), strict=True):
            logits = torch.stack([12.0 * f[i] @ protos[v] for v in vocab])
            total += logits.logsumexp(0) - logits[vocab.index(c)]
    assert torch.allclose(loss, total / len(y), atol=1e-5)
    assert torch.equal(gen.get_state(), replay.get_state())  # the draws came from the generator


def test_registry_is_what_the_schema_and_the_run_table_use():
    from pathlib import Path

    schema = yaml.safe_load(
        (Path(__file__).parents[1] / "workflow/schemas/config.schema.yaml").read_text()
    )
    model = schema["properties"]["models"]["additionalProperties"]
    assert model["properties"]["objective"]["enum"] == list(objectives.OBJECTIVES)
    assert objectives.foreign_keys("clip") == SL.recipe_keys + DINO.recipe_keys
    assert objectives.foreign_keys("sl") == CLIP.recipe_keys + DINO.recipe_keys
    r = run_config("sl", vocab_size=5).recipe
    assert objectives.run_factors("sl", r) == {
        "text_tower": "",
        "head": "random",
        "vocab_size": 5,
        "vocab_weighting": "linear",
        "prototypes": 0,
        "sample_num": 0,
    }
    assert list(objectives.run_factors("clip", r)) == list(objectives.run_factors("sl", r))
    assert CLIP.needs_text_encoder(run_config("clip", text_tower="init").recipe)
    assert not SL.needs_text_encoder(run_config("sl").recipe)
    with pytest.raises(Exception, match="unknown objective 'mae'; expected one of clip, sl, dino"):
        objectives.get("mae")


# ---- a third objective through fit: extra checkpoint state, an EMA copy, its own export


class Toy(Objective):
    """Linear classifier on 4×4-pooled pixels, with an EMA of its weights kept outside the
    model (checkpointed as objective state) and exported beside them."""

    name = "toy"
    drop_last = True

    def build(self, class_names, text_checkpoint):
        return torch.nn.Sequential(
            torch.nn.AdaptiveAvgPool2d(4), torch.nn.Flatten(), torch.nn.Linear(48, len(class_names))
        )

    def setup(self, model, data, device):
        super().setup(model, data, device)
        self.ema = model[2].weight.detach().clone()

    def batch(self, data, rows, generator):
        x = one_crop(data, rows, self.recipe, generator, self.device)
        return {"images": x, "labels": data.labels[rows.idx]}

    def loss(self, net, batch, generator):
        return F.cross_entropy(net(batch["images"]), batch["labels"])

    def after_backward(self, step):
        assert self.model[2].weight.grad is not None and self.steps_per_epoch == 3

    def after_step(self, step):
        self.ema.mul_(0.9).add_(self.model[2].weight.detach(), alpha=0.1)

    def metrics(self):
        return {"ema_norm": self.ema.norm().item()}

    def state_dict(self):
        return {"ema": self.ema.clone()}

    def load_state_dict(self, state):
        self.ema = state["ema"].clone()

    def export(self):
        return {**self.model.state_dict(), "ema": self.ema.clone()}


def test_a_new_objective_trains_and_resumes_through_fit_unchanged(tmp_path, monkeypatch):
    from tailstudy.train.loop import fit

    monkeypatch.setitem(objectives.OBJECTIVES, "toy", Toy)
    data = tiny_set(list(range(6)) * 5)
    cfg = run_config("toy", epochs=3, batch_size=8, optimizer="sgd", schedule="multistep")
    assert cfg.objective == "toy"
    hist = fit(cfg, data, tmp_path / "ref", tmp_path / "ref-ck", device="cpu")
    assert [h["step"] for h in hist] == [3, 6, 9]  # 30 rows, batch 8, last partial dropped
    assert all("ema_norm" in h and "logit_scale" not in h for h in hist)
    ref = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["model"]
    assert set(ref) == {"2.weight", "2.bias", "ema"}

    stop_at = iter([None] * 4 + [signal.SIGTERM])  # stopped after step 5, mid-epoch
    monkeypatch.setattr(stop, "requested", lambda: next(stop_at, None))
    with pytest.raises(Stopped, match="SIGTERM at step 5/9"):
        fit(cfg, data, tmp_path / "out", tmp_path / "ck", device="cpu")
    state = torch.load(tmp_path / "ck" / "latest.pt", weights_only=False)
    assert state["step"] == 5 and set(state["objective"]) == {"ema"}
    monkeypatch.setattr(stop, "requested", lambda: None)
    again = fit(cfg, data, tmp_path / "out", tmp_path / "ck", device="cpu")
    out = torch.load(tmp_path / "out" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(ref[k], out[k]) for k in ref)  # the EMA resumed, not restarted
    assert [h["loss"] for h in again] == [h["loss"] for h in hist]
    np.testing.assert_array_equal([h["ema_norm"] for h in again], [h["ema_norm"] for h in hist])
