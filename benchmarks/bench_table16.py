"""Table 16 of the paper, measured: training throughput (clips/s) and memory of ViT-B 8x8, MViT-S 16x4 and
MViT-B 16x4 (max and conv pooling) at the paper's input sizes.

One training step = forward, cross-entropy, backward, gradient clipping at L2 norm 1.0 and an AdamW step (the
engine's step without data loading) on a fixed random batch. Every model runs alone in a fresh process, one
after the other, so that none inherits another's allocator state and none competes with another for the
cores: ``--warmup`` untimed steps, then ``--steps`` timed ones (clips/s = batch / median step time), each run
inside `mvit.complexity.peak_memory`, which gives the peak memory a step adds (activations and gradients; the
largest over the timed steps is reported). The paper's "training memory" also holds the
weights and AdamW's state, so the process's overall peak is reported too (CPU: peak resident set size, VmHWM,
which includes the Python and PyTorch runtime, from ``getrusage``; CUDA: ``torch.cuda.max_memory_allocated``).

Paper, Table 16 (one M40 GPU, batch 4 clips): ViT-B 3.6 clips/s; MViT-S 12.3 (max) and 9.4 (conv); MViT-B 6.3
(max) and 4.8 (conv). Training memory: ViT-B 16.8 GB, MViT-B 6.8 GB, MViT-S 4.3 GB.

    python benchmarks/bench_table16.py                                   # CUDA: batch 4 in bf16; CPU: batch 1, fp32
    python benchmarks/bench_table16.py --device cpu --warmup 1 --steps 1 --json table16.json
    python benchmarks/bench_table16.py --rows "ViT-B" "MViT-B, max" --precision fp32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import mvit
from mvit.complexity import peak_memory, wall_time
from mvit.engine.distributed import autocast
from mvit.engine.optim import param_groups
from mvit.notebook import cpu_name

# label: (preset, overrides, paper clips/s, paper training memory in GB; None where the paper gives one per model)
ROWS = {
    "ViT-B": ("vit_b_8x8", {}, 3.6, 16.8),
    "MViT-S, max": ("mvit_s_16x4", {"pool_mode": "max"}, 12.3, 4.3),
    "MViT-S, conv": ("mvit_s_16x4", {}, 9.4, None),
    "MViT-B, max": ("mvit_b_16x4_max", {}, 6.3, 6.8),
    "MViT-B, conv": ("mvit_b_16x4", {}, 4.8, None),
}


def hardware(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def make_step(model: torch.nn.Module, batch: int, device: torch.device, precision: str):
    """A closure running one training step of `model` on a fixed random batch of its input size (AdamW's state
    already allocated)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, *model.config.input_size, generator=generator).to(device)
    y = torch.randint(0, model.config.num_classes, (batch,), generator=generator).to(device)
    optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-4, weight_decay=0.05)
    for parameter in model.parameters():  # AdamW creates its moment buffers at its first step: do that now, so
        parameter.grad = torch.zeros_like(parameter)  # that no measured step (even without warm-up) pays for it
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    def step() -> None:
        with autocast(device, precision):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure_one(label: str, args: argparse.Namespace) -> dict:
    """In this process: time and memory of `label`'s training step."""
    device = torch.device(args.device)
    preset, overrides, paper_clips, paper_memory = ROWS[label]
    torch.manual_seed(0)
    model = mvit.build_model(preset, **overrides).to(device).train()
    step = make_step(model, args.batch, device, args.precision)
    started = time.perf_counter()
    for _ in range(args.warmup):
        step()
    times, peaks = [], []
    for _ in range(args.steps):  # each timed step also gives the memory it adds
        peaks.append(peak_memory(lambda: times.append(wall_time(step, device)), device))
    if device.type == "cuda":
        process_peak = torch.cuda.max_memory_allocated(device)
    else:  # peak resident set size; Linux reports kilobytes
        process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    median = statistics.median(times)
    return {
        "row": label,
        "preset": preset,
        "overrides": overrides,
        "input": list(model.config.input_size),
        "params": sum(p.numel() for p in model.parameters()),
        "step_s": times,
        "median_step_s": median,
        "clips_per_s": args.batch / median,
        "step_peak_bytes": None if None in peaks else max(peaks),
        "process_peak_bytes": process_peak,
        "measure_wall_s": time.perf_counter() - started,
        "paper_clips_per_s": paper_clips,
        "paper_memory_gb": paper_memory,
    }


def run(args: argparse.Namespace) -> dict:
    """Every requested row in its own fresh process, one after the other."""
    started = time.perf_counter()
    rows = []
    for label in args.rows:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--one",
            label,
            "--device",
            args.device,
            "--batch",
            str(args.batch),
            "--warmup",
            str(args.warmup),
            "--steps",
            str(args.steps),
            "--precision",
            args.precision,
            "--threads",
            str(args.threads),
        ]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"measuring {label!r} failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    device = torch.device(args.device)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # other programs' share of the machine
    return {
        "hardware": hardware(device),
        "load_average_after": load,
        "device": device.type,
        "threads": args.threads,
        "batch": args.batch,
        "precision": args.precision,
        "warmup": args.warmup,
        "steps": args.steps,
        "torch": torch.__version__,
        "wall_s": time.perf_counter() - started,
        "rows": rows,
    }


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))
    parser.add_argument("--batch", type=int, help="clips per step (default: 4 on CUDA, the paper's; 1 on CPU)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--warmup", type=int, help="untimed steps per model first (default: 3 on CUDA, 1 on CPU)")
    parser.add_argument("--steps", type=int, help="timed steps per model (default: 10 on CUDA, 2 on CPU)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads per process")
    parser.add_argument("--rows", nargs="+", default=list(ROWS), metavar="ROW", help=f"rows to measure: {list(ROWS)}")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # child process: measure this row, print JSON
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.exit(2, "error: --device cuda but no CUDA device is available; use --device cpu\n")
    unknown = [r for r in args.rows + ([args.one] if args.one else []) if r not in ROWS]
    if unknown:
        parser.exit(2, f"error: unknown row(s) {unknown}; choose from {list(ROWS)}\n")
    args.batch = args.batch or (4 if cuda else 1)
    args.warmup = (3 if cuda else 1) if args.warmup is None else args.warmup
    args.steps = (10 if cuda else 2) if args.steps is None else args.steps
    if args.warmup < 0 or args.steps < 1 or args.batch < 1 or args.threads < 1:
        parser.exit(2, "error: --warmup must be >= 0 and --steps, --batch and --threads >= 1\n")
    args.precision = args.precision or ("bf16" if cuda else "fp32")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(measure_one(args.one, args)))
        return
    result = run(args)
    print(
        f"{result['hardware']} ({result['device']}, {result['threads']} threads), batch {result['batch']}, "
        f"{result['precision']}, {result['warmup']} warm-up + {result['steps']} timed steps per model, "
        f"{result['wall_s']:.0f} s in all"
    )
    print(f"{'row':>14} {'clips/s':>8} {'paper':>6} {'step peak MiB':>14} {'process peak MiB':>17}")
    for row in result["rows"]:
        step_peak = "n/a" if row["step_peak_bytes"] is None else f"{row['step_peak_bytes'] / 2**20:.0f}"
        process_peak = "n/a" if row["process_peak_bytes"] is None else f"{row['process_peak_bytes'] / 2**20:.0f}"
        print(
            f"{row['row']:>14} {row['clips_per_s']:8.3f} {row['paper_clips_per_s']:6.1f} {step_peak:>14} "
            f"{process_peak:>17}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
