"""Every preset against the paper's parameter count and FLOPs (paper Tables 4, 5 and 17).

FLOPs convention: GMACs (one multiply-add = one FLOP) of convolutions, linear layers, matrix products
and attention for one view at the preset's input size, as counted by `mvit.complexity.count_flops`
(`torch.utils.flop_counter` / 2). The paper used fvcore, which also charges LayerNorm (70.80 G instead
of 70.599 G for MViT-B 16x4); the 2 % tolerance covers that difference.

The paper rounds parameters to 0.1 M and FLOPs to three significant digits, so a preset passes when it
is within 0.5 % of the parameters and 2 % of the FLOPs. Two presets cannot meet that with any layout the
paper supports; they are pinned to their measured values in KNOWN_DEVIATIONS instead, with the reason.
"""

from __future__ import annotations

import pytest
import torch

import mvit
from mvit.complexity import count_flops, count_params

# (preset, overrides) -> (paper params in M, paper GFLOPs per view, where the paper gives them)
PAPER = {
    ("mvit_b_16x4", ()): (36.6, 70.5, "Table 4, K400"),
    ("mvit_b_16x4", (("num_classes", 600),)): (36.8, 70.5, "Table 5, K600"),
    ("mvit_b_16x4_max", ()): (36.5, 70.5, "Tables 3, 9, 14"),
    ("mvit_b_32x3", ()): (36.6, 170.0, "Table 4, K400"),
    ("mvit_b_32x3", (("num_classes", 600),)): (36.8, 170.0, "Table 5, K600"),
    ("mvit_b_64x3", ()): (36.6, 455.0, "Table 4, K400"),
    ("mvit_s_16x4", ()): (26.1, 32.9, "Table 4, K400"),
    ("mvit_b_24_32x3", ()): (52.9, 236.0, "Table 5, K600"),
    ("vit_b_8x8", ()): (87.2, 179.6, "Table 4, K400"),
    ("mvit_b_16_in1k", ()): (37.0, 7.8, "Table 17"),
    ("mvit_b_24_in1k", ()): (53.5, 10.9, "Table 17"),
    ("mvit_b_24_wide_320_in1k", ()): (72.9, 32.7, "Table 17"),
}

# Presets of this book only, with no number in the paper.
BOOK_ONLY = {"mvit_tiny", "vit_tiny", "mvit_tiny_img", "vit_tiny_img"}

# preset -> (measured params, measured GMACs): the value is asserted exactly, so that any change shows.
KNOWN_DEVIATIONS = {
    # MViT-S: no public config. Table 3c leaves the first stage's depth open; the closest layout of the
    # search in benchmarks/search_mvit_s.py ([5, 7, 6] blocks, 2 heads, adaptive K/V stride 1x4x4,
    # kernel stride+1) is +0.91 % in parameters and +1.93 % in FLOPs. No layout meets both tolerances:
    # the depth that fits the parameters (4 blocks: +0.29 %) is -3.3 % in FLOPs.
    "mvit_s_16x4": (26_336_912, 33.536),
    # MViT-B-24 32x3 (K600): blocks [2, 3, 16, 3] give the paper's 236 GFLOPs (+0.10 %) but 53.33 M
    # parameters, +0.81 % over Table 5's 52.9 M. The same layout for ImageNet matches Table 17 (53.5 M),
    # and the video and image models differ by only the cube, the temporal embedding and the head, so the
    # 52.9 M is not reachable with this layout; no other [.., .., .., ..] layout is given by the paper.
    "mvit_b_24_32x3": (53_326_680, 236.240),
}


def measured(name: str, overrides: dict) -> tuple[int, float]:
    with torch.device("meta"):
        model = mvit.build_model(name, **overrides)
    cfg = model.config
    return count_params(model), count_flops(model, (1, cfg.in_channels, *cfg.input_size))


def test_every_preset_is_in_the_table_or_book_only():
    with_numbers = {name for name, _ in PAPER}
    assert with_numbers | BOOK_ONLY == set(mvit.list_models())
    assert not with_numbers & BOOK_ONLY


def test_mvit_b_16x4_matches_torchvision_metadata_exactly():
    params, gmacs = measured("mvit_b_16x4", {})
    assert params == 36_610_672
    assert round(gmacs, 3) == 70.599


@pytest.mark.parametrize("key", list(PAPER), ids=lambda k: k[0] + "".join(f"-{a}={b}" for a, b in k[1]))
def test_preset_matches_the_paper(key):
    name, overrides = key
    paper_params_m, paper_gflops, source = PAPER[key]
    params, gmacs = measured(name, dict(overrides))
    params_dev = params / 1e6 / paper_params_m - 1
    flops_dev = gmacs / paper_gflops - 1
    where = (
        f"{name} {dict(overrides)} vs {source}: params {params / 1e6:.3f} M ({params_dev:+.2%}), "
        f"{gmacs:.3f} GMACs ({flops_dev:+.2%})"
    )
    if name in KNOWN_DEVIATIONS and not overrides:
        known_params, known_gmacs = KNOWN_DEVIATIONS[name]
        assert (params, round(gmacs, 3)) == (known_params, known_gmacs), where
        assert abs(params_dev) < 0.01 and abs(flops_dev) < 0.02, where
        return
    assert abs(params_dev) <= 0.005, where
    assert abs(flops_dev) <= 0.02, where
