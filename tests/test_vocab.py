import numpy as np
import pytest
import torch

from tailstudy.train.vocab import class_weights, subsample_vocabulary, subsampled_cross_entropy


def test_union_kept_no_duplicates_and_targets_remapped():
    y = torch.tensor([7, 3, 7, 12, 3])
    w = torch.ones(20, dtype=torch.float64)
    vocab, target = subsample_vocabulary(y, 8, w, torch.Generator().manual_seed(0))
    assert vocab.numel() == 8
    assert torch.equal(vocab, torch.sort(vocab).values)
    assert vocab.unique().numel() == vocab.numel()
    assert set([3, 7, 12]) <= set(vocab.tolist())
    assert torch.equal(vocab[target], y)  # remapped targets point at the true classes


def test_never_truncated_below_batch_classes():
    y = torch.arange(10)
    vocab, target = subsample_vocabulary(y, 4, torch.ones(20), torch.Generator().manual_seed(0))
    assert torch.equal(vocab, torch.arange(10))
    assert torch.equal(target, torch.arange(10))


def test_zero_weight_classes_never_drawn_and_pool_exhaustion():
    counts = torch.tensor([5, 0, 3, 0, 1, 0])
    w = class_weights(counts, "linear")
    for seed in range(50):
        vocab, _ = subsample_vocabulary(
            torch.tensor([0]), 6, w, torch.Generator().manual_seed(seed)
        )
        assert set(vocab.tolist()) == {0, 2, 4}  # only positive-weight classes can be added
    vocab, _ = subsample_vocabulary(torch.tensor([1]), 3, class_weights(counts, "uniform"))
    assert 1 in vocab.tolist() and vocab.numel() == 3


@pytest.mark.parametrize("weighting", ["linear", "sqrt", "uniform"])
def test_extra_classes_follow_weights(weighting):
    counts = torch.tensor([1, 100, 400, 900, 1600, 0], dtype=torch.float64)
    w = class_weights(counts, weighting)
    g = torch.Generator().manual_seed(1)
    hits = np.zeros(6)
    n = 6000
    for _ in range(n):
        vocab, _ = subsample_vocabulary(torch.tensor([0]), 2, w, g)  # one extra draw
        hits[[v for v in vocab.tolist() if v != 0]] += 1
    expected = w.numpy()[1:] / w.numpy()[1:].sum()
    observed = hits[1:] / n
    assert np.allclose(observed, expected, atol=0.02)
    if weighting != "uniform":
        assert hits[5] == 0


def test_full_vocab_equals_plain_cross_entropy_and_groups_are_independent():
    torch.manual_seed(0)
    f = torch.nn.functional.normalize(torch.randn(16, 8), dim=-1)
    p = torch.nn.functional.normalize(torch.randn(10, 8), dim=-1)
    y = torch.randint(0, 10, (16,))
    s = torch.tensor(10.0)
    plain = torch.nn.functional.cross_entropy(s * f @ p.T, y)
    assert torch.allclose(subsampled_cross_entropy(f, p, s, y, None, None, 4), plain)
    # K >= C: every group's vocabulary is all classes -> same loss as the full head
    w = torch.ones(10)
    full = subsampled_cross_entropy(f, p, s, y, 10, w, 4, torch.Generator().manual_seed(0))
    assert torch.allclose(full, plain, atol=1e-6)
    # small K with groups: each group's loss only sees its own vocabulary
    sub = subsampled_cross_entropy(f, p, s, y, 1, w, 4, torch.Generator().manual_seed(0))
    manual = 0.0
    for start in range(0, 16, 4):
        v = torch.unique(y[start : start + 4])
        logits = s * f[start : start + 4] @ p[v].T
        manual += torch.nn.functional.cross_entropy(
            logits, torch.searchsorted(v, y[start : start + 4]), reduction="sum"
        )
    assert torch.allclose(sub, manual / 16, atol=1e-6)
