"""What the dataset scripts share: command-line basics, parallel resumable work, annotation files.

The scripts are run as ``python data_scripts/<name>.py``; Python then finds this module next to them.
Heavy imports (torch, PyAV) happen inside functions so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

Task = TypeVar("Task")
log = logging.getLogger("data_scripts")


def parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose help is the script's docstring `doc` (first paragraph above, the rest below)."""
    description, _, epilog = doc.partition("\n\n")
    p = argparse.ArgumentParser(description=description, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="output folder (created; existing outputs are kept)")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    return p


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)


def require(path: Path, what: str, hint: str) -> Path:
    """`path` if it exists, else exit with a message naming it, what it should be, and how to get it."""
    if not path.exists():
        raise SystemExit(f"error: {what} {path} does not exist; {hint}")
    return path


def run_all(tasks: Sequence[Task], work: Callable[[Task], str | None], workers: int) -> list[tuple[Task, str]]:
    """Run ``work(task)`` for every task (in `workers` processes when > 1); `work` returns None on
    success or the reason it failed. Returns the failed tasks with their reasons."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            reasons: Iterable[str | None] = list(pool.map(work, tasks, chunksize=8))
    else:
        reasons = [work(task) for task in tasks]
    return [(task, reason) for task, reason in zip(tasks, reasons) if reason is not None]


def write_lines(path: Path, lines: Iterable[str]) -> int:
    """Write `lines` (one per line) to `path` atomically; returns how many."""
    lines = list(lines)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    tmp.replace(path)
    return len(lines)


def slug(name: str) -> str:
    """A class name as a folder name: ``"playing guitar"`` -> ``"playing_guitar"``."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip())
