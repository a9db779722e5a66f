"""Training-step benchmark: our MViT-B 16x4, plain and fused (`mvit.fused`), against torchvision's
`mvit_v1_b`, same weights, same machine.

One step = forward, cross-entropy loss, backward, gradients freed (all models in train mode, with their
default dropout and stochastic depth). Time: the models run in one process with the same thread count,
in rotating order (fused, plain, torchvision, then plain, torchvision, fused, ...), so that load from
other programs falls on all; reported are the median wall time of a step and its median CPU time (summed
over threads). Memory: each model runs alone in a fresh process (so that none inherits another's
allocator state) and reports the median over a few steps of `mvit.complexity.peak_memory` (on CPU the
rise of the process's peak resident memory during the step, on CUDA the peak of allocated tensor memory).
Before timing, the models are checked to compute the same function (eval mode, same converted weights).

    .venv/bin/python benchmarks/bench_model.py                       # batch 2, 16x224x224, CPU
    .venv/bin/python benchmarks/bench_model.py --rounds 3 --profile  # also: where the fused step spends time
    .venv/bin/python benchmarks/bench_model.py --json out.json       # the figures as JSON as well
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torchvision.models.video import mvit_v1_b

import mvit
from mvit.complexity import peak_memory
from mvit.convert import from_torchvision
from mvit.fused import fuse

MODELS = ("fused", "plain", "torchvision")
CLIP = (16, 224, 224)  # mvit_v1_b is built for this clip size only


def build(name: str, args: argparse.Namespace) -> torch.nn.Module:
    if name == "torchvision":
        return mvit_v1_b()
    model = mvit.build_model("mvit_b_16x4")
    return fuse(model) if name == "fused" else model


def make_step(model: torch.nn.Module, args: argparse.Namespace, device: torch.device):
    """A closure running one training step of `model` on a fixed random batch."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, *CLIP, generator=generator).to(device)
    y = torch.randint(0, 400, (args.batch,), generator=generator).to(device)

    def step() -> None:
        F.cross_entropy(model(x), y).backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step, x


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_of(name: str, args: argparse.Namespace, device: torch.device) -> None:
    """Child process: peak memory of `args.memory_rounds` steps of one model, printed as JSON."""
    model = build(name, args).to(device).train()
    step, _ = make_step(model, args, device)
    step()  # warm-up: lazy initialisation is not part of a step
    peaks = [peak_memory(step, device) for _ in range(args.memory_rounds)]
    print(json.dumps({"peaks": peaks}))


def measure_memory_in_fresh_processes(args: argparse.Namespace) -> dict[str, list]:
    memory = {}
    for name in MODELS:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--memory-of",
            name,
            "--batch",
            str(args.batch),
            "--threads",
            str(args.threads),
            "--device",
            args.device,
            "--memory-rounds",
            str(args.memory_rounds),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        memory[name] = [p for p in json.loads(done.stdout.strip().splitlines()[-1])["peaks"] if p is not None]
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per model (after one warm-up)")
    parser.add_argument("--memory-rounds", type=int, default=3, help="steps per model whose peak memory is measured")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table of the fused step")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--memory-of", choices=MODELS, help=argparse.SUPPRESS)  # used by the child processes
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.memory_of:
        memory_of(args.memory_of, args, device)
        return

    torch.manual_seed(0)
    models = {name: build(name, args).to(device) for name in MODELS}
    for name in ("fused", "plain"):
        models[name].load_state_dict(from_torchvision(models["torchvision"].state_dict()))
    steps = {}
    for name, model in models.items():
        steps[name], x = make_step(model, args, device)
    with torch.no_grad():
        reference = models["torchvision"].eval()(x)
        difference = max((models[name].eval()(x) - reference).abs().max().item() for name in ("fused", "plain"))
    for model in models.values():
        model.train()
    print(
        f"torch {torch.__version__}, {args.threads} threads, {device.type}: "
        f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else cpu_name()}"
    )
    print(f"input {tuple(x.shape)}; same weights, eval logits differ by at most {difference:.2e}")

    for name in MODELS:  # warm-up
        steps[name]()
    wall: dict[str, list[float]] = {name: [] for name in MODELS}
    cpu: dict[str, list[float]] = {name: [] for name in MODELS}
    for r in range(args.rounds):
        for name in MODELS[r % len(MODELS) :] + MODELS[: r % len(MODELS)]:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            steps[name]()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    load = f", load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs" if hasattr(os, "getloadavg") else ""
    memory = measure_memory_in_fresh_processes(args)

    print(f"{args.rounds} alternating rounds{load}")
    print(f"{'model':>12} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7} {'peak MiB':>9}")
    for name in MODELS:
        ts = wall[name]
        mem = f"{statistics.median(memory[name]) / 2**20:9.0f}" if memory[name] else f"{'n/a':>9}"
        print(
            f"{name:>12} {statistics.median(ts):9.2f} {min(ts):7.2f} {max(ts):7.2f} "
            f"{statistics.median(cpu[name]):7.2f} {mem}"
        )
    for ours, theirs in (("fused", "torchvision"), ("plain", "torchvision"), ("fused", "plain")):
        speedup = statistics.median(wall[theirs]) / statistics.median(wall[ours])
        cpu_ratio = statistics.median(cpu[theirs]) / statistics.median(cpu[ours])
        line = f"speed-up ({theirs} time / {ours}): {speedup:.2f}x wall, {cpu_ratio:.2f}x CPU time"
        if memory[ours] and memory[theirs]:
            ratio = statistics.median(memory[ours]) / statistics.median(memory[theirs])
            line += f"; peak memory ({ours} / {theirs}): {ratio:.2f}"
        print(line)
    print(f"(memory: median of {args.memory_rounds} steps each, each model alone in a fresh process)")
    if args.json:
        figures = {
            name: {
                "wall_s": statistics.median(wall[name]),
                "cpu_s": statistics.median(cpu[name]),
                "peak_mib": statistics.median(memory[name]) / 2**20 if memory[name] else None,
            }
            for name in MODELS
        }
        with open(args.json, "w") as f:
            json.dump(
                {
                    "batch": args.batch,
                    "threads": args.threads,
                    "device": args.device,
                    "rounds": args.rounds,
                    "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
                    "hardware": cpu_name() if device.type == "cpu" else torch.cuda.get_device_name(device),
                    "models": figures,
                },
                f,
                indent=1,
            )

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=activities) as prof:
            steps["fused"]()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
