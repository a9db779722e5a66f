"""Search the MViT-S layouts consistent with Table 3c for the one closest to the paper's size.

Table 3c fixes the cube embedding (3x8x8 kernel, stride 2x8x8, 128 channels, so a 8x28x28 token grid),
the stage widths 128 / 256 / 512 at 28^2 / 14^2 / 7^2, and the depths of the last two stages (7 and 6
blocks); the number of blocks of the first stage is lost in the paper's text. Table 4 gives the target:
26.1 M parameters and 32.9 GFLOPs (multiply-adds) per 16x224x224 view. No public config exists
(PySlowFast issue #459).

Free within reason: blocks in the first stage, heads of the first stage, the K/V stride (adaptive or
fixed) and the pooling kernel. Each layout is scored by the sum of the squared relative errors in
parameters and GFLOPs. FLOPs come from `mvit.complexity.model_macs` (exact, checked against the counted
FLOPs by tests/test_complexity.py); the best layouts are re-counted with `count_flops` on the meta device.

    .venv/bin/python benchmarks/search_mvit_s.py [--top 10]
"""

from __future__ import annotations

import argparse
import itertools

import torch

import mvit
from mvit.complexity import count_flops, count_params, model_macs

PAPER_PARAMS_M, PAPER_GFLOPS = 26.1, 32.9

TABLE_3C = dict(
    patch_kernel=(3, 8, 8),
    patch_stride=(2, 8, 8),
    patch_padding=(1, 0, 0),
    embed_dim=128,
)
FIRST_STAGE_DEPTHS = range(1, 7)
FIRST_STAGE_HEADS = (1, 2)
KV_STRIDES = ((1, 2, 2), (1, 4, 4), (1, 8, 8), (2, 2, 2), (2, 4, 4))
KV_ADAPTIVE = (True, False)
POOL_KERNELS = ((3, 3, 3), "stride+1")


def candidates():
    """Every layout of the search space, as `build_model("mvit_b_16x4", **overrides)` overrides."""
    for depth0, heads, kv_stride, adaptive, kernel in itertools.product(
        FIRST_STAGE_DEPTHS, FIRST_STAGE_HEADS, KV_STRIDES, KV_ADAPTIVE, POOL_KERNELS
    ):
        yield dict(
            TABLE_3C,
            stage_depths=(depth0, 7, 6),
            num_heads=heads,
            kv_stride=kv_stride,
            kv_stride_adaptive=adaptive,
            pool_kernel=kernel,
        )
    for depth0, heads in itertools.product(FIRST_STAGE_DEPTHS, FIRST_STAGE_HEADS):  # no K/V pooling
        yield dict(TABLE_3C, stage_depths=(depth0, 7, 6), num_heads=heads, kv_stride=None)


def score(params_m: float, gflops: float) -> float:
    return ((params_m - PAPER_PARAMS_M) / PAPER_PARAMS_M) ** 2 + ((gflops - PAPER_GFLOPS) / PAPER_GFLOPS) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=10, help="how many of the best layouts to print")
    args = parser.parse_args()

    results = []
    for overrides in candidates():
        with torch.device("meta"):
            model = mvit.build_model("mvit_b_16x4", **overrides)
        params_m = count_params(model) / 1e6
        gflops = model_macs(model.config)
        results.append((score(params_m, gflops), params_m, gflops, overrides))
    results.sort(key=lambda r: r[0])

    print(f"{len(results)} layouts; paper (Table 4): {PAPER_PARAMS_M} M params, {PAPER_GFLOPS} GFLOPs\n")
    print(f"{'params M':>9} {'dP %':>6} {'GMACs':>7} {'dF %':>6}  layout")
    for _, params_m, gflops, o in results[: args.top]:
        with torch.device("meta"):
            model = mvit.build_model("mvit_b_16x4", **o)
        counted = count_flops(model, (1, 3, *model.config.input_size))
        assert abs(counted - gflops) < 1e-6, (counted, gflops)
        print(
            f"{params_m:9.3f} {100 * (params_m / PAPER_PARAMS_M - 1):+6.2f} {counted:7.2f} "
            f"{100 * (counted / PAPER_GFLOPS - 1):+6.2f}  depths={o['stage_depths']} heads={o['num_heads']} "
            f"kv_stride={o['kv_stride']}{'' if o.get('kv_stride_adaptive', True) else ' fixed'} "
            f"kernel={o.get('pool_kernel', (3, 3, 3))}"
        )


if __name__ == "__main__":
    main()
