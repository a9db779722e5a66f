"""The pooling operator P(.; Theta) of paper §3.1, acting on token sequences.

A sequence of ``1 + T*H*W`` tokens (a class token, then space-time tokens with time as the outer
index) is split into the class token and a ``(T, H, W)`` grid; the grid is pooled with kernel ``k``,
stride ``s`` and padding ``p`` on each axis, giving ``floor((L + 2p - k) / s) + 1`` positions per axis;
then the class token is put back in front.
"""

from __future__ import annotations

import torch
from torch import nn

from .configs import POOL_MODES, Triple, pool_padding


class Pool(nn.Module):
    """Pool a token sequence on its space-time grid.

    Args:
        mode: ``"conv"`` (a depthwise Conv3d followed by LayerNorm over the channels, the paper's
            default), ``"max"`` or ``"avg"``.
        dim: channels per token (for attention: channels per head, shared by all heads).
        kernel, stride: per axis (T, H, W); padding is ``(kernel - 1) // 2`` (``kernel // 2`` for the
            odd kernels of the paper's models; an even kernel equal to the stride keeps ``L / s`` positions).
        has_cls: whether the sequence starts with a class token that bypasses the pooling.
        norm_eps: epsilon of the LayerNorm that follows conv pooling.

    Shapes: ``x: (..., N, dim)`` with ``N = has_cls + T*H*W`` -> ``(..., N', dim)``, plus the new grid.
    """

    def __init__(
        self, mode: str, dim: int, kernel: Triple, stride: Triple, has_cls: bool = True, norm_eps: float = 1e-6
    ) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        padding = pool_padding(kernel)
        self.has_cls = has_cls
        if mode == "conv":
            self.op: nn.Module = nn.Conv3d(dim, dim, kernel, stride, padding, groups=dim, bias=False)
            self.norm: nn.Module = nn.LayerNorm(dim, eps=norm_eps)
        elif mode == "max":
            self.op, self.norm = nn.MaxPool3d(kernel, stride, padding), nn.Identity()
        elif mode == "avg":
            self.op, self.norm = nn.AvgPool3d(kernel, stride, padding), nn.Identity()
        else:
            *first, last = map(repr, POOL_MODES)
            raise ValueError(f"Unknown pooling mode {mode!r}; use {', '.join(first)} or {last}")

    def forward(self, x: torch.Tensor, thw: Triple) -> tuple[torch.Tensor, Triple]:
        lead, (n, c) = x.shape[:-2], x.shape[-2:]
        t, h, w = thw
        if n != self.has_cls + t * h * w:
            raise ValueError(
                f"Pool got {n} tokens but the grid {tuple(thw)} needs {self.has_cls + t * h * w}"
                f" ({'1 class token + ' if self.has_cls else ''}T*H*W)"
            )
        cls, tokens = x.split((int(self.has_cls), t * h * w), dim=-2)
        grid = self.pool_grid(tokens, thw)
        new_thw = tuple(grid.shape[-3:])
        grid = grid.flatten(2).transpose(1, 2).reshape(*lead, -1, c)
        x = self.norm(torch.cat((cls, grid), dim=-2))
        return x, new_thw  # type: ignore[return-value]

    def pool_grid(self, tokens: torch.Tensor, thw: Triple) -> torch.Tensor:
        """The pooling itself: tokens ``(..., T*H*W, C)`` on the grid `thw` -> ``(M, C, T', H', W')``."""
        t, h, w = thw
        return self.op(tokens.transpose(-2, -1).reshape(-1, tokens.shape[-1], t, h, w))

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, has_cls={self.has_cls}"
