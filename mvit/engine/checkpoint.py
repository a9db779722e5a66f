"""Checkpoints that resume a run exactly, and the random-number-generator states they hold.

A checkpoint is one file, written to a temporary name and then renamed over the old one
(``os.replace`` is atomic), so a crash or a SIGKILL while writing leaves the previous checkpoint
intact. It holds the model, optimizer, grad scaler, the schedule's step, the epoch and how many
batches of that epoch are done, the history so far, and the RNG states of every process.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

CHECKPOINT_NAME = "checkpoint.pt"


def rng_state() -> dict:
    """The state of every RNG a training step may draw from: Python, NumPy, torch (CPU and CUDA)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: Union[str, Path]) -> Path:
    """Write `state` to `path` atomically (temporary file in the same folder, flushed, then renamed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Union[str, Path], map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` (tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; pass the checkpoint.pt of a training run's output folder")
    return torch.load(path, map_location=map_location, weights_only=True)
