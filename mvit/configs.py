"""Model configurations as data: the `MViTConfig` dataclass, the block schedule computed from it,
and the paper's presets.

A multiscale vision transformer is described by a handful of *stage-level* choices (paper §3.2,
Table 3b): the number of blocks per stage, the width and heads of the first stage, how much channels
and heads grow at each stage transition, the query stride at a stage start and the key/value stride of
the first block. `block_schedule` expands them into the per-block settings (dims, heads, Q and K/V
strides and kernels, token grids); nothing is typed out block by block.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from typing import Optional, Union

Triple = tuple[int, int, int]

POOL_MODES = ("conv", "max", "avg")
KERNEL_RULES = ("stride+1", "stride", "2stride+1")
POS_EMBEDS = ("separate", "joint", "space", "none")
STAGE_SKIPS = ("norm_linear", "linear", "none")


@dataclass(frozen=True)
class MViTConfig:
    """Everything that defines an MViT (or, with no pooling, a ViT).

    Defaults are MViT-B 16x4 with conv pooling for Kinetics-400 (paper Table 3b, Table 4).
    """

    num_classes: int = 400
    input_size: Triple = (16, 224, 224)  # (T, H, W) of the input clip; T = 1 for images
    in_channels: int = 3
    # cube (patch) embedding: a Conv3d; images use a temporal kernel/stride of 1
    patch_kernel: Triple = (3, 7, 7)
    patch_stride: Triple = (2, 4, 4)
    patch_padding: Triple = (1, 3, 3)
    # stages: channels and heads of the first stage, blocks per stage, growth at each transition
    embed_dim: int = 96
    num_heads: int = 1
    stage_depths: tuple[int, ...] = (1, 2, 11, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    # pooling attention (§3.1): Q is pooled at the first block of every stage after the first;
    # K/V in every block, with an adaptive stride (divided by each Q stride met) or a fixed one.
    q_stride: Optional[Triple] = (1, 2, 2)
    kv_stride: Optional[Triple] = (1, 8, 8)
    kv_stride_adaptive: bool = True
    pool_mode: str = "conv"
    # a fixed kernel, or a rule relating kernel to stride per axis (Table 15)
    pool_kernel: Union[Triple, str] = (3, 3, 3)
    # embeddings and head
    pos_embed: str = "separate"  # Table 11
    cls_token: bool = True  # False: classify the mean of the tokens
    stage_skip: str = "norm_linear"  # Table A.1: (a) norm_linear, (b) linear, (c) none
    drop_path: float = 0.2
    dropout: float = 0.5
    norm_eps: float = 1e-6
    # the LayerNorm after conv pooling; pytorchvideo 0.1.5 checkpoints need 1e-5 (see mvit.convert)
    pool_norm_eps: float = 1e-6
    activation_checkpointing: bool = False

    def __post_init__(self) -> None:
        def choice(name: str, value: str, options: tuple[str, ...]) -> None:
            if value not in options:
                raise ValueError(f"MViTConfig.{name}={value!r} is not one of {options}")

        choice("pool_mode", self.pool_mode, POOL_MODES)
        choice("pos_embed", self.pos_embed, POS_EMBEDS)
        choice("stage_skip", self.stage_skip, STAGE_SKIPS)
        if isinstance(self.pool_kernel, str):
            choice("pool_kernel", self.pool_kernel, KERNEL_RULES)
        for name in ("input_size", "patch_kernel", "patch_stride", "patch_padding", "q_stride", "kv_stride"):
            value = getattr(self, name)
            if value is not None and (len(value) != 3 or any(int(v) != v or v < 0 for v in value)):
                raise ValueError(f"MViTConfig.{name}={value!r} must be three non-negative integers (T, H, W)")
        if not self.stage_depths or any(d < 1 for d in self.stage_depths):
            raise ValueError(f"MViTConfig.stage_depths={self.stage_depths!r} must be one or more positive block counts")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if not 0.0 <= self.drop_path < 1.0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError("drop_path and dropout must lie in [0, 1)")

    @property
    def depth(self) -> int:
        return sum(self.stage_depths)

    @property
    def patch_grid(self) -> Triple:
        """Token grid (T, H, W) after the cube embedding, for `input_size`."""
        return conv_output_size(self.input_size, self.patch_kernel, self.patch_stride, self.patch_padding)


@dataclass(frozen=True)
class BlockSpec:
    """Everything that makes one multiscale block, as computed by `block_schedule`: its widths, grids,
    pooling kernels and strides, and the model-wide choices it applies (norms, pooling mode, skip
    variant), so that `mvit.blocks.MultiScaleBlock` is built from this one value."""

    index: int
    stage: int
    dim_in: int
    dim_out: int
    num_heads: int
    q_stride: Triple
    q_kernel: Optional[Triple]  # None: Q is not pooled in this block
    kv_stride: Triple
    kv_kernel: Optional[Triple]  # None: K and V are not pooled
    in_thw: Triple  # token grid entering the block
    out_thw: Triple  # token grid of the queries, i.e. leaving the block
    kv_thw: Triple  # token grid of the pooled keys and values
    mlp_hidden: int  # the MLP's hidden width (mlp_ratio * dim_in)
    pool_mode: str  # "conv", "max" or "avg" (Table 15)
    qkv_bias: bool
    has_cls: bool  # a class token precedes the grid's tokens
    stage_skip: str  # the skip path at a stage transition (Table A.1)
    norm_eps: float  # the two LayerNorms
    pool_norm_eps: float  # the LayerNorm after each conv pooling
    drop_path: float = 0.0
    skip_kernel: Optional[Triple] = field(default=None)  # max-pool kernel of the pooled residual


def conv_output_size(size: Triple, kernel: Triple, stride: Triple, padding: Triple) -> Triple:
    """floor((L + 2p - k) / s) + 1 on each axis (the pooling formula of §3.1)."""
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))  # type: ignore[return-value]


def pool_kernel_for(stride: Triple, rule: Union[Triple, str]) -> Triple:
    """The pooling kernel for a stride: a fixed kernel, or one of Table 15's rules per axis."""
    if not isinstance(rule, str):
        return tuple(rule)  # type: ignore[return-value]
    if rule == "stride+1":
        return tuple(s + 1 if s > 1 else 1 for s in stride)  # type: ignore[return-value]
    if rule == "2stride+1":
        return tuple(2 * s + 1 if s > 1 else 1 for s in stride)  # type: ignore[return-value]
    return tuple(stride)  # type: ignore[return-value]  # "stride"


def pool_padding(kernel: Triple) -> Triple:
    """Padding of a pooling kernel: ``(k - 1) // 2`` (= ``k // 2`` for odd kernels; an even kernel equal to
    the stride, Table 15's "kernel = stride", then keeps exactly ``L / s`` positions like the skip path)."""
    return tuple((k - 1) // 2 for k in kernel)  # type: ignore[return-value]


def block_schedule(cfg: MViTConfig) -> list[BlockSpec]:
    """Expand the stage-level choices of `cfg` into one `BlockSpec` per block.

    Rules (paper §3.2 and Table 3b, as in the reference implementations):
    - stage s has width ``embed_dim * dim_mul**s`` and ``num_heads * head_mul**s`` heads;
    - channels grow in the *last* block of a stage (through the MLP and the skip projection);
    - the *first* block of each later stage pools Q with ``q_stride`` (and its residual with a max pool);
    - K/V are pooled in every block: adaptive strides start at ``kv_stride`` and are divided by each Q
      stride met, so the key grid stays the same size across a model's blocks.
    """
    thw = cfg.patch_grid
    kv_stride = tuple(cfg.kv_stride) if cfg.kv_stride is not None else None
    ones: Triple = (1, 1, 1)
    specs: list[BlockSpec] = []
    depth = cfg.depth
    index = 0
    for stage, n_blocks in enumerate(cfg.stage_depths):
        dim = round(cfg.embed_dim * cfg.dim_mul**stage)
        heads = round(cfg.num_heads * cfg.head_mul**stage)
        for j in range(n_blocks):
            last_stage = stage == len(cfg.stage_depths) - 1
            dim_out = round(cfg.embed_dim * cfg.dim_mul ** (stage + 1)) if j == n_blocks - 1 and not last_stage else dim
            q_stride = tuple(cfg.q_stride) if (j == 0 and stage > 0 and cfg.q_stride is not None) else ones
            if kv_stride is not None and cfg.kv_stride_adaptive:
                kv_stride = tuple(max(k // q, 1) for k, q in zip(kv_stride, q_stride))
            q_pooled = math.prod(q_stride) > 1
            q_kernel = pool_kernel_for(q_stride, cfg.pool_kernel) if q_pooled else None
            kv_kernel = None
            this_kv_stride = kv_stride if kv_stride is not None else ones
            if kv_stride is not None:
                kernel = pool_kernel_for(kv_stride, cfg.pool_kernel)
                if math.prod(kernel) > 1 or math.prod(kv_stride) > 1:
                    kv_kernel = kernel
            out_thw = conv_output_size(thw, q_kernel, q_stride, pool_padding(q_kernel)) if q_kernel else thw
            kv_thw = conv_output_size(thw, kv_kernel, this_kv_stride, pool_padding(kv_kernel)) if kv_kernel else thw
            skip_kernel = pool_kernel_for(q_stride, "stride+1") if q_pooled else None  # the residual's max pool
            specs.append(
                BlockSpec(
                    index=index,
                    stage=stage,
                    dim_in=dim,
                    dim_out=dim_out,
                    num_heads=heads,
                    q_stride=q_stride,  # type: ignore[arg-type]
                    q_kernel=q_kernel,
                    kv_stride=this_kv_stride,  # type: ignore[arg-type]
                    kv_kernel=kv_kernel,
                    in_thw=thw,
                    out_thw=out_thw,
                    kv_thw=kv_thw,
                    mlp_hidden=int(dim * cfg.mlp_ratio),
                    pool_mode=cfg.pool_mode,
                    qkv_bias=cfg.qkv_bias,
                    has_cls=cfg.cls_token,
                    stage_skip=cfg.stage_skip,
                    norm_eps=cfg.norm_eps,
                    pool_norm_eps=cfg.pool_norm_eps,
                    drop_path=cfg.drop_path * index / max(depth - 1, 1),
                    skip_kernel=skip_kernel,  # type: ignore[arg-type]
                )
            )
            thw = out_thw
            index += 1
    return specs


# --------------------------------------------------------------------------------------------------
# Presets. Each cites the table it reproduces; numbers to compare against live in tests and the book.
# --------------------------------------------------------------------------------------------------

_IMAGE = dict(
    num_classes=1000,
    input_size=(1, 224, 224),
    patch_kernel=(1, 7, 7),
    patch_stride=(1, 4, 4),
    patch_padding=(0, 3, 3),
    pool_kernel=(1, 3, 3),
    kv_stride=(1, 4, 4),
    pos_embed="joint",
    drop_path=0.1,
)

_VIT_B = dict(
    input_size=(8, 224, 224),
    patch_kernel=(1, 16, 16),
    patch_stride=(1, 16, 16),
    patch_padding=(0, 0, 0),
    embed_dim=768,
    num_heads=12,
    stage_depths=(12,),
    q_stride=None,
    kv_stride=None,
    pos_embed="joint",
)

# Small models for CPU work in the book and tests: the same code at a fraction of the size.
_TINY_VIDEO = dict(
    num_classes=10,
    input_size=(8, 64, 64),
    patch_kernel=(3, 7, 7),
    patch_stride=(2, 4, 4),
    patch_padding=(1, 3, 3),
    embed_dim=32,
    num_heads=1,
    stage_depths=(1, 2, 1),
    kv_stride=(1, 4, 4),
    drop_path=0.1,
    dropout=0.1,
)
_TINY_IMAGE = dict(
    _TINY_VIDEO,
    input_size=(1, 32, 32),
    patch_kernel=(1, 3, 3),
    patch_stride=(1, 2, 2),
    patch_padding=(0, 1, 1),
    pool_kernel=(1, 3, 3),
    pos_embed="joint",
)
# What turns a tiny MViT into the ViT of similar size it is compared with: one stage, no pooling, a wider
# embedding, non-overlapping patches (each preset sets their size)
_TINY_VIT = dict(embed_dim=64, num_heads=2, stage_depths=(4,), q_stride=None, kv_stride=None, patch_padding=(0, 0, 0))

PRESETS: dict[str, tuple[str, dict]] = {
    "mvit_b_16x4": ("MViT-B 16x4, conv pooling, Kinetics-400 (Tables 3b, 4)", {}),
    "mvit_b_16x4_max": (
        "MViT-B 16x4, max pooling with kernel = stride + 1 (Tables 3, 9, 14, 15)",
        dict(pool_mode="max", pool_kernel="stride+1"),
    ),
    "mvit_b_32x3": ("MViT-B 32x3, 16 blocks, Kinetics-400 (Table 4)", dict(input_size=(32, 224, 224))),
    "mvit_b_64x3": (
        "MViT-B 64x3: the 32x3 model fine-tuned on 64 frames (Table 4)",
        dict(input_size=(64, 224, 224)),
    ),
    "mvit_s_16x4": (
        "MViT-S 16x4 (Tables 3c, 4; no public config: the first stage's depth, heads, K/V stride and "
        "kernel are the layout closest to 26.1 M / 32.9 G found by benchmarks/search_mvit_s.py)",
        dict(
            patch_kernel=(3, 8, 8),
            patch_stride=(2, 8, 8),
            patch_padding=(1, 0, 0),
            embed_dim=128,
            num_heads=2,
            stage_depths=(5, 7, 6),
            kv_stride=(1, 4, 4),
            pool_kernel="stride+1",
        ),
    ),
    "mvit_b_24_32x3": (
        "MViT-B-24 32x3, blocks [2, 3, 16, 3], Kinetics-600 (Table 5)",
        dict(num_classes=600, input_size=(32, 224, 224), stage_depths=(2, 3, 16, 3), drop_path=0.3),
    ),
    "mvit_b_16_in1k": ("MViT-B-16 for ImageNet-1K (§5, Table 17)", dict(_IMAGE)),
    "mvit_b_24_in1k": (
        "MViT-B-24 for ImageNet-1K, blocks [2, 3, 16, 3] (§5, Table 17)",
        dict(_IMAGE, stage_depths=(2, 3, 16, 3), drop_path=0.3),
    ),
    "mvit_b_24_wide_320_in1k": (
        "MViT-B-24-wide at 320x320, D = 112, ImageNet-1K (§5, Table 17)",
        dict(_IMAGE, input_size=(1, 320, 320), embed_dim=112, stage_depths=(2, 3, 16, 3), drop_path=0.3),
    ),
    "vit_b_8x8": ("ViT-B video baseline, 8x8 input, patch 1x16x16, 12 blocks (Table 3a)", dict(_VIT_B)),
    "mvit_tiny": ("a small video MViT for CPU experiments (this book)", dict(_TINY_VIDEO)),
    "vit_tiny": (
        "a ViT of similar size to mvit_tiny, no pooling (this book)",
        dict(_TINY_VIDEO, **_TINY_VIT, patch_kernel=(2, 8, 8), patch_stride=(2, 8, 8), pos_embed="joint"),
    ),
    "mvit_tiny_img": ("a small image MViT for CPU experiments (this book)", dict(_TINY_IMAGE)),
    "vit_tiny_img": (
        "a ViT of similar size to mvit_tiny_img, no pooling (this book)",
        dict(_TINY_IMAGE, **_TINY_VIT, patch_kernel=(1, 4, 4), patch_stride=(1, 4, 4)),
    ),
}


def list_models() -> list[str]:
    """Names accepted by `build_model` / `get_config`."""
    return sorted(PRESETS)


def get_config(name: str, **overrides) -> MViTConfig:
    """The preset `name` with `overrides` (any `MViTConfig` field) applied."""
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} Known models: {', '.join(list_models())}")
    fields = {f.name for f in dataclasses.fields(MViTConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        hints = {k: difflib.get_close_matches(k, fields, n=1) for k in unknown}
        detail = "; ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise ValueError(f"Unknown MViTConfig field(s) {detail}. Valid fields: {', '.join(sorted(fields))}")
    params = {**PRESETS[name][1], **overrides}
    for key in (
        "input_size",
        "patch_kernel",
        "patch_stride",
        "patch_padding",
        "q_stride",
        "kv_stride",
        "stage_depths",
        "pool_kernel",
    ):
        if isinstance(params.get(key), list):
            params[key] = tuple(params[key])
    return MViTConfig(**params)
