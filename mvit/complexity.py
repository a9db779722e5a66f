"""How much an MViT costs: parameters, FLOPs (counted and analytic), measured time and memory.

FLOP convention. Every FLOP figure here is in **GMACs**: one multiply-add counts as one FLOP, as in
the paper (which used fvcore) and torchvision's model metadata. Counted FLOPs come from
`torch.utils.flop_counter.FlopCounterMode` (its total divided by 2, since it counts a multiply-add as
two). It sees convolutions, linear layers, matrix products and fused scaled-dot-product attention, and
nothing else: LayerNorm, GELU, softmax, additions and max/avg pooling are free under this convention
(fvcore charges LayerNorm, which is why it reports 70.80 G for MViT-B 16x4 where this gives 70.599 G).
Counting runs the model on the ``meta`` device: shapes are propagated, nothing is computed, so even
MViT-B 64x3 is counted in about a second on a laptop CPU. (It is also the device on which the count is
complete: on real CPU tensors, PyTorch's fused CPU attention kernel has no FLOP formula and would be
missed.)

Analytic costs (paper Appendix C). For one multi-head pooling attention on ``L = T*H*W`` tokens of
``D`` channels with ``h`` heads, query and key/value sequences shortened by the factors ``f_Q`` and
``f_K`` (the products of the pooling strides), per head:

    time:   projections O(L D^2 / h)  +  attention O(L^2 D / (f_Q f_K h))
    memory (whole block): tokens O(L D)  +  attention matrices O(h L^2 / (f_Q f_K))

`mhpa_time` and `mhpa_memory` evaluate these leading terms; `block_macs` and `model_macs` give the
exact multiply-add counts of our blocks term by term (class token, pooling and MLP included), and the
tests check that they equal what `count_flops` counts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import math
import re
import statistics
import time
from typing import Callable, NamedTuple, Optional, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.flop_counter import FlopCounterMode

from .configs import BlockSpec, MViTConfig, Triple, block_schedule

# --------------------------------------------------------------------------------------------------
# Parameters and counted FLOPs
# --------------------------------------------------------------------------------------------------


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of `model` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _meta_flop_counts(model: nn.Module, input_shape: Sequence[int]) -> FlopCounterMode:
    """Run `model` once on a meta tensor of `input_shape` under a FlopCounterMode and return it.

    The model's own weights are not touched: a meta copy of every parameter and buffer is passed in
    through `torch.func.functional_call`. The model runs in eval mode (restored afterwards)."""
    if len(input_shape) not in (4, 5):
        raise ValueError(f"input_shape must be (B, C, T, H, W) or (B, C, H, W), got {tuple(input_shape)}")
    tensors = {
        name: torch.empty_like(t, device="meta") for name, t in (*model.named_parameters(), *model.named_buffers())
    }
    x = torch.empty(tuple(input_shape), device="meta")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            functional_call(model, tensors, (x,))
    finally:
        model.train(was_training)
    return counter


def count_flops(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Forward-pass GMACs of `model` on an input of `input_shape` (batch included), e.g.
    ``count_flops(build_model("mvit_b_16x4"), (1, 3, 16, 224, 224))`` -> 70.599.

    One multiply-add = one FLOP; convolutions, linear layers, matrix products and attention only (see
    the module docstring). Works for any module that runs on the ``meta`` device (ours, torchvision's)."""
    return _meta_flop_counts(model, input_shape).get_total_flops() / 2e9


class BlockCost(NamedTuple):
    """One row of `flops_by_block`: a block's place in the schedule and what it costs."""

    index: int
    stage: int
    in_thw: Triple
    out_thw: Triple  # query grid, i.e. the grid leaving the block
    kv_thw: Triple  # grid of the pooled keys and values
    dim_in: int
    dim_out: int
    num_heads: int
    params: int
    gmacs: float


def flops_by_block(model: nn.Module, input_shape: Sequence[int]) -> list[BlockCost]:
    """Per-block parameters and GMACs of an `mvit.MViT` on an input of `input_shape`.

    The grids are those of the model's schedule (for its configured input size); the GMACs are counted
    for `input_shape`. The rows add up to `count_flops` minus the cube embedding and the head."""
    blocks = getattr(model, "blocks", None)
    schedule = getattr(model, "schedule", None)
    if blocks is None or schedule is None:
        raise TypeError(f"flops_by_block needs an mvit.MViT (with .blocks and .schedule), got {type(model).__name__}")
    per_module = _meta_flop_counts(model, input_shape).get_flop_counts()
    root = type(model).__name__
    rows = []
    for spec, block in zip(schedule, blocks):
        macs = sum(per_module.get(f"{root}.blocks.{spec.index}", {}).values()) / 2
        rows.append(
            BlockCost(
                spec.index,
                spec.stage,
                spec.in_thw,
                spec.out_thw,
                spec.kv_thw,
                spec.dim_in,
                spec.dim_out,
                spec.num_heads,
                count_params(block),
                macs / 1e9,
            )
        )
    return rows


def format_table(rows: Sequence[BlockCost]) -> str:
    """`flops_by_block` rows as a fixed-width text table (with a total line), for printing."""

    def grid(thw: Triple) -> str:
        return "x".join(map(str, thw))

    head = (
        f"{'block':>5} {'stage':>5} {'in grid':>9} {'out grid':>9} {'kv grid':>9} {'dims':>9} "
        f"{'heads':>5} {'params':>11} {'GMACs':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        dims = f"{r.dim_in}->{r.dim_out}" if r.dim_in != r.dim_out else str(r.dim_in)
        lines.append(
            f"{r.index:>5} {r.stage:>5} {grid(r.in_thw):>9} {grid(r.out_thw):>9} {grid(r.kv_thw):>9} "
            f"{dims:>9} {r.num_heads:>5} {r.params:>11,} {r.gmacs:>8.3f}"
        )
    lines.append(
        f"{'total':>5} {'':>5} {'':>9} {'':>9} {'':>9} {'':>9} {'':>5} "
        f"{sum(r.params for r in rows):>11,} {sum(r.gmacs for r in rows):>8.3f}"
    )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Analytic costs: Appendix C's leading terms and the exact multiply-adds of our blocks
# --------------------------------------------------------------------------------------------------


class Cost(NamedTuple):
    """A cost split the way Appendix C splits it."""

    projection: float  # time: the Q/K/V projections; memory: the token tensors
    attention: float  # the attention matrix (and, for time, the weighted sum of values)

    @property
    def total(self) -> float:
        return self.projection + self.attention


def mhpa_time(thw: Triple, dim: int, num_heads: int, f_q: int = 1, f_k: int = 1) -> Cost:
    """Appendix C run time of multi-head pooling attention, **per head**, leading terms only:
    ``L D^2 / h`` for the Q/K/V projections and ``L^2 D / (f_Q f_K h)`` for the attention matrix and
    the weighted sum, with ``L = T*H*W`` input tokens of ``dim = D`` channels."""
    n = math.prod(thw)
    return Cost(n * dim**2 / num_heads, n**2 * dim / (f_q * f_k * num_heads))


def mhpa_memory(thw: Triple, dim: int, num_heads: int, f_q: int = 1, f_k: int = 1) -> Cost:
    """Appendix C memory of multi-head pooling attention (all heads of a block), in elements:
    ``L D`` for the sequence and tensors like it, ``h L^2 / (f_Q f_K)`` for the attention matrices,
    i.e. ``O(L h (D/h + L / (f_Q f_K)))``."""
    n = math.prod(thw)
    return Cost(n * dim, num_heads * n**2 / (f_q * f_k))


def block_macs(spec: BlockSpec, cfg: MViTConfig) -> dict[str, int]:
    """Exact multiply-adds of one block on one clip, term by term (class token included).

    Keys: ``qkv`` (the three projections), ``pool`` (depthwise conv pooling of Q, K, V; 0 for max/avg),
    ``attention`` (``Q K^T`` and the weighted sum of ``V``), ``proj`` (attention output), ``mlp``,
    ``skip`` (the Linear on the skip path at a stage transition)."""
    cls = int(cfg.cls_token)
    l_in, l_q, l_kv = (cls + math.prod(g) for g in (spec.in_thw, spec.out_thw, spec.kv_thw))
    d, d_out = spec.dim_in, spec.dim_out
    pool = 0
    if cfg.pool_mode == "conv":  # depthwise: one multiply-add per output element and kernel tap
        if spec.q_kernel is not None:
            pool += d * math.prod(spec.out_thw) * math.prod(spec.q_kernel)
        if spec.kv_kernel is not None:
            pool += 2 * d * math.prod(spec.kv_thw) * math.prod(spec.kv_kernel)
    hidden = int(d * cfg.mlp_ratio)
    return {
        "qkv": l_in * d * 3 * d,
        "pool": pool,
        "attention": 2 * l_q * l_kv * d,
        "proj": l_q * d * d,
        "mlp": l_q * hidden * (d + d_out),
        "skip": l_q * d * d_out if d != d_out and cfg.stage_skip != "none" else 0,
    }


def model_macs(cfg: MViTConfig) -> float:
    """Exact forward GMACs of the model `cfg` on one clip of ``cfg.input_size``: cube embedding, every
    block (`block_macs`) and the head. Equals `count_flops` of the built model."""
    schedule = block_schedule(cfg)
    embed = cfg.embed_dim * math.prod(cfg.patch_grid) * cfg.in_channels * math.prod(cfg.patch_kernel)
    blocks = sum(sum(block_macs(spec, cfg).values()) for spec in schedule)
    head = schedule[-1].dim_out * cfg.num_classes
    return (embed + blocks + head) / 1e9


# --------------------------------------------------------------------------------------------------
# Measured time and memory
# --------------------------------------------------------------------------------------------------


class Measurement(NamedTuple):
    """What `measure` found. ``peak_bytes`` is None where the platform gives no measure."""

    median_s: float
    times_s: list[float]
    peak_bytes: Optional[int]
    device: str


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def _proc_status(field: str) -> int:
    """A ``VmRSS`` / ``VmHWM`` line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.MULTILINE)
    if match is None:
        raise OSError(f"/proc/self/status has no {field} line")
    return int(match.group(1)) * 1024


def _release_free_memory() -> None:
    gc.collect()
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)  # hand freed heap pages back to the OS so they do not hide the next peak


def peak_memory(fn: Callable[[], object], device: "str | torch.device" = "cpu") -> Optional[int]:
    """Peak memory, in bytes, that one call of `fn` adds on `device`.

    - CUDA: ``torch.cuda.max_memory_allocated`` minus what was allocated before the call, i.e. the peak
      of tensor memory the call added (the caching allocator's reserve is not included);
    - CPU (Linux): the rise of the process's peak resident set size (``VmHWM``, reset through
      ``/proc/self/clear_refs``) over its resident size just before the call, after freed heap pages
      have been handed back to the OS. It counts everything the call touched (tensors, kernel
      workspaces, allocator overhead), not just live tensors. None on platforms without these files
      and on other devices.

    `fn` should free what it creates (e.g. end a training step with ``zero_grad(set_to_none=True)``),
    otherwise what it keeps is part of the next call's starting point rather than of its peak.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    if device.type != "cpu":
        return None
    try:
        _release_free_memory()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the high-water mark VmHWM to the current resident size
        before = _proc_status("VmRSS")
    except OSError:
        return None
    fn()
    return max(_proc_status("VmHWM") - before, 0)


def measure(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, device: "str | torch.device" = "cpu"
) -> Measurement:
    """Time `fn` (a full step, e.g. forward + backward) and measure its peak memory.

    Time: `warmup` untimed calls, then the median wall time of `repeats` calls (CUDA is synchronised
    around each call). Memory: `peak_memory` of one further call (read its docstring for what is
    measured on CPU and on CUDA).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    device = torch.device(device)
    for _ in range(warmup):
        wall_time(fn, device)
    times = [wall_time(fn, device) for _ in range(repeats)]
    return Measurement(statistics.median(times), times, peak_memory(fn, device), str(device))


def wall_time(fn: Callable[[], object], device: "str | torch.device" = "cpu") -> float:
    """Seconds one call of `fn` takes, CUDA synchronised before and after (so that queued kernels count)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start
