"""The pooling operator P(.; Theta) of paper §3.1 on token sequences (`mvit.pooling.Pool`)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from mvit.configs import conv_output_size
from mvit.pooling import Pool

KERNELS = [(1, 1, 1), (1, 3, 3), (3, 3, 3), (2, 2, 2), (3, 5, 1), (4, 3, 2)]
STRIDES = [(1, 1, 1), (1, 2, 2), (2, 2, 2), (1, 4, 4), (3, 1, 2)]
GRIDS = [(4, 7, 7), (8, 14, 14), (3, 6, 5), (1, 9, 9)]
CASES = [
    (k, s, g)
    for k, s, g in itertools.product(KERNELS, STRIDES, GRIDS)
    # PyTorch's max pooling refuses a grid smaller than the kernel, even with padding
    if all(n >= kk for n, kk in zip(g, k))
]


def formula(size: int, kernel: int, stride: int, padding: int) -> int:
    """The paper's length after pooling, floor((L + 2p - k) / s) + 1, written out per axis."""
    return math.floor((size + 2 * padding - kernel) / stride) + 1


def tokens_to_grid(x: torch.Tensor, thw) -> torch.Tensor:
    """(B, T*H*W, C) with time as the outer index -> (B, C, T, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *thw)


@pytest.mark.parametrize("kernel,stride,grid", CASES)
def test_output_grid_follows_the_formula_and_matches_pytorch_pooling(kernel, stride, grid):
    torch.manual_seed(0)
    dim = 4
    x = torch.randn(2, 1 + math.prod(grid), dim)
    padding = tuple((k - 1) // 2 for k in kernel)  # = k // 2 for odd kernels
    expected_thw = tuple(formula(n, k, s, p) for n, k, s, p in zip(grid, kernel, stride, padding))
    assert conv_output_size(grid, kernel, stride, padding) == expected_thw

    # max: the grid after the class token must equal MaxPool3d on the (B, C, T, H, W) grid
    out, thw = Pool("max", dim, kernel, stride)(x, grid)
    assert thw == expected_thw
    assert out.shape == (2, 1 + math.prod(expected_thw), dim)
    direct = F.max_pool3d(tokens_to_grid(x[:, 1:], grid), kernel, stride, padding)
    torch.testing.assert_close(tokens_to_grid(out[:, 1:], thw), direct, rtol=0, atol=0)

    # avg: AvgPool3d with zero padding counted, as nn.AvgPool3d does by default
    out, thw = Pool("avg", dim, kernel, stride)(x, grid)
    direct = F.avg_pool3d(tokens_to_grid(x[:, 1:], grid), kernel, stride, padding)
    torch.testing.assert_close(tokens_to_grid(out[:, 1:], thw), direct)

    # conv: a depthwise Conv3d (no bias), then LayerNorm over the channels of every token
    pool = Pool("conv", dim, kernel, stride)
    with torch.no_grad():
        pool.norm.weight.uniform_(0.5, 1.5)
        pool.norm.bias.uniform_(-0.5, 0.5)
    out, thw = pool(x, grid)
    weight = pool.op.weight
    assert weight.shape == (dim, 1, *kernel) and pool.op.bias is None
    conv = F.conv3d(tokens_to_grid(x[:, 1:], grid), weight, None, stride, padding, groups=dim)
    normed = F.layer_norm(conv.flatten(2).transpose(1, 2), (dim,), pool.norm.weight, pool.norm.bias, eps=1e-6)
    torch.testing.assert_close(out[:, 1:], normed)


def test_class_token_bypasses_pooling_and_is_then_normalised():
    torch.manual_seed(1)
    dim, grid = 6, (2, 4, 4)
    x = torch.randn(3, 1 + math.prod(grid), dim)
    pool = Pool("conv", dim, (3, 3, 3), (1, 2, 2))
    with torch.no_grad():
        pool.norm.weight.uniform_(0.5, 1.5)
        pool.norm.bias.uniform_(-0.5, 0.5)
    out, _ = pool(x, grid)
    # the class token is not pooled: only the LayerNorm that follows conv pooling touches it
    expected_cls = F.layer_norm(x[:, 0], (dim,), pool.norm.weight, pool.norm.bias, eps=1e-6)
    torch.testing.assert_close(out[:, 0], expected_cls)
    # and the pooled grid does not depend on the class token
    y = x.clone()
    y[:, 0] = 100.0
    torch.testing.assert_close(pool(y, grid)[0][:, 1:], out[:, 1:])

    # max pooling has no norm: the class token comes out unchanged
    out, _ = Pool("max", dim, (1, 3, 3), (1, 2, 2))(x, grid)
    assert torch.equal(out[:, 0], x[:, 0])


def test_without_class_token_every_token_is_pooled():
    x = torch.randn(2, 2 * 4 * 4, 3)
    out, thw = Pool("avg", 3, (1, 3, 3), (1, 2, 2), has_cls=False)(x, (2, 4, 4))
    assert thw == (2, 2, 2) and out.shape == (2, 8, 3)
    # the first window is centred on token (0, 0, 0), padded by one zero row and column: 4 real tokens / 9
    torch.testing.assert_close(out[:, 0], x[:, [0, 1, 4, 5]].sum(dim=1) / 9)


def test_leading_dimensions_such_as_heads_are_kept():
    """Attention pools Q, K, V of shape (B, heads, N, head_dim); the weights are shared by the heads."""
    torch.manual_seed(2)
    pool = Pool("conv", 4, (3, 3, 3), (1, 2, 2))
    x = torch.randn(2, 3, 1 + 2 * 6 * 6, 4)
    out, thw = pool(x, (2, 6, 6))
    assert thw == (2, 3, 3) and out.shape == (2, 3, 1 + 18, 4)
    for head in range(3):
        torch.testing.assert_close(out[:, head], pool(x[:, head], (2, 6, 6))[0])


def test_token_count_that_does_not_fit_the_grid_is_refused():
    pool = Pool("max", 4, (1, 3, 3), (1, 2, 2))
    with pytest.raises(ValueError, match=r"got 50 tokens but the grid \(2, 5, 5\) needs 51"):
        pool(torch.randn(1, 50, 4), (2, 5, 5))


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="Unknown pooling mode 'min'.*'conv', 'max' or 'avg'"):
        Pool("min", 4, (1, 3, 3), (1, 2, 2))
