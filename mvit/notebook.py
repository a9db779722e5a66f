"""What every chapter of the book opens with: one short, identical set-up cell.

>>> from mvit.notebook import grid_str, on_meta, setup, table
>>> RUN = setup()  # doctest: +SKIP
profile cpu | seed 0 | torch 2.14.1 | mvit 0.1.0
hardware: AMD EPYC, 1 thread of 2 cores

`setup` fixes the seed, chooses the device of the profile (`mvit.profile`), sets the number of CPU threads
and returns the line a chapter's numbers are quoted with (profile, hardware, seed). The three helpers are the
ones every chapter uses: `table` (a list of rows as a Markdown table), `on_meta` (a preset with shapes only)
and `grid_str` (``(8, 56, 56)`` as ``8×56×56``). IPython is imported only by `table`, so a plain install of
the package imports this module.
"""

from __future__ import annotations

import os
import platform
import random
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from . import __version__, build_model, profile
from .model import MViT


@dataclass(frozen=True)
class Setup:
    """The settings a chapter runs under; `line` is how its numbers name them."""

    profile: str  # "cpu" or "gpu" (mvit.profile(); MVIT_PROFILE overrides)
    device: torch.device  # cuda:0 under the gpu profile when CUDA is there, else cpu
    hardware: str  # the GPU's name, or the CPU's model name and the threads of this process
    seed: int
    start: float = field(default_factory=time.perf_counter)

    @property
    def line(self) -> str:
        """Two short lines (they fit the book's code box): the settings, then the hardware."""
        return (
            f"profile {self.profile} | seed {self.seed} | torch {torch.__version__} | mvit {__version__}\n"
            f"hardware: {self.hardware}"
        )

    def elapsed(self) -> float:
        """Seconds since `setup` ran: the chapter's wall time so far."""
        return time.perf_counter() - self.start


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            return names[0]
    except OSError:
        pass
    return platform.processor() or platform.machine()


def setup(seed: int = 0, threads: int | None = 1, verbose: bool = True) -> Setup:
    """Seed Python, NumPy and PyTorch with `seed`, pick the profile's device and set `threads` CPU threads
    (``None`` keeps PyTorch's default: one per core). One thread is the book's default: its cells run small
    models, and on a shared machine threads that wait for each other cost more than they save; the studies
    run one process per core instead. Prints `Setup.line` when `verbose`."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    name = profile()
    if name == "gpu" and torch.cuda.is_available():
        device = torch.device("cuda", 0)
        hardware = torch.cuda.get_device_name(device)
    else:
        device = torch.device("cpu")
        n = torch.get_num_threads()
        hardware = f"{cpu_name()}, {n} thread{'s' if n > 1 else ''} of {os.cpu_count()} cores"
    run = Setup(profile=name, device=device, hardware=hardware, seed=seed)
    if verbose:
        print(run.line)
    return run


def table(header: Sequence[str], rows: Iterable[Sequence]):
    """``rows`` under ``header`` as a Markdown table (an `IPython.display.Markdown`): rendered on the site,
    readable in the notebook."""
    from IPython.display import Markdown

    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return Markdown("\n".join(lines))


def grid_str(thw: Iterable[int]) -> str:
    """``(8, 56, 56)`` -> ``"8×56×56"``."""
    return "×".join(str(n) for n in thw)


def on_meta(name: str, **overrides) -> MViT:
    """The preset `name` (with `overrides`) built on the meta device: shapes only, no memory and no
    initialisation time, so its parameters and FLOPs are counted in a second."""
    with torch.device("meta"):
        return build_model(name, **overrides)
