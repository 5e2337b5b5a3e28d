"""Fixtures for the class-frequency tests: WordNet for NLTK, set up once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tailstudy.io import UserError


@pytest.fixture(scope="session")
def nltk_data(tmp_path_factory) -> str:
    """An NLTK data folder holding WordNet 3.0 (``NLTK_DATA`` if it has one, else one set up by
    :func:`~tailstudy.freq.wordnet.ensure_wordnet` as the workflow does); skips the test, with
    every source tried, when none works."""
    from tailstudy.freq.wordnet import _has_wordnet, ensure_wordnet

    env = os.environ.get("NLTK_DATA")
    if env and _has_wordnet(Path(env)):
        return env
    try:
        pytest.importorskip("nltk", reason="caption matching needs NLTK (pip install nltk)")
        return str(ensure_wordnet(tmp_path_factory.mktemp("nltk_data")))
    except UserError as e:
        pytest.skip(f"WordNet cannot be set up here: {e}")


@pytest.fixture(scope="session")
def lemmatize(nltk_data):
    """NLTK's WordNet lemmatiser (noun POS)."""
    from tailstudy.freq.wordnet import load_lemmatizer

    try:
        return load_lemmatizer(nltk_data)
    except UserError as e:
        pytest.skip(f"WordNet cannot be loaded: {e}")


@pytest.fixture(scope="session")
def imagenet(lemmatize):
    """The ImageNet-1k concept set (needs timm and open_clip for names and lemmas)."""
    pytest.importorskip("timm")
    pytest.importorskip("open_clip")
    from tailstudy.freq.conceptsets import load_concept_set

    return load_concept_set("imagenet")


@pytest.fixture(scope="session")
def imagenet_matcher(imagenet, lemmatize):
    from tailstudy.freq.engine import Matcher

    return Matcher(imagenet, lemmatize)
