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

import re

import pytest
import torch
from torchvision.models.video import mvit_v1_b
from torchvision.models.video.mvit import MSBlockConfig, MViT as TorchvisionMViT

import mvit
from mvit.convert import (detect_source, from_pyslowfast, from_pytorchvideo, from_torchvision, load_pretrained,
                          to_torchvision, unwrap)

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
    return TorchvisionMViT(spatial_size=(64, 64), temporal_size=8, block_setting=setting, residual_pool=False,
                           residual_with_cls_embed=False, rel_pos_embed=False, proj_after_attn=False,
                           num_classes=10).eval()


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
    "pytorchvideo": dict(stem="patch_embed.patch_model", embeddings="cls_positional_encoding.", norm="norm_embed",
                         head="head.proj"),
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
    torch.save({"epoch": 200, "model_state": reference_layout(original.state_dict(), "pyslowfast", False),
                "optimizer_state": {"state": {}, "param_groups": []}, "cfg": "MVIT:\n  DEPTH: 4\n"}, path)
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
    with pytest.raises(ValueError, match=r"shape of pos_embed.temporal: checkpoint \(4, 32\), model \(8, 32\)"
                                         r"[\s\S]*checkpoint's input_size"):
        load_pretrained(mvit.build_model("mvit_tiny", input_size=(16, 64, 64)), pyslowfast_state())


def test_incomplete_separate_qkv_is_refused():
    state = reference_layout(mvit.build_model("mvit_tiny").state_dict(), "pytorchvideo", separate_qkv=True)
    del state["blocks.2.attn.v.weight"]
    with pytest.raises(ValueError, match=r"blocks.2.attn has separate q/k/v weights but lacks v"):
        from_pytorchvideo(state)


def test_unknown_layouts_and_sources_are_refused():
    with pytest.raises(ValueError, match=r"cannot tell which implementation.*first keys: encoder.weight.*source="):
        load_pretrained(mvit.build_model("mvit_tiny"), {"encoder.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"unknown source 'timm'"):
        load_pretrained(mvit.build_model("mvit_tiny"), {}, source="timm")
    with pytest.raises(ValueError, match=r"not tensors.*'model_state'"):
        load_pretrained(mvit.build_model("mvit_tiny"), {"epoch": 3, "weights": {"a": 1}})
    with pytest.raises(FileNotFoundError, match="no checkpoint file at"):
        load_pretrained(mvit.build_model("mvit_tiny"), "/nonexistent/checkpoint.pyth")
