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

``--engine``: the overhead of `mvit.engine.train` itself. ``mvit_tiny`` with the ``cpu_synthetic_mvit`` recipe on
in-memory clips (the synthetic set rendered once into tensors), one thread, against a bare loop over the same
tensors (same model and initial weights, AdamW with the recipe's groups, the same batch, targets, clipping and
learning rates). Reports steps/s of the training steps (from the first to the last step of each epoch) for the
bare loop and for the engine, the engine's end-of-epoch costs (validation, checkpoint) and where its time
goes (cProfile of a run):

    OMP_NUM_THREADS=1 python benchmarks/bench_train.py --engine               # about 2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Optional

import torch
import torchvision

from mvit import build_model
from mvit.complexity import measure, wall_time
from mvit.data import MixupCutmix, smooth_one_hot
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


def engine_overhead(rounds: int, train_size: int, epochs: int) -> dict:
    """Steps/s of the engine against a bare loop on the same tensors (see the module docstring)."""
    import cProfile
    import pstats
    import tempfile

    from torch.utils.data import TensorDataset

    from mvit.engine import load_config, train
    from mvit.engine.inputs import build_datasets
    from mvit.engine.network import build_model_from_config
    from mvit.engine.optim import WarmupCosine, build_optimizer, scaled_lr, set_lr

    torch.set_num_threads(1)
    overrides = [f"data.train_size={train_size}", "data.val_size=32", f"optim.epochs={epochs}", "optim.warmup_epochs=1"]
    base = load_config("cpu_synthetic_mvit", overrides + ["run.output_dir=unused"])
    model_cfg = build_model_from_config(base.model).config
    train_set, val_set, _ = build_datasets(base, model_cfg)

    def materialise(ds) -> TensorDataset:
        clips, labels = zip(*(ds[i] for i in range(len(ds))))
        out = TensorDataset(torch.stack(clips), torch.tensor(labels))
        out.num_classes = ds.num_classes
        return out

    train_mem, val_mem = materialise(train_set), materialise(val_set)
    batch, steps_per_epoch = base.data.batch_size, train_size // base.data.batch_size
    peak = scaled_lr(base.optim.lr, batch, base.optim.lr_reference_batch)
    schedule = WarmupCosine(
        peak_lr=peak,
        total_steps=epochs * steps_per_epoch,
        warmup_steps=steps_per_epoch,
        start_lr=peak * base.optim.warmup_start_ratio,
        final_lr=peak * base.optim.final_lr_ratio,
    )

    def bare() -> list[float]:
        """The training steps alone: forward, smoothed-target loss, backward, clip, AdamW; per-step stamps."""
        torch.manual_seed(base.run.seed)
        model = build_model_from_config(base.model)
        model.train()
        optimizer = build_optimizer(model, base.optim, peak)
        x_all, y_all = train_mem.tensors
        stamps, step = [], 0
        for _ in range(epochs):
            order = torch.randperm(train_size)
            for i in range(steps_per_epoch):
                idx = order[i * batch : (i + 1) * batch]
                targets = smooth_one_hot(y_all[idx], model_cfg.num_classes, base.augment.label_smoothing)
                loss = soft_target_cross_entropy(model(x_all[idx]), targets)
                loss.backward()
                set_lr(optimizer, schedule(step))
                torch.nn.utils.clip_grad_norm_(model.parameters(), base.optim.clip_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                loss.item()
                step += 1
                stamps.append(time.perf_counter())
        return stamps

    def engine(extra: tuple[str, ...] = (), profile: Optional[cProfile.Profile] = None) -> tuple[list[float], float]:
        stamps: list[float] = []
        with tempfile.TemporaryDirectory() as out:
            cfg = load_config("cpu_synthetic_mvit", overrides + [f"run.output_dir={out}", *extra])
            start = time.perf_counter()
            if profile is not None:
                profile.enable()
            train(cfg, train_mem, val_mem, on_step=lambda model, info: stamps.append(time.perf_counter()))
            if profile is not None:
                profile.disable()
            return stamps, time.perf_counter() - start

    def steps_per_s(stamps: list[float]) -> float:
        """Steps/s within epochs: the gaps between consecutive steps of one epoch (epoch ends excluded)."""
        epoch_stamps = [stamps[e * steps_per_epoch : (e + 1) * steps_per_epoch] for e in range(epochs)]
        gaps = [b - a for one in epoch_stamps for a, b in zip(one, one[1:])]
        return len(gaps) / sum(gaps)

    def epoch_end(stamps: list[float]) -> float:
        """Mean seconds between the last step of an epoch and the first of the next, beyond one step's time."""
        ends = [stamps[e * steps_per_epoch] - stamps[e * steps_per_epoch - 1] for e in range(1, epochs)]
        return statistics.mean(ends) - 1 / steps_per_s(stamps)

    variants = {
        "bare": None,
        "engine": ("run.progress=false",),
        "engine+tqdm": ("run.progress=true",),
        "engine+checkpoint_every_step": ("run.progress=false", "run.checkpoint_every_steps=1"),
    }
    rates: dict[str, list[float]] = {name: [] for name in variants}
    ends, totals = [], []
    engine(("run.progress=false",))  # warm-up
    for _ in range(rounds):  # interleaved, so that drifts of the shared machine's speed hit all alike
        for name, extra in variants.items():
            if extra is None:
                rates[name].append(steps_per_s(bare()))
                continue
            stamps, total = engine(extra)
            rates[name].append(steps_per_s(stamps))
            if name == "engine":
                ends.append(epoch_end(stamps))
                totals.append(total)
    profile = cProfile.Profile()
    engine(("run.progress=false",), profile)
    stats = pstats.Stats(profile)
    parts = {
        "training steps (_train_epoch)": "_train_epoch",
        "optimizer step (_optimizer_step)": "_optimizer_step",
        "data loader (next batch)": "__next__",
        "of which per-sample RNG seeding (SeededSamples)": "_seeded",
        "label smoothing / Mixup (MixupCutmix)": "__call__",
        "metrics.jsonl (MetricLog.write)": "write",
        "checkpoints (_save)": "_save",
        "validation (_evaluate)": "_evaluate",
        "finite check before saves": "_check_finite_state",
        "setup (_Run.__init__)": "__init__",
    }
    seconds = {}
    for label, func in parts.items():
        where = {"__next__": "dataloader", "__call__": "mixup", "write": "engine/log"}.get(func, "mvit/engine")
        hits = [
            cum
            for f, (_, _, _, cum, _) in stats.stats.items()  # type: ignore[attr-defined]
            if f[2] == func and where in f[0]
        ]
        seconds[label] = round(max(hits, default=0.0), 3)
    median = {name: statistics.median(r) for name, r in rates.items()}
    return {
        "device": f"CPU ({platform.processor() or platform.machine()}, 1 thread)",
        "torch": torch.__version__,
        "model": "mvit_tiny (cpu_synthetic_mvit)",
        "input": list(model_cfg.input_size),
        "batch": batch,
        "steps_per_epoch": steps_per_epoch,
        "epochs": epochs,
        "rounds": rounds,
        "steps_per_s_median": {k: round(v, 3) for k, v in median.items()},
        "steps_per_s_all": {k: [round(x, 3) for x in v] for k, v in rates.items()},
        "engine_slowdown_vs_bare": round(median["bare"] / median["engine"] - 1, 4),
        # per round (runs back to back see about the same machine): bare / engine - 1
        "engine_slowdown_paired_median": round(
            statistics.median(b / e - 1 for b, e in zip(rates["bare"], rates["engine"])), 4
        ),
        "engine_epoch_end_s": round(statistics.median(ends), 3),
        "engine_run_wall_s": round(statistics.median(totals), 3),
        "engine_profile_cumulative_s": {"whole run (train)": round(stats.total_tt, 3), **seconds},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--batch", type=int, default=None, help="clips per step (default: 4 on CUDA, 1 on CPU)")
    parser.add_argument("--rounds", type=int, default=None, help="timed steps per model (default: 10 CUDA, 2 CPU)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps per model first (default: 3 CUDA, 1 CPU)"
    )
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))
    parser.add_argument(
        "--pool-mode",
        default="conv",
        choices=("conv", "max"),
        help="our model's pooling (torchvision's mvit_v1_b is conv only)",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing in our model")
    parser.add_argument(
        "--engine",
        action="store_true",
        help="instead: the engine's overhead over a bare loop "
        "(mvit_tiny, cpu_synthetic_mvit, 1 thread); --rounds repetitions (default 3)",
    )
    parser.add_argument("--train-size", type=int, default=320, help="--engine: training clips (batch 16)")
    parser.add_argument("--epochs", type=int, default=3, help="--engine: epochs per run")
    args = parser.parse_args()
    if args.engine:
        print(json.dumps(engine_overhead(args.rounds or 3, args.train_size, args.epochs), indent=1))
        return

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
            times[name].append(wall_time(step, device))
    result = {
        "device": torch.cuda.get_device_name(device)
        if cuda
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__,
        "batch": batch,
        "input": list(shape[1:]),
        "precision": args.precision,
        "pool_mode": args.pool_mode,
        "compile": args.compile,
        "activation_checkpointing": args.checkpointing,
        "rounds": rounds,
    }
    for name, step in steps.items():
        median = statistics.median(times[name])
        peak = measure(step, repeats=1, warmup=0, device=device).peak_bytes
        result[name] = {
            "clips_per_s": round(batch / median, 3),
            "median_step_s": round(median, 4),
            "peak_memory_gb": None if peak is None else round(peak / 2**30, 3),
        }
    result["ratio_clips_per_s"] = round(result["ours"]["clips_per_s"] / result["torchvision"]["clips_per_s"], 3)
    if result["ours"]["peak_memory_gb"] and result["torchvision"]["peak_memory_gb"]:
        result["ratio_memory"] = round(result["ours"]["peak_memory_gb"] / result["torchvision"]["peak_memory_gb"], 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
