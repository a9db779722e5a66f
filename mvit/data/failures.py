"""Bad files never crash an epoch and are never silent: they are warned about, counted and reported.

A dataset that meets a missing, empty, truncated or non-video file warns (naming the file) and records
the failure in its `FailureLog`. What it returns instead depends on its mode:

- training (``replace=True``): another sample, drawn at random, so that the batch stays full;
- evaluation (``replace=False``): a placeholder of the right shape labelled `EXCLUDED` (-1), which
  `mvit.engine.evaluate` drops and counts, so that no substitute is ever scored.

The log lives in a small file so that failures met inside DataLoader worker processes reach the main
process too: the engine reads ``dataset.failures`` and calls ``dataset.reset_failures()``. When more than
``max_failures`` are recorded, loading stops with `TooManyFailures`, which lists them.
"""

from __future__ import annotations

import math
import os
import tempfile
import uuid
import warnings
import weakref
from pathlib import Path
from typing import NamedTuple

import torch

EXCLUDED = -1  # the label of an unreadable sample's placeholder in evaluation


class Failure(NamedTuple):
    path: str
    reason: str


class UnreadableFile(RuntimeError):
    """A sample's file is missing, empty, truncated, or not what it claims to be."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(str(path), reason)
        self.path, self.reason = str(path), reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class TooManyFailures(RuntimeError):
    """More files failed to load than the dataset's `max_failures` allows."""


def _remove_if_owner(path: str, owner_pid: int) -> None:
    if os.getpid() == owner_pid and os.path.exists(path):
        os.remove(path)


class FailureLog:
    """Failures shared by a dataset and its copies in DataLoader workers (one line per failure,
    appended atomically to a temporary file, which the creating process removes)."""

    def __init__(self, max_failures: int) -> None:
        if max_failures < 0:
            raise ValueError(f"max_failures must be >= 0, got {max_failures}")
        self.max_failures = max_failures
        # Created at the first failure only, so that a clean run leaves nothing behind.
        self.path = os.path.join(tempfile.gettempdir(), f"mvit-failures-{uuid.uuid4().hex}.log")
        weakref.finalize(self, _remove_if_owner, self.path, os.getpid())

    def record(self, path: str, reason: str) -> None:
        line = (path.replace("\t", " ") + "\t" + " ".join(reason.split()) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def read(self) -> list[Failure]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, encoding="utf-8") as f:
            return [Failure(*line.rstrip("\n").split("\t", 1)) for line in f if line.strip()]

    def reset(self) -> None:
        if os.path.exists(self.path):
            os.remove(self.path)


class FileDataset(torch.utils.data.Dataset):
    """A dataset of files ``root / samples[i][0]`` with labels ``samples[i][1]``, that replaces (or, for
    evaluation, excludes) a file it cannot read. Subclasses set `root` and `samples`, call
    `_init_failures`, and implement `_load` (raising `UnreadableFile` for a bad file) and `_placeholder`
    (a zero item of the shape `_load` returns)."""

    root: Path
    samples: list[tuple[str, int]]

    def _init_failures(self, max_failures: int | None, replace: bool) -> None:
        """`max_failures` None: 1% of the dataset, at least 10. `replace`: stand in another sample for
        an unreadable one (training) rather than a placeholder labelled `EXCLUDED` (evaluation)."""
        if max_failures is None:
            max_failures = max(10, math.ceil(0.01 * len(self.samples)))
        self._failures = FailureLog(max_failures)
        self.replaces_unreadable = replace

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def failures(self) -> list[Failure]:
        """Files that failed to load since the last `reset_failures()`, in all worker processes."""
        return self._failures.read()

    def reset_failures(self) -> None:
        self._failures.reset()

    def _load(self, index: int):
        raise NotImplementedError

    def _placeholder(self) -> torch.Tensor:
        raise NotImplementedError

    def __getitem__(self, index: int):
        """``_load(index)``; when it raises `UnreadableFile`, warn and record the failure, then load
        another index drawn from torch's random generator (deterministic under a fixed seed) when
        `replaces_unreadable`, else return ``(placeholder, EXCLUDED)``. Raises `TooManyFailures` once more
        than ``max_failures`` failures are recorded."""
        log = self._failures
        while True:
            try:
                return self._load(index)
            except UnreadableFile as error:
                log.record(error.path, error.reason)
                failures = log.read()
                if len(failures) > log.max_failures:
                    listing = "\n".join(f"  {f.path}: {f.reason}" for f in failures[:50])
                    more = f"\n  ... and {len(failures) - 50} more" if len(failures) > 50 else ""
                    raise TooManyFailures(
                        f"{len(failures)} files failed to load (more than max_failures={log.max_failures}); "
                        f"fix or remove them, or raise max_failures:\n{listing}{more}"
                    ) from error
                if not self.replaces_unreadable:
                    warnings.warn(
                        f"excluding unreadable sample {error} (counted and listed as unreadable)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    return self._placeholder(), EXCLUDED
                warnings.warn(
                    f"skipping unreadable sample {error}; using another sample in its place",
                    RuntimeWarning,
                    stacklevel=2,
                )
                index = int(torch.randint(len(self.samples), ()).item())
