"""Checkpoint conversion (`mvit.convert`): parity with torchvision's ``mvit_v1_b`` in both directions, and
loaders for PySlowFast and pytorchvideo checkpoints.

No PySlowFast or pytorchvideo checkpoint can be downloaded here, and neither package is installed. Their
loaders are tested with state dicts laid out the way their source code names parameters (read in
facebookresearch/SlowFast ``slowfast/models/video_model_builder.py``, ``attention.py``, ``stem_helper.py``,
``head_helper.py`` and facebookresearch/pytorchvideo ``models/vision_transformers.py``,
``layers/attention.py``, ``layers/positional_encoding.py``, ``models/stem.py``, ``models/head.py``), made
from our own model by `reference_layout` below, which is written independently of `mvit.convert`.
"""

from __future__ import annotations

import datetime
import math
import re

import pytest
import torch
from torchvision.models.video import mvit_v1_b
from torchvision.models.video.mvit import MSBlockConfig
from torchvision.models.video.mvit import MViT as TorchvisionMViT

import mvit
from mvit.convert import (
    CheckpointError,
    detect_source,
    from_pyslowfast,
    from_pytorchvideo,
    from_torchvision,
    load_pretrained,
    read_checkpoint,
    to_torchvision,
    unwrap,
)

# ---------------------------------------------------------------- torchvision


def loaded(model: torch.nn.Module, checkpoint, **kwargs) -> torch.nn.Module:
    """`load_pretrained` into `model`, which must then hold every weight of the checkpoint; in eval mode."""
    assert load_pretrained(model, checkpoint, **kwargs) == []
    return model.eval()


def random_clips(count: int, t: int, size: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    normal = torch.randn(count - 1, 3, t, size, size, generator=g)
    uniform = torch.rand(1, 3, t, size, size, generator=g) * 4 - 2  # a second, wider distribution
    return torch.cat([normal, uniform])


@pytest.mark.slow
def test_torchvision_mvit_v1_b_parity_both_directions():
    """Full size, 16x224x224: a few seconds per forward pass on a 2-core CPU."""
    torch.manual_seed(0)
    tv = mvit_v1_b().eval()
    ours = loaded(mvit.build_model("mvit_b_16x4"), tv.state_dict())
    x = random_clips(2, 16, 224, seed=1)
    with torch.no_grad():
        assert (ours(x) - tv(x)).abs().max() <= 1e-4

    torch.manual_seed(1)  # the reverse: our random weights into torchvision's model
    ours = mvit.build_model("mvit_b_16x4").eval()
    tv = mvit_v1_b().eval()
    tv.load_state_dict(to_torchvision(ours.state_dict()), strict=True)
    x = random_clips(1, 16, 224, seed=2)
    with torch.no_grad():
        assert (ours(x) - tv(x)).abs().max() <= 1e-4


def torchvision_tiny() -> TorchvisionMViT:
    """torchvision's MViT class with mvit_tiny's layout (8x64x64 input, blocks of 32 -> 64 -> 128
    channels, Q pooled in blocks 1 and 3, K/V strides 1x4x4, 1x2x2, 1x2x2, 1x1x1), typed out here."""
    rows = [  # heads, in, out, kernel_q, stride_q, stride_kv
        (1, 32, 64, [], [], [1, 4, 4]),
        (2, 64, 64, [3, 3, 3], [1, 2, 2], [1, 2, 2]),
        (2, 64, 128, [], [], [1, 2, 2]),
        (4, 128, 128, [3, 3, 3], [1, 2, 2], [1, 1, 1]),
    ]
    setting = [MSBlockConfig(h, i, o, kq, [3, 3, 3], sq, skv) for h, i, o, kq, sq, skv in rows]
    return TorchvisionMViT(
        spatial_size=(64, 64),
        temporal_size=8,
        block_setting=setting,
        residual_pool=False,
        residual_with_cls_embed=False,
        rel_pos_embed=False,
        proj_after_attn=False,
        num_classes=10,
    ).eval()


def test_torchvision_parity_on_a_small_model_both_directions():
    torch.manual_seed(0)
    tv = torchvision_tiny()
    ours = loaded(mvit.build_model("mvit_tiny"), tv.state_dict(), source="torchvision")
    x = random_clips(4, 8, 64, seed=3)
    with torch.no_grad():
        assert (ours(x) - tv(x)).abs().max() <= 1e-5

    torch.manual_seed(1)
    ours = mvit.build_model("mvit_tiny").eval()
    tv = torchvision_tiny()
    tv.load_state_dict(to_torchvision(ours.state_dict()), strict=True)
    with torch.no_grad():
        assert (ours(x) - tv(x)).abs().max() <= 1e-5


def test_torchvision_round_trip_is_exact():
    torch.manual_seed(0)
    state = torchvision_tiny().state_dict()
    back = to_torchvision(from_torchvision(state))
    assert back.keys() == state.keys()
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_to_torchvision_refuses_what_torchvision_cannot_hold():
    state = mvit.build_model("mvit_tiny", pos_embed="joint").state_dict()
    with pytest.raises(ValueError, match=r"no counterpart in the mvit -> torchvision conversion: pos_embed.joint"):
        to_torchvision(state)


def test_torchvision_v2_keys_are_reported():
    state = dict(torchvision_tiny().state_dict())
    state["blocks.0.attn.rel_pos_h"] = torch.zeros(3, 32)
    with pytest.raises(ValueError, match=r"1 key\(s\) have no counterpart.*blocks.0.attn.rel_pos_h.*MViTv2"):
        from_torchvision(state)


# ---------------------------------------------------------------- PySlowFast and pytorchvideo layouts

# How each reference implementation names the parts of the network (from their source code).
LAYOUTS = {
    "pyslowfast": dict(stem="patch_embed.proj", embeddings="", norm="norm", head="head.projection"),
    "pytorchvideo": dict(
        stem="patch_embed.patch_model", embeddings="cls_positional_encoding.", norm="norm_embed", head="head.proj"
    ),
}


def reference_layout(state: dict, source: str, separate_qkv: bool) -> dict:
    """Our state dict re-expressed in PySlowFast's or pytorchvideo's names and shapes.

    Their embeddings keep a leading batch axis: ``pos_embed_spatial (1, H*W, C)``, ``pos_embed_temporal
    (1, T, C)``, ``pos_embed_class (1, 1, C)``, or a joint ``pos_embed (1, [1 +] T*H*W, C)`` whose first
    row is the class token's. Pooling is ``attn.pool_q`` (a bare Conv3d) + ``attn.norm_q``; Q, K, V are
    one ``qkv`` Linear or three Linears ``q``, ``k``, ``v``.
    """
    names = LAYOUTS[source]
    emb = names["embeddings"]
    out = {}
    for key, value in state.items():
        if key.startswith("patch_embed."):
            out[key.replace("patch_embed", names["stem"], 1)] = value
        elif key == "cls_token":
            out[emb + "cls_token"] = value
        elif key in ("pos_embed.spatial", "pos_embed.temporal"):
            out[emb + "pos_embed_" + key.split(".")[1]] = value[None]
        elif key == "pos_embed.cls":
            if "pos_embed.joint" not in state:
                out[emb + "pos_embed_class"] = value[None]
        elif key == "pos_embed.joint":
            rows = [state["pos_embed.cls"], value] if "pos_embed.cls" in state else [value]
            out[emb + "pos_embed"] = torch.cat(rows)[None]
        elif key.startswith("norm."):
            out[key.replace("norm", names["norm"], 1)] = value
        elif key.startswith("head."):
            out[key.replace("head", names["head"], 1)] = value
        elif ".attn.qkv." in key and separate_qkv:
            for part, chunk in zip("qkv", value.chunk(3, dim=0)):
                out[key.replace(".qkv.", f".{part}.")] = chunk
        else:
            key = re.sub(r"\.attn\.pool_([qkv])\.op\.weight$", r".attn.pool_\1.weight", key)
            key = re.sub(r"\.attn\.pool_([qkv])\.norm\.", r".attn.norm_\1.", key)
            out[key] = value
    return out


def randomise(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter (norms and biases too) random values, so no mix-up hides behind 0s and 1s."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05 + (1.0 if p.ndim == 1 else 0.0))
    return model.eval()


VARIANTS = {
    "mvit_tiny": dict(),
    "max pooling": dict(pool_mode="max", pool_kernel="stride+1"),
    "mean head": dict(cls_token=False),
    "joint embedding": dict(pos_embed="joint"),
    "joint, mean head": dict(pos_embed="joint", cls_token=False),
    "no q/k/v bias": dict(qkv_bias=False),
}
LOADERS = {"pyslowfast": from_pyslowfast, "pytorchvideo": from_pytorchvideo}


@pytest.mark.parametrize("separate_qkv", [False, True], ids=["fused qkv", "separate q k v"])
@pytest.mark.parametrize("source", sorted(LOADERS))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_reference_layouts_load_exactly(variant, source, separate_qkv):
    original = randomise(mvit.build_model("mvit_tiny", **VARIANTS[variant]), seed=0)
    theirs = reference_layout(original.state_dict(), source, separate_qkv)
    assert detect_source(theirs) == source
    converted = LOADERS[source]({"model_state": theirs, "epoch": 30})
    assert converted.keys() == original.state_dict().keys()

    fresh = loaded(randomise(mvit.build_model("mvit_tiny", **VARIANTS[variant]), seed=1), {"model_state": theirs})
    x = random_clips(1, 8, 64, seed=4)
    with torch.no_grad():
        assert torch.equal(fresh(x), original(x))


@pytest.mark.parametrize("source", sorted(LOADERS))
def test_image_models_with_a_2d_patch_convolution(source):
    """PySlowFast's PATCH_2D and pytorchvideo's use_2d_patch store the stem as a Conv2d (C, 3, kH, kW)."""
    original = randomise(mvit.build_model("mvit_tiny_img"), seed=0)
    theirs = reference_layout(original.state_dict(), source, separate_qkv=False)
    stem = LAYOUTS[source]["stem"] + ".weight"
    theirs[stem] = theirs[stem][:, :, 0]
    model = loaded(mvit.build_model("mvit_tiny_img"), theirs)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(images), original(images))


def test_checkpoint_file_as_pyslowfast_saves_it(tmp_path):
    original = randomise(mvit.build_model("mvit_tiny"), seed=0)
    path = tmp_path / "checkpoint_epoch_00200.pyth"
    torch.save(
        {
            "epoch": 200,
            "model_state": reference_layout(original.state_dict(), "pyslowfast", False),
            "optimizer_state": {"state": {}, "param_groups": []},
            "cfg": "MVIT:\n  DEPTH: 4\n",
        },
        path,
    )
    model = loaded(mvit.build_model("mvit_tiny"), path)
    x = random_clips(1, 8, 64, seed=5)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))


def test_our_own_checkpoints_and_ddp_prefixes_load():
    original = randomise(mvit.build_model("mvit_tiny"), seed=0)
    wrapped = {"model": {f"module.{k}": v for k, v in original.state_dict().items()}, "step": 3}
    assert detect_source(unwrap(wrapped)) == "mvit"
    model = loaded(mvit.build_model("mvit_tiny"), wrapped)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in original.state_dict().items())


# ---------------------------------------------------------------- strict key checking


def pyslowfast_state(**overrides) -> dict:
    return reference_layout(mvit.build_model("mvit_tiny", **overrides).state_dict(), "pyslowfast", False)


def test_missing_keys_are_listed():
    state = pyslowfast_state()
    del state["blocks.1.attn.norm_q.weight"], state["head.projection.bias"]
    with pytest.raises(ValueError) as info:
        load_pretrained(mvit.build_model("mvit_tiny"), state)
    assert "missing from the checkpoint: blocks.1.attn.pool_q.norm.weight, head.bias" in str(info.value)


def test_unexpected_keys_are_listed():
    state = pyslowfast_state()
    state["norm_stem.weight"] = torch.ones(32)
    with pytest.raises(ValueError, match=r"no counterpart in the pyslowfast -> mvit conversion: norm_stem.weight"):
        load_pretrained(mvit.build_model("mvit_tiny"), state)
    # a conv-pooling checkpoint into a max-pooling model: the pooling weights are unexpected
    with pytest.raises(ValueError) as info:
        load_pretrained(mvit.build_model("mvit_tiny", pool_mode="max"), pyslowfast_state())
    assert "unexpected in the checkpoint: blocks.0.attn.pool_k.norm.bias" in str(info.value)
    assert "check pool_mode" in str(info.value)


def test_shape_mismatches_are_listed_with_a_hint():
    with pytest.raises(ValueError) as info:
        load_pretrained(mvit.build_model("mvit_tiny", num_classes=5), pyslowfast_state())
    message = str(info.value)
    assert "shape of head.weight: checkpoint (10, 128), model (5, 128)" in message
    assert "num_classes=10" in message
    with pytest.raises(
        ValueError,
        match=r"shape of pos_embed.temporal: checkpoint \(4, 32\), model \(8, 32\)"
        r"[\s\S]*checkpoint's input_size",
    ):
        load_pretrained(mvit.build_model("mvit_tiny", input_size=(16, 64, 64)), pyslowfast_state())


@pytest.mark.parametrize(
    "layout, key, message",
    [
        ("pytorchvideo", "blocks.2.attn.v.weight", "blocks.2.attn has separate q/k/v weights but lacks v"),
        ("pyslowfast", "blocks.0.attn.k.bias", "blocks.0.attn has separate q/k/v biases but lacks k"),  # plural
    ],
)
def test_incomplete_separate_qkv_is_refused(layout, key, message):
    state = reference_layout(mvit.build_model("mvit_tiny").state_dict(), layout, separate_qkv=True)
    del state[key]
    with pytest.raises(CheckpointError, match=message):
        {"pytorchvideo": from_pytorchvideo, "pyslowfast": from_pyslowfast}[layout](state)


def test_unknown_layouts_and_sources_are_refused():
    with pytest.raises(ValueError, match=r"cannot tell which implementation.*first keys: encoder.weight.*source="):
        load_pretrained(mvit.build_model("mvit_tiny"), {"encoder.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unknown source 'timm'"):
        load_pretrained(mvit.build_model("mvit_tiny"), {}, source="timm")
    with pytest.raises(ValueError, match=r"not tensors.*'model_state'"):
        load_pretrained(mvit.build_model("mvit_tiny"), {"epoch": 3, "weights": {"a": 1}})
    with pytest.raises(FileNotFoundError, match="no checkpoint file at"):
        load_pretrained(mvit.build_model("mvit_tiny"), "/nonexistent/checkpoint.pyth")


def test_one_error_names_every_missing_unexpected_and_misshaped_key():
    state = pyslowfast_state()
    del state["blocks.1.attn.norm_q.weight"]
    state["norm_stem.weight"] = torch.ones(32)
    state["blocks.0.attn.proj.bias"] = torch.zeros(33)
    with pytest.raises(CheckpointError) as info:
        load_pretrained(mvit.build_model("mvit_tiny"), state)
    message = str(info.value)
    assert "no counterpart in the pyslowfast -> mvit conversion: norm_stem.weight" in message
    assert "missing from the checkpoint: blocks.1.attn.pool_q.norm.weight" in message
    assert "shape of blocks.0.attn.proj.bias: checkpoint (33,), model (32,)" in message


def test_a_wrong_source_is_named_with_the_right_one():
    state = torchvision_tiny().state_dict()
    with pytest.raises(CheckpointError, match=r"these keys are in the torchvision layout, not pyslowfast's"):
        from_pyslowfast(state)
    with pytest.raises(CheckpointError, match=r"these keys are in the torchvision layout, not mvit's"):
        to_torchvision(state)


# ---------------------------------------------------------------- the reference configurations as published


def with_pool_aliases(theirs: dict) -> dict:
    """pytorchvideo's current source also registers each pooling Conv3d and LayerNorm as
    ``attn._attention_pool_{q,k,v}.pool`` / ``.norm``: every pooling tensor appears under a second key."""
    out = dict(theirs)
    for key, value in theirs.items():
        match = re.fullmatch(r"(blocks\.\d+\.attn)\.(pool|norm)_([qkv])\.(.+)", key)
        if match:
            prefix, module, x, rest = match.groups()
            out[f"{prefix}._attention_pool_{x}.{module}.{rest}"] = value.clone()
    return out


def test_pytorchvideo_current_source_with_its_duplicate_pooling_keys():
    with torch.device("meta"):  # MViT-B 16x4: 16 blocks pool K and V, 3 pool Q; 3 tensors per pooling
        full = reference_layout(mvit.build_model("mvit_b_16x4").state_dict(), "pytorchvideo", separate_qkv=True)
    assert len(with_pool_aliases(full)) - len(full) == 105

    original = randomise(mvit.build_model("mvit_tiny"), seed=0)
    theirs = with_pool_aliases(reference_layout(original.state_dict(), "pytorchvideo", separate_qkv=True))
    model = loaded(mvit.build_model("mvit_tiny"), {"model_state": theirs})
    x = random_clips(1, 8, 64, seed=6)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))

    theirs["blocks.2.attn._attention_pool_k.norm.weight"] += 1
    with pytest.raises(CheckpointError, match=r"1 pooling key\(s\) differ.*blocks.2.attn._attention_pool_k.norm.w"):
        load_pretrained(mvit.build_model("mvit_tiny"), theirs)


def test_pytorchvideo_0_1_5_pooling_norms_with_eps_1e_5():
    """pytorchvideo 0.1.5 builds the LayerNorm after each conv pooling with eps 1e-5, all others with 1e-6."""
    model = mvit.build_model("mvit_tiny", pool_norm_eps=1e-5)
    eps = {name: m.eps for name, m in model.named_modules() if isinstance(m, torch.nn.LayerNorm)}
    assert {e for name, e in eps.items() if ".pool_" in name} == {1e-5}
    assert {e for name, e in eps.items() if ".pool_" not in name} == {1e-6}

    theirs_model = randomise(mvit.build_model("mvit_tiny", pool_norm_eps=1e-5), seed=0)  # as 0.1.5 computes
    theirs = reference_layout(theirs_model.state_dict(), "pytorchvideo", separate_qkv=True)
    x = random_clips(2, 8, 64, seed=7)
    with torch.no_grad():
        exact = loaded(mvit.build_model("mvit_tiny", pool_norm_eps=1e-5), theirs)
        assert torch.equal(exact(x), theirs_model(x))
        default = loaded(mvit.build_model("mvit_tiny"), theirs)
        assert (default(x) - theirs_model(x)).abs().max() > 0  # the setting is what makes it exact


def test_pytorchvideo_image_model_with_separate_positional_embeddings():
    """pytorchvideo's ImageNet ``mvit_base_16``: 2-D patch convolution and (its default) separate
    space/time/class positional embeddings, with T = 1."""
    with torch.device("meta"):
        full = reference_layout(
            mvit.build_model("mvit_b_16_in1k", pos_embed="separate").state_dict(), "pytorchvideo", separate_qkv=True
        )
    emb = "cls_positional_encoding."
    assert full[emb + "pos_embed_spatial"].shape == (1, 56 * 56, 96)
    assert full[emb + "pos_embed_temporal"].shape == (1, 1, 96) and full[emb + "pos_embed_class"].shape == (1, 1, 96)

    original = randomise(mvit.build_model("mvit_tiny_img", pos_embed="separate"), seed=0)
    theirs = reference_layout(original.state_dict(), "pytorchvideo", separate_qkv=True)
    theirs["patch_embed.patch_model.weight"] = theirs["patch_embed.patch_model.weight"][:, :, 0]  # Conv2d
    model = loaded(mvit.build_model("mvit_tiny_img", pos_embed="separate"), theirs)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(images), original(images))


# The MVIT section of PySlowFast's configs/Kinetics/*.yaml as published (the 32x3 file sets DEPTH twice).
PYSLOWFAST_CONFIGS = {
    "MVIT_B_16x4_CONV": """
MVIT:
  DEPTH: 16
  NUM_HEADS: 1
  EMBED_DIM: 96
  PATCH_KERNEL: [3, 7, 7]
  PATCH_STRIDE: [2, 4, 4]
  MLP_RATIO: 4.0
  DIM_MUL: [[1, 2.0], [3, 2.0], [14, 2.0]]
  HEAD_MUL: [[1, 2.0], [3, 2.0], [14, 2.0]]
  POOL_KVQ_KERNEL: [3, 3, 3]
  POOL_KV_STRIDE_ADAPTIVE: [1, 8, 8]
  POOL_Q_STRIDE: [[1, 1, 2, 2], [3, 1, 2, 2], [14, 1, 2, 2]]
DATA: {NUM_FRAMES: 16, TRAIN_CROP_SIZE: 224}
""",
    "MVIT_B_32x3_CONV": """
MVIT:
  DEPTH: 16
  NUM_HEADS: 1
  EMBED_DIM: 96
  PATCH_KERNEL: [3, 7, 7]
  PATCH_STRIDE: [2, 4, 4]
  MLP_RATIO: 4.0
  DEPTH: 24
  POOL_Q_STRIDE: [[2, 1, 2, 2], [5, 1, 2, 2], [21, 1, 2, 2]]
  DIM_MUL: [[2, 2.0], [5, 2.0], [21, 2.0]]
  HEAD_MUL: [[2, 2.0], [5, 2.0], [21, 2.0]]
  POOL_KV_STRIDE_ADAPTIVE: [1, 8, 8]
DATA: {NUM_FRAMES: 32, TRAIN_CROP_SIZE: 224}
""",
}


def pyslowfast_shapes(text: str, num_classes: int = 400) -> dict[str, tuple]:
    """The state dict (names and shapes) PySlowFast's ``MViT`` builds for a config, following its
    ``video_model_builder.py`` (conv pooling, class token, separate positional embeddings, fused qkv):
    widths and heads multiplied at the DIM_MUL / HEAD_MUL indices, K/V strides divided by each Q stride,
    kernels POOL_KVQ_KERNEL or else stride + 1, a pooling skipped where kernel and stride are all ones."""
    import yaml

    cfg = yaml.safe_load(text)  # a repeated key: the last value wins, as in yacs
    m, data = cfg["MVIT"], cfg["DATA"]
    depth = m["DEPTH"]
    dim_mul, head_mul = [1.0] * (depth + 1), [1.0] * (depth + 1)
    for i, mul in m["DIM_MUL"]:
        dim_mul[i] = mul
    for i, mul in m["HEAD_MUL"]:
        head_mul[i] = mul
    q_stride = {row[0]: row[1:] for row in m["POOL_Q_STRIDE"]}
    kernel = m.get("POOL_KVQ_KERNEL")

    def kernel_for(stride):
        return list(kernel) if kernel is not None else [s + 1 if s > 1 else s for s in stride]

    grid = [data["NUM_FRAMES"] // m["PATCH_STRIDE"][0]] + [data["TRAIN_CROP_SIZE"] // s for s in m["PATCH_STRIDE"][1:]]
    dim, heads = m["EMBED_DIM"], m["NUM_HEADS"]
    shapes = {
        "patch_embed.proj.weight": (dim, 3, *m["PATCH_KERNEL"]),
        "patch_embed.proj.bias": (dim,),
        "cls_token": (1, 1, dim),
        "pos_embed_spatial": (1, grid[1] * grid[2], dim),
        "pos_embed_temporal": (1, grid[0], dim),
        "pos_embed_class": (1, 1, dim),
    }
    kv_stride = m["POOL_KV_STRIDE_ADAPTIVE"]
    for i in range(depth):  # (PySlowFast rounds widths to multiples of the heads: exact for these configs)
        heads = int(heads * head_mul[i])
        dim = int(dim * dim_mul[i])
        dim_out = int(dim * dim_mul[i + 1])
        if i in q_stride:
            kv_stride = [max(k // q, 1) for k, q in zip(kv_stride, q_stride[i])]
        b, head_dim = f"blocks.{i}.", dim // heads
        shapes.update(
            {
                b + "norm1.weight": (dim,),
                b + "norm1.bias": (dim,),
                b + "norm2.weight": (dim,),
                b + "norm2.bias": (dim,),
                b + "attn.qkv.weight": (3 * dim, dim),
                b + "attn.qkv.bias": (3 * dim,),
                b + "attn.proj.weight": (dim, dim),
                b + "attn.proj.bias": (dim,),
                b + "mlp.fc1.weight": (4 * dim, dim),
                b + "mlp.fc1.bias": (4 * dim,),
                b + "mlp.fc2.weight": (dim_out, 4 * dim),
                b + "mlp.fc2.bias": (dim_out,),
            }
        )
        for x, stride in (("q", q_stride.get(i)), ("k", kv_stride), ("v", kv_stride)):
            if stride is None or (math.prod(kernel_for(stride)) == 1 and math.prod(stride) == 1):
                continue
            shapes.update(
                {
                    f"{b}attn.pool_{x}.weight": (head_dim, 1, *kernel_for(stride)),
                    f"{b}attn.norm_{x}.weight": (head_dim,),
                    f"{b}attn.norm_{x}.bias": (head_dim,),
                }
            )
        if dim != dim_out:
            shapes.update({b + "proj.weight": (dim_out, dim), b + "proj.bias": (dim_out,)})
    shapes.update(
        {
            "norm.weight": (dim_out,),
            "norm.bias": (dim_out,),
            "head.projection.weight": (num_classes, dim_out),
            "head.projection.bias": (num_classes,),
        }
    )
    return shapes


def pyslowfast_layout_of(name: str, **overrides) -> dict[str, tuple]:
    with torch.device("meta"):
        state = mvit.build_model(name, **overrides).state_dict()
    return {k: tuple(v.shape) for k, v in reference_layout(state, "pyslowfast", separate_qkv=False).items()}


@pytest.mark.parametrize(
    "config,preset,overrides",
    [
        ("MVIT_B_16x4_CONV", "mvit_b_16x4", {}),
        ("MVIT_B_32x3_CONV", "mvit_b_24_32x3", dict(num_classes=400, pool_kernel="stride+1")),
    ],
)
def test_pyslowfast_kinetics_configs_as_published_fit_the_documented_model(config, preset, overrides):
    expected = pyslowfast_shapes(PYSLOWFAST_CONFIGS[config])
    assert pyslowfast_layout_of(preset, **overrides) == expected
    assert f'``build_model("{preset}"' in mvit.convert.__doc__ and config in mvit.convert.__doc__


def test_pyslowfast_32x3_config_fits_no_preset_without_its_overrides():
    """DEPTH 24 and stride + 1 kernels: neither the 16-block MViT-B 32x3 nor MViT-B-24 with 3x3x3 kernels."""
    expected = pyslowfast_shapes(PYSLOWFAST_CONFIGS["MVIT_B_32x3_CONV"])
    assert len([k for k in expected if k.endswith(".norm1.weight")]) == 24
    assert pyslowfast_layout_of("mvit_b_32x3") != expected
    assert pyslowfast_layout_of("mvit_b_24_32x3", num_classes=400) != expected


# ---------------------------------------------------------------- files, and the one entry point's contract


def test_unreadable_files_raise_checkpoint_error_naming_the_file(tmp_path):
    good = tmp_path / "good.pt"
    torch.save(mvit.build_model("mvit_tiny").state_dict(), good)
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "random.pt").write_bytes(
        torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes()
    )
    (tmp_path / "text.pt").write_text("model: mvit_tiny\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    for name, reason in [
        ("truncated", "not a readable PyTorch checkpoint"),
        ("random", "not a readable PyTorch"),
        ("text", "not a readable PyTorch checkpoint"),
        ("empty", "is empty"),
        ("tensor", "expected a state dict"),
    ]:
        path = tmp_path / f"{name}.pt"
        with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*" + reason):
            read_checkpoint(path)
    with pytest.raises(CheckpointError, match="is a folder"):
        read_checkpoint(tmp_path)
    torch.save({"encoder.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "other.pt")) + ": cannot tell which"):
        load_pretrained(mvit.build_model("mvit_tiny"), tmp_path / "other.pt")


def test_objects_in_a_file_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"model": mvit.build_model("mvit_tiny").state_dict(), "when": datetime.date(2021, 4, 22)}, path)
    with pytest.raises(CheckpointError, match=r"holds Python objects besides tensors \(datetime.date\).*weights_only"):
        read_checkpoint(path)


def test_new_head_keeps_a_fresh_classifier_of_another_size_and_names_it():
    original = randomise(mvit.build_model("mvit_tiny"), seed=0)
    target = mvit.build_model("mvit_tiny", num_classes=5)
    head = target.head.weight.detach().clone()
    with pytest.raises(CheckpointError, match=r"num_classes=10, or load with new_head=True"):
        load_pretrained(target, original.state_dict())
    assert load_pretrained(target, original.state_dict(), new_head=True) == ["head.weight", "head.bias"]
    assert torch.equal(target.head.weight, head)
    assert torch.equal(target.blocks[1].attn.qkv.weight, original.blocks[1].attn.qkv.weight)
    assert load_pretrained(mvit.build_model("mvit_tiny"), original.state_dict(), new_head=True) == []


def test_the_engine_initialises_through_the_same_entry_point(tmp_path):
    from mvit.engine.config import ConfigError
    from mvit.engine.network import load_pretrained as engine_load

    original = randomise(mvit.build_model("mvit_tiny"), seed=0)
    path = tmp_path / "k.pth"
    torch.save({"model_state": reference_layout(original.state_dict(), "pyslowfast", False)}, path)
    target = mvit.build_model("mvit_tiny", num_classes=3)
    assert engine_load(target, path) == ["head.weight", "head.bias"]
    assert torch.equal(target.norm.weight, original.norm.weight)
    with pytest.raises(ConfigError, match=r"model.pretrained='.*nope.pt' is not a file"):
        engine_load(target, tmp_path / "nope.pt")


def test_another_depth_is_named_first():
    with pytest.raises(CheckpointError) as info:
        load_pretrained(mvit.build_model("mvit_tiny", stage_depths=(1, 2, 2)), pyslowfast_state())
    assert str(info.value).splitlines()[1] == (
        "hint: the checkpoint has 4 blocks, the model 5: build the model with the checkpoint's stage_depths"
    )
