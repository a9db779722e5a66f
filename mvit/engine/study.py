"""Small studies: a grid of (variant x seed) training runs through `train`, with intervals and verdicts.

A claim of the paper ("separate space and time embeddings beat a joint one", "MViT beats ViT trained the
same way") is tested here the way a careful reader would test it at small scale: each variant is trained
with several seeds, every run through the same engine a researcher uses, and the comparison is reported
as a difference of means with a 95 % interval and a verdict computed from that interval.

>>> study = Study("cpu_synthetic_mvit", {"MViT": [], "ViT": ["model.name=vit_tiny"]}, seeds=(0, 1, 2),
...               root="runs/study")
>>> results = study.run()                      # parallel processes sized to the machine; resumable
>>> print(results.compare("MViT", "ViT", "val_top1", paper_delta=9.9))

Runs are cached. A run lives in ``root/<variant>-seed<S>-<key>``, where the key hashes the run's whole
resolved config, a fingerprint of its data folder and the source code of the `mvit` package; a run whose
``result.json`` exists is read back, never redone, and a run that was killed resumes from its checkpoint.
A result computed by other code or under other settings therefore has another key and is never shown.
Each run executes in a worker process (spawned, so only configs travel: the dataset comes from
``data.*``), one per core on a CPU (one torch thread each) or one per GPU. As with any spawned
process pool, a script that runs a study must do so under ``if __name__ == "__main__":`` (a notebook
needs nothing).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import re
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from scipy import stats

from .log import json_safe

__all__ = ["Comparison", "Results", "Study", "difference_interval", "mean_interval", "source_hash", "verdict"]

RESULT_NAME = "result.json"


# ----------------------------------------------------------------------------------------------------
# statistics
# ----------------------------------------------------------------------------------------------------


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, float]:
    """``(mean, std, low, high)`` of `values`: the sample standard deviation (ddof = 1) and the Student-t
    interval of the mean, ``mean ± t_{(1+c)/2, n-1} · std / sqrt(n)``. With one value the spread and the
    interval are unknown (NaN)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("mean_interval needs at least one value")
    mean = float(x.mean())
    if x.size == 1:
        return mean, math.nan, math.nan, math.nan
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, x.size - 1)) * std / math.sqrt(x.size)
    return mean, std, mean - half, mean + half


def difference_interval(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(delta, low, high)``: the difference of means ``mean(a) - mean(b)`` and its Welch interval
    (unequal variances, Welch-Satterthwaite degrees of freedom). NaN bounds when either side has fewer
    than two values; a zero-width interval when both sides have no spread at all."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size == 0 or y.size == 0:
        raise ValueError("difference_interval needs values on both sides")
    delta = float(x.mean() - y.mean())
    if x.size < 2 or y.size < 2:
        return delta, math.nan, math.nan
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return delta, delta, delta
    df = (va + vb) ** 2 / (va**2 / (x.size - 1) + vb**2 / (y.size - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return delta, delta - half, delta + half


def verdict(low: float, high: float, paper_delta: Optional[float] = None) -> str:
    """What an interval ``[low, high]`` of a difference says, against the paper's difference if given.

    - ``"agrees"``: the interval excludes zero on the side of the paper's difference;
    - ``"opposite"``: it excludes zero on the other side;
    - ``"differs"``: it excludes zero where the paper found no difference (``paper_delta == 0``);
    - ``"inconclusive"``: it contains zero (or is unknown): this study cannot tell.
    Without `paper_delta`: ``"a > b"``, ``"a < b"`` or ``"inconclusive"``.
    """
    if math.isnan(low) or math.isnan(high) or low <= 0.0 <= high:
        return "inconclusive"
    sign = 1.0 if low > 0 else -1.0
    if paper_delta is None:
        return "a > b" if sign > 0 else "a < b"
    if paper_delta == 0:
        return "differs"
    return "agrees" if sign * paper_delta > 0 else "opposite"


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on one metric: difference of means, its 95 % interval, the verdict."""

    a: str
    b: str
    metric: str
    delta: float
    ci_low: float
    ci_high: float
    paper_delta: Optional[float]
    verdict: str

    def __str__(self) -> str:
        paper = "" if self.paper_delta is None else f"; paper {self.paper_delta:+.1f}"
        return (
            f"{self.a} - {self.b} ({self.metric}): {self.delta:+.1f} "
            f"[95 % CI {self.ci_low:+.1f}, {self.ci_high:+.1f}]{paper}: {self.verdict}"
        )


# ----------------------------------------------------------------------------------------------------
# cache keys
# ----------------------------------------------------------------------------------------------------

_SOURCE_HASH: Optional[str] = None
_NOT_RESULTS = ("run.output_dir", "run.progress", "run.tensorboard")  # settings that change no number


def source_hash() -> str:
    """SHA-256 of the `mvit` package's source files and recipes (computed once per process)."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        package = Path(__file__).resolve().parent.parent
        digest = hashlib.sha256()
        for path in sorted([*package.rglob("*.py"), *package.rglob("*.yaml")]):
            digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
        _SOURCE_HASH = digest.hexdigest()
    return _SOURCE_HASH


def data_fingerprint(root: Optional[str]) -> Optional[str]:
    """Names and sizes of the files under `root`, and the contents of its annotation files (CSV, TXT,
    JSON): a stable fingerprint of a dataset written by deterministic code, cheap to compute."""
    if root is None:
        return None
    base = Path(root)
    if not base.exists():
        return f"missing:{base}"
    digest = hashlib.sha256()
    for path in sorted(p for p in base.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(base).as_posix()}\0{path.stat().st_size}\0".encode())
        if path.suffix.lower() in (".csv", ".txt", ".json"):
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_key(config: dict) -> str:
    """The cache key of one run: its settings, its data and the package's code."""
    settings = json.loads(json.dumps(config))  # a deep copy of plain data
    for dotted in _NOT_RESULTS:
        section, key = dotted.split(".")
        settings[section].pop(key, None)
    payload = {"config": settings, "data": data_fingerprint(config["data"]["root"]), "source": source_hash()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------------------------------
# the study
# ----------------------------------------------------------------------------------------------------


class Study:
    """A grid of training runs: every variant (a name and its ``key=value`` overrides) x every seed.

    `base` is a recipe name, YAML path or dict (as `mvit.engine.load_config` takes); `overrides` apply to
    every run, then the variant's own, then ``run.seed``. `root` holds the runs (the cache). `workers`:
    parallel processes (None: one per GPU when the runs use CUDA, else one per CPU core, at most one per
    run; the environment variable ``MVIT_STUDY_WORKERS`` overrides it).
    """

    def __init__(
        self,
        base: Union[str, Path, dict],
        variants: dict[str, Sequence[str]],
        seeds: Sequence[int] = (0, 1, 2),
        root: Union[str, Path] = "runs/study",
        overrides: Sequence[str] = (),
        workers: Optional[int] = None,
    ) -> None:
        from .config import ConfigError, load_config

        if not variants:
            raise ConfigError("a study needs at least one variant")
        if not seeds:
            raise ConfigError("a study needs at least one seed")
        bad = [name for name in variants if not re.fullmatch(r"[\w .+=,()×-]+", name)]
        if bad:
            raise ConfigError(
                f"variant names {bad} hold characters that cannot name a folder; use letters, "
                "digits, spaces and - _ . + = , ( )"
            )
        self.base, self.root, self.workers = base, Path(root), workers
        self.variants = {name: list(extra) for name, extra in variants.items()}
        self.seeds = [int(s) for s in seeds]
        self.overrides = list(overrides)
        self.plan = []  # (variant, seed, overrides, run folder), in variant-major, seed-minor order
        for name, extra in self.variants.items():
            for seed in self.seeds:
                items = [*self.overrides, *extra, f"run.seed={seed}", "run.progress=false"]
                cfg = load_config(base, items).to_dict()  # checks every setting before anything runs
                folder = self.root / f"{_slug(name)}-seed{seed}-{run_key(cfg)}"
                self.plan.append((name, seed, items + [f"run.output_dir={folder}"], folder))

    def run(self) -> "Results":
        """Train every run that has no result yet (in parallel), then read all results back."""
        start = time.perf_counter()
        todo = [
            (name, seed, items, folder)
            for name, seed, items, folder in self.plan
            if not (folder / RESULT_NAME).is_file()
        ]
        if todo:
            self.root.mkdir(parents=True, exist_ok=True)
            gpus = _gpus_for(todo[0][2], self.base)
            workers = _worker_count(self.workers, len(todo), gpus)
            threads = 1 if gpus else max(1, (os.cpu_count() or 1) // workers)
            ctx = multiprocessing.get_context("spawn")
            with contextlib.ExitStack() as stack:
                devices = None
                if gpus:  # a queue of GPU ids: each worker takes one for its whole life
                    devices = stack.enter_context(ctx.Manager()).Queue()
                    for gpu in range(gpus):
                        devices.put(gpu)
                pool = stack.enter_context(
                    concurrent.futures.ProcessPoolExecutor(
                        workers, mp_context=ctx, initializer=_init_worker, initargs=(threads, devices)
                    )
                )
                futures = [pool.submit(_run_one, self.base, items, str(folder)) for _, _, items, folder in todo]
                for future in concurrent.futures.as_completed(futures):
                    future.result()  # a run's exception (not a divergence) stops the study here
        runs = []
        for name, seed, _, folder in self.plan:
            record = json.loads((folder / RESULT_NAME).read_text())
            runs.append({"variant": name, "seed": seed, "dir": str(folder), **record})
        return Results(runs, trained=len(todo), cached=len(self.plan) - len(todo), wall_s=time.perf_counter() - start)


def _slug(name: str) -> str:
    return re.sub(r"[^\w.+=-]+", "_", name).strip("_") or "variant"


def _gpus_for(items: list[str], base) -> int:
    """GPUs the runs may use: all visible ones when ``run.device`` resolves to CUDA here."""
    import torch

    from .config import load_config

    device = load_config(base, items).run.device
    if device == "cpu" or not torch.cuda.is_available():
        return 0
    return torch.cuda.device_count()


def _worker_count(requested: Optional[int], runs: int, gpus: int) -> int:
    from .config import ConfigError

    env = os.environ.get("MVIT_STUDY_WORKERS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ConfigError(f"MVIT_STUDY_WORKERS={env!r} must be a positive integer")
        requested = int(env)
    if requested is None:
        requested = gpus or (os.cpu_count() or 1)
    if requested < 1:
        raise ConfigError(f"workers={requested} must be at least 1")
    if gpus:
        requested = min(requested, gpus)
    return max(1, min(requested, runs))


def _init_worker(threads: int, devices) -> None:
    """Each worker process: its share of the cores, or one GPU of its own for its whole life."""
    if devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(devices.get())
    import torch

    torch.set_num_threads(threads)


def _run_one(base, items: list[str], folder: str) -> None:
    """One run, in a worker process: train (resuming if the folder holds a checkpoint), then write its
    ``result.json`` atomically. A run whose loss became non-finite is a result too ("diverged")."""
    import torch

    from ..complexity import _proc_status, _release_free_memory, count_flops, count_params
    from ..configs import get_config
    from ..model import MViT
    from .config import load_config
    from .trainer import NonFiniteLossError, train

    cfg = load_config(base, items)
    model_cfg = get_config(cfg.model.name, **cfg.model.config)
    with torch.device("meta"):
        model = MViT(model_cfg)
    params, gmacs = count_params(model), count_flops(model, (1, 3, *model_cfg.input_size))
    cuda = torch.cuda.is_available() and cfg.run.device != "cpu"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        _release_free_memory()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # the peak resident size of this run only (the worker may have run others)
        except OSError:
            pass
    start = time.perf_counter()
    record: dict = {"status": "done", "error": None}
    try:
        history = train(cfg)
    except NonFiniteLossError as err:
        history = {"epochs": [], "steps": [], "test": None}
        record.update(status="diverged", error=str(err))
    record["wall_s"] = time.perf_counter() - start
    throughput = [s["clips_per_s"] for s in history["steps"] if "clips_per_s" in s]
    record.update(
        config=cfg.to_dict(),
        epochs=history["epochs"],
        steps=history["steps"],
        test=history["test"],
        params=params,
        gmacs=gmacs,
        clips_per_s=float(np.median(throughput)) if throughput else None,
        peak_rss_mib=_proc_status("VmHWM") / 2**20 if not cuda else None,
        peak_cuda_mib=torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        hardware=torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} thread(s)",
    )
    out = Path(folder) / RESULT_NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(json_safe(record), indent=1))
    os.replace(tmp, out)


# ----------------------------------------------------------------------------------------------------
# results
# ----------------------------------------------------------------------------------------------------


class Results:
    """The runs of a study (``runs``: one dict each, in variant-major, seed-minor order) and their
    statistics. ``trained`` and ``cached`` count the runs this call trained and read back."""

    RUN_METRICS = ("wall_s", "gmacs", "params", "peak_rss_mib", "peak_cuda_mib", "clips_per_s")

    def __init__(self, runs: list[dict], trained: int = 0, cached: int = 0, wall_s: float = 0.0) -> None:
        self.runs, self.trained, self.cached, self.wall_s = runs, trained, cached, wall_s

    @property
    def variants(self) -> list[str]:
        return list(dict.fromkeys(r["variant"] for r in self.runs))

    def finished(self, variant: str) -> list[dict]:
        if variant not in self.variants:
            raise KeyError(f"no variant {variant!r} in this study; variants: {', '.join(self.variants)}")
        return [r for r in self.runs if r["variant"] == variant and r["status"] == "done"]

    def values(self, variant: str, metric: str = "val_top1") -> np.ndarray:
        """`metric` of every finished run of `variant`, in seed order."""
        return np.array([_metric(run, metric) for run in self.finished(variant)], dtype=float)

    def summary(self, metric: str = "val_top1") -> list[dict]:
        rows = []
        for name in self.variants:
            values = self.values(name, metric)
            failed = sum(r["status"] != "done" for r in self.runs if r["variant"] == name)
            mean, std, low, high = mean_interval(values) if values.size else (math.nan,) * 4
            rows.append(
                {
                    "variant": name,
                    "n": int(values.size),
                    "mean": mean,
                    "std": std,
                    "ci_low": low,
                    "ci_high": high,
                    "values": values.tolist(),
                    "failed": failed,
                }
            )
        return rows

    def compare(self, a: str, b: str, metric: str = "val_top1", paper_delta: Optional[float] = None) -> Comparison:
        """`a` against `b`: mean difference of `metric`, its Welch 95 % interval and the verdict."""
        delta, low, high = difference_interval(self.values(a, metric), self.values(b, metric))
        return Comparison(a, b, metric, delta, low, high, paper_delta, verdict(low, high, paper_delta))

    def curves(self, variant: str, metric: str = "val_top1") -> tuple[np.ndarray, np.ndarray]:
        """``(epochs, values)``: epochs 1..E and the (seeds, E) array of `metric` after each epoch."""
        runs = self.finished(variant)
        if not runs:
            raise ValueError(f"variant {variant!r} has no finished run")
        length = min(len(r["epochs"]) for r in runs)
        values = np.array([[e.get(metric, math.nan) for e in r["epochs"][:length]] for r in runs], dtype=float)
        return np.arange(1, length + 1), values


def _metric(run: dict, metric: str) -> float:
    if metric in Results.RUN_METRICS:
        value = run[metric]
    elif metric.startswith("best_"):
        value = max(e[metric[5:]] for e in run["epochs"])
    elif metric.startswith("test_"):
        if not run["test"]:
            raise KeyError(f"run {run['dir']} has no multi-view test result (run.multi_view_eval, a video dataset)")
        value = run["test"][metric[5:]]
    else:
        if not run["epochs"] or metric not in run["epochs"][-1]:
            raise KeyError(f"run {run['dir']} has no {metric!r} in its last epoch record")
        value = run["epochs"][-1][metric]
    return math.nan if value is None else float(value)
