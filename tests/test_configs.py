"""The block schedule computed from stage-level choices, and configuration errors (`mvit.configs`)."""

from __future__ import annotations

import pytest
import torch

import mvit
from mvit.configs import MViTConfig, block_schedule, get_config, pool_kernel_for

# MViT-B 16x4, block by block, as paper Table 3b and the reference implementations build it
# (torchvision models/video/mvit.py, PySlowFast slowfast/models/video_model_builder.py):
# channels double in the last block of a stage (0, 2, 13); heads double and Q is pooled with stride
# 1x2x2 in the first block of the next stage (1, 3, 14); K/V strides start at 1x8x8 and are divided by
# each Q stride met; K/V are pooled (kernel 3x3x3, padding 1) from the block's input grid.
# columns: dim_in, dim_out, heads, q_stride, kv_stride, grid in, grid out (queries), K/V grid
G56, G28, G14, G7 = (8, 56, 56), (8, 28, 28), (8, 14, 14), (8, 7, 7)
MVIT_B_16X4 = [
    (96, 192, 1, (1, 1, 1), (1, 8, 8), G56, G56, G7),
    (192, 192, 2, (1, 2, 2), (1, 4, 4), G56, G28, G14),
    (192, 384, 2, (1, 1, 1), (1, 4, 4), G28, G28, G7),
    (384, 384, 4, (1, 2, 2), (1, 2, 2), G28, G14, G14),
    *[(384, 384, 4, (1, 1, 1), (1, 2, 2), G14, G14, G7)] * 9,  # blocks 4-12
    (384, 768, 4, (1, 1, 1), (1, 2, 2), G14, G14, G7),
    (768, 768, 8, (1, 2, 2), (1, 1, 1), G14, G7, G14),
    (768, 768, 8, (1, 1, 1), (1, 1, 1), G7, G7, G7),
]


def test_mvit_b_16x4_schedule_matches_the_paper_block_by_block():
    cfg = get_config("mvit_b_16x4")
    assert cfg.patch_grid == G56  # cube1: 3x7x7 conv, stride 2x4x4, padding 1x3x3 on 16x224x224
    schedule = block_schedule(cfg)
    assert len(schedule) == 16
    for spec, row in zip(schedule, MVIT_B_16X4):
        got = (
            spec.dim_in,
            spec.dim_out,
            spec.num_heads,
            spec.q_stride,
            spec.kv_stride,
            spec.in_thw,
            spec.out_thw,
            spec.kv_thw,
        )
        assert got == row, f"block {spec.index}"
        q_pooled = spec.index in (1, 3, 14)
        assert spec.q_kernel == ((3, 3, 3) if q_pooled else None), f"block {spec.index}"
        assert spec.kv_kernel == (3, 3, 3), f"block {spec.index}"
        # the residual of a Q-pooling block is max-pooled with kernel 1x3x3, stride 1x2x2
        assert spec.skip_kernel == ((1, 3, 3) if q_pooled else None), f"block {spec.index}"
        assert spec.dim_in // spec.num_heads == 96  # D/h stays 96 (§3.2)
    # stage outputs of Table 3b: 96x8x56x56 -> 192x8x28x28 -> 384x8x14x14 -> 768x8x7x7
    assert [s.stage for s in schedule] == [0] + [1] * 2 + [2] * 11 + [3] * 2
    assert schedule[-1].out_thw == G7 and schedule[-1].dim_out == 768


def test_stochastic_depth_grows_linearly_to_the_configured_rate():
    schedule = block_schedule(get_config("mvit_b_16x4"))
    rates = [s.drop_path for s in schedule]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    steps = [b - a for a, b in zip(rates, rates[1:])]
    assert all(step == pytest.approx(0.2 / 15) for step in steps)


def test_fixed_kv_stride_and_no_kv_pooling():
    """Table 14's alternatives: a fixed K/V stride is not divided by the Q strides; None pools nothing."""
    fixed = block_schedule(get_config("mvit_b_16x4", kv_stride=(1, 4, 4), kv_stride_adaptive=False))
    assert {s.kv_stride for s in fixed} == {(1, 4, 4)}
    # block 1 pools K/V from its 56x56 input, block 3 from 28x28: 14x14 and 7x7
    assert fixed[1].kv_thw == (8, 14, 14) and fixed[3].kv_thw == (8, 7, 7)
    none = block_schedule(get_config("mvit_b_16x4", kv_stride=None))
    assert all(s.kv_kernel is None and s.kv_thw == s.in_thw for s in none)


def test_vit_has_a_single_stage_without_pooling():
    schedule = block_schedule(get_config("vit_b_8x8"))
    assert len(schedule) == 12
    assert all(s.q_kernel is None and s.kv_kernel is None for s in schedule)
    assert {(s.dim_in, s.dim_out, s.num_heads, s.in_thw, s.out_thw) for s in schedule} == {
        (768, 768, 12, (8, 14, 14), (8, 14, 14))
    }


@pytest.mark.parametrize(
    "rule,stride,kernel",
    [
        ("stride+1", (1, 2, 2), (1, 3, 3)),  # Table 15's default for max pooling
        ("stride+1", (1, 8, 8), (1, 9, 9)),
        ("stride", (1, 4, 4), (1, 4, 4)),
        ("2stride+1", (2, 2, 2), (5, 5, 5)),
        ((3, 3, 3), (1, 8, 8), (3, 3, 3)),  # a fixed kernel, the conv default
    ],
)
def test_pool_kernel_rules(rule, stride, kernel):
    assert pool_kernel_for(stride, rule) == kernel


def test_max_preset_uses_kernel_stride_plus_one():
    schedule = block_schedule(get_config("mvit_b_16x4_max"))
    assert schedule[0].kv_kernel == (1, 9, 9) and schedule[1].q_kernel == (1, 3, 3)
    assert schedule[14].kv_kernel is None  # stride 1x1x1 and kernel 1: nothing to pool


@pytest.mark.parametrize("rule", ["stride", "stride+1", "2stride+1"])
def test_every_table15_kernel_rule_keeps_the_query_grid_of_the_pooled_skip(rule):
    """An even kernel (kernel = stride) must halve 56 to 28 like the skip's max pool, not give 29."""
    model = mvit.build_model("mvit_tiny", pool_mode="max", pool_kernel=rule, input_size=(4, 32, 32))
    assert [spec.out_thw for spec in model.schedule] == [(2, 8, 8), (2, 4, 4), (2, 4, 4), (2, 2, 2)]
    assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 10)


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(ValueError) as info:
        mvit.build_model("mvit_b_16x5")
    message = str(info.value)
    assert "Unknown model 'mvit_b_16x5'" in message and "Did you mean" in message
    for name in mvit.list_models():
        assert name in message


def test_unknown_override_names_the_field_and_a_close_match():
    with pytest.raises(ValueError, match=r"Unknown MViTConfig field\(s\) 'num_class' \(did you mean 'num_classes'\?\)"):
        mvit.build_model("mvit_tiny", num_class=5)


@pytest.mark.parametrize(
    "override,message",
    [
        (dict(pool_mode="min"), r"pool_mode='min' is not one of \('conv', 'max', 'avg'\)"),
        (dict(pos_embed="learned"), r"pos_embed='learned' is not one of"),
        (dict(stage_skip="identity"), r"stage_skip='identity' is not one of"),
        (dict(input_size=(8, 64)), r"input_size=\(8, 64\) must be three non-negative integers"),
        (dict(stage_depths=(1, 0, 1)), r"stage_depths=\(1, 0, 1\) must be one or more positive block counts"),
        (dict(embed_dim=30, num_heads=4), r"embed_dim=30 is not divisible by num_heads=4"),
        (dict(drop_path=1.0), r"drop_path and dropout must lie in \[0, 1\)"),
    ],
)
def test_invalid_configurations_are_refused(override, message):
    with pytest.raises(ValueError, match=message):
        get_config("mvit_tiny", **override)


def test_lists_from_yaml_become_tuples():
    cfg = get_config("mvit_tiny", input_size=[8, 32, 32], stage_depths=[1, 1])
    assert cfg.input_size == (8, 32, 32) and cfg.stage_depths == (1, 1)
    assert cfg == MViTConfig(**{**cfg.__dict__})  # hashable, comparable, rebuildable
