"""Checkpoints that resume a run exactly, and the random-number-generator states they hold.

A checkpoint is one file, written to a temporary name and then renamed over the old one
(``os.replace`` is atomic), so a crash or a SIGKILL while writing leaves the previous checkpoint
intact. It holds the model, optimizer, grad scaler, the schedule's step, the epoch and how many
batches of that epoch are done, the history so far, and the RNG states of every process, under a
``format`` version (`CHECKPOINT_FORMAT`) that `load_checkpoint` checks.

`OutputDirLock` keeps a second run out of a folder in use: an advisory ``flock`` on ``DIR/.lock``, which
the operating system drops when the process dies, so a killed run leaves no stale lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pickle
import random
import shutil
import zipfile
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from .config import ConfigError

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1  # bump when the keys of a training checkpoint change


def rng_state() -> dict:
    """The state of every RNG a training step may draw from: Python, NumPy, torch (CPU and CUDA)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` returned."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(state: dict, path: Union[str, Path]) -> Path:
    """Write `state` (plus its ``format`` version) to `path` atomically: a temporary file in the same
    folder, flushed, then renamed. On any failure the temporary file is removed and the previous file at
    `path` is left as it was; a full disk raises `ConfigError` saying so."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save({**state, "format": CHECKPOINT_FORMAT}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        full = _disk_full(err, path.parent)
        tmp.unlink(missing_ok=True)
        if full:
            kept = f"the previous checkpoint {path} is intact" if path.is_file() else "no checkpoint was written"
            raise ConfigError(
                f"the disk is full while writing {path} ({err}); {kept}. Free some space (or use "
                "another --output-dir) and run the same command again to resume"
            ) from None
        raise
    return path


def _disk_full(err: BaseException, folder: Path) -> bool:
    """ENOSPC/EDQUOT anywhere in the chain of `err`, or a write error of torch's zip writer (a RuntimeError
    such as ``unexpected pos ...``, which carries no errno) while less than 1 MiB is left in `folder`."""
    chain = err
    while chain is not None:
        if isinstance(chain, OSError) and chain.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        chain = chain.__cause__ or chain.__context__
    return isinstance(err, (OSError, RuntimeError)) and shutil.disk_usage(folder).free < 1 << 20


def load_checkpoint(path: Union[str, Path], map_location: Any = "cpu") -> dict:
    """Read a checkpoint written by `save_checkpoint` (tensors and plain data only).

    A file that is no PyTorch file (empty, truncated, text, random bytes), is not a checkpoint of this
    format, or lacks a known ``format`` version raises `ConfigError` naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; pass the checkpoint.pt of a training run's output folder")
    state = read_torch_file(path, map_location)
    fix = (
        "start a new run with another --output-dir (or delete the file), or evaluate it with "
        "`python -m mvit eval --checkpoint`, which reads plain weights too"
    )
    if not isinstance(state, dict) or "format" not in state:
        raise ConfigError(
            f"{path} is not a training checkpoint of this version of mvit (it has no 'format' "
            f"version: plain weights, or written by an older mvit); {fix}"
        )
    if state["format"] != CHECKPOINT_FORMAT:
        raise ConfigError(
            f"{path} has checkpoint format {state['format']!r}, this mvit reads format "
            f"{CHECKPOINT_FORMAT}; use the mvit version that wrote it, or {fix}"
        )
    return state


def read_torch_file(path: Union[str, Path], map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with one clear `ConfigError` naming the file when it is
    empty, truncated, text, random bytes or holds objects other than tensors and plain data."""
    path = Path(path)
    size = path.stat().st_size
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        refused = [line.strip() for line in str(err).splitlines() if "Unsupported global" in line]
        if refused:  # a well-formed pickle of other objects, which weights_only does not run
            raise ConfigError(
                f"{path} holds objects other than tensors and plain data ({refused[0]}); only "
                "weights and checkpoints can be loaded"
            ) from None
        error: BaseException = err
    except (
        RuntimeError,
        EOFError,
        KeyError,
        ValueError,
        OSError,
        zipfile.BadZipFile,
        IndexError,
        UnicodeDecodeError,
        AttributeError,
        TypeError,
    ) as err:
        error = err
    what = "an empty file" if size == 0 else f"a file of {size} bytes that is truncated or not a PyTorch file"
    noise = ("Please file an issue", "Check the documentation", "weights_only", "Weights only load failed")
    lines = [line for line in str(error).splitlines() if line.strip() and not any(n in line for n in noise)]
    reason = " ".join(lines[-1].split())[:120] if lines else ""
    raise ConfigError(
        f"{path} cannot be read as a PyTorch checkpoint: {what} ({type(error).__name__}: {reason}). "
        "Pass a file written by torch.save (e.g. DIR/checkpoint.pt of a training run); if a run's own "
        "checkpoint is damaged, delete it to start over"
    )


class OutputDirLock:
    """Hold ``DIR/.lock`` (an exclusive ``fcntl.flock``) for the life of a run: a second run on `DIR`
    raises `ConfigError` naming the folder and the process holding it. The lock belongs to the open file,
    so it vanishes when the holder exits, however it dies (SIGKILL included).

    Also refuses, before any work, an output path that is a file or a folder that cannot be written."""

    NAME = ".lock"

    def __init__(self, output_dir: Union[str, Path]) -> None:
        self.dir = Path(output_dir)
        self._file: Optional[Any] = None

    def acquire(self) -> "OutputDirLock":
        if self.dir.exists() and not self.dir.is_dir():
            raise ConfigError(
                f"--output-dir {self.dir} is an existing file, not a folder; pass a folder (it is created if missing)"
            )
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            self._file = open(self.dir / self.NAME, "a+")
        except OSError as err:
            raise ConfigError(
                f"--output-dir {self.dir} cannot be written ({err.strerror or err}); pass a folder you can write to"
            ) from None
        if not os.access(self.dir, os.W_OK):
            self.release()
            raise ConfigError(f"--output-dir {self.dir} is read-only; pass a folder you can write to")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "unknown"
            self.release()
            raise ConfigError(
                f"--output-dir {self.dir} is in use by another run (process {holder} holds "
                f"{self.dir / self.NAME}); wait for it to finish, stop it, or pass another "
                "--output-dir"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file drops the flock
            self._file = None

    def __enter__(self) -> "OutputDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
