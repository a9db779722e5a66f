"""The fused CPU training path: the model's modules with operations that keep less for the backward pass.

The plain modules (`mvit.blocks`, `mvit.attention`, `mvit.pooling`) read like the paper's equations and
are what the book teaches. `fuse(model)` switches a built model to the subclasses below, which compute
the same functions with hand-written backward passes; the parameters, and so the state dict, stay the
same. The training engine fuses a model that trains on the CPU (``run.fused_ops``). Each operation
computes what the plain expression in its docstring computes (the same forward values; the same
gradients up to float rounding) but keeps less for the backward pass or runs a faster backward on the CPU:

- `layer_norm_linear`: a pre-norm and the projection after it (Q/K/V, the MLP's first Linear); keeps the
  norm's input, not its output, and recomputes the normalisation in the backward pass.
- `gelu_linear`: the second half of the MLP; keeps the hidden layer once (before GELU), not twice.
- `depthwise_conv3d`: conv pooling on a channels-last copy; computes the input gradient as a forward
  convolution, several times faster than oneDNN's backward of a depthwise 3-D convolution on the CPU.

Under autocast the forward passes run in the dtypes autocast picks, as the plain expressions do, and the
backward passes cast to the incoming gradient's dtype, as autograd does through autocast's casts.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionMap
from .blocks import MultiScaleBlock
from .configs import Triple
from .pooling import Pool


class _LayerNormLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, eps, weight, bias):
        ctx.save_for_backward(x, norm_weight, norm_bias, weight)
        ctx.eps, ctx.has_bias = eps, bias is not None
        return F.linear(F.layer_norm(x, x.shape[-1:], norm_weight, norm_bias, eps), weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, norm_weight, norm_bias, weight = ctx.saved_tensors
        normed, mean, rstd = torch.native_layer_norm(x, x.shape[-1:], norm_weight, norm_bias, ctx.eps)
        grad_2d = grad.reshape(-1, grad.shape[-1])
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[4]:
            grad_weight = grad_2d.T @ normed.reshape(-1, normed.shape[-1]).to(grad.dtype)
        if ctx.has_bias and ctx.needs_input_grad[5]:
            grad_bias = grad_2d.sum(0)
        grad_x = grad_norm_weight = grad_norm_bias = None
        if any(ctx.needs_input_grad[:3]):
            grad_normed = (grad @ weight.to(grad.dtype)).to(x.dtype)
            grad_x, grad_norm_weight, grad_norm_bias = torch.ops.aten.native_layer_norm_backward(
                grad_normed,
                x,
                x.shape[-1:],
                mean,
                rstd,
                norm_weight,
                norm_bias,
                [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]],
            )
        return grad_x, grad_norm_weight, grad_norm_bias, None, grad_weight, grad_bias


def layer_norm_linear(x: torch.Tensor, norm: nn.LayerNorm, linear: nn.Linear) -> torch.Tensor:
    """``linear(norm(x))``, keeping ``x`` rather than ``norm(x)`` for the backward pass (one
    ``(N, D)`` tensor less per call: ``x`` is kept anyway, by the norm or by the residual path).

    Shapes: ``x: (..., D)`` -> ``(..., linear.out_features)``."""
    return _LayerNormLinear.apply(x, norm.weight, norm.bias, norm.eps, linear.weight, linear.bias)


class _GeluLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, bias):
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(h), weight, bias)

    @staticmethod
    def backward(ctx, grad):
        h, weight = ctx.saved_tensors
        grad_2d = grad.reshape(-1, grad.shape[-1])
        grad_h = grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_weight = grad_2d.T @ F.gelu(h).reshape(-1, h.shape[-1]).to(grad.dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_2d.sum(0)
        if ctx.needs_input_grad[0]:
            grad_h = torch.ops.aten.gelu_backward((grad @ weight.to(grad.dtype)).to(h.dtype), h)
        return grad_h, grad_weight, grad_bias


def gelu_linear(h: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """``F.linear(F.gelu(h), weight, bias)``, keeping ``h`` and recomputing ``GELU(h)`` in the backward
    pass instead of keeping both (the MLP's hidden layer is the largest activation of a block).

    Shapes: ``h: (..., hidden)``, ``weight: (D_out, hidden)`` -> ``(..., D_out)``."""
    return _GeluLinear.apply(h, weight, bias)


class _DepthwiseConv3d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, stride, padding):
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv3d(x, weight, None, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        weight_dtype = weight.dtype
        x, weight = x.to(grad.dtype), weight.to(grad.dtype)
        stride, padding, channels = ctx.stride, ctx.padding, x.shape[1]
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            # The transposed convolution: spread the gradient on the input grid with stride - 1 zeros
            # between entries (and k - 1 - p on the left), then correlate with the flipped kernel.
            kernel = weight.shape[2:]
            left = [k - 1 - p for k, p in zip(kernel, padding)]
            right = [n + p - (o - 1) * s - 1 for n, p, o, s in zip(x.shape[2:], padding, grad.shape[2:], stride)]
            full = [a + (o - 1) * s + 1 + b for a, o, s, b in zip(left, grad.shape[2:], stride, right)]
            if x.is_contiguous(memory_format=torch.channels_last_3d):
                spread = grad.new_zeros((grad.shape[0], *full, channels)).permute(0, 4, 1, 2, 3)
            else:
                spread = grad.new_zeros((grad.shape[0], channels, *full))
            spread[
                (slice(None), slice(None))
                + tuple(slice(a, a + (o - 1) * s + 1, s) for a, o, s in zip(left, grad.shape[2:], stride))
            ] = grad
            grad_x = F.conv3d(spread, weight.flip(2, 3, 4), None, 1, 0, 1, channels)
        if ctx.needs_input_grad[1]:
            # the weight gradient sums over every position: accumulate it in float32 (oneDNN's bf16
            # kernel overflowed to inf here on some inputs), then return it in the parameter's dtype
            acc = torch.promote_types(grad.dtype, torch.float32)
            grad_weight = torch.ops.aten.convolution_backward(
                grad.to(acc),
                x.to(acc),
                weight.to(acc),
                None,
                stride,
                padding,
                (1, 1, 1),
                False,
                (0, 0, 0),
                channels,
                [False, True, False],
            )[1].to(weight_dtype)
        return grad_x, grad_weight, None, None


def depthwise_conv3d(x: torch.Tensor, weight: torch.Tensor, stride: Triple, padding: Triple) -> torch.Tensor:
    """``F.conv3d(x, weight, None, stride, padding, groups=C)`` with a faster backward on the CPU.

    oneDNN's backward of a depthwise 3-D convolution is 3-6x slower than its forward on the CPU; here the
    input gradient is a stride-1 forward convolution of the zero-spread output gradient with the flipped
    kernel (what a transposed convolution is), and the weight gradient is oneDNN's own. Fastest with a
    channels-last ``x``. Shapes: ``x: (N, C, T, H, W)``, ``weight: (C, 1, kT, kH, kW)``."""
    return _DepthwiseConv3d.apply(x, weight, tuple(stride), tuple(padding))


# ----------------------------------------------------------------------------------------------------
# the fused modules
# ----------------------------------------------------------------------------------------------------


class FusedPool(Pool):
    """`Pool` in conv mode, on a channels-last copy of the grid with `depthwise_conv3d`'s backward. The copy
    is made anyway by the layout change, and (unlike a strided view) it lets the ``(B, N, 3 * D)`` Q/K/V
    projection be freed after the forward pass."""

    def pool_grid(self, tokens: torch.Tensor, thw: Triple) -> torch.Tensor:
        # one copy, straight into the channels-last layout of an (M, C, T, H, W) grid
        grid = tokens.contiguous().view(-1, *thw, tokens.shape[-1]).permute(0, 4, 1, 2, 3)
        return depthwise_conv3d(grid, self.op.weight, self.op.stride, self.op.padding)


class FusedMultiScaleBlock(MultiScaleBlock):
    """`MultiScaleBlock` with each pre-norm fused into the projection that reads it (`layer_norm_linear`)
    and the MLP's GELU fused into its second Linear (`gelu_linear`). Same parameters, same function."""

    def forward(
        self, x: torch.Tensor, thw: Triple, return_attention: bool = False
    ) -> tuple[torch.Tensor, Triple, Optional[AttentionMap]]:
        attn, mlp = self.attn, self.mlp
        q, k, v = attn.split_heads(layer_norm_linear(x, self.norm1, attn.qkv))
        if attn.pool_q is None and attn.pool_k is not None:
            # a copy of q alone lets the (B, N, 3 * D) projection be freed after the forward pass: the
            # attention's backward keeps q, and a view would keep all of the projection alive
            q = q.contiguous()
        y, out_thw, attention_map = attn.attend(q, k, v, thw, return_attention)
        x = self.residual(x, thw) + self.drop_path(y)
        if self.proj is not None and self.spec.stage_skip == "norm_linear":
            x_norm = self.norm2(x)  # read by the MLP and the skip projection: normalise once
            hidden = mlp.fc1(x_norm)
        else:
            x_norm, hidden = None, layer_norm_linear(x, self.norm2, mlp.fc1)
        y = gelu_linear(hidden, mlp.fc2.weight, mlp.fc2.bias)
        return self.skip(x, x_norm) + self.drop_path(y), out_thw, attention_map


def fuse(model: nn.Module) -> nn.Module:
    """Switch every `MultiScaleBlock` and conv `Pool` of `model` to its fused subclass, in place; the
    parameters (and the state dict) are untouched. Returns `model`. `unfuse` switches back."""
    for module in model.modules():
        if type(module) is MultiScaleBlock:
            module.__class__ = FusedMultiScaleBlock
        elif type(module) is Pool and isinstance(module.op, nn.Conv3d):
            module.__class__ = FusedPool
    return model


def unfuse(model: nn.Module) -> nn.Module:
    """The inverse of `fuse`: every fused module back to its plain class, in place. Returns `model`."""
    for module in model.modules():
        if type(module) in (FusedMultiScaleBlock, FusedPool):
            module.__class__ = type(module).__mro__[1]
    return model
