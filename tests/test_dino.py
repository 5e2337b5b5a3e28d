"""DINO pieces (tailstudy.train.dino): prototype subsets, subset logits, Sinkhorn / centering
targets, the EMA teacher, local crops through the attention pool, schedules and multi-crop."""

import json

import numpy as np
import pytest
import torch

from tailstudy.io import UserError
from tailstudy.train import dino

ARCH = "RN-dinotest"  # a ModifiedResNet at 64 px, so 32-px local crops are smaller than it


@pytest.fixture(scope="module")
def arch(tmp_path_factory):
    import open_clip

    cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 1,
        },
    }
    path = tmp_path_factory.mktemp("presets") / f"{ARCH}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(str(path))
    return ARCH


def small_spec(**kw):
    base = dict(
        n_prototypes=40,
        sample_num=12,
        hidden_dim=24,
        bottleneck_dim=8,
        global_crop_size=64,
        local_crop_size=32,
        n_local_crops=2,
    )
    return dino.DinoSpec(**{**base, **kw})


def crops_for(spec, n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 40, 48, 3), dtype=torch.uint8, generator=g)
    return dino.MultiCrop(spec)(images, g)


def test_prototype_subset_is_shared_by_teacher_student_and_ranks(arch):
    spec = small_spec()
    # simulated ranks: each consumes its own crop generator and global RNGs differently
    subsets = []
    for rank in range(4):
        torch.manual_seed(100 + rank)
        np.random.seed(rank)
        crops_for(spec, n=rank + 1, seed=rank)
        torch.rand(rank * 7 + 1)
        subsets.append(dino.prototype_subset(spec, seed=3, step=17))
    assert all(torch.equal(s, subsets[0]) for s in subsets)
    s = subsets[0]
    assert len(s) == 12 and len(set(s.tolist())) == 12 and s.min() >= 0 and s.max() < 40
    assert not torch.equal(dino.prototype_subset(spec, seed=3, step=18), s)  # new every step
    assert not torch.equal(dino.prototype_subset(spec, seed=4, step=17), s)
    assert dino.prototype_subset(small_spec(sample_num=None), 3, 17) is None  # vanilla: all

    # one batch: teacher and student heads see the very same subset
    student = dino.build_student(arch, spec)
    teacher = dino.build_teacher(student, arch, spec)
    seen = {}

    def spy(name):
        def hook(module, args):
            seen[name] = args[1]

        return hook

    student.head.register_forward_pre_hook(spy("student"))
    teacher.head.register_forward_pre_hook(spy("teacher"))
    dino.dino_loss(student, teacher, crops_for(spec), dino.DinoLoss(spec), 0, s)
    assert torch.equal(seen["student"], s) and torch.equal(seen["teacher"], s)


def test_logits_are_computed_over_the_subset_only(arch):
    spec = small_spec()
    model = dino.build_student(arch, spec)
    x = torch.randn(5, 32)
    subset = dino.prototype_subset(spec, 0, 0)
    full = model.head(x)
    assert full.shape == (5, 40)
    with torch.no_grad():  # prototypes outside the subset are never read
        outside = torch.ones(40, dtype=torch.bool)
        outside[subset] = False
        model.head.prototypes[outside] = float("nan")
    logits = model.head(x, subset)
    assert logits.shape == (5, 12) and torch.isfinite(logits).all()
    torch.testing.assert_close(logits, full[:, subset])
    assert logits.abs().max() <= 1 + 1e-5  # cosine similarities
    logits.sum().backward()
    grad = model.head.prototypes.grad
    assert (grad[outside] == 0).all() and (grad[subset].abs().sum(1) > 0).all()


def test_sinkhorn_targets_normalise_rows_and_columns():
    torch.manual_seed(0)
    logits = torch.rand(24, 6) * 2 - 1  # cosine logits: 24 samples, 6 prototypes
    q = dino.sinkhorn_targets(logits, temp=0.5, iterations=3)
    torch.testing.assert_close(q.sum(1), torch.ones(24))  # each sample: a distribution
    q = dino.sinkhorn_targets(logits, temp=0.5, iterations=200)
    torch.testing.assert_close(q.sum(1), torch.ones(24))
    torch.testing.assert_close(q.sum(0), torch.full((6,), 24 / 6))  # equal mass per prototype
    # not a softmax: the prototype every sample prefers gets no more than its share
    skew = logits.clone()
    skew[:, 0] += 1
    q = dino.sinkhorn_targets(skew, temp=0.5, iterations=200)
    assert q.sum(0)[0] == pytest.approx(4.0, rel=1e-3)
    assert torch.softmax(skew / 0.5, 1).sum(0)[0] > 8


def test_centering_switch(arch):
    spec = small_spec(teacher_norm="centering", center_momentum=0.8)
    loss = dino.DinoLoss(spec)
    subset = dino.prototype_subset(spec, 0, 0)
    t = torch.rand(6, 12)  # two global crops × 3 images, over the subset
    q = loss.targets(t, 0, subset)
    torch.testing.assert_close(q, torch.softmax(t / 0.04, 1))  # center starts at 0
    expect = torch.zeros(40)
    expect[subset] = 0.2 * t.mean(0)
    torch.testing.assert_close(loss.center, expect)  # moved on the subset's columns only
    q2 = loss.targets(t, 0, subset)
    torch.testing.assert_close(q2, torch.softmax((t - expect[subset]) / 0.04, 1))
    # vanilla (all prototypes): the whole center moves
    full = dino.DinoLoss(small_spec(teacher_norm="centering", sample_num=None))
    t40 = torch.rand(4, 40)
    full.targets(t40, 0, None)
    torch.testing.assert_close(full.center, 0.1 * t40.mean(0))

    sk = dino.DinoLoss(small_spec())  # the default: Sinkhorn, no center
    assert spec.teacher_norm == "centering" and sk.spec.teacher_norm == "sinkhorn"
    q = sk.targets(t, 0, subset)
    assert not torch.allclose(q, torch.softmax(t / 0.04, 1)) and (sk.center == 0).all()
    with pytest.raises(UserError, match="teacher_norm 'center'"):
        dino.DinoSpec.from_dict({"teacher_norm": "center"})


def test_loss_pairs_every_teacher_view_with_every_other_student_view():
    spec = small_spec(n_local_crops=1)  # 3 crops: pairs (0,1) (0,2) (1,0) (1,2)
    loss = dino.DinoLoss(spec)
    torch.manual_seed(1)
    s = torch.randn(3 * 2, 12)
    t = torch.randn(2 * 2, 12)
    q = loss.targets(t, 0, None).chunk(2)
    ls = torch.log_softmax(s / 0.1, 1).chunk(3)
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]
    expect = sum((-(q[a] * ls[b]).sum(1)).mean() for a, b in pairs) / 4
    torch.testing.assert_close(loss(s, t, 0, None), expect)
    with pytest.raises(ValueError, match="do not make 3 student crops"):
        loss(s[:5], t, 0, None)


def test_teacher_changes_only_by_ema(arch):
    spec = small_spec()
    student = dino.build_student(arch, spec)
    teacher = dino.build_teacher(student, arch, spec)
    for (n, ps), pt in zip(student.named_parameters(), teacher.parameters(), strict=True):
        assert torch.equal(ps, pt) and not pt.requires_grad, n
    opt = dino.make_optimizer(student, spec)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not in_opt & {id(p) for p in teacher.parameters()}
    before = [p.detach().clone() for p in teacher.parameters()]
    hp = dino.apply_schedules(opt, spec, step=5, total=20, steps_per_epoch=2, batch_size=256)
    loss = dino.dino_loss(
        student, teacher, crops_for(spec), dino.DinoLoss(spec), 0, dino.prototype_subset(spec, 0, 5)
    )
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())
    dino.clip_gradients(student, spec.clip_grad)
    opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, teacher.parameters(), strict=True))
    changed = [not torch.equal(a, p) for a, p in zip(before, student.parameters(), strict=True)]
    assert any(changed)
    m = hp["momentum"]
    assert 0.996 < m < 1
    dino.update_teacher(student, teacher, m)
    for a, ps, pt in zip(before, student.parameters(), teacher.parameters(), strict=True):
        torch.testing.assert_close(pt, m * a + (1 - m) * ps.detach())
    # the transfer checkpoint: the teacher's tower under open_clip's visual.* keys
    state = dino.teacher_backbone_state(teacher)
    assert "visual.attnpool.positional_embedding" in state and not any("head" in k for k in state)
    torch.testing.assert_close(state["visual.conv1.weight"], teacher.visual.conv1.weight)


def test_positional_embedding_interpolation_accepts_local_crops(arch):
    from tailstudy.models import factory

    visual = factory.create_clip(arch).visual.eval()
    local = torch.randn(2, 3, 32, 32)
    with pytest.raises(RuntimeError):
        visual(local)  # open_clip's attention pool: its 2×2 positional embedding only
    native = torch.randn(2, 3, 64, 64)
    ref = visual(native)
    dino.allow_small_crops(visual)
    torch.testing.assert_close(visual(native), ref)  # the model's own size: unchanged
    assert visual(local).shape == (2, 32)
    assert visual(torch.randn(1, 3, 96, 96)).shape == (1, 32)  # larger crops resample too
    model = dino.build_student(arch, small_spec())
    assert model([torch.randn(2, 3, 64, 64)] * 2 + [local] * 2).shape == (8, 40)


def test_schedules():
    spec = small_spec(warmup_epochs=2, warmup_teacher_temp=0.02, warmup_teacher_temp_epochs=3)
    total, per_epoch = 100, 10
    lr = [dino.lr_at(spec, s, total, per_epoch, 1024) for s in range(total)]
    assert dino.peak_lr(spec, 1024) == pytest.approx(0.12)
    assert lr[0] == pytest.approx(0.12 / 20) and lr[19] == pytest.approx(0.12)  # warm-up
    assert all(a >= b for a, b in zip(lr[19:], lr[20:], strict=False))  # then cosine down
    assert lr[-1] == pytest.approx(1e-6)
    mom = [dino.momentum_at(spec, s, total) for s in range(total)]
    assert mom[0] == pytest.approx(0.996) and mom[-1] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(mom, mom[1:], strict=False))
    assert {dino.weight_decay_at(spec, s, total) for s in (0, 50, 99)} == {1e-4}
    temps = [dino.teacher_temperature(spec, e) for e in range(5)]
    assert temps == pytest.approx([0.02, 0.03, 0.04, 0.04, 0.04])


def test_optimizer_groups_clipping_and_frozen_prototypes(arch):
    spec = small_spec(freeze_last_layer=1)
    model = dino.build_student(arch, spec)
    opt = dino.make_optimizer(model, spec)
    decayed = {id(p) for p in opt.param_groups[0]["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.ndim > 1 and not name.endswith(".bias")), name
    assert id(model.head.prototypes) in decayed
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    dino.clip_gradients(model, 3.0)
    for p in model.parameters():  # each parameter clipped on its own
        assert p.grad.norm() == pytest.approx(min(3.0, p.numel() ** 0.5), rel=1e-4)
    dino.cancel_prototype_gradients(model, epoch=1, freeze_epochs=1)
    assert model.head.prototypes.grad is not None
    dino.cancel_prototype_gradients(model, epoch=0, freeze_epochs=1)
    assert model.head.prototypes.grad is None


def test_multicrop_views_are_seeded_by_the_run_generator():
    spec = small_spec()
    images = torch.randint(0, 256, (3, 40, 48, 3), dtype=torch.uint8)
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a = dino.MultiCrop(spec)(images, torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)  # global generator left as it was
    b = dino.MultiCrop(spec)(images, torch.Generator().manual_seed(7))
    c = dino.MultiCrop(spec)(images, torch.Generator().manual_seed(8))
    assert [tuple(v.shape) for v in a] == [(3, 3, 64, 64)] * 2 + [(3, 3, 32, 32)] * 2
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])


def test_spec_from_config():
    spec = dino.DinoSpec.from_dict({"sample_num": 1024, "global_crop_scale": [0.14, 1]})
    assert spec.subset_size == 1024 and spec.n_crops == 10 and spec.global_crop_scale == (0.14, 1.0)
    assert dino.DinoSpec.from_dict(spec.to_dict()) == spec
    assert dino.DinoSpec().subset_size == 65536
    with pytest.raises(UserError, match=r"sample_num 70000 must lie in \[1, n_prototypes"):
        dino.DinoSpec.from_dict({"sample_num": 70000})
    with pytest.raises(UserError, match=r"unknown keys \['prototypes'\]"):
        dino.DinoSpec.from_dict({"prototypes": 3})


# ---- 2 gloo processes: the all-reduced Sinkhorn and center equal the single-process ones


def _two_rank_targets(rank, tmp):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=2)
    torch.manual_seed(50 + rank)  # ranks' other generators differ
    spec = small_spec(teacher_norm="centering")
    logits = torch.rand(8, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    mine = logits[rank * 4 : (rank + 1) * 4]
    subset = dino.prototype_subset(spec, seed=1, step=2)
    centering = dino.DinoLoss(spec)
    centering.targets(mine, 0, subset)
    out = {
        "subset": subset,
        "sinkhorn": dino.sinkhorn_targets(mine, 0.5, 3),
        "center": centering.center.clone(),
    }
    torch.save(out, f"{tmp}/rank{rank}.pt")
    dist.destroy_process_group()


def test_sinkhorn_and_center_are_reduced_over_ranks(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_two_rank_targets, args=(str(tmp_path),), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(ranks[0]["subset"], ranks[1]["subset"])
    logits = torch.rand(8, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = dino.sinkhorn_targets(logits, 0.5, 3)  # one process, the global batch
    torch.testing.assert_close(torch.cat([r["sinkhorn"] for r in ranks]), whole)
    spec = small_spec(teacher_norm="centering")
    centering = dino.DinoLoss(spec)
    centering.targets(logits, 0, ranks[0]["subset"])
    for r in ranks:
        torch.testing.assert_close(r["center"], centering.center)
