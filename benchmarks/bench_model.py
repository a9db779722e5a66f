"""Training-step benchmark: our MViT-B 16x4 against torchvision's `mvit_v1_b`, same weights, same machine.

One step = forward, cross-entropy loss, backward, gradients freed (both models in train mode, with their
default dropout and stochastic depth). Both models run in the same process with the same thread count,
in alternating order (ours, theirs, then theirs, ours, ...), so that load from other programs falls on
both. Reported: the median wall time of a step (and its CPU time, summed over threads), the median peak
memory of a step (`mvit.complexity.peak_memory`: on CPU the rise of the process's peak resident memory
during the step, on CUDA the peak of allocated tensor memory), and the ratios. Before timing, the two
models are checked to compute the same function (eval mode, same converted weights).

    .venv/bin/python benchmarks/bench_model.py                       # batch 2, 16x224x224, CPU
    .venv/bin/python benchmarks/bench_model.py --rounds 3 --profile  # also: where our step spends time
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torchvision.models.video import mvit_v1_b

import mvit
from mvit.complexity import peak_memory
from mvit.convert import from_torchvision


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per model (after one warm-up)")
    parser.add_argument("--memory-rounds", type=int, default=3, help="steps per model whose peak memory is measured")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of our step")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    theirs = mvit_v1_b().to(device)
    ours = mvit.build_model("mvit_b_16x4", input_size=(args.frames, args.size, args.size)).to(device)
    ours.load_state_dict(from_torchvision(theirs.state_dict()))
    x = torch.randn(args.batch, 3, args.frames, args.size, args.size, device=device)
    y = torch.randint(0, 400, (args.batch,), device=device)

    with torch.no_grad():
        difference = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
    ours.train(), theirs.train()
    print(f"torch {torch.__version__}, {args.threads} threads, {device.type}: "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name()}")
    print(f"input {tuple(x.shape)}; same weights, eval logits differ by at most {difference:.2e}")

    models = {"ours": ours, "torchvision": theirs}

    def step(name: str) -> None:
        train_step(models[name], x, y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for name in models:  # warm-up
        step(name)
    wall: dict[str, list[float]] = {name: [] for name in models}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    memory: dict[str, list[int]] = {name: [] for name in models}
    for r in range(args.rounds):
        for name in (("ours", "torchvision") if r % 2 == 0 else ("torchvision", "ours")):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step(name)
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    for r in range(args.memory_rounds):
        for name in (("torchvision", "ours") if r % 2 == 0 else ("ours", "torchvision")):
            peak = peak_memory(lambda name=name: step(name), device)
            if peak is not None:
                memory[name].append(peak)

    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs" if hasattr(os, "getloadavg") else ""
    print(f"{args.rounds} alternating rounds{load}")
    print(f"{'model':>12} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7} {'peak MiB':>9}")
    for name in models:
        ts = wall[name]
        mem = f"{statistics.median(memory[name]) / 2**20:9.0f}" if memory[name] else f"{'n/a':>9}"
        print(f"{name:>12} {statistics.median(ts):9.2f} {min(ts):7.2f} {max(ts):7.2f} "
              f"{statistics.median(cpu[name]):7.2f} {mem}")
    speedup = statistics.median(wall["torchvision"]) / statistics.median(wall["ours"])
    cpu_ratio = statistics.median(cpu["torchvision"]) / statistics.median(cpu["ours"])
    print(f"speed-up (torchvision time / ours): {speedup:.2f}x wall, {cpu_ratio:.2f}x CPU time  (goal >= 1.3x)")
    if memory["ours"] and memory["torchvision"]:
        ratio = statistics.median(memory["ours"]) / statistics.median(memory["torchvision"])
        print(f"peak memory (ours / torchvision): {ratio:.2f}  (goal <= 0.7; median of {args.memory_rounds} "
              "steps each)")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            step("ours")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
