"""The DINO objective behind the objective protocol: one step through its hooks (the teacher
moves only by EMA, teacher and student share the step's prototype subset), its recipe keys in
the run table, and a short run of ``fit`` whose ``model.pt`` is the teacher's vision tower."""

import pandas as pd
import pytest
import torch

from runs import run_config
from tailstudy.data.loader import InMemorySet, Rows
from tailstudy.evaluate.linear_probe import visual_encoder
from tailstudy.io import UserError
from tailstudy.train import objectives
from tailstudy.train.loop import fit
from tailstudy.train.objectives.dino import DINO

CPU = torch.device("cpu")
SPEC = {
    "n_prototypes": 48,
    "sample_num": 16,
    "hidden_dim": 32,
    "bottleneck_dim": 16,
    "global_crop_size": 32,
    "local_crop_size": 32,
    "n_local_crops": 2,
    "warmup_epochs": 1,
    "base_lr": 0.5,
}


def tiny_images(n=8, size=32, seed=0) -> InMemorySet:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, size, size, 3), generator=g, dtype=torch.uint8)
    classes = pd.DataFrame({"label": [0], "wnid": ["n00000000"], "name": ["thing"]})
    return InMemorySet(images, torch.zeros(n, dtype=torch.long), [""] * n, classes)


def dino_config(**spec):
    return run_config("dino", batch_size=4, epochs=2, dino={**SPEC, **spec})


def test_one_step_teacher_moves_by_ema_only_and_shares_the_subset():
    cfg = dino_config()
    data = tiny_images()
    obj = DINO(cfg, None, steps_per_epoch=2)
    torch.manual_seed(0)
    model = obj.build(["thing"], None)
    obj.setup(model, data, CPU)
    opt = obj.make_optimizer(model)
    assert all(not p.requires_grad for p in model.teacher.parameters())
    trained = {id(p) for g in opt.param_groups for p in g["params"]}
    assert trained == {id(p) for p in model.student.parameters()}  # the teacher is not optimised

    seen = {}
    for name in ("student", "teacher"):
        getattr(model, name).head.register_forward_pre_hook(
            lambda m, args, name=name: seen.setdefault(name, []).append(args[1])
        )
    gen = torch.Generator().manual_seed(0)
    for step in range(2):
        obj.schedule(opt, step, obj.total)
        teacher0 = {k: v.clone() for k, v in model.teacher.named_parameters()}
        batch = obj.batch(data, Rows(torch.arange(4)), gen)
        assert len(batch["crops"]) == 4  # 2 global + 2 local
        loss = obj.loss(model, batch, gen)
        opt.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in model.teacher.parameters())
        obj.after_backward(step)
        opt.step()
        m = obj.momentum
        obj.after_step(step)
        student = dict(model.student.named_parameters())
        moved = False
        for k, t in model.teacher.named_parameters():
            want = m * teacher0[k] + (1 - m) * student[k].detach()
            assert torch.allclose(t, want, atol=1e-6), k
            moved |= not torch.equal(t, teacher0[k])
        assert moved
        s, t = seen["student"][-1], seen["teacher"][-1]
        assert s is not None and len(s) == 16 and torch.equal(s, t)
    assert not torch.equal(seen["student"][0], seen["student"][-1])  # a new subset each step
    assert obj.state_dict() == {"step": 2}


def test_vanilla_uses_all_prototypes_and_run_factors():
    cfg = dino_config(sample_num=None)
    assert DINO.run_factors(cfg.recipe) == {"prototypes": 48, "sample_num": 48}
    factors = objectives.run_factors("sl", run_config("sl").recipe)
    assert factors["prototypes"] == 0 and factors["sample_num"] == 0
    assert "dino" in objectives.foreign_keys("sl") and "dino" not in objectives.foreign_keys("dino")
    with pytest.raises(UserError, match="sample_num 99"):
        DINO.run_factors(dino_config(sample_num=99).recipe)


def test_fit_exports_the_teacher_tower(tmp_path):
    cfg = dino_config()
    history = fit(cfg, tiny_images(16), tmp_path / "out", tmp_path / "ckpt", device="cpu")
    assert len(history) == 2 and "teacher_momentum" in history[-1]
    obj = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert obj["model"] and all(k.startswith("visual.") for k in obj["model"])
    tower = visual_encoder(tmp_path / "out" / "model.pt", "RN-tiny")
    assert tower(torch.zeros(2, 3, 32, 32)).shape == (2, 64)
