"""Read the list of ``(file, label)`` samples of a dataset.

Two layouts, both checked completely when a dataset is built (a bad line fails then, with the file
and line number, not hours into training):

- an annotation file in the PySlowFast convention: one ``relative/path.mp4 label`` per line, the two
  fields separated by a space or a comma; blank lines and lines starting with ``#`` are skipped;
- a folder per class: ``root/<class name>/<file>``, classes numbered in sorted order.
"""

from __future__ import annotations

import os
from pathlib import Path

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def read_annotation_file(annotation_file: str | os.PathLike, num_classes: int | None = None
                         ) -> list[tuple[str, int]]:
    """``[(relative path, label), ...]`` from `annotation_file`. Labels must be integers in
    ``[0, num_classes)`` (only ``>= 0`` when `num_classes` is None)."""
    annotation_file = Path(annotation_file)
    if not annotation_file.is_file():
        raise FileNotFoundError(f"annotation file {annotation_file} does not exist; "
                                f"create it (one '<relative/path.mp4> <label>' per line) or fix the path")
    samples = []
    with open(annotation_file, encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            where = f"{annotation_file}:{number}"
            fields = line.rsplit(",", 1) if "," in line else line.rsplit(None, 1)
            if len(fields) != 2 or not fields[0].strip():
                raise ValueError(f"{where}: expected '<relative/path.mp4> <label>' (space or comma separated), "
                                 f"got {line!r}")
            path, label_text = fields[0].strip(), fields[1].strip()
            try:
                label = int(label_text)
            except ValueError:
                raise ValueError(f"{where}: the label {label_text!r} is not an integer (line {line!r})") from None
            if label < 0 or (num_classes is not None and label >= num_classes):
                allowed = f"[0, {num_classes - 1}]" if num_classes is not None else ">= 0"
                raise ValueError(f"{where}: label {label} is out of range {allowed} (line {line!r})")
            samples.append((path, label))
    if not samples:
        raise ValueError(f"{annotation_file} lists no samples; expected '<relative/path.mp4> <label>' lines")
    return samples


def read_class_folders(root: str | os.PathLike, extensions: tuple[str, ...]
                       ) -> tuple[list[tuple[str, int]], list[str]]:
    """``([(path relative to root, label), ...], class names)`` from ``root/<class>/<file>``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist; expected one sub-folder per class")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not classes:
        raise ValueError(f"{root} has no class sub-folders; expected {root}/<class name>/<files>")
    samples = [
        (str(file.relative_to(root)), label)
        for label, name in enumerate(classes)
        for file in sorted((root / name).rglob("*"))
        if file.suffix.lower() in extensions
    ]
    if not samples:
        raise ValueError(f"no files ending in {', '.join(extensions)} under {root}/<class>/")
    return samples, classes
