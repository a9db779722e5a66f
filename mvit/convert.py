"""Checkpoints of the public MViT implementations, converted to and from this package's layout.

Four layouts of the same network (paper §3) exist:

- ``"mvit"``: this package (`mvit.model.MViT`).
- ``"torchvision"``: ``torchvision.models.video.mvit_v1_b`` (and any torchvision ``MViT`` built with v1
  blocks). Tests convert a randomly initialised torchvision model and compare logits.
- ``"pyslowfast"``: PySlowFast's ``MViT`` (facebookresearch/SlowFast, ``slowfast/models/
  video_model_builder.py`` and ``attention.py``). Checkpoints wrap the weights in ``model_state``.
- ``"pytorchvideo"``: pytorchvideo's ``create_multiscale_vision_transformers``
  (``pytorchvideo/models/vision_transformers.py``, ``layers/attention.py``, ``layers/positional_encoding.py``).

Both reference projects store Q, K and V either as one fused ``qkv`` Linear or as three Linears ``q``, ``k``,
``v``; both are accepted. pytorchvideo's current source registers each pooling module a second time
(``blocks.N.attn._attention_pool_q.pool`` / ``.norm``, likewise k, v), so its state dicts hold every pooling
tensor twice: the copies are accepted when they equal the main tensors and refused when they differ. The
conversion assumes Q, K and V are projected *before* they are pooled (what this package, torchvision and
the default ``POOL_FIRST: False`` / ``pool_first=False`` of PySlowFast / pytorchvideo compute). A checkpoint
trained with pooling before the projection has the same keys but computes something else, and no key tells
them apart: check the config the checkpoint was trained with.

The models the reference configurations build, as published, and the model to load them into:

======================================================  ===================================================
reference configuration                                 this package (paper row)
======================================================  ===================================================
PySlowFast ``configs/Kinetics/MVIT_B_16x4_CONV.yaml``   ``build_model("mvit_b_16x4")`` (Table 4, MViT-B 16x4)
PySlowFast ``configs/Kinetics/MVIT_B_32x3_CONV.yaml``   ``build_model("mvit_b_24_32x3", num_classes=400,
                                                        pool_kernel="stride+1")``, see below
PySlowFast ``configs/ImageNet/MVIT_B_16_CONV.yaml``     ``build_model("mvit_b_16_in1k")`` (Table 17, MViT-B-16)
pytorchvideo ``mvit_base_16x4``                         ``build_model("mvit_b_16x4")`` (Table 4, MViT-B 16x4)
pytorchvideo ``mvit_base_32x3``                         ``build_model("mvit_b_32x3")`` (Table 4, MViT-B 32x3)
pytorchvideo ``mvit_base_16`` (ImageNet)                ``build_model("mvit_b_16_in1k", pos_embed="separate")``
                                                        (Table 17, MViT-B-16; pytorchvideo's default
                                                        ``sep_pos_embed=True``)
======================================================  ===================================================

- PySlowFast's ``MVIT_B_32x3_CONV.yaml`` sets ``MVIT.DEPTH`` twice, 16 and then 24; YAML keeps the last, so
  it builds 24 blocks with Q pooled at blocks 2, 5 and 21, i.e. MViT-B-24's blocks [2, 3, 16, 3] (Table 5,
  MViT-B-24 32x3), and it sets no ``POOL_KVQ_KERNEL``, so every pooling kernel is stride + 1 (1x3x3 for Q,
  1x9x9, 1x5x5, 1x3x3 for K/V; Table 15's "conv stride+1") instead of the 3x3x3 of ``mvit_b_24_32x3``.
  With the file's ``NUM_CLASSES: 400`` this is 53.1 M parameters and 235.8 GMACs per view (with 600
  classes, Table 5's Kinetics-600 row: 53.3 M, against the paper's 52.9 M and 236 G). The paper's 16-block
  MViT-B 32x3 of Table 4 is ``mvit_b_32x3``.
- pytorchvideo 0.1.5 (the release on the package index) builds the LayerNorm after each conv pooling with
  PyTorch's default eps 1e-5 (its other LayerNorms, PySlowFast's and pytorchvideo's current source use 1e-6).
  Its checkpoints load exactly into a model built with ``pool_norm_eps=1e-5`` (any preset; on the command
  line ``model.config.pool_norm_eps=1e-5`` or ``convert ... --model NAME pool_norm_eps=1e-5``). No key tells
  the versions apart. With the default eps instead, a randomly initialised MViT-B 16x4 (seed 0, one random
  16x224x224 clip) gives logits that differ by up to 4.1e-4 (the largest logit being 1.75).

Every conversion is strict: nothing is loaded with ``strict=False``. `load_pretrained` checks the converted
keys against the model and raises one `CheckpointError` that names every key without a counterpart, every
key missing, every key unexpected and every shape mismatch, with hints.
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


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose weights do not fit the layout or the model they are
    loaded into. The message names the file (when there is one), what is wrong and what to do."""


def _listing(keys: list[str], limit: int = 20) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def _rename(
    state_dict: Mapping[str, torch.Tensor], rules: list[_Rule], to_ours: bool, direction: str
) -> tuple[StateDict, list[str]]:
    """Apply `rules` to every key; return the renamed tensors and the problems (keys no rule matches)."""
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
    if not orphans:
        return out, []
    problem = f"{len(orphans)} key(s) have no counterpart in the {direction} conversion: {_listing(orphans)}."
    if any("rel_pos" in key for key in orphans):
        problem += (
            " This converter handles MViT v1 (paper §3) checkpoints; relative positions, residual pooling "
            "and other MViTv2 parts have no equivalent in this package."
        )
    return out, [problem]


def unwrap(checkpoint: Mapping) -> StateDict:
    """The state dict inside a checkpoint: PySlowFast and pytorchvideo keep it under ``model_state``,
    other trainers (this package's included) under ``state_dict`` or ``model``; a ``module.`` prefix left by
    DistributedDataParallel is removed. Raises `CheckpointError` when there is no dict of tensors."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(
            f"expected a state dict or a checkpoint dict, got a {type(checkpoint).__name__}; "
            f"save the weights with torch.save(model.state_dict(), path)"
        )
    for wrapper in ("model_state", "state_dict", "model"):
        inner = checkpoint.get(wrapper)
        if isinstance(inner, Mapping):
            checkpoint = inner
            break
    not_tensors = [str(k) for k, v in checkpoint.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"this does not look like a state dict: {_listing(not_tensors)} are not tensors, and no "
            f"'model_state', 'state_dict' or 'model' entry holds the weights. Pass the weights dict itself."
        )
    if not checkpoint:
        raise CheckpointError("the checkpoint holds no weights (an empty dict)")
    if all(k.startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module.") :]: v for k, v in checkpoint.items()}
    return dict(checkpoint)


def _unreadable(path: Path, err: Exception) -> str:
    """Why torch.load could not read `path`, as one sentence with the fix."""
    text = str(err)
    detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
    if detail and "Unsupported global" in detail[1]:
        name = re.search(r"GLOBAL (\S+)", detail[1])
        return (
            f"{path} holds Python objects besides tensors ({name[1] if name else detail[1]}), which are "
            f"not unpickled, for safety (torch.load(weights_only=True)); if you trust the file, load it "
            f"with weights_only=False and save its state dict alone with torch.save"
        )
    first = re.split(r"(?<=[.!?])\s", text.strip().splitlines()[0])[0] if text.strip() else "the file ends early"
    reason = (detail[1] if detail else first)[:160]
    return (
        f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {reason}); the file is "
        f"truncated, corrupt or of another kind: copy or download it again"
    )


def read_checkpoint(path: Union[str, PathLike]) -> StateDict:
    """The state dict in the file at `path` (written by ``torch.save``; read on the CPU with
    ``weights_only=True``, so no code in the file runs), unwrapped by `unwrap`.

    Raises ``FileNotFoundError`` when there is no such file and `CheckpointError`, naming the file, when it
    cannot be read (empty, truncated, random or text bytes, Python objects) or holds no state dict.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; pass the file inside it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): the copy or download did not finish; fetch it again")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load raises EOFError, KeyError, UnpicklingError, RuntimeError... on bad files
        raise CheckpointError(_unreadable(path, err)) from err
    try:
        return unwrap(checkpoint)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from None


def from_torchvision(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """torchvision ``mvit_v1_b`` state dict -> this package's. Exact: tensors are only renamed and
    reshaped (class token ``(C,) -> (1, 1, C)``, class position ``(C,) -> (1, C)``)."""
    return convert_state_dict(state_dict, "torchvision")


def to_torchvision(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """This package's state dict -> torchvision ``MViT``'s (exact inverse of `from_torchvision`).

    torchvision's MViT always has a class token and separate space-time positional embeddings, so a
    model built with ``cls_token=False`` or another ``pos_embed`` kind has no torchvision equivalent.
    """
    state_dict = unwrap(state_dict)
    out, problems = _rename(state_dict, _TORCHVISION, to_ours=False, direction="mvit -> torchvision")
    if problems:
        raise CheckpointError(
            "\n".join(["cannot convert to torchvision's layout:", *problems, *_layout_hint(state_dict, "mvit")])
        )
    return out


def from_pyslowfast(state_dict_or_checkpoint: Mapping) -> StateDict:
    """PySlowFast ``MViT`` checkpoint (or its ``model_state``) -> this package's state dict.

    Keys read from PySlowFast's source: ``patch_embed.proj``, ``cls_token``, ``pos_embed_spatial``,
    ``pos_embed_temporal``, ``pos_embed_class`` (or a joint ``pos_embed``), ``blocks.N.norm1``,
    ``blocks.N.attn.qkv`` (or ``.q``/``.k``/``.v``), ``blocks.N.attn.proj``, ``blocks.N.attn.pool_q``
    and ``norm_q`` (likewise k, v), ``blocks.N.norm2``, ``blocks.N.mlp.fc1``/``fc2``, ``blocks.N.proj``,
    ``norm``, ``head.projection``.
    """
    return convert_state_dict(state_dict_or_checkpoint, "pyslowfast")


def from_pytorchvideo(state_dict_or_checkpoint: Mapping) -> StateDict:
    """pytorchvideo ``MultiscaleVisionTransformers`` checkpoint -> this package's state dict.

    Keys read from pytorchvideo's source: ``patch_embed.patch_model``, ``cls_positional_encoding.
    {cls_token, pos_embed_spatial, pos_embed_temporal, pos_embed_class}`` (or a joint ``pos_embed``), the
    same block layout as PySlowFast (separate ``q``/``k``/``v`` by default) with the pooling modules'
    second names ``blocks.N.attn._attention_pool_{q,k,v}.{pool,norm}`` of its current source,
    ``norm_embed``, ``head.proj``. A 0.1.5 checkpoint needs a model built with ``pool_norm_eps=1e-5``.
    """
    return convert_state_dict(state_dict_or_checkpoint, "pytorchvideo")


_ALIAS = re.compile(r"(?P<prefix>blocks\.\d+\.attn)\._attention_pool_(?P<x>[qkv])\.(?P<part>pool|norm)\.(?P<rest>.+)\Z")


def _merge_pool_aliases(state_dict: StateDict) -> tuple[StateDict, list[str]]:
    """Drop pytorchvideo's second names of the pooling modules: ``attn._attention_pool_q.pool.weight`` is
    ``attn.pool_q.weight`` and ``attn._attention_pool_q.norm.*`` is ``attn.norm_q.*`` (likewise k, v). A copy
    must equal its main tensor (a copy whose main tensor is absent takes its place)."""
    out: StateDict = {}
    differ = []
    aliases = {}
    for key, tensor in state_dict.items():
        match = _ALIAS.match(key)
        if match:
            module = "pool" if match["part"] == "pool" else "norm"
            aliases[key] = f"{match['prefix']}.{module}_{match['x']}.{match['rest']}"
        else:
            out[key] = tensor
    for alias, main in aliases.items():
        if main not in out:
            out[main] = state_dict[alias]
        elif not (out[main].shape == state_dict[alias].shape and torch.equal(out[main], state_dict[alias])):
            differ.append(alias)
    if not differ:
        return out, []
    return out, [
        f"{len(differ)} pooling key(s) differ from the tensors they are second names of "
        f"(pytorchvideo registers each pooling module twice, as attn.pool_q/norm_q and attn._attention_"
        f"pool_q): {_listing(differ)}; the checkpoint is inconsistent, save it again from the model"
    ]


def _fuse_qkv(state_dict: StateDict) -> tuple[StateDict, list[str]]:
    """Concatenate separate ``attn.q``, ``attn.k``, ``attn.v`` Linears (in that order) into ``attn.qkv``:
    the fused Linear's output rows are Q's, then K's, then V's. Incomplete triples are reported."""
    out: StateDict = {}
    separate: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    pattern = re.compile(r"(?P<prefix>blocks\.\d+\.attn)\.(?P<x>[qkv])\.(?P<w>weight|bias)\Z")
    for key, tensor in state_dict.items():
        match = pattern.match(key)
        if match:
            separate.setdefault((match["prefix"], match["w"]), {})[match["x"]] = tensor
        else:
            out[key] = tensor
    problems = []
    for (prefix, kind), parts in separate.items():
        absent = [x for x in "qkv" if x not in parts]
        if absent:
            plural = {"weight": "weights", "bias": "biases"}[kind]
            problems.append(
                f"{prefix} has separate q/k/v {plural} but lacks {', '.join(absent)}: the checkpoint is incomplete"
            )
        else:
            out[f"{prefix}.qkv.{kind}"] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out, problems


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


_FACEBOOK = {"pyslowfast": ("", _PYSLOWFAST), "pytorchvideo": ("cls_positional_encoding.", _PYTORCHVIDEO)}


def _to_mvit(state_dict: StateDict, source: str) -> tuple[StateDict, list[str]]:
    """`state_dict` in the layout `source` -> ours, and the problems found on the way (one line each)."""
    if source == "mvit":
        return dict(state_dict), []
    if source == "torchvision":
        return _rename(state_dict, _TORCHVISION, to_ours=True, direction="torchvision -> mvit")
    embeddings, rules = _FACEBOOK[source]
    state_dict, alias_problems = _merge_pool_aliases(state_dict)
    state_dict, qkv_problems = _fuse_qkv(state_dict)
    out, orphan_problems = _rename(
        _split_class_position(state_dict, embeddings), rules, to_ours=True, direction=f"{source} -> mvit"
    )
    return out, alias_problems + qkv_problems + orphan_problems


# Key prefixes only one layout uses.
_SIGNATURES = {
    "mvit": ("patch_embed.weight", "pos_embed.", "head.weight"),
    "torchvision": ("conv_proj.", "pos_encoding.", "head.1."),
    "pyslowfast": ("patch_embed.proj.", "pos_embed_", "head.projection."),
    "pytorchvideo": ("patch_embed.patch_model.", "cls_positional_encoding.", "norm_embed.", "head.proj."),
}


def _signatures(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    return [source for source, prefixes in _SIGNATURES.items() if any(key.startswith(prefixes) for key in state_dict)]


def detect_source(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which layout (one of `SOURCES`) a state dict is in, from its key names."""
    found = _signatures(state_dict)
    if len(found) != 1:
        what = "none" if not found else " and ".join(found)
        raise CheckpointError(
            f"cannot tell which implementation this state dict comes from (signatures of {what} found; "
            f"first keys: {_listing(list(state_dict), 6)}). Pass source= one of {SOURCES}."
        )
    return found[0]


def _layout_hint(state_dict: Mapping[str, torch.Tensor], expected: str) -> list[str]:
    """A hint line when the keys are visibly another layout's than `expected`."""
    found = _signatures(state_dict)
    if len(found) != 1 or found[0] == expected:
        return []
    return [
        f"hint: these keys are in the {found[0]} layout, not {expected}'s: use source {found[0]!r} "
        f"(command line: --from/--source {found[0]}) or 'auto'"
    ]


def _check_source(source: str) -> None:
    if source != "auto" and source not in SOURCES:
        raise CheckpointError(f"unknown source {source!r}; use 'auto' or one of {SOURCES}")


def convert_state_dict(state_dict_or_checkpoint: Mapping, source: str = "auto") -> StateDict:
    """A state dict (or a checkpoint holding one, see `unwrap`) in the layout `source` -> this package's.

    `source`: ``"auto"`` (detected from the key names by `detect_source`) or one of `SOURCES`. Strict: a
    key with no counterpart in this package raises `CheckpointError`, listing every such key. The result is
    not checked against a model; `load_pretrained` does that.
    """
    _check_source(source)
    state_dict = unwrap(state_dict_or_checkpoint)
    if source == "auto":
        source = detect_source(state_dict)
    out, problems = _to_mvit(state_dict, source)
    if problems:
        raise CheckpointError(
            "\n".join([f"cannot convert the {source} checkpoint:", *problems, *_layout_hint(state_dict, source)])
        )
    return out


HEAD = ("head.weight", "head.bias")
SHAPES_SHOWN = 20  # shape mismatches listed one by one in an error; the rest are counted


def load_pretrained(
    model: nn.Module, checkpoint: Union[str, PathLike, Mapping], source: str = "auto", *, new_head: bool = False
) -> list[str]:
    """Load a checkpoint of any supported layout into ``model``, strictly: the one way to load weights.

    Args:
        model: an `mvit.model.MViT` whose configuration matches the checkpoint's.
        checkpoint: a file saved with ``torch.save`` (read by `read_checkpoint`), a checkpoint dict, or a
            state dict.
        source: ``"auto"`` (detected from the key names) or one of `SOURCES`.
        new_head: for fine-tuning on another label set: when the checkpoint's classifier (``head``) has
            another shape than the model's, keep the model's freshly initialised head instead of refusing.

    Returns the names of the model's weights that were not loaded: ``[]``, or ``["head.weight",
    "head.bias"]`` when `new_head` kept a fresh head. Every other weight is loaded exactly.

    Raises ``FileNotFoundError`` for a missing file and one `CheckpointError` that names the file and lists
    every key without a counterpart, missing key, unexpected key and shape mismatch, with hints.
    """
    _check_source(source)
    where = "the checkpoint"
    if isinstance(checkpoint, (str, PathLike)):
        where = str(checkpoint)
        state_dict = read_checkpoint(checkpoint)
    else:
        state_dict = unwrap(checkpoint)
    if source == "auto":
        try:
            source = detect_source(state_dict)
        except CheckpointError as err:
            raise CheckpointError(f"{where}: {err}") from None
    converted, problems = _to_mvit(state_dict, source)
    expected = model.state_dict()
    fresh = []
    if new_head:
        fresh = [k for k in HEAD if k in converted and k in expected and converted[k].shape != expected[k].shape]
        converted.update({k: expected[k] for k in fresh})
    problems += _fit(expected, converted)
    if problems:
        raise CheckpointError(
            "\n".join(
                [
                    f"{where} ({source} layout) does not fit this model (keys named in mvit's layout):",
                    *problems,
                    *_layout_hint(state_dict, source),
                ]
            )
        )
    model.load_state_dict(converted, strict=True)
    return fresh


def _fit(expected: Mapping[str, torch.Tensor], converted: StateDict) -> list[str]:
    """Missing keys, unexpected keys and shape mismatches of `converted` against a model's `expected` state
    dict, one line each, with hints."""
    missing = sorted(set(expected) - set(converted))
    unexpected = sorted(set(converted) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(converted) if expected[k].shape != converted[k].shape)
    lines = []
    if missing:
        lines.append(f"missing from the checkpoint: {_listing(missing)}")
    if unexpected:
        lines.append(f"unexpected in the checkpoint: {_listing(unexpected)}")
    for key in mismatched[:SHAPES_SHOWN]:
        lines.append(f"shape of {key}: checkpoint {tuple(converted[key].shape)}, model {tuple(expected[key].shape)}")
    if len(mismatched) > SHAPES_SHOWN:
        lines.append(f"... and {len(mismatched) - SHAPES_SHOWN} more shape mismatches ({len(mismatched)} in all)")
    if "head.weight" in mismatched:
        classes = converted["head.weight"].shape[0]
        lines.append(
            f"hint: the checkpoint classifies {classes} classes; build the model with "
            f"num_classes={classes}, or load with new_head=True to fine-tune a fresh head on another "
            f"label set"
        )
    if any(k.startswith("pos_embed.") for k in mismatched):
        lines.append(
            "hint: the positional tables were made for another token grid; build the model with the "
            "checkpoint's input_size (it interpolates its tables at run time for other clip sizes)"
        )
    if any(".pool_" in k or "pos_embed" in k for k in missing + unexpected):
        lines.append(
            "hint: check pool_mode (conv pooling has weights, max/avg none), pool_kernel, pos_embed "
            "and cls_token against the configuration the checkpoint was trained with"
        )
    blocks = [len({k.split(".")[1] for k in keys if k.startswith("blocks.")}) for keys in (converted, expected)]
    if blocks[0] != blocks[1]:
        lines.insert(
            0,
            f"hint: the checkpoint has {blocks[0]} blocks, the model {blocks[1]}: build the model "
            f"with the checkpoint's stage_depths",
        )
    if len(missing) + len(unexpected) + len(mismatched) > len(expected) // 2:
        lines.insert(
            0,
            "hint: most keys disagree, so this is a checkpoint of another model: build (or "
            "configure: model.name, model.config.*) the model it was trained as; mvit.convert lists "
            "the preset each reference configuration needs",
        )
    return lines
