import json
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch

from runs import run_config
from tailstudy.config import RunConfig
from tailstudy.data.loader import load_split
from tailstudy.data.variants import build_variant
from tailstudy.io import UserError
from tailstudy.train.loop import fit


def test_clip_fit_and_frozen_text_tower(tiny_dataset, tmp_path):
    data = load_split(tiny_dataset, progress=False)
    hist = fit(run_config("clip"), data, tmp_path / "a", tmp_path / "a" / "ckpt", device="cpu")
    assert len(hist) == 2 and all(torch.isfinite(torch.tensor(h["loss"])) for h in hist)
    assert (tmp_path / "a" / "model.pt").exists() and not (tmp_path / "a" / "ckpt").exists()
    src = torch.load(tmp_path / "a" / "model.pt", weights_only=True)["model"]
    cfg = RunConfig.from_dict(
        {
            **run_config("clip", text_tower="frozen", text_encoder="x").to_dict(),
            "text_source": {"run": "a"},
        }
    )
    fit(cfg, data, tmp_path / "b", tmp_path / "b" / "ckpt", str(tmp_path / "a" / "model.pt"), "cpu")
    out = torch.load(tmp_path / "b" / "model.pt", weights_only=True)["model"]
    for k in ("token_embedding.weight", "text_projection", "transformer.resblocks.0.ln_1.weight"):
        assert torch.equal(out[k], src[k])  # frozen: unchanged
    assert not torch.equal(out["visual.conv1.weight"], src["visual.conv1.weight"])


def test_sl_fit_with_vocabulary_subsampling(tiny_dataset, tmp_path):
    data = load_split(tiny_dataset, progress=False)
    hist = fit(
        run_config("sl", vocab_size=2, vocab_group=4), data, tmp_path, tmp_path / "c", device="cpu"
    )
    assert len(hist) == 2
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert state["model"]["head"].shape == (6, 64)


def _train_cmd(tmp_path, ds, cfg_path, out):
    return [
        sys.executable,
        "-m",
        "tailstudy",
        "train",
        "--config",
        str(cfg_path),
        "--dataset",
        str(ds),
        "--index",
        str(tmp_path / "v" / "index.parquet"),
        "--out",
        str(out),
        "--ckpt-dir",
        str(out / "ckpt"),
        "--threads",
        "1",
        "--device",
        "cpu",
    ]


def test_kill9_and_resume_gives_identical_results(tiny_dataset, tmp_path):
    """A run killed with SIGKILL mid-training and rerun ends bit-identical to an uninterrupted one."""
    build_variant(tiny_dataset, {"dataset": "tiny"}, tmp_path / "v", "v")
    cfg = run_config("sl", epochs=6, batch_size=8, vocab_size=3, vocab_group=4, ckpt_every_steps=3)
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(cfg.to_json())
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(tmp_path, tiny_dataset, cfg_path, ref), check=True)
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        _train_cmd(tmp_path, tiny_dataset, cfg_path, out), stderr=subprocess.PIPE
    )
    ckpt = out / "ckpt" / "latest.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    if proc.poll() is not None:
        pytest.fail("training finished before it could be killed; make the run longer")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not (out / "model.pt").exists()
    step = torch.load(ckpt, weights_only=False)["step"]
    assert 0 < step < 60
    res = subprocess.run(
        _train_cmd(tmp_path, tiny_dataset, cfg_path, out), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert f"resumed from {ckpt} at step {step}" in res.stderr
    a = torch.load(ref / "model.pt", weights_only=True)["model"]
    b = torch.load(out / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x) for x in (ref / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in la] == [x["loss"] for x in lb]


def test_stale_checkpoint_from_other_config_is_not_resumed(tiny_dataset, tmp_path, caplog):
    data = load_split(tiny_dataset, progress=False)
    cfg = run_config("sl", epochs=1)
    fit(cfg, data, tmp_path / "x", tmp_path / "ck", device="cpu", keep_ckpt=True)
    other = run_config("sl", epochs=2)
    with caplog.at_level("WARNING"):
        fit(other, data, tmp_path / "y", tmp_path / "ck", device="cpu")
    assert "different run config" in caplog.text


# ---- a variant's own label space (IN-Caps-100, METHODS §4.6) and evaluation on a class subset


def _subset_spec(tiny_dataset, positions):
    from tailstudy.data.format import read_classes

    wnids = read_classes(tiny_dataset)["wnid"].iloc[positions].tolist()
    return {"dataset": "tiny", "classes": {"wnids": wnids}}


def test_subset_variant_trains_a_head_of_its_own_classes(tiny_dataset, tmp_path):
    build_variant(tiny_dataset, _subset_spec(tiny_dataset, [1, 3, 4]), tmp_path / "v", "v")
    data = load_split(tiny_dataset, tmp_path / "v" / "index.parquet", progress=False)
    assert data.num_classes == 3 and data.label_counts().tolist() == [20, 8, 5]  # vocab weights
    assert set(data.labels.tolist()) == {0, 1, 2}
    fit(
        run_config("sl", epochs=1, batch_size=10, vocab_size=2, vocab_group=4),
        data,
        tmp_path / "o",
        tmp_path / "ck",
        device="cpu",
    )
    state = torch.load(tmp_path / "o" / "model.pt", weights_only=True)
    assert state["model"]["head"].shape == (3, 64)
    assert state["classes"] == data.classes["name"].tolist()


def test_frozen_head_of_a_subset_is_the_full_heads_rows(tiny_dataset, tmp_path):
    from tailstudy.data.format import read_classes
    from tailstudy.models import factory
    from tailstudy.train.objectives.sl import SL

    torch.manual_seed(0)
    torch.save({"model": factory.create_clip("RN-tiny").state_dict()}, tmp_path / "text.pt")
    cfg = RunConfig.from_dict(
        {
            **run_config("sl", head="frozen", text_encoder="x").to_dict(),
            "text_source": {"run": "pre"},
        }
    )
    names = read_classes(tiny_dataset)["name"].tolist()
    full = SL(cfg).build(names, str(tmp_path / "text.pt"))
    sub = SL(cfg).build([names[i] for i in (1, 3, 4)], str(tmp_path / "text.pt"))
    assert sub.frozen_head and sub.head.shape[0] == 3
    assert torch.allclose(sub.head, full.head[[1, 3, 4]], atol=1e-5)


def _subset_eval_set(tiny_dataset, root, order):
    """An evaluation set of some of tiny's classes, in another label order (same images)."""
    import os

    from tailstudy.data.format import read_classes, read_index, write_classes, write_index

    classes = read_classes(tiny_dataset)
    index = read_index(tiny_dataset)
    index = index[index["label"].isin(order)].copy()
    index["label"] = index["label"].map({c: i for i, c in enumerate(order)}).astype("int32")
    root.mkdir()
    os.symlink(tiny_dataset / "shards", root / "shards")
    os.symlink(tiny_dataset / "manifest.json", root / "manifest.json")  # the image size
    write_index(root / "index.parquet", index)
    write_classes(root, [(classes.at[c, "wnid"], classes.at[c, "name"]) for c in order])
    return root


@pytest.mark.parametrize("objective", ["sl", "clip"])
def test_evaluation_on_a_class_subset_aligns_by_wnid(tiny_dataset, tmp_path, objective):
    import numpy as np

    from tailstudy.data.format import read_classes
    from tailstudy.evaluate.classify import evaluate

    data = load_split(tiny_dataset, progress=False)
    cfg = run_config(objective, epochs=1)
    fit(cfg, data, tmp_path / "run", tmp_path / "ck", device="cpu")
    model, classes = str(tmp_path / "run" / "model.pt"), read_classes(tiny_dataset)
    counts = np.array([30, 20, 12, 8, 5, 3])
    _, full = evaluate(cfg, model, data, classes, counts, "cpu")
    order = [4, 1, 3]
    sub_set = load_split(_subset_eval_set(tiny_dataset, tmp_path / "val3", order), progress=False)
    wnids = classes["wnid"].tolist()
    summary, sub = evaluate(
        cfg, model, sub_set, classes, counts, "cpu", tail_wnids=[wnids[5], wnids[3], wnids[1]]
    )
    assert sub["freq"].tolist() == [5, 20, 8]  # the training counts of the evaluated classes
    # the classifier's vectors of the evaluated classes (Fig. 9a), the same as over all classes
    assert sub["class_vectors"].shape == (3, full["class_vectors"].shape[1])
    np.testing.assert_allclose(sub["class_vectors"], full["class_vectors"][order], atol=1e-3)
    assert sub["tail"].tolist() == [2, 1]  # T_N's evaluated classes in rarity order (3, then 1)
    assert sub["confusion"].shape == (3, 3) and summary["n_samples"] == 5 + 20 + 8
    # an image whose prediction over all classes is one of the subset keeps it over the subset
    full_sub = full["confusion"][np.ix_(order, order)]
    assert (sub["confusion"] >= full_sub).all()
    assert sub["confusion"].sum(1).tolist() == full["confusion"][order].sum(1).tolist()
    # a class the run was never trained on cannot be evaluated
    small = load_split(tiny_dataset, progress=False)
    with pytest.raises(UserError, match="not among the 5 classes"):
        evaluate(cfg, model, small, classes.iloc[:5], counts[:5], "cpu")


def test_supplemented_variant_loads_images_of_both_datasets(tmp_path):
    import numpy as np

    from runs import make_dataset
    from tailstudy.data.format import read_classes, write_classes, write_index

    def laionet(index, concepts):
        return index.assign(row_id=np.arange(len(index)) * 2 + len(concepts) % 2)

    a = make_dataset(tmp_path / "laionet", per_class=(6, 2, 4, 0, 1, 3), extra=laionet)
    b = make_dataset(tmp_path / "t2t", concepts=[3, 0], per_class=(3, 5), seed=1, extra=laionet)
    target = tmp_path / "target"  # 5 images of every class
    write_index(target / "index.parquet", pd.DataFrame({"label": np.repeat(np.arange(6), 5)}))
    write_classes(target, read_classes(a)[["wnid", "name"]].itertuples(index=False))
    spec = {"dataset": "laionet", "match": {"counts_of": {"dataset": "x"}, "supplement": "t2t"}}
    m = build_variant(a, spec, tmp_path / "v", "v", b, target)
    # class 3 has no own rows: 3 from t2t; class 0 has 6 own rows, needs none of t2t's
    assert m["steps"] == {"target": 30, "from_dataset": 5 + 2 + 4 + 0 + 1 + 3, "from_supplement": 3}
    data = load_split([a, b], tmp_path / "v" / "index.parquet", progress=False)
    assert len(data) == 18 and data.label_counts().tolist() == [5, 2, 4, 3, 1, 3]
    assert data.images.shape == (18, 32, 32, 3)
    # the t2t images are t2t's (its class 3 colour), not the laionet image of the same key
    from tailstudy.data.format import load_images, read_index

    index = read_index(tmp_path / "v")
    pos = np.flatnonzero(index["dataset"] == "t2t")
    want = load_images(b, index["key"].iloc[pos].tolist())
    assert np.array_equal(data.images.numpy()[pos], want)
    with pytest.raises(UserError, match="pass their folders with --dataset"):
        load_split([a], tmp_path / "v" / "index.parquet", progress=False)


@pytest.mark.slow
def test_sigterm_checkpoints_at_the_step_and_resumes_identically(tiny_dataset, tmp_path):
    """SIGTERM (scancel, preemption, a time limit) mid-epoch: the run writes a checkpoint at
    that step, says so in one line and exits 143; a rerun resumes there, bit-identical."""
    from tailstudy import jobinfo

    build_variant(tiny_dataset, {"dataset": "tiny"}, tmp_path / "v", "v")
    cfg = run_config("sl", epochs=6, batch_size=8, vocab_size=3, vocab_group=4)  # 10 steps/epoch
    cfg_path = tmp_path / "config.json"
    cfg_path.write_text(cfg.to_json())
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(tmp_path, tiny_dataset, cfg_path, ref), check=True)
    out = tmp_path / "stopped"
    proc = subprocess.Popen(
        _train_cmd(tmp_path, tiny_dataset, cfg_path, out), stderr=subprocess.PIPE, text=True
    )
    ckpt = out / "ckpt" / "latest.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not ckpt.exists() and proc.poll() is None:
        time.sleep(0.05)  # the first epoch's checkpoint: training is under way
    time.sleep(0.3)
    if proc.poll() is not None:
        pytest.fail("training finished before it could be stopped; make the run longer")
    os.kill(proc.pid, signal.SIGTERM)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 143, err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(
        rf"stopped: run {cfg.run_id}: SIGTERM at step (\d+)/60; checkpoint "
        rf"{re.escape(str(ckpt))} written, a rerun resumes from it",
        last,
    )
    assert m, last
    step = int(m.group(1))
    assert 10 <= step < 60 and torch.load(ckpt, weights_only=False)["step"] == step
    assert not (out / "model.pt").exists()
    res = subprocess.run(
        _train_cmd(tmp_path, tiny_dataset, cfg_path, out), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert f"resumed from {ckpt} at step {step}/60" in res.stderr
    a = torch.load(ref / "model.pt", weights_only=True)["model"]
    b = torch.load(out / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    la = [json.loads(x) for x in (ref / "train_log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in la] == [x["loss"] for x in lb]
    here = jobinfo.current()  # outside SLURM: slurm_job_id null; the host that trained
    assert all(
        x["slurm_job_id"] == here["slurm_job_id"]
        and x["host"] == here["host"]
        and x["device"] == "cpu"
        for x in la + lb
    )


def test_sl_epoch_never_ends_in_a_one_row_batch(tiny_dataset, tmp_path):
    """78 rows at batch 7 leave one row over: BatchNorm cannot train on a batch of one, so that
    row sits the epoch out (a different row each epoch) instead of crashing the run."""
    data = load_split(tiny_dataset, progress=False)
    assert len(data) % 7 == 1
    log = fit(
        run_config("sl", epochs=2, batch_size=7),
        data,
        tmp_path / "o",
        tmp_path / "ck",
        device="cpu",
    )
    assert [rec["step"] for rec in log] == [11, 22]
    assert all(torch.isfinite(torch.tensor(rec["loss"])) for rec in log)


def test_frozen_head_prompts_and_zero_shot_use_their_own_name_tables(
    tiny_dataset, tmp_path, monkeypatch
):
    """SL frozen-head prompts name a class as NAMES_DESC does ("a eft"), CLIP's zero-shot
    classifier as NAMES_ZS does ("newt"): METHODS §4.4, §5.1."""
    from tailstudy.concepts import imagenet_concepts
    from tailstudy.data.format import read_classes, write_classes
    from tailstudy.evaluate import classify
    from tailstudy.models import factory

    classes = read_classes(tiny_dataset)
    newt = imagenet_concepts()[27]
    assert newt.name == "newt"
    write_classes(
        tiny_dataset,
        [(newt.wnid, newt.name), *zip(classes.wnid[1:], classes.name[1:], strict=True)],
    )
    data = load_split(tiny_dataset, progress=False)
    seen = {}
    encode = factory.encode_prompts

    def recording_encode(model, tokenizer, prompts, **kw):
        seen["prompts"] = list(prompts)
        return encode(model, tokenizer, prompts, **kw)

    monkeypatch.setattr(factory, "encode_prompts", recording_encode)
    torch.save({"model": factory.create_clip("RN-tiny").state_dict()}, tmp_path / "text.pt")
    sl = RunConfig.from_dict(
        {
            **run_config("sl", epochs=1, head="frozen", text_encoder="x").to_dict(),
            "text_source": {"run": "pre"},
        }
    )
    fit(sl, data, tmp_path / "sl", tmp_path / "sl" / "ck", str(tmp_path / "text.pt"), "cpu")
    assert seen["prompts"] == ["a eft", *(f"a {n}" for n in classes.name[1:])]
    # the run's model.pt keeps the label space's own names (the evaluation checks them)
    assert torch.load(tmp_path / "sl" / "model.pt", weights_only=True)["classes"][0] == "newt"

    clip = run_config("clip", epochs=1)
    fit(clip, data, tmp_path / "clip", tmp_path / "clip" / "ck", device="cpu")
    from tailstudy.train.objectives import clip as clip_objective

    zero_shot = clip_objective.zero_shot_classifier

    def recording_zero_shot(model, tokenizer, names, *args):
        seen["zs"] = list(names)
        return zero_shot(model, tokenizer, names, *args)

    monkeypatch.setattr(clip_objective, "zero_shot_classifier", recording_zero_shot)
    import numpy as np

    classify.evaluate(
        clip, str(tmp_path / "clip" / "model.pt"), data, data.classes, np.ones(6, int), "cpu"
    )
    assert seen["zs"][0] == "newt" and seen["zs"][1:] == classes.name[1:].tolist()


@pytest.mark.parametrize(
    "arch,tag,quick_gelu",
    [
        ("RN50", "openai", True),
        ("ViT-B-32", "openai", True),
        ("ViT-B-32", "laion2b_s34b_b79k", False),
    ],
)
def test_pretrained_weights_get_the_activation_they_were_trained_with(
    no_hub, recwarn, arch, tag, quick_gelu
):
    """OpenAI's weights were trained with QuickGELU while open_clip's RN50 / ViT-B-32 configs
    build GELU; open_clip's pretrained config says which (no hub here: weights not loaded)."""
    from open_clip.transformer import QuickGELU

    from tailstudy.models import factory

    model = factory.load_pretrained_clip(arch, tag)
    acts = {type(m) for m in model.transformer.modules()} & {QuickGELU, torch.nn.GELU}
    assert acts == ({QuickGELU} if quick_gelu else {torch.nn.GELU})
    assert len(no_hub) == 1  # the tag's weights were loaded into that model
    assert not [w for w in recwarn if "QuickGELU mismatch" in str(w.message)]
    text = factory.pretrained_text_state({"open_clip": arch, "pretrained": tag})
    assert text.quick_gelu is quick_gelu


def test_openai_text_tower_and_frozen_prototypes_are_built_with_quick_gelu(no_hub, monkeypatch):
    from tailstudy.models import factory
    from tailstudy.train import objectives

    def build_model(cfg, names, text_checkpoint):
        return objectives.get(cfg.objective)(cfg).build(names, text_checkpoint), None

    src = {"text_source": {"open_clip": "RN50", "pretrained": "openai"}, "arch": "RN50"}
    clip = RunConfig.from_dict(
        {**run_config("clip", text_tower="frozen", text_encoder="x").to_dict(), **src}
    )
    model, _ = build_model(clip, ["tench", "goldfish"], None)
    assert factory.uses_quick_gelu(model)
    encoders = []
    encode = factory.encode_prompts

    def recording_encode(model, tokenizer, prompts, **kw):
        encoders.append(factory.uses_quick_gelu(model))
        return encode(model, tokenizer, prompts, **kw)

    monkeypatch.setattr(factory, "encode_prompts", recording_encode)
    sl = RunConfig.from_dict({**run_config("sl", head="frozen", text_encoder="x").to_dict(), **src})
    head, _ = build_model(sl, ["tench", "goldfish"], None)
    assert encoders == [True] and head.frozen_head and head.head.shape == (2, 1024)


def test_a_checkpoint_records_and_restores_its_activation(tiny_dataset, tmp_path):
    from tailstudy.acquire.laionet import load_text_encoder
    from tailstudy.evaluate.classify import load_run_model
    from tailstudy.models import factory

    data = load_split(tiny_dataset, progress=False)
    names = data.classes["name"].tolist()
    torch.manual_seed(0)
    pre = factory.create_clip("RN-tiny", quick_gelu=True)  # stands for OpenAI's text tower
    torch.save({"model": pre.state_dict(), "quick_gelu": True}, tmp_path / "pre.pt")
    cfg = RunConfig.from_dict(
        {
            **run_config("clip", epochs=1, text_tower="frozen", text_encoder="x").to_dict(),
            "text_source": {"run": "pre"},
        }
    )
    fit(cfg, data, tmp_path / "run", tmp_path / "run" / "ck", str(tmp_path / "pre.pt"), "cpu")
    saved = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert saved["quick_gelu"] is True
    restored = load_run_model(str(tmp_path / "run" / "model.pt"), cfg, names)
    assert factory.uses_quick_gelu(restored)
    # the activation matters: the same weights in a GELU model encode text differently
    gelu = factory.create_clip("RN-tiny")
    gelu.load_state_dict(saved["model"])
    tokens = factory.get_tokenizer("RN-tiny")(["a photo of a tench"])
    with torch.no_grad():
        assert not torch.allclose(restored.encode_text(tokens), gelu.eval().encode_text(tokens))
    # a later run (or the LAIONet text encoder) reading this model.pt builds QuickGELU too
    enc, _ = load_text_encoder(
        {"open_clip": "RN-tiny", "checkpoint": str(tmp_path / "run" / "model.pt")}
    )
    assert factory.uses_quick_gelu(enc)
    fit(
        run_config("clip", epochs=1),
        data,
        tmp_path / "gelu",
        tmp_path / "gelu" / "ck",
        device="cpu",
    )
    assert torch.load(tmp_path / "gelu" / "model.pt", weights_only=True)["quick_gelu"] is False
