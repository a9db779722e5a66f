"""Multi-head pooling attention (MHPA), paper §3.1.

    Q = X W_Q,  K = X W_K,  V = X W_V
    PA(X) = Softmax( P(Q; Θ_Q) P(K; Θ_K)^T / sqrt(d) ) P(V; Θ_V)

with ``h`` heads of ``d = D / h`` channels each. Pooling Q shortens the output sequence (a new, coarser
token grid); pooling K and V only shortens what each query attends over. The pooling weights are shared
across heads (they act on each head's ``d`` channels).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .configs import Triple
from .pooling import Pool


class AttentionMap(NamedTuple):
    """Attention weights of one block, with the token grids they live on.

    ``attn: (B, heads, Lq, Lk)``; ``Lq = has_cls + prod(q_thw)``, ``Lk = has_cls + prod(kv_thw)``.
    """

    attn: torch.Tensor
    q_thw: Triple
    kv_thw: Triple
    has_cls: bool


class MultiScaleAttention(nn.Module):
    """Multi-head pooling attention.

    Args:
        dim: channels D of the input and output tokens.
        num_heads: h; each head has ``dim // num_heads`` channels.
        q_kernel, q_stride: pooling of Q (``q_kernel=None``: Q is not pooled).
        kv_kernel, kv_stride: pooling of K and V (``kv_kernel=None``: not pooled).
        pool_mode: ``"conv"``, ``"max"`` or ``"avg"``.
        has_cls: the sequence starts with a class token.

    Shapes: ``x: (B, has_cls + T*H*W, D)`` -> ``(B, has_cls + T'*H'*W', D)`` and the query grid
    ``(T', H', W')``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        q_kernel: Optional[Triple] = None,
        q_stride: Triple = (1, 1, 1),
        kv_kernel: Optional[Triple] = None,
        kv_stride: Triple = (1, 1, 1),
        pool_mode: str = "conv",
        qkv_bias: bool = True,
        has_cls: bool = True,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
        self.num_heads, self.head_dim, self.has_cls = num_heads, dim // num_heads, has_cls
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

        def pool(kernel: Optional[Triple], stride: Triple) -> Optional[Pool]:
            if kernel is None:
                return None
            return Pool(pool_mode, self.head_dim, kernel, stride, has_cls=has_cls, norm_eps=norm_eps)

        self.pool_q = pool(q_kernel, q_stride)
        self.pool_k = pool(kv_kernel, kv_stride)
        self.pool_v = pool(kv_kernel, kv_stride)

    def forward(
        self, x: torch.Tensor, thw: Triple, return_attention: bool = False
    ) -> tuple[torch.Tensor, Triple, Optional[AttentionMap]]:
        q, k, v = self.split_heads(self.qkv(x))  # Q = X W_Q, K = X W_K, V = X W_V
        return self.attend(q, k, v, thw, return_attention)

    def split_heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, N, 3 * D)`` -> Q, K, V, each ``(B, h, N, D / h)``."""
        b, n, _ = qkv.shape
        q, k, v = qkv.view(b, n, 3, self.num_heads, self.head_dim).unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, thw: Triple, return_attention: bool = False
    ) -> tuple[torch.Tensor, Triple, Optional[AttentionMap]]:
        """Pool Q, K and V on the grid `thw`, attend, merge the heads and project: ``(B, h, N, d)`` each ->
        ``(B, N_q, D)``, the query grid, and the attention map when asked for (explicit softmax)."""
        b = q.shape[0]
        q_thw = kv_thw = thw
        if self.pool_q is not None:
            q, q_thw = self.pool_q(q, thw)
        if self.pool_k is not None:
            k, kv_thw = self.pool_k(k, thw)
            v, _ = self.pool_v(v, thw)
        attention_map = None
        if return_attention:
            attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # Softmax(Q K^T / sqrt(d))
            out = attn @ v
            attention_map = AttentionMap(attn, q_thw, kv_thw, self.has_cls)
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # the same, without storing the matrix
        out = out.transpose(1, 2).reshape(b, -1, self.num_heads * self.head_dim)
        return self.proj(out), q_thw, attention_map
