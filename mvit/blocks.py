"""The multiscale transformer block (paper §3.2, Table 3b, Appendix A.1).

    X' = P(X; Θ_Q) + DropPath(MHPA(LN(X)))             pooled residual when Q is pooled
    Y  = skip(X') + DropPath(MLP(LN(X')))

At a stage transition the MLP widens the channels from D to D_out, and the skip path needs a
projection (Table A.1): (a) ``"norm_linear"``: a Linear on LN(X'), the signal that also feeds the MLP
(the default); (b) ``"linear"``: a Linear on X' itself; (c) ``"none"``: no skip at all.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionMap, MultiScaleAttention
from .configs import BlockSpec, Triple
from .pooling import Pool


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples with probability ``p`` while
    training, scaling the kept ones by ``1 / (1 - p)``. Identity in eval mode."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p).div_(1.0 - self.p)
        return x * keep  # one pass over x: the mask already holds 0 or 1 / (1 - p)

    def extra_repr(self) -> str:
        return f"p={self.p:.3f}"


class MLP(nn.Module):
    """Linear(D, hidden) -> GELU -> Linear(hidden, D_out).

    Shapes: ``x: (..., D)`` -> ``(..., D_out)``."""

    def __init__(self, dim: int, hidden: int, dim_out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class MultiScaleBlock(nn.Module):
    """One block of the block schedule, built from its `BlockSpec` alone (see `mvit.configs.block_schedule`).

    Shapes: ``x: (B, has_cls + prod(in_thw), dim_in)`` -> ``(B, has_cls + prod(out_thw), dim_out)``.
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        self.norm1 = nn.LayerNorm(spec.dim_in, eps=spec.norm_eps)
        self.attn = MultiScaleAttention(
            spec.dim_in,
            spec.num_heads,
            spec.q_kernel,
            spec.q_stride,
            spec.kv_kernel,
            spec.kv_stride,
            pool_mode=spec.pool_mode,
            qkv_bias=spec.qkv_bias,
            has_cls=spec.has_cls,
            norm_eps=spec.pool_norm_eps,
        )
        self.pool_skip = (
            Pool("max", spec.dim_in, spec.skip_kernel, spec.q_stride, has_cls=spec.has_cls)
            if spec.skip_kernel is not None
            else None
        )
        self.drop_path = DropPath(spec.drop_path)
        self.norm2 = nn.LayerNorm(spec.dim_in, eps=spec.norm_eps)
        self.mlp = MLP(spec.dim_in, spec.mlp_hidden, spec.dim_out)
        self.proj = (
            nn.Linear(spec.dim_in, spec.dim_out) if spec.dim_in != spec.dim_out and spec.stage_skip != "none" else None
        )

    def forward(
        self, x: torch.Tensor, thw: Triple, return_attention: bool = False
    ) -> tuple[torch.Tensor, Triple, Optional[AttentionMap]]:
        y, out_thw, attention_map = self.attn(self.norm1(x), thw, return_attention)
        x = self.residual(x, thw) + self.drop_path(y)  # X' = P(X; Θ_Q) + DropPath(MHPA(LN(X)))
        x_norm = self.norm2(x)
        x = self.skip(x, x_norm) + self.drop_path(self.mlp(x_norm))  # Y = skip(X') + DropPath(MLP(LN(X')))
        return x, out_thw, attention_map

    def residual(self, x: torch.Tensor, thw: Triple) -> torch.Tensor:
        """The residual path of the attention: ``x`` pooled with the query's stride, so that it lands on the
        attention's output grid (``x`` itself where Q is not pooled)."""
        return x if self.pool_skip is None else self.pool_skip(x, thw)[0]

    def skip(self, x: torch.Tensor, x_norm: Optional[torch.Tensor]) -> torch.Tensor | float:
        """The MLP's skip path: ``x`` where the channels stay; at a stage transition, Table A.1's variant:
        (a) ``proj(LN(x))``, (b) ``proj(x)``, (c) nothing (0)."""
        if self.spec.dim_in == self.spec.dim_out:
            return x
        if self.proj is None:
            return 0.0
        return self.proj(x_norm if self.spec.stage_skip == "norm_linear" else x)
