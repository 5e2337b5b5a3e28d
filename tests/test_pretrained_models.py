"""The list of models pre-trained elsewhere: checked before any job, loadable from a local file."""

from __future__ import annotations

import pytest
import torch

from tailstudy.io import UserError
from tailstudy.models import pretrained
from tailstudy.models.factory import create_clip

CORPORA = ["yfcc15m", "laion400m", "yfcc15m-cls-labels"]


def entry(**kw):
    return {"corpus": "yfcc15m", "family": "ResNet", **kw}


def test_open_clip_tags_pass_without_network():
    models = {
        "rn50-yfcc15m": entry(
            open_clip="RN50", pretrained="yfcc15m", frequency={"imagenet": "yfcc15m-cls-labels"}
        ),
        "rn50-quickgelu-yfcc15m": entry(open_clip="RN50-quickgelu", pretrained="yfcc15m"),
        "vit-b-32-laion400m-e32": entry(
            open_clip="ViT-B-32", pretrained="laion400m_e32", corpus="laion400m", family="ViT"
        ),
        "embedded": entry(run={"variant": "web", "model": "clip", "recipe": "r", "seed": 0}),
    }
    pretrained.check(models, corpora=CORPORA)
    act = pretrained.activation(models["rn50-yfcc15m"])
    # the GELU build of a checkpoint trained with QuickGELU, as the study loads it
    assert act == {"arch_quick_gelu": False, "tag_quick_gelu": True}
    assert pretrained.activation(models["rn50-quickgelu-yfcc15m"])["arch_quick_gelu"]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            entry(open_clip="RN5O", pretrained="yfcc15m"),
            "bad: open_clip has no architecture 'RN5O'",
        ),
        (
            entry(open_clip="RN50", pretrained="laion400m_e32"),
            "bad: open_clip has no pretrained tag 'laion400m_e32' for RN50 (it has: ",
        ),
        (entry(open_clip="RN50"), "bad: set pretrained"),
        (entry(open_clip="RN50", weights="nowhere/rn50.pt"), "bad: weights file nowhere/rn50.pt"),
        (
            entry(open_clip="RN50", pretrained="yfcc15m", corpus="laion5b"),
            "corpus 'laion5b' is not",
        ),
        ({"open_clip": "RN50", "pretrained": "yfcc15m", "corpus": "yfcc15m"}, "bad: set family"),
    ],
)
def test_bad_entries_stop_with_one_line_naming_the_model(model, message, tmp_path):
    models = {"good": entry(open_clip="RN50", pretrained="cc12m", corpus="laion400m"), "bad": model}
    with pytest.raises(UserError) as e:
        pretrained.check(models, corpora=CORPORA, root=tmp_path)
    text = str(e.value)
    assert text.startswith("pretrained model ") and "\n" not in text
    assert message in text


def test_the_same_model_twice_is_rejected():
    m = entry(open_clip="RN50", pretrained="yfcc15m")
    with pytest.raises(UserError, match="pretrained model b: the same model as pretrained model a"):
        pretrained.check({"a": m, "b": dict(m)})


def test_local_weights_load_through_open_clip(tmp_path):
    import open_clip

    torch.manual_seed(0)
    source = create_clip("RN-tiny")
    (tmp_path / "w").mkdir()
    torch.save(source.state_dict(), tmp_path / "w" / "tiny.pt")
    models = {"tiny": entry(open_clip="RN-tiny", weights="w/tiny.pt", family="RN-tiny")}
    pretrained.check(models, root=tmp_path)
    args = pretrained.open_clip_args(models["tiny"], root=tmp_path)
    assert args == {"model_name": "RN-tiny", "pretrained": str(tmp_path / "w" / "tiny.pt")}
    model, _, preprocess = open_clip.create_model_and_transforms(**args)
    for k, v in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)
    # a file holding a tag's checkpoint keeps that tag's preprocessing
    tagged = pretrained.open_clip_args(
        entry(open_clip="RN50", pretrained="yfcc15m", weights="w/tiny.pt"), root=tmp_path
    )
    assert tagged["pretrained"].endswith("tiny.pt")
    assert tagged["force_preprocess_cfg"]["interpolation"] == "bicubic"
    assert pretrained.open_clip_args(entry(open_clip="RN50", pretrained="yfcc15m")) == {
        "model_name": "RN50",
        "pretrained": "yfcc15m",
    }
