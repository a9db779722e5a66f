"""mvit.complexity: counted FLOPs, the analytic costs of Appendix C, measured time and memory."""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import mvit
from mvit.complexity import (
    block_macs,
    count_flops,
    count_params,
    flops_by_block,
    format_table,
    measure,
    mhpa_memory,
    mhpa_time,
    model_macs,
)


def meta_model(name: str, **overrides) -> mvit.MViT:
    with torch.device("meta"):
        return mvit.build_model(name, **overrides)


def test_counts_match_torchvision_mvit_v1_b():
    from torchvision.models.video import mvit_v1_b

    with torch.device("meta"):
        theirs = mvit_v1_b()
    ours = meta_model("mvit_b_16x4")
    shape = (1, 3, 16, 224, 224)
    assert count_params(ours) == count_params(theirs) == 36_610_672
    assert round(count_flops(ours, shape), 3) == round(count_flops(theirs, shape), 3) == 70.599


def test_meta_count_equals_a_real_count_of_the_explicit_attention_path():
    # On real CPU tensors FlopCounterMode does not see the fused CPU attention kernel, so count the
    # explicit matmul + softmax path (same arithmetic) and compare with the meta-device count.
    torch.manual_seed(0)
    model = mvit.build_model("mvit_tiny").eval()
    shape = (2, 3, 8, 64, 64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        features, maps = model.forward_features(torch.randn(shape), return_attention=True)
        model.head(features[:, 0])
    assert len(maps) == len(model.blocks)
    assert count_flops(model, shape) == pytest.approx(counter.get_total_flops() / 2e9, rel=1e-12)
    assert model.training is False


def test_count_flops_is_linear_in_batch_and_leaves_the_model_as_it_was():
    model = mvit.build_model("mvit_tiny")
    model.train()
    weight = model.head.weight.detach().clone()
    one, three = count_flops(model, (1, 3, 8, 64, 64)), count_flops(model, (3, 3, 8, 64, 64))
    assert three == pytest.approx(3 * one, rel=1e-12)
    assert model.training and model.head.weight.device.type == "cpu"
    torch.testing.assert_close(model.head.weight, weight, rtol=0, atol=0)


@pytest.mark.parametrize("name", mvit.list_models())
def test_analytic_macs_equal_counted_macs(name):
    model = meta_model(name)
    shape = (1, model.config.in_channels, *model.config.input_size)
    assert model_macs(model.config) == pytest.approx(count_flops(model, shape), rel=1e-12)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(pool_mode="max", pool_kernel="stride+1"),
        dict(pool_mode="avg", cls_token=False, pos_embed="none"),
        dict(stage_skip="none", kv_stride=(1, 4, 4), kv_stride_adaptive=False),
        dict(stage_skip="linear", q_stride=None, kv_stride=None, mlp_ratio=2.0),
    ],
)
def test_block_rows_equal_block_macs_and_add_up(overrides):
    model = mvit.build_model("mvit_tiny", **overrides)
    cfg = model.config
    shape = (1, 3, *cfg.input_size)
    rows = flops_by_block(model, shape)
    assert [r.index for r in rows] == list(range(cfg.depth))
    for row, spec, block in zip(rows, model.schedule, model.blocks):
        assert (row.in_thw, row.out_thw, row.kv_thw) == (spec.in_thw, spec.out_thw, spec.kv_thw)
        assert (row.dim_in, row.dim_out, row.num_heads, row.stage) == (
            spec.dim_in,
            spec.dim_out,
            spec.num_heads,
            spec.stage,
        )
        assert row.params == count_params(block)
        assert row.gmacs * 1e9 == pytest.approx(sum(block_macs(spec, cfg).values()), abs=0.5)
    outside = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("blocks."))
    assert sum(r.params for r in rows) + outside == count_params(model)
    embed = cfg.embed_dim * math.prod(cfg.patch_grid) * 3 * math.prod(cfg.patch_kernel)
    head = rows[-1].dim_out * cfg.num_classes
    assert sum(r.gmacs for r in rows) + (embed + head) / 1e9 == pytest.approx(count_flops(model, shape), rel=1e-12)


def test_format_table_lists_every_block_and_the_total():
    model = meta_model("mvit_b_16x4")
    rows = flops_by_block(model, (1, 3, 16, 224, 224))
    text = format_table(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + 16 + 1
    assert "8x56x56" in lines[2] and "96->192" in lines[2]
    assert lines[-1].startswith("total") and f"{sum(r.gmacs for r in rows):.3f}" in lines[-1]


def test_appendix_c_time_is_the_leading_part_of_the_exact_count():
    # Without a class token and with strides that divide the grid, Appendix C's per-head terms times the
    # number of heads are the exact projection and attention multiply-adds (3 projections; 2 matmuls).
    cfg = mvit.get_config("mvit_tiny", cls_token=False, pos_embed="none", num_heads=2, embed_dim=32)
    for spec in mvit.block_schedule(cfg):
        f_q, f_k = math.prod(spec.q_stride), math.prod(spec.kv_stride)
        assert math.prod(spec.in_thw) == f_q * math.prod(spec.out_thw) == f_k * math.prod(spec.kv_thw)
        per_head = mhpa_time(spec.in_thw, spec.dim_in, spec.num_heads, f_q, f_k)
        exact = block_macs(spec, cfg)
        assert exact["qkv"] == 3 * spec.num_heads * per_head.projection
        assert exact["attention"] == 2 * spec.num_heads * per_head.attention


def test_appendix_c_memory_counts_the_attention_matrices_the_model_makes():
    torch.manual_seed(0)
    model = mvit.build_model("mvit_tiny", cls_token=False, pos_embed="none", num_heads=2).eval()
    x = torch.randn(1, 3, *model.config.input_size)
    with torch.no_grad():
        _, maps = model.forward_features(x, return_attention=True)
    for spec, amap in zip(model.schedule, maps):
        f_q, f_k = math.prod(spec.q_stride), math.prod(spec.kv_stride)
        memory = mhpa_memory(spec.in_thw, spec.dim_in, spec.num_heads, f_q, f_k)
        assert amap.attn.numel() == memory.attention
        assert memory.projection == math.prod(spec.in_thw) * spec.dim_in


def test_appendix_c_design_rule_constant_projection_cost_per_stage():
    # Channels double when the grid shrinks 4x, so the projection cost of a block, h * (L D^2 / h),
    # is the same in every stage (Appendix C, "Design choice"); blocks 0, 2, 4, 15 of MViT-B do not
    # pool Q and sit in the four stages.
    cfg = mvit.get_config("mvit_b_16x4")
    blocks = [s for s in mvit.block_schedule(cfg) if s.index in (0, 2, 4, 15)]
    assert [s.stage for s in blocks] == [0, 1, 2, 3]
    costs = {s.num_heads * mhpa_time(s.in_thw, s.dim_in, s.num_heads).projection for s in blocks}
    assert costs == {8 * 56 * 56 * 96**2}


def test_bad_input_shapes_and_models_get_clear_errors():
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        count_flops(meta_model("mvit_tiny"), (3, 8, 64, 64)[:3])
    with pytest.raises(TypeError, match="mvit.MViT"):
        flops_by_block(torch.nn.Linear(2, 2), (1, 2))
    with pytest.raises(ValueError, match="repeats"):
        measure(lambda: None, repeats=0)


def test_count_params_trainable_only():
    model = mvit.build_model("mvit_tiny")
    model.head.requires_grad_(False)
    assert count_params(model, trainable_only=True) == count_params(model) - model.head.weight.numel() - 10


def test_measure_times_and_sees_the_memory_a_step_touches():
    calls = []

    def allocate():
        calls.append(1)
        torch.ones(16 * 2**20)  # 64 MiB, written, then freed

    result = measure(allocate, repeats=3, warmup=1)
    assert len(calls) == 1 + 3 + 1 and len(result.times_s) == 3
    assert min(result.times_s) <= result.median_s <= max(result.times_s)
    if not os.path.exists("/proc/self/clear_refs"):
        assert result.peak_bytes is None
        return
    assert 60 * 2**20 <= result.peak_bytes <= 100 * 2**20
    assert measure(lambda: None, repeats=1).peak_bytes < 16 * 2**20
