"""The MViT model: cube embedding, positional embeddings, the multiscale blocks and the head.

ViT-B is the same model with a single stage and no pooling (preset ``vit_b_8x8``).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import AttentionMap
from .blocks import MultiScaleBlock
from .configs import MViTConfig, Triple, block_schedule, conv_output_size, get_config, pool_padding


class PositionalEmbedding(nn.Module):
    """Learned positional embeddings added to the tokens (Table 11).

    kinds: ``"separate"`` (a spatial table ``H*W x C`` plus a temporal table ``T x C``, the paper's
    default), ``"joint"`` (one table ``T*H*W x C``), ``"space"`` (spatial only), ``"none"``.
    The class token, when present, has an embedding of its own. When the token grid differs from the one
    the tables were made for (another clip length or resolution), the tables are interpolated: linearly
    in time, bicubically in space (how the paper fine-tunes 32x3 into 64x3).

    Shapes: ``x: (B, has_cls + T*H*W, C)`` -> same.
    """

    def __init__(self, kind: str, dim: int, grid: Triple, has_cls: bool) -> None:
        super().__init__()
        self.kind, self.grid, self.has_cls = kind, tuple(grid), has_cls
        t, h, w = grid
        self.spatial = nn.Parameter(torch.zeros(h * w, dim)) if kind in ("separate", "space") else None
        self.temporal = nn.Parameter(torch.zeros(t, dim)) if kind == "separate" else None
        self.joint = nn.Parameter(torch.zeros(t * h * w, dim)) if kind == "joint" else None
        self.cls = nn.Parameter(torch.zeros(1, dim)) if has_cls and kind != "none" else None

    def table(self, thw: Triple) -> Optional[torch.Tensor]:
        """The embedding of every token of a ``thw`` grid: ``(has_cls + T*H*W, C)``, or None."""
        if self.kind == "none":
            return None
        t, h, w = thw
        t0, h0, w0 = self.grid
        if self.joint is not None:
            pos = self.joint
            if (t, h, w) != self.grid:
                grid = pos.T.reshape(1, -1, t0, h0, w0)
                pos = F.interpolate(grid, size=(t, h, w), mode="trilinear", align_corners=False).flatten(2)[0].T
        else:
            spatial = self.spatial
            if (h, w) != (h0, w0):
                grid = spatial.T.reshape(1, -1, h0, w0)
                spatial = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False).flatten(2)[0].T
            if self.temporal is None:
                pos = spatial.repeat(t, 1)
            else:
                temporal = self.temporal
                if t != t0:
                    temporal = F.interpolate(temporal.T[None], size=t, mode="linear", align_corners=False)[0].T
                # time is the outer index of the flattened tokens
                pos = (temporal[:, None, :] + spatial[None, :, :]).reshape(t * h * w, -1)
        if self.cls is not None:
            pos = torch.cat((self.cls, pos), dim=0)
        return pos

    def forward(self, x: torch.Tensor, thw: Triple) -> torch.Tensor:
        pos = self.table(thw)
        return x if pos is None else x + pos


class MViT(nn.Module):
    """Multiscale Vision Transformer (paper §3, Table 3).

    Shapes: ``x: (B, C, T, H, W)`` (or ``(B, C, H, W)`` for a model whose input T is 1)
    -> logits ``(B, num_classes)``.
    """

    def __init__(self, config: MViTConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.schedule = block_schedule(cfg)
        self.patch_embed = nn.Conv3d(
            cfg.in_channels, cfg.embed_dim, cfg.patch_kernel, cfg.patch_stride, cfg.patch_padding
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.cls_token else None
        self.pos_embed = PositionalEmbedding(cfg.pos_embed, cfg.embed_dim, cfg.patch_grid, cfg.cls_token)
        self.blocks = nn.ModuleList(MultiScaleBlock(spec) for spec in self.schedule)
        dim = self.schedule[-1].dim_out
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.head_drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(dim, cfg.num_classes)
        self.apply(_init_weights)
        for p in (self.cls_token, *self.pos_embed.parameters()):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    def _check_input(self, x: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        t = cfg.input_size[0]
        expected = f"(B, {cfg.in_channels}, T, H, W)" + (f" or (B, {cfg.in_channels}, H, W)" if t == 1 else "")
        if x.ndim == 4 and t == 1:
            x = x.unsqueeze(2)
        if x.ndim != 5:
            hint = " (for a single clip, add a batch dimension with x.unsqueeze(0))" if x.ndim == 4 else ""
            raise ValueError(f"MViT expects input of shape {expected}, got {tuple(x.shape)}{hint}")
        if x.shape[1] != cfg.in_channels:
            hint = " (channels-last input? use x.permute(0, 4, 1, 2, 3))" if x.shape[-1] == cfg.in_channels else ""
            raise ValueError(
                f"MViT expects {cfg.in_channels} channels in dim 1, i.e. {expected}; got {tuple(x.shape)}{hint}"
            )
        for axis, size, stride in zip("THW", x.shape[2:], cfg.patch_stride):
            if size % stride:
                raise ValueError(
                    f"input {axis}={size} (shape {tuple(x.shape)}) is not a multiple of the patch stride "
                    f"{stride} on that axis; resize or crop it to a multiple of {stride} "
                    f"(this model was configured for T, H, W = {cfg.input_size})"
                )
        return x

    def forward_features(
        self, x: torch.Tensor, return_attention: bool = False
    ) -> tuple[torch.Tensor, list[AttentionMap]]:
        """Tokens after the final norm, ``(B, has_cls + T'*H'*W', C')``, and the attention maps of every
        block when ``return_attention`` is True (explicit softmax instead of the fused kernel)."""
        x = self.patch_embed(self._check_input(x))
        thw = tuple(x.shape[-3:])
        x = x.flatten(2).transpose(1, 2)
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = self.pos_embed(x, thw)
        maps: list[AttentionMap] = []
        for block in self.blocks:
            if self.config.activation_checkpointing and self.training and not return_attention:
                x, thw, _ = checkpoint(block, x, thw, use_reentrant=False)
            else:
                x, thw, attention_map = block(x, thw, return_attention)
                if attention_map is not None:
                    maps.append(attention_map)
        return self.norm(x), maps

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's tokens after the final norm put back on their space-time grid, class token
        dropped: ``(B, C, T, H, W)`` -> ``(B, C', T', H', W')``. App. D.2's input to the detection head
        (`mvit.detection`)."""
        thw = conv_output_size(
            tuple(self._check_input(x).shape[-3:]),
            self.config.patch_kernel,
            self.config.patch_stride,
            self.config.patch_padding,
        )
        for spec in self.schedule:
            if spec.q_kernel is not None:
                thw = conv_output_size(thw, spec.q_kernel, spec.q_stride, pool_padding(spec.q_kernel))
        tokens, _ = self.forward_features(x)
        if self.cls_token is not None:
            tokens = tokens[:, 1:]
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *thw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.forward_features(x)
        x = x[:, 0] if self.cls_token is not None else x.mean(dim=1)
        return self.head(self.head_drop(x))

    def no_weight_decay(self) -> set[str]:
        """Parameters that take no weight decay: biases, norms, positional embeddings, class token."""
        return {
            name for name, p in self.named_parameters() if p.ndim <= 1 or name.startswith(("pos_embed.", "cls_token"))
        }


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def build_model(name: str, **overrides) -> MViT:
    """Build the preset `name` (see `mvit.list_models()`), with any `MViTConfig` field overridden.

    >>> model = build_model("mvit_b_16x4", num_classes=101, drop_path=0.1)
    """
    return MViT(get_config(name, **overrides))
