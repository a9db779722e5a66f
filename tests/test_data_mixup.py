"""Mixup on half the batch, CutMix on the other half, label smoothing; video and image batches."""

import pytest
import torch

from mvit.data import MixupCutmix, smooth_one_hot


def test_label_smoothing():
    target = smooth_one_hot(torch.tensor([2, 0]), 4, 0.1)
    torch.testing.assert_close(target[0], torch.tensor([0.025, 0.025, 0.925, 0.025]))
    torch.testing.assert_close(target.sum(1), torch.ones(2))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        smooth_one_hot(torch.tensor([4]), 4, 0.1)


def constant_batch(batch, shape):
    """Sample i is filled with the value i, so every output pixel says where it came from."""
    return torch.arange(batch, dtype=torch.float32).view(-1, *([1] * len(shape))).expand(batch, *shape).clone()


@pytest.mark.parametrize("shape", [(3, 4, 16, 16), (3, 16, 16)])
def test_half_mixup_half_cutmix(shape):
    torch.manual_seed(0)
    batch, classes = 8, 5
    x, y = constant_batch(batch, shape), torch.arange(batch) % classes
    mixed, soft = MixupCutmix(classes, label_smoothing=0.0)(x, y)
    assert mixed.shape == x.shape and soft.shape == (batch, classes)
    torch.testing.assert_close(soft.sum(1), torch.ones(batch))
    kinds = []
    for i in range(batch):
        partner = (i - 1) % batch
        values = mixed[i].unique()
        if len(values) == 1 and not torch.isin(values, torch.tensor([float(i), float(partner)])).all():
            kinds.append("mixup")  # one blended value everywhere: lam * i + (1 - lam) * partner
            lam = (values.item() - partner) / (i - partner)
        else:
            kinds.append("cutmix")  # pixels from the sample itself and a pasted box from its partner
            assert set(values.tolist()) <= {float(i), float(partner)}
            lam = (mixed[i] == i).float().mean().item()
            if mixed.ndim == 5:  # the same box in every frame
                assert torch.equal(mixed[i, :, 0], mixed[i, :, -1])
        expected = torch.zeros(classes)
        expected[y[i]] += lam
        expected[y[partner]] += 1 - lam
        torch.testing.assert_close(soft[i], expected, atol=1e-5, rtol=0)
    assert kinds.count("cutmix") >= 1 and kinds.count("mixup") >= 1
    assert kinds.count("cutmix") + kinds.count("mixup") == batch


def test_alpha_zero_turns_a_method_off():
    torch.manual_seed(0)
    x, y = constant_batch(6, (3, 8, 8)), torch.arange(6)
    only_mixup, _ = MixupCutmix(6, cutmix_alpha=0.0)(x, y)
    assert all(len(only_mixup[i].unique()) == 1 for i in range(6))  # no boxes anywhere
    none, soft = MixupCutmix(6, mixup_alpha=0.0, cutmix_alpha=0.0, label_smoothing=0.1)(x, y)
    torch.testing.assert_close(none, x)
    torch.testing.assert_close(soft, smooth_one_hot(y, 6, 0.1))


def test_input_is_not_modified():
    x, y = torch.randn(4, 3, 2, 8, 8), torch.tensor([0, 1, 2, 3])
    copy = x.clone()
    MixupCutmix(4)(x, y)
    torch.testing.assert_close(x, copy)


def test_bad_input():
    with pytest.raises(ValueError, match=r"expected x \(B, 3, H, W\)"):
        MixupCutmix(4)(torch.zeros(4, 8, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="alphas"):
        MixupCutmix(4, mixup_alpha=-1)
