"""The pooling operator P(.; Theta) of paper §3.1, acting on token sequences.

A sequence of ``1 + T*H*W`` tokens (a class token, then space-time tokens with time as the outer
index) is split into the class token and a ``(T, H, W)`` grid; the grid is pooled with kernel ``k``,
stride ``s`` and padding ``p`` on each axis, giving ``floor((L + 2p - k) / s) + 1`` positions per axis;
then the class token is put back in front.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import Triple, pool_padding


class _DepthwiseConv3d(torch.autograd.Function):
    """A depthwise ``F.conv3d`` whose input gradient is computed as a stride-1 convolution of the
    zero-upsampled output gradient with the flipped kernel, which is what a transposed convolution is.

    On the CPU, oneDNN's backward of a depthwise 3-D convolution is 3-6x slower than its forward; this
    gives the same gradient (up to float rounding) at the speed of a forward convolution. The weight
    gradient is oneDNN's own. Shapes: ``x: (N, C, T, H, W)``, ``weight: (C, 1, kT, kH, kW)``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: Triple, padding: Triple) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv3d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        weight_dtype = weight.dtype
        x, weight = x.to(grad.dtype), weight.to(grad.dtype)  # under autocast the forward ran in grad's dtype
        stride, padding, channels = ctx.stride, ctx.padding, x.shape[1]
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            kernel = weight.shape[2:]
            left = [k - 1 - p for k, p in zip(kernel, padding)]
            right = [n + p - (o - 1) * s - 1 for n, p, o, s in zip(x.shape[2:], padding, grad.shape[2:], stride)]
            full = [a + (o - 1) * s + 1 + b for a, o, s, b in zip(left, grad.shape[2:], stride, right)]
            if x.is_contiguous(memory_format=torch.channels_last_3d):
                upsampled = grad.new_zeros((grad.shape[0], *full, channels)).permute(0, 4, 1, 2, 3)
            else:
                upsampled = grad.new_zeros((grad.shape[0], channels, *full))
            upsampled[(slice(None), slice(None)) + tuple(
                slice(a, a + (o - 1) * s + 1, s) for a, o, s in zip(left, grad.shape[2:], stride))] = grad
            grad_x = F.conv3d(upsampled, weight.flip(2, 3, 4), None, 1, 0, 1, channels)
        if ctx.needs_input_grad[1]:
            # the weight gradient sums over every position: accumulate it in float32 (oneDNN's bf16
            # kernel overflowed to inf here on some inputs), then return it in the parameter's dtype
            acc = torch.promote_types(grad.dtype, torch.float32)
            grad_weight = torch.ops.aten.convolution_backward(
                grad.to(acc), x.to(acc), weight.to(acc), None, stride, padding, (1, 1, 1), False, (0, 0, 0),
                channels, [False, True, False],
            )[1].to(weight_dtype)
        return grad_x, grad_weight, None, None


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

    def __init__(self, mode: str, dim: int, kernel: Triple, stride: Triple, has_cls: bool = True,
                 norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        padding = pool_padding(kernel)
        self.has_cls = has_cls
        self.is_conv = mode == "conv"
        if mode == "conv":
            self.op: nn.Module = nn.Conv3d(dim, dim, kernel, stride, padding, groups=dim, bias=False)
            self.norm: nn.Module = nn.LayerNorm(dim, eps=norm_eps)
        elif mode == "max":
            self.op, self.norm = nn.MaxPool3d(kernel, stride, padding), nn.Identity()
        elif mode == "avg":
            self.op, self.norm = nn.AvgPool3d(kernel, stride, padding), nn.Identity()
        else:
            raise ValueError(f"Unknown pooling mode {mode!r}; use 'conv', 'max' or 'avg'")

    def forward(self, x: torch.Tensor, thw: Triple) -> tuple[torch.Tensor, Triple]:
        lead, (n, c) = x.shape[:-2], x.shape[-2:]
        t, h, w = thw
        if n != self.has_cls + t * h * w:
            raise ValueError(
                f"Pool got {n} tokens but the grid {tuple(thw)} needs {self.has_cls + t * h * w}"
                f" ({'1 class token + ' if self.has_cls else ''}T*H*W)"
            )
        # split (not slicing): its backward concatenates the two gradients instead of zero-filling
        cls, grid = x.split((int(self.has_cls), t * h * w), dim=-2)
        if self.is_conv:
            # one channels-last copy: on the CPU the depthwise conv's backward is fastest in this layout,
            # and (unlike a strided view) it lets the (B, N, 3*D) projection be freed after the forward
            grid = grid.contiguous().view(-1, t, h, w, c).permute(0, 4, 1, 2, 3)
            if grid.device.type == "cpu":
                grid = _DepthwiseConv3d.apply(grid, self.op.weight, self.op.stride, self.op.padding)
            else:
                grid = self.op(grid)
        else:  # max / avg pooling save no input copy for their backward: a view is enough
            grid = self.op(grid.transpose(-2, -1).reshape(-1, c, t, h, w))
        new_thw = tuple(grid.shape[-3:])
        grid = grid.flatten(2).transpose(1, 2).reshape(*lead, -1, c)
        x = self.norm(torch.cat((cls, grid), dim=-2))
        return x, new_thw  # type: ignore[return-value]

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, has_cls={self.has_cls}"
