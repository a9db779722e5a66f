"""Checkpoints of the public MViT implementations, converted to and from this package's layout.

Four layouts of the same network (paper §3) exist:

- ``"mvit"``: this package (`mvit.model.MViT`).
- ``"torchvision"``: ``torchvision.models.video.mvit_v1_b`` (and any torchvision ``MViT`` built with v1
  blocks). The only layout checked here against running code: tests convert a randomly initialised
  torchvision model and compare logits.
- ``"pyslowfast"``: PySlowFast's ``MViT`` (facebookresearch/SlowFast, ``slowfast/models/
  video_model_builder.py`` and ``attention.py``). Checkpoints wrap the weights in ``model_state``.
- ``"pytorchvideo"``: pytorchvideo's ``create_multiscale_vision_transformers``
  (``pytorchvideo/models/vision_transformers.py``, ``layers/attention.py``, ``layers/positional_encoding.py``).

The PySlowFast and pytorchvideo key layouts were read from their source code; no real checkpoint could
be downloaded while writing this module, so they are tested with state dicts laid out per that source
code, not with released weights. Both projects store Q, K and V either as one fused ``qkv`` Linear or
as three Linears ``q``, ``k``, ``v``; both are accepted. The conversion assumes Q, K and V are projected
*before* they are pooled (what this package, torchvision and the default ``POOL_FIRST: False`` /
``pool_first=False`` of the current PySlowFast / pytorchvideo code compute). A checkpoint trained with
pooling before the projection has the same keys but computes something else, and no key tells them
apart: check the config the checkpoint was trained with.

Every conversion is strict: a key with no counterpart raises, and `load_pretrained` raises a
`ValueError` that lists missing keys, unexpected keys and shape mismatches. Nothing is loaded with
``strict=False``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Callable, Union

import torch
from torch import nn

StateDict = dict[str, torch.Tensor]
SOURCES = ("mvit", "torchvision", "pyslowfast", "pytorchvideo")


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


def _drop_batch_dim(t: torch.Tensor) -> torch.Tensor:
    """``(1, N, C) -> (N, C)``: the reference code keeps a leading batch axis on its tables."""
    return t.reshape(t.shape[1:]) if t.ndim == 3 and t.shape[0] == 1 else t


def _add_batch_dim(t: torch.Tensor) -> torch.Tensor:
    return t.unsqueeze(0)


def _as_conv3d(t: torch.Tensor) -> torch.Tensor:
    """A 2-D patch convolution ``(C, 3, kH, kW)`` (image models) -> the Conv3d weight ``(C, 3, 1, kH, kW)``,
    which computes the same on a one-frame input; biases and 3-D weights pass unchanged."""
    return t.unsqueeze(2) if t.ndim == 4 else t


def _as_cls_token(t: torch.Tensor) -> torch.Tensor:
    """Any ``C``-element class token -> ``(1, 1, C)``, this package's shape."""
    return t.reshape(1, 1, -1)


def _flatten(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)


def _as_row(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, -1)


@dataclass(frozen=True)
class _Rule:
    """One key of the other layout (``theirs``) and the matching key of ours, as templates.

    Placeholders: ``{n}`` a block index, ``{x}`` one of q/k/v, ``{w}`` weight or bias. ``to_ours`` and
    ``to_theirs`` reshape the tensor on the way.
    """

    theirs: str
    ours: str
    to_ours: Callable[[torch.Tensor], torch.Tensor] = _same
    to_theirs: Callable[[torch.Tensor], torch.Tensor] = _same


_PLACEHOLDERS = {"n": r"(?P<n>\d+)", "x": r"(?P<x>[qkv])", "w": r"(?P<w>weight|bias)"}


def _pattern(template: str) -> re.Pattern:
    regex = re.escape(template)
    for name, group in _PLACEHOLDERS.items():
        regex = regex.replace(re.escape("{" + name + "}"), group)
    return re.compile(regex + r"\Z")


def _blocks(*pairs: tuple[str, str]) -> list[_Rule]:
    return [_Rule(f"blocks.{{n}}.{theirs}", f"blocks.{{n}}.{ours}") for theirs, ours in pairs]


_TORCHVISION = [
    _Rule("conv_proj.{w}", "patch_embed.{w}"),
    _Rule("pos_encoding.class_token", "cls_token", _as_cls_token, _flatten),
    _Rule("pos_encoding.class_pos", "pos_embed.cls", _as_row, _flatten),
    _Rule("pos_encoding.spatial_pos", "pos_embed.spatial"),
    _Rule("pos_encoding.temporal_pos", "pos_embed.temporal"),
    *_blocks(
        ("norm1.{w}", "norm1.{w}"),
        ("attn.qkv.{w}", "attn.qkv.{w}"),
        ("attn.project.0.{w}", "attn.proj.{w}"),
        ("attn.pool_{x}.pool.weight", "attn.pool_{x}.op.weight"),
        ("attn.pool_{x}.norm_act.0.{w}", "attn.pool_{x}.norm.{w}"),
        ("norm2.{w}", "norm2.{w}"),
        ("mlp.0.{w}", "mlp.fc1.{w}"),
        ("mlp.3.{w}", "mlp.fc2.{w}"),
        ("project.{w}", "proj.{w}"),
    ),
    _Rule("norm.{w}", "norm.{w}"),
    _Rule("head.1.{w}", "head.{w}"),
]

# PySlowFast and pytorchvideo share the block layout; they differ in the stem, embeddings and head.
_FACEBOOK_BLOCKS = _blocks(
    ("norm1.{w}", "norm1.{w}"),
    ("attn.qkv.{w}", "attn.qkv.{w}"),  # separate q/k/v are fused into qkv before the rules apply
    ("attn.proj.{w}", "attn.proj.{w}"),
    ("attn.pool_{x}.weight", "attn.pool_{x}.op.weight"),
    ("attn.norm_{x}.{w}", "attn.pool_{x}.norm.{w}"),
    ("norm2.{w}", "norm2.{w}"),
    ("mlp.fc1.{w}", "mlp.fc1.{w}"),
    ("mlp.fc2.{w}", "mlp.fc2.{w}"),
    ("proj.{w}", "proj.{w}"),
)


def _facebook_rules(stem: str, embeddings: str, norm: str, head: str) -> list[_Rule]:
    return [
        _Rule(f"{stem}.{{w}}", "patch_embed.{w}", _as_conv3d),
        _Rule(f"{embeddings}cls_token", "cls_token"),
        _Rule(f"{embeddings}pos_embed_spatial", "pos_embed.spatial", _drop_batch_dim, _add_batch_dim),
        _Rule(f"{embeddings}pos_embed_temporal", "pos_embed.temporal", _drop_batch_dim, _add_batch_dim),
        _Rule(f"{embeddings}pos_embed_class", "pos_embed.cls", _drop_batch_dim, _add_batch_dim),
        # the joint table; its class-token row (if any) is split off into pos_embed_class first
        _Rule(f"{embeddings}pos_embed", "pos_embed.joint", _drop_batch_dim, _add_batch_dim),
        *_FACEBOOK_BLOCKS,
        _Rule(f"{norm}.{{w}}", "norm.{w}"),
        _Rule(f"{head}.{{w}}", "head.{w}"),
    ]


_PYSLOWFAST = _facebook_rules("patch_embed.proj", "", "norm", "head.projection")
_PYTORCHVIDEO = _facebook_rules("patch_embed.patch_model", "cls_positional_encoding.", "norm_embed", "head.proj")


def _rename(state_dict: Mapping[str, torch.Tensor], rules: list[_Rule], to_ours: bool, source: str) -> StateDict:
    src, dst = ("theirs", "ours") if to_ours else ("ours", "theirs")
    compiled = [(_pattern(getattr(rule, src)), rule) for rule in rules]
    out: StateDict = {}
    orphans = []
    for key, tensor in state_dict.items():
        for pattern, rule in compiled:
            match = pattern.match(key)
            if match:
                new_key = getattr(rule, dst).format(**match.groupdict())
                out[new_key] = (rule.to_ours if to_ours else rule.to_theirs)(tensor)
                break
        else:
            orphans.append(key)
    if orphans:
        direction = f"{source} -> mvit" if to_ours else f"mvit -> {source}"
        raise ValueError(
            f"{len(orphans)} key(s) have no counterpart in the {direction} conversion: {_listing(orphans)}. "
            f"This converter handles MViT v1 (paper §3) checkpoints; relative positions, residual pooling "
            f"and other MViTv2 parts have no equivalent in this package."
        )
    return out


def _listing(keys: list[str], limit: int = 12) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def unwrap(checkpoint: Mapping) -> StateDict:
    """The state dict inside a checkpoint: PySlowFast and pytorchvideo keep it under ``model_state``,
    other trainers under ``state_dict`` or ``model``; a ``module.`` prefix left by DistributedDataParallel
    is removed."""
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"expected a state dict or a checkpoint dict, got {type(checkpoint).__name__}")
    for wrapper in ("model_state", "state_dict", "model"):
        inner = checkpoint.get(wrapper)
        if isinstance(inner, Mapping):
            checkpoint = inner
            break
    not_tensors = [k for k, v in checkpoint.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise ValueError(
            f"this does not look like a state dict: {_listing(not_tensors)} are not tensors, and no "
            f"'model_state', 'state_dict' or 'model' entry holds the weights. Pass the weights dict itself."
        )
    if checkpoint and all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    return dict(checkpoint)


def from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """torchvision ``mvit_v1_b`` state dict -> this package's. Exact: tensors are only renamed and
    reshaped (class token ``(C,) -> (1, 1, C)``, class position ``(C,) -> (1, C)``)."""
    return _rename(unwrap(state_dict), _TORCHVISION, to_ours=True, source="torchvision")


def to_torchvision(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """This package's state dict -> torchvision ``MViT``'s (exact inverse of `from_torchvision`).

    torchvision's MViT always has a class token and separate space-time positional embeddings, so a
    model built with ``cls_token=False`` or another ``pos_embed`` kind has no torchvision equivalent.
    """
    return _rename(unwrap(state_dict), _TORCHVISION, to_ours=False, source="torchvision")


def _fuse_qkv(state_dict: StateDict) -> StateDict:
    """Concatenate separate ``attn.q``, ``attn.k``, ``attn.v`` Linears (in that order) into ``attn.qkv``:
    the fused Linear's output rows are Q's, then K's, then V's."""
    out: StateDict = {}
    separate: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    pattern = re.compile(r"(?P<prefix>blocks\.\d+\.attn)\.(?P<x>[qkv])\.(?P<w>weight|bias)\Z")
    for key, tensor in state_dict.items():
        match = pattern.match(key)
        if match:
            separate.setdefault((match["prefix"], match["w"]), {})[match["x"]] = tensor
        else:
            out[key] = tensor
    for (prefix, kind), parts in separate.items():
        absent = [x for x in "qkv" if x not in parts]
        if absent:
            raise ValueError(f"{prefix} has separate q/k/v {kind}s but lacks {', '.join(absent)}: the checkpoint is incomplete")
        out[f"{prefix}.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def _split_class_position(state_dict: StateDict, embeddings: str) -> StateDict:
    """Match PySlowFast/pytorchvideo class-token embeddings to this package's.

    A joint table ``pos_embed (1, 1 + T*H*W, C)`` holds the class token's position in its first row; it
    becomes ``pos_embed_class`` plus a table of the space-time positions. Without a class token, a
    ``pos_embed_class`` (created unconditionally by some PySlowFast versions) is never used by their
    forward pass and is dropped.
    """
    out = dict(state_dict)
    has_cls = f"{embeddings}cls_token" in out
    joint = out.get(f"{embeddings}pos_embed")
    if has_cls and joint is not None:
        out[f"{embeddings}pos_embed_class"] = joint[:, :1]
        out[f"{embeddings}pos_embed"] = joint[:, 1:]
    if not has_cls:
        out.pop(f"{embeddings}pos_embed_class", None)
    return out


def from_pyslowfast(state_dict_or_checkpoint: Mapping) -> StateDict:
    """PySlowFast ``MViT`` checkpoint (or its ``model_state``) -> this package's state dict.

    Keys read from PySlowFast's source: ``patch_embed.proj``, ``cls_token``, ``pos_embed_spatial``,
    ``pos_embed_temporal``, ``pos_embed_class`` (or a joint ``pos_embed``), ``blocks.N.norm1``,
    ``blocks.N.attn.qkv`` (or ``.q``/``.k``/``.v``), ``blocks.N.attn.proj``, ``blocks.N.attn.pool_q``
    and ``norm_q`` (likewise k, v), ``blocks.N.norm2``, ``blocks.N.mlp.fc1``/``fc2``, ``blocks.N.proj``,
    ``norm``, ``head.projection``.
    """
    state_dict = _split_class_position(_fuse_qkv(unwrap(state_dict_or_checkpoint)), "")
    return _rename(state_dict, _PYSLOWFAST, to_ours=True, source="pyslowfast")


def from_pytorchvideo(state_dict_or_checkpoint: Mapping) -> StateDict:
    """pytorchvideo ``MultiscaleVisionTransformers`` checkpoint -> this package's state dict.

    Keys read from pytorchvideo's source: ``patch_embed.patch_model``, ``cls_positional_encoding.
    {cls_token, pos_embed_spatial, pos_embed_temporal, pos_embed_class}`` (or a joint ``pos_embed``), the
    same block layout as PySlowFast (separate ``q``/``k``/``v`` by default), ``norm_embed``, ``head.proj``.
    """
    embeddings = "cls_positional_encoding."
    state_dict = _split_class_position(_fuse_qkv(unwrap(state_dict_or_checkpoint)), embeddings)
    return _rename(state_dict, _PYTORCHVIDEO, to_ours=True, source="pytorchvideo")


_FROM: dict[str, Callable[[Mapping], StateDict]] = {
    "mvit": unwrap,
    "torchvision": from_torchvision,
    "pyslowfast": from_pyslowfast,
    "pytorchvideo": from_pytorchvideo,
}

# Key prefixes only one layout uses.
_SIGNATURES = {
    "mvit": ("patch_embed.weight", "pos_embed.", "head.weight"),
    "torchvision": ("conv_proj.", "pos_encoding.", "head.1."),
    "pyslowfast": ("patch_embed.proj.", "pos_embed_", "head.projection."),
    "pytorchvideo": ("patch_embed.patch_model.", "cls_positional_encoding.", "norm_embed.", "head.proj."),
}


def detect_source(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which layout (one of `SOURCES`) a state dict is in, from its key names."""
    found = [source for source, prefixes in _SIGNATURES.items()
             if any(key.startswith(prefixes) for key in state_dict)]
    if len(found) != 1:
        what = "none" if not found else " and ".join(found)
        raise ValueError(
            f"cannot tell which implementation this state dict comes from (signatures of {what} found; "
            f"first keys: {_listing(list(state_dict), 6)}). Pass source= one of {SOURCES}."
        )
    return found[0]


def _check_compatible(model: nn.Module, state_dict: StateDict, source: str) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state_dict) if expected[k].shape != state_dict[k].shape)
    if not (missing or unexpected or mismatched):
        return
    lines = [f"the {source} checkpoint does not fit this model (converted keys shown in mvit's layout):"]
    if missing:
        lines.append(f"  missing from the checkpoint: {_listing(missing)}")
    if unexpected:
        lines.append(f"  unexpected in the checkpoint: {_listing(unexpected)}")
    for key in mismatched:
        lines.append(f"  shape of {key}: checkpoint {tuple(state_dict[key].shape)}, model {tuple(expected[key].shape)}")
    if "head.weight" in mismatched:
        lines.append(f"  hint: the checkpoint classifies {state_dict['head.weight'].shape[0]} classes; build the "
                     f"model with num_classes={state_dict['head.weight'].shape[0]}, load, then replace model.head "
                     f"to fine-tune on another label set.")
    if any(k.startswith("pos_embed.") for k in mismatched):
        lines.append("  hint: the positional tables were made for another token grid; build the model with the "
                     "checkpoint's input_size (it interpolates its tables at run time for other clip sizes).")
    if any(".pool_" in k or "pos_embed" in k for k in missing + unexpected):
        lines.append("  hint: check pool_mode (conv pooling has weights, max/avg none), pos_embed and cls_token "
                     "against the configuration the checkpoint was trained with.")
    raise ValueError("\n".join(lines))


def load_pretrained(model: nn.Module, path_or_state_dict: Union[str, PathLike, Mapping],
                    source: str = "auto") -> nn.Module:
    """Load a checkpoint of any supported layout into ``model``, strictly, and return the model.

    Args:
        model: an `mvit.model.MViT` whose configuration matches the checkpoint's.
        path_or_state_dict: a file saved with ``torch.save`` (read with ``weights_only=True``), a
            checkpoint dict, or a state dict.
        source: ``"auto"`` (detected from the key names) or one of `SOURCES`.

    Raises ``ValueError`` listing missing keys, unexpected keys and shape mismatches when the checkpoint
    and the model disagree.
    """
    if source != "auto" and source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; use 'auto' or one of {SOURCES}")
    checkpoint = path_or_state_dict
    if isinstance(checkpoint, (str, PathLike)):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint file at {path}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state_dict = unwrap(checkpoint)
    if source == "auto":
        source = detect_source(state_dict)
    converted = _FROM[source](state_dict)
    _check_compatible(model, converted, source)
    model.load_state_dict(converted, strict=True)
    return model
