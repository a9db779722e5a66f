"""Read the list of ``(file, label)`` samples of a dataset.

Two layouts, both checked completely when a dataset is built (a bad line fails then, with the file
and line number, not hours into training):

- an annotation file in the PySlowFast convention: one ``relative/path.mp4 label`` per line, the label
  being the last field, after the last space or comma (so ``a,b.mp4 3`` and ``clip.mp4,3`` both work);
  a path with spaces, quotes or a leading ``#`` is written in CSV quotes, ``"my clip.mp4" 3``
  (`annotation_line` writes them so). Blank lines and lines starting with ``#`` are skipped;
- a folder per class: ``root/<class name>/<file>``, classes numbered in sorted order. Hidden entries
  (``.ipynb_checkpoints``, ``.DS_Store``, ``._clip.mp4``), ``__MACOSX`` and folders without a single
  matching file are not classes.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path
from typing import Sequence

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

_UNQUOTED = re.compile(r"(?P<path>.*?)\s*[,\s]\s*(?P<label>[^,\s]+)")  # the label: after the last separator


class AnnotationError(ValueError):
    """An annotation file or a class-folder tree that cannot be used; the message names the file (and
    line) and says how to fix it."""


def annotation_line(path: str, label: int) -> str:
    """The line ``path label`` of an annotation file, the path in CSV quotes when it needs them."""
    if re.search(r'[\s"]', path) or path.startswith("#"):
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=" ", quoting=csv.QUOTE_ALL, lineterminator="").writerow([path])
        path = buffer.getvalue()
    return f"{path} {label}"


def _split_line(line: str) -> tuple[str, str] | None:
    """``(path, label text)`` of a stripped, non-comment annotation line; None when it has no label."""
    if line.startswith('"'):  # a CSV-quoted path, then a space or a comma, then the label
        for delimiter in (" ", ","):
            try:
                fields = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True, strict=True))
            except csv.Error:
                continue
            if len(fields) == 2:
                return fields[0], fields[1].strip()
        return None
    match = _UNQUOTED.fullmatch(line)
    return (match["path"], match["label"]) if match and match["path"] else None


def read_annotation_file(annotation_file: str | os.PathLike, num_classes: int | None = None) -> list[tuple[str, int]]:
    """``[(relative path, label), ...]`` from `annotation_file`. Labels must be integers in
    ``[0, num_classes)`` (only ``>= 0`` when `num_classes` is None). Raises `AnnotationError` naming
    the file and line of the first bad line."""
    annotation_file = Path(annotation_file)
    if not annotation_file.is_file():
        raise FileNotFoundError(
            f"annotation file {annotation_file} does not exist; "
            f"create it (one '<relative/path.mp4> <label>' per line) or fix the path"
        )
    expected = "expected '<relative/path.mp4> <label>' (label last, after a space or a comma)"
    samples = []
    for number, raw in enumerate(annotation_file.read_bytes().splitlines(), start=1):
        where = f"{annotation_file}:{number}"
        try:
            if b"\0" in raw:
                raise UnicodeDecodeError("utf-8", raw, raw.index(b"\0"), raw.index(b"\0") + 1, "NUL byte")
            line = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise AnnotationError(
                f"{where}: not UTF-8 text (a binary file?); an annotation file is a text file "
                "of '<relative/path.mp4> <label>' lines"
            ) from None
        if not line or line.startswith("#"):
            continue
        fields = _split_line(line)
        if fields is None:
            raise AnnotationError(f"{where}: {expected}, got {line!r}")
        path, label_text = fields
        try:
            label = int(label_text)
        except ValueError:
            raise AnnotationError(
                f"{where}: the label {label_text!r} is not an integer; {expected}, got {line!r}"
            ) from None
        if label < 0 or (num_classes is not None and label >= num_classes):
            allowed = f"[0, {num_classes - 1}]" if num_classes is not None else ">= 0"
            raise AnnotationError(
                f"{where}: label {label} is out of range {allowed} (line {line!r}); labels "
                "count classes from 0" + (" (is num_classes right?)" if num_classes else "")
            )
        samples.append((path, label))
    if not samples:
        raise AnnotationError(f"{annotation_file} lists no samples; expected '<relative/path.mp4> <label>' lines")
    return samples


def is_hidden(name: str) -> bool:
    """Names that a folder-per-class tree ignores: hidden files and folders, macOS archive debris."""
    return name.startswith(".") or name == "__MACOSX"


def read_class_folders(
    root: str | os.PathLike, extensions: tuple[str, ...], classes: Sequence[str] | None = None
) -> tuple[list[tuple[str, int]], list[str]]:
    """``([(path relative to root, label), ...], class names)`` from ``root/<class>/<file>``.

    Hidden entries and folders without a file ending in `extensions` are skipped. `classes`: the
    class names another split has (the training set's); this tree must have exactly these."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist; expected one sub-folder per class")
    files: dict[str, list[str]] = {}
    for folder in sorted(entry for entry in root.iterdir() if entry.is_dir() and not is_hidden(entry.name)):
        found = sorted(
            str(file.relative_to(root))
            for file in folder.rglob("*")
            if file.suffix.lower() in extensions
            and file.is_file()
            and not any(is_hidden(part) for part in file.relative_to(root).parts)
        )
        if found:
            files[folder.name] = found
    if not files:
        raise AnnotationError(
            f"no files ending in {', '.join(extensions)} under {root}/<class>/; expected {root}/<class name>/<files>"
        )
    names = sorted(files)
    if classes is not None and list(classes) != names:
        only_here, only_there = sorted(set(names) - set(classes)), sorted(set(classes) - set(names))
        raise AnnotationError(
            f"the classes of {root} differ from the training set's: only in {root}: {only_here}, missing from "
            f"{root}: {only_there}; both splits need the same class folders (each with at least one file)"
        )
    samples = [(path, label) for label, name in enumerate(names) for path in files[name]]
    return samples, names
