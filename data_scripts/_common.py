"""What the dataset scripts share: command-line basics, reading the official files with errors that name
the file and line, names that cannot leave --out, parallel resumable work, annotation files.

The scripts are run as ``python data_scripts/<name>.py``; Python then finds this module next to them.
Heavy imports (torch, PyAV) happen inside functions so that ``--help`` answers at once. A problem with
the inputs raises `ScriptError`; `main` (wrapped by `entry_point`) prints ``error: ...`` on stderr and
returns 2, with no traceback.
"""

from __future__ import annotations

import argparse
import csv
import functools
import json
import logging
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

Task = TypeVar("Task")
log = logging.getLogger("data_scripts")
EXIT_USAGE = 2


class ScriptError(Exception):
    """A problem with the script's inputs; the message names the file (and line) and the fix."""


def entry_point(main: Callable[..., int]) -> Callable[..., int]:
    """`main` that prints a `ScriptError` as one ``error: ...`` line on stderr and returns 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except ScriptError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE

    return wrapper


def parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose help is the script's docstring `doc` (first paragraph above, the rest below)."""
    description, _, epilog = doc.partition("\n\n")
    p = argparse.ArgumentParser(
        description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (created; existing outputs are kept)")
    p.add_argument("--dry-run", action="store_true", help="say what would be done, change nothing")
    return p


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout, force=True)


def require(path: Path, what: str, hint: str) -> Path:
    """`path` if it exists, else a `ScriptError` naming it, what it should be, and how to get it."""
    if not path.exists():
        raise ScriptError(f"{what} {path} does not exist; {hint}")
    return path


def _text(path: Path, what: str) -> str:
    """The UTF-8 text of `path`; a binary or undecodable file is an error naming its line."""
    raw = path.read_bytes()
    bad = raw.find(b"\0")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        bad = error.start if bad < 0 else min(bad, error.start)
        text = None
    if bad >= 0:
        line = raw.count(b"\n", 0, bad) + 1
        raise ScriptError(f"{path}:{line}: not UTF-8 text (a binary file?); expected {what}")
    return text


def read_lines(path: Path, what: str) -> Iterator[tuple[int, str]]:
    """``(line number, stripped line)`` for the non-blank lines of the text file `path` (`what`: its format)."""
    for number, line in enumerate(_text(path, what).splitlines(), start=1):
        if line.strip():
            yield number, line.strip()


def read_csv_rows(path: Path, columns: set[str], what: str) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` of the CSV file `path`, whose header must hold `columns`; a short row or
    a malformed line is an error naming its line."""
    reader = csv.DictReader(_text(path, what).splitlines(), strict=True)
    try:
        missing = columns - set(reader.fieldnames or ())
        if missing:
            raise ScriptError(f"{path} lacks the column(s) {sorted(missing)}; expected {what}")
        for row in reader:
            if None in row.values() or None in row:  # a short row (values None) or a long one (key None)
                count = sum(v is not None for k, v in row.items() if k is not None) + len(row.get(None, ()))
                raise ScriptError(
                    f"{path}:{reader.line_num}: {count} fields where the header has "
                    f"{len(reader.fieldnames)}; expected {what}"
                )
            yield reader.line_num, row
    except csv.Error as error:
        raise ScriptError(f"{path}:{reader.line_num}: malformed CSV ({error}); expected {what}") from None


def read_json(path: Path, what: str) -> Any:
    """The JSON value in `path`; a syntax error names its line and column."""
    try:
        return json.loads(_text(path, what))
    except json.JSONDecodeError as error:
        raise ScriptError(
            f"{path}:{error.lineno}: invalid JSON at column {error.colno} ({error.msg}); expected {what}"
        ) from None


def line_of_entries(path: Path) -> list[int]:
    """Line numbers where the entries of the top-level JSON array in `path` start (for error messages)."""
    text, decoder = _text(path, "a JSON array"), json.JSONDecoder()
    position, lines = text.index("[") + 1, []
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] == "]":
            return lines
        lines.append(text.count("\n", 0, position) + 1)
        position = decoder.raw_decode(text, position)[1]


SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*")


def safe_name(name: object, where: str, what: str) -> str:
    """`name` if it can be a file name inside --out (letters, digits, ``_ - .``, not starting with a
    dot: no ``/``, no ``..``), else a `ScriptError` naming it and `where` it came from."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
        raise ScriptError(
            f"{where}: {what} {name!r} is not a plain name (letters, digits, '_', '-', '.'; no '/' "
            "or leading '.'), so it could name a path outside --out; fix or remove that entry"
        )
    return name


def link(name: Path, target: Path) -> None:
    """Make `name` a symbolic link to the folder `target` (kept when it already is one)."""
    if name.is_symlink() and name.resolve() == target.resolve():
        return
    if name.exists() or name.is_symlink():
        raise ScriptError(f"{name} exists and is not a link to {target}; remove it or choose another --out")
    name.symlink_to(target.resolve(), target_is_directory=True)


def run_all(tasks: Sequence[Task], work: Callable[[Task], str | None], workers: int) -> list[tuple[Task, str]]:
    """Run ``work(task)`` for every task (in `workers` processes when > 1); `work` returns None on
    success or the reason it failed. Returns the failed tasks with their reasons."""
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            reasons: Iterable[str | None] = list(pool.map(work, tasks, chunksize=8))
    else:
        reasons = [work(task) for task in tasks]
    return [(task, reason) for task, reason in zip(tasks, reasons) if reason is not None]


def write_annotations(path: Path, samples: Iterable[tuple[str, int]]) -> int:
    """Write ``(relative path, label)`` samples as `mvit.data` annotation lines (quoted when needed)."""
    from mvit.data import annotation_line

    return write_lines(path, (annotation_line(relative, label) for relative, label in samples))


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


def transcode_video(source: Path, target: Path, short_side: int | None) -> str | None:
    """Copy `source` to the mp4 `target` (short side resized, None: kept) unless `target` exists already (so a
    stopped run resumes where it was); returns the reason when the video cannot be read, else None."""
    from mvit.data import VideoDecodeError, transcode

    if target.exists():
        return None
    try:
        transcode(source, target, short_side=short_side)
    except VideoDecodeError as error:
        return str(error)
    return None
