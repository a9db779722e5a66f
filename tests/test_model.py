"""The MViT model (`mvit.model`, `mvit.blocks`, `mvit.attention`): attention paths, skip variants,
positional embeddings and their interpolation, the head, training options and input errors.

Small presets keep every test fast on a 2-core CPU; the full-size checks against torchvision live in
`test_convert.py`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import mvit
from mvit.blocks import DropPath, MultiScaleBlock
from mvit.configs import block_schedule, get_config
from mvit.model import PositionalEmbedding


def clip(batch: int = 2, t: int = 8, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, t, size, size, generator=torch.Generator().manual_seed(seed))


def tiny(**overrides) -> mvit.MViT:
    torch.manual_seed(0)
    return mvit.build_model("mvit_tiny", **overrides).eval()


# ---------------------------------------------------------------- attention: fused == explicit


def test_fused_attention_equals_the_explicit_path_and_maps_live_on_the_schedule_grids():
    model = tiny()
    x = clip()
    with torch.no_grad():
        fused, no_maps = model.forward_features(x)
        explicit, maps = model.forward_features(x, return_attention=True)
    assert no_maps == []
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)

    schedule = block_schedule(model.config)
    assert len(maps) == len(schedule)
    for spec, m in zip(schedule, maps):
        assert m.q_thw == spec.out_thw and m.kv_thw == spec.kv_thw and m.has_cls
        assert m.attn.shape == (2, spec.num_heads, 1 + math.prod(spec.out_thw), 1 + math.prod(spec.kv_thw))
        torch.testing.assert_close(m.attn.sum(-1), torch.ones(m.attn.shape[:-1]))  # softmax rows


# ---------------------------------------------------------------- skip variants (Table A.1)


def test_a_block_is_built_from_its_spec_alone():
    cfg = get_config("mvit_tiny", mlp_ratio=2.0, qkv_bias=False, norm_eps=1e-5, pool_mode="avg")
    for spec in block_schedule(cfg):
        block = MultiScaleBlock(spec)
        assert block.mlp.fc1.out_features == spec.mlp_hidden == int(2.0 * spec.dim_in)
        assert block.attn.qkv.bias is None and block.norm1.eps == block.norm2.eps == 1e-5
        assert (spec.pool_mode, spec.has_cls, spec.stage_skip) == ("avg", cfg.cls_token, cfg.stage_skip)


@pytest.mark.parametrize("variant", ["norm_linear", "linear", "none"])
def test_stage_transition_skip_variants(variant):
    """Block 0 of mvit_tiny widens 32 -> 64 channels; check its output against the formula of each variant."""
    cfg = get_config("mvit_tiny", stage_skip=variant)
    spec = block_schedule(cfg)[0]
    assert (spec.dim_in, spec.dim_out) == (32, 64) and spec.q_kernel is None
    torch.manual_seed(0)
    block = MultiScaleBlock(spec).eval()
    assert (block.proj is None) == (variant == "none")
    if block.proj is not None:
        assert block.proj.weight.shape == (64, 32)

    x = torch.randn(2, 1 + math.prod(spec.in_thw), 32)
    with torch.no_grad():
        out, thw, _ = block(x, spec.in_thw)
        x1 = x + block.attn(block.norm1(x), spec.in_thw)[0]
        normed = block.norm2(x1)
        skip = {"norm_linear": lambda: block.proj(normed), "linear": lambda: block.proj(x1), "none": lambda: 0}[variant]
        expected = skip() + block.mlp(normed)
    assert thw == spec.out_thw and out.shape == (2, x.shape[1], 64)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("variant", ["norm_linear", "linear", "none"])
def test_only_transition_blocks_carry_a_skip_projection(variant):
    model = tiny(stage_skip=variant)
    for spec, block in zip(model.schedule, model.blocks):
        has_proj = spec.dim_in != spec.dim_out and variant != "none"
        assert (block.proj is not None) == has_proj, f"block {spec.index}"
    with torch.no_grad():
        assert model(clip()).shape == (2, 10)


# ---------------------------------------------------------------- positional embeddings (Table 11)


def test_separate_space_time_embedding():
    torch.manual_seed(0)
    pos = PositionalEmbedding("separate", 8, (3, 2, 4), has_cls=True)
    assert (pos.spatial.shape, pos.temporal.shape, pos.cls.shape) == ((8, 8), (3, 8), (1, 8))
    assert pos.joint is None
    with torch.no_grad():
        for p in pos.parameters():
            p.normal_()
        table = pos.table((3, 2, 4))
    assert table.shape == (1 + 24, 8)
    assert torch.equal(table[0], pos.cls[0])
    for t in range(3):
        for s in range(8):  # time is the outer index of the flattened tokens
            torch.testing.assert_close(table[1 + t * 8 + s], pos.temporal[t] + pos.spatial[s])


def test_space_only_embedding_repeats_over_time():
    pos = PositionalEmbedding("space", 8, (3, 2, 4), has_cls=True)
    assert pos.temporal is None and pos.joint is None and pos.spatial.shape == (8, 8)
    with torch.no_grad():
        pos.spatial.normal_()
        table = pos.table((3, 2, 4))
    for t in range(3):
        torch.testing.assert_close(table[1 + t * 8 : 1 + (t + 1) * 8], pos.spatial)


def test_joint_embedding_is_one_table():
    pos = PositionalEmbedding("joint", 8, (3, 2, 4), has_cls=False)
    assert pos.spatial is None and pos.temporal is None and pos.cls is None
    assert pos.joint.shape == (24, 8)
    assert torch.equal(pos.table((3, 2, 4)), pos.joint)


def test_no_embedding_leaves_tokens_unchanged():
    pos = PositionalEmbedding("none", 8, (3, 2, 4), has_cls=True)
    assert list(pos.parameters()) == []
    x = torch.randn(2, 25, 8)
    assert pos.table((3, 2, 4)) is None and torch.equal(pos(x, (3, 2, 4)), x)


def test_embedding_kinds_parameter_counts_in_mvit_b():
    """Table 11: joint space-time embedding costs 2.1 M more parameters than separate ones."""
    counts = {
        kind: sum(p.numel() for p in PositionalEmbedding(kind, 96, (8, 56, 56), True).parameters())
        for kind in ("separate", "joint", "space", "none")
    }
    assert counts["separate"] == (56 * 56 + 8 + 1) * 96
    assert counts["joint"] - counts["separate"] == 96 * (8 * 56 * 56 - 56 * 56 - 8) == 2_106_624
    assert counts["space"] == (56 * 56 + 1) * 96 and counts["none"] == 0


@pytest.mark.parametrize("kind", ["separate", "joint", "space", "none"])
def test_every_embedding_kind_runs_in_the_model(kind):
    model = tiny(pos_embed=kind)
    with torch.no_grad():
        assert model(clip(batch=1)).shape == (1, 10)


# ---------------------------------------------------------------- interpolation (the 64x3 fine-tune)


def test_tables_are_unchanged_when_the_grid_matches():
    torch.manual_seed(0)
    pos = PositionalEmbedding("separate", 4, (4, 3, 3), has_cls=True)
    with torch.no_grad():
        for p in pos.parameters():
            p.normal_()
        table = pos.table((4, 3, 3))
    manual = torch.cat([pos.cls, (pos.temporal[:, None] + pos.spatial[None]).reshape(36, 4)])
    assert torch.equal(table, manual)


def test_temporal_table_is_linearly_interpolated_to_a_longer_clip():
    torch.manual_seed(0)
    pos = PositionalEmbedding("separate", 4, (4, 3, 3), has_cls=True)
    with torch.no_grad():
        for p in pos.parameters():
            p.normal_()
        table = pos.table((8, 3, 3))[1:].reshape(8, 9, 4)
    temporal = (table - pos.spatial[None]).detach()[:, 0]  # every spatial row shares the temporal part
    # half-pixel-centred linear interpolation: output step i samples input position (i + 0.5) * 4/8 - 0.5
    src = (np.arange(8) + 0.5) * 4 / 8 - 0.5
    old = pos.temporal.detach().numpy()
    expected = np.stack([np.interp(src, np.arange(4), old[:, c]) for c in range(4)], axis=1)
    np.testing.assert_allclose(temporal.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_spatial_and_joint_tables_are_resized():
    pos = PositionalEmbedding("separate", 4, (2, 4, 4), has_cls=False)
    with torch.no_grad():
        pos.spatial.fill_(0.25)  # a constant table stays constant under bicubic resizing
        pos.temporal.zero_()
        table = pos.table((2, 6, 5))
    assert table.shape == (2 * 6 * 5, 4)
    torch.testing.assert_close(table, torch.full_like(table, 0.25))
    joint = PositionalEmbedding("joint", 4, (2, 4, 4), has_cls=True)
    assert joint.table((4, 8, 8)).shape == (1 + 4 * 8 * 8, 4)


def test_model_built_for_16_frames_runs_on_32():
    model = tiny(input_size=(16, 32, 32))
    assert model.pos_embed.temporal.shape[0] == 8
    with torch.no_grad():
        native = model(clip(batch=1, t=16, size=32))
        longer = model(clip(batch=1, t=32, size=32))
        larger = model(clip(batch=1, t=16, size=48))
    assert native.shape == longer.shape == larger.shape == (1, 10)
    assert torch.isfinite(longer).all() and torch.isfinite(larger).all()


# ---------------------------------------------------------------- head


def test_mean_pooling_head_without_class_token():
    model = tiny(cls_token=False)
    assert model.cls_token is None and model.pos_embed.cls is None
    x = clip()
    with torch.no_grad():
        features, maps = model.forward_features(x, return_attention=True)
        logits = model(x)
    last = model.schedule[-1]
    assert features.shape == (2, math.prod(last.out_thw), last.dim_out)  # no class token anywhere
    assert all(m.attn.shape[-2] == math.prod(m.q_thw) and not m.has_cls for m in maps)
    torch.testing.assert_close(logits, model.head(features.mean(dim=1)))


def test_class_token_head_reads_the_first_token():
    model = tiny()
    with torch.no_grad():
        features, _ = model.forward_features(clip())
        torch.testing.assert_close(model(clip()), model.head(features[:, 0]))


def test_no_weight_decay_names_biases_norms_embeddings_and_class_token():
    model = tiny()
    skip = model.no_weight_decay()
    for name in (
        "cls_token",
        "pos_embed.spatial",
        "pos_embed.temporal",
        "pos_embed.cls",
        "head.bias",
        "blocks.0.norm1.weight",
        "blocks.1.attn.pool_q.norm.weight",
        "norm.bias",
    ):
        assert name in skip
    for name in (
        "head.weight",
        "patch_embed.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.1.attn.pool_q.op.weight",
        "blocks.0.proj.weight",
    ):
        assert name not in skip


# ---------------------------------------------------------------- training options


def test_drop_path_statistics():
    torch.manual_seed(0)
    drop = DropPath(0.3).train()
    x = torch.ones(20_000, 3, 4)
    y = drop(x)
    kept = y.flatten(1).amax(dim=1) > 0
    # whole samples are dropped or kept, kept ones are rescaled by 1 / (1 - p)
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.7))
    assert torch.all(y[~kept] == 0)
    assert abs(1 - kept.float().mean().item() - 0.3) < 0.02  # 0.02 is > 4 standard deviations here
    assert abs(y.mean().item() - 1.0) < 0.03  # unbiased in expectation
    assert torch.equal(drop.eval()(x), x)


def _loss_and_grads(model: mvit.MViT, x: torch.Tensor):
    torch.manual_seed(123)  # same drop-path masks in both runs
    loss = model(x).logsumexp(dim=1).mean()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_activation_checkpointing_gives_the_same_gradients():
    plain = tiny(drop_path=0.2).train()
    checkpointed = tiny(drop_path=0.2, activation_checkpointing=True).train()
    checkpointed.load_state_dict(plain.state_dict())
    calls = []
    checkpointed.blocks[0].register_forward_pre_hook(lambda *args: calls.append(1))
    x = clip()
    loss_a, grads_a = _loss_and_grads(plain, x)
    loss_b, grads_b = _loss_and_grads(checkpointed, x)
    assert len(calls) == 2  # the block started again during backward: checkpointing is really on
    torch.testing.assert_close(loss_a, loss_b)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_autocast_on_cpu():
    model = tiny()
    x = clip()
    with torch.no_grad():
        reference = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()
    assert (low.float() - reference).abs().max() < 0.05 * reference.abs().max() + 1e-3
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x).float().logsumexp(1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_torch_compile_traces_the_whole_forward():
    """``fullgraph=True`` fails on any graph break (data-dependent Python control flow). The
    ``aot_eager`` backend traces with Dynamo and AOTAutograd like the default backend but skips
    Inductor's C++ code generation, which takes minutes on a 2-core CPU."""
    if not torch._dynamo.is_dynamo_supported():
        pytest.skip("torch.compile is not supported on this Python / PyTorch build")
    model = tiny()
    x = clip()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


# ---------------------------------------------------------------- input errors


def test_wrong_rank_names_expected_and_received_shapes():
    model = tiny()
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 3, T, H, W\), got \(3, 8, 64, 64\).*unsqueeze"):
        model(torch.randn(3, 8, 64, 64))
    with pytest.raises(ValueError, match=r"got \(64, 64\)"):
        model(torch.randn(64, 64))


def test_wrong_channel_count_names_expected_and_received_shapes():
    model = tiny()
    with pytest.raises(ValueError, match=r"expects 3 channels in dim 1.*got \(1, 1, 8, 64, 64\)"):
        model(torch.randn(1, 1, 8, 64, 64))
    with pytest.raises(ValueError, match=r"channels-last input\? use x.permute\(0, 4, 1, 2, 3\)"):
        model(torch.randn(1, 8, 64, 64, 3))


def test_size_the_patch_stride_cannot_tile():
    model = tiny()
    with pytest.raises(
        ValueError, match=r"input H=62 \(shape \(1, 3, 8, 62, 64\)\) is not a multiple of the patch stride 4"
    ):
        model(torch.randn(1, 3, 8, 62, 64))
    with pytest.raises(ValueError, match=r"input T=7 .* patch stride 2"):
        model(torch.randn(1, 3, 7, 64, 64))


def test_image_model_accepts_images():
    torch.manual_seed(0)
    model = mvit.build_model("mvit_tiny_img").eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model(images.unsqueeze(2)))
