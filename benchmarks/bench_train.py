"""Training throughput and memory: our MViT-B 16x4 against torchvision's ``mvit_v1_b`` (same network).

One training step = forward, soft-target cross-entropy, backward, gradient clipping at 1.0, AdamW step
(the engine's step, without data loading). Both models see the same random batch on the same device;
their steps alternate so that drifts of the machine's speed hit both alike. Reports clips/s (batch /
median step time), the peak memory a step adds (CUDA: allocated tensors; CPU: the rise of the process's
peak resident memory, see `mvit.complexity.measure`), and the ratio ours / torchvision.

Paper, Table 16 (one M40 GPU, fp32): MViT-B 16x4 trains at 4.8 clips/s with conv pooling, 6.3 with max
pooling; a batch of 4 clips needs 6.8 GB with max pooling.

    python benchmarks/bench_train.py                                  # CUDA if available, else CPU
    python benchmarks/bench_train.py --device cpu --batch 1 --rounds 3   # about 10 minutes on 2 cores
    python benchmarks/bench_train.py --pool-mode max --precision bf16 --compile
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torchvision

from mvit import build_model
from mvit.complexity import measure
from mvit.data import MixupCutmix
from mvit.engine.distributed import autocast
from mvit.engine.loss import soft_target_cross_entropy
from mvit.engine.optim import param_groups


def make_step(model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor, device: torch.device, precision: str):
    """A closure running one training step of `model` on ``(x, targets)``."""
    groups = param_groups(model, 0.05) if hasattr(model, "no_weight_decay") else model.parameters()
    optimizer = torch.optim.AdamW(groups, lr=1e-4, weight_decay=0.05)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step() -> None:
        with autocast(device, precision):
            logits = model(x)
        scaler.scale(soft_target_cross_entropy(logits, targets)).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(step, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default: 4 on CUDA, 1 on CPU)")
    parser.add_argument("--rounds", type=int, default=None, help="timed steps per model (default: 10 CUDA, 2 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per model first (default: 3 CUDA, 1 CPU)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument("--pool-mode", default="conv", choices=("conv", "max"),
                        help="our model's pooling (torchvision's mvit_v1_b is conv only)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing in our model")
    args = parser.parse_args()

    cuda = torch.cuda.is_available() if args.device == "auto" else args.device == "cuda"
    device = torch.device("cuda" if cuda else "cpu")
    batch = args.batch or (4 if cuda else 1)
    rounds = args.rounds or (10 if cuda else 2)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    torch.manual_seed(0)
    shape = (batch, 3, 16, 224, 224)  # torchvision's mvit_v1_b is built for 16 x 224 x 224 only
    x = torch.randn(shape, device=device)
    _, targets = MixupCutmix(400)(x, torch.randint(0, 400, (batch,), device=device))

    preset = "mvit_b_16x4" if args.pool_mode == "conv" else "mvit_b_16x4_max"
    ours = build_model(preset, activation_checkpointing=args.checkpointing).to(device)
    theirs = torchvision.models.video.mvit_v1_b(num_classes=400).to(device)
    models = {"ours": ours, "torchvision": theirs}
    if args.compile:
        models = {k: torch.compile(m) for k, m in models.items()}
    steps = {name: make_step(m, x, targets, device, args.precision) for name, m in models.items()}

    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):  # alternate: ours, torchvision, ours, ...
        for name, step in steps.items():
            times[name].append(timed(step, device))
    result = {"device": torch.cuda.get_device_name(device) if cuda else f"CPU ({platform.processor() or platform.machine()}, "
              f"{torch.get_num_threads()} threads)", "torch": torch.__version__, "batch": batch,
              "input": list(shape[1:]), "precision": args.precision, "pool_mode": args.pool_mode,
              "compile": args.compile, "activation_checkpointing": args.checkpointing, "rounds": rounds}
    for name, step in steps.items():
        median = statistics.median(times[name])
        peak = measure(step, repeats=1, warmup=0, device=device).peak_bytes
        result[name] = {"clips_per_s": round(batch / median, 3), "median_step_s": round(median, 4),
                        "peak_memory_gb": None if peak is None else round(peak / 2**30, 3)}
    result["ratio_clips_per_s"] = round(result["ours"]["clips_per_s"] / result["torchvision"]["clips_per_s"], 3)
    if result["ours"]["peak_memory_gb"] and result["torchvision"]["peak_memory_gb"]:
        result["ratio_memory"] = round(result["ours"]["peak_memory_gb"] / result["torchvision"]["peak_memory_gb"], 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
