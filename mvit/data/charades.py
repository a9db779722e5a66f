"""Charades (Sigurdsson et al. 2016): multi-label action classification of long indoor videos (paper §4.2,
Table 7, Appendix D.3: 157 classes, 9.8k training and 1.8k validation videos of about 30 s, scored by mAP).

The official annotation files ``Charades_v1_train.csv`` and ``Charades_v1_test.csv`` have one row per
video with the columns ``id, subject, scene, quality, relevance, verified, script, objects, descriptions,
actions, length``. Only ``id`` and ``actions`` are read: ``actions`` lists the video's action instances as
``class start end`` separated by ``;``, e.g. ``c092 11.90 21.20;c147 0.00 12.60`` (class ids ``c000`` to
``c156``, times in seconds; empty for a video without actions). `read_charades_csv` checks every row and
stops at the first bad one with the file and line: a missing column, a bad class id, an unparsable time,
a start after its end, a duplicated video id.

Targets are frame-level: a clip is labelled with every class that has an instance overlapping the clip's
time span (`clip_targets`), so a training clip cut from a 30 s video is not asked to show actions that
happen elsewhere in it. Video-level testing labels the video with all
its classes (`video_targets`) and max-pools each class's score over clips (`mvit.engine.tasks`).

`CharadesDataset` reads ``root/videos/<id>.mp4`` (the release's ``Charades_v1_480`` folder, which
``data_scripts/charades.py`` links or re-encodes there) through the package's decoding layer; the time of
frame ``i`` is ``i / fps`` with the file's own frame rate (the release is at about 24-30 fps).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch

from .annotations import AnnotationError
from .decoding import open_video
from .failures import EXCLUDED, UnreadableFile
from .transforms import Augmentation
from .video_dataset import VideoDataset

NUM_CLASSES = 157
SPLIT_FILES = {"train": "Charades_v1_train.csv", "val": "Charades_v1_test.csv"}  # the release's names
CLASSES_FILE = "Charades_v1_classes.txt"  # "c000 Holding some clothes" per line
_CLASS_ID = re.compile(r"c(\d{3})")


class Action(NamedTuple):
    """One action instance: class `label` (``c092`` -> 92) from `start` to `end` seconds."""

    label: int
    start: float
    end: float


class CharadesVideo(NamedTuple):
    id: str
    actions: tuple[Action, ...]


def class_index(text: str, num_classes: int = NUM_CLASSES) -> int:
    """``"c092"`` -> 92; anything else, or an index outside [0, num_classes), raises ValueError."""
    match = _CLASS_ID.fullmatch(text)
    if match is None or int(match.group(1)) >= num_classes:
        raise ValueError(f"class id {text!r} is not one of c000..c{num_classes - 1:03d}")
    return int(match.group(1))


def parse_actions(text: str, num_classes: int = NUM_CLASSES) -> tuple[Action, ...]:
    """The ``actions`` field ``"c092 11.90 21.20;c147 0.00 12.60"`` -> Actions (empty field: none).
    Raises ValueError naming the bad instance."""
    actions = []
    for item in text.split(";"):
        if not item.strip():
            continue
        fields = item.split()
        if len(fields) != 3:
            raise ValueError(f"action {item.strip()!r} is not 'cNNN start end'")
        label = class_index(fields[0], num_classes)
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            raise ValueError(f"action {item.strip()!r}: the times must be numbers of seconds") from None
        if not (np.isfinite(start) and np.isfinite(end)) or start < 0:
            raise ValueError(f"action {item.strip()!r}: the times must be finite and not negative")
        if start > end:
            raise ValueError(f"action {item.strip()!r} starts after it ends ({start} > {end})")
        actions.append(Action(label, start, end))
    return tuple(actions)


def read_charades_csv(path: str | os.PathLike, num_classes: int = NUM_CLASSES) -> list[CharadesVideo]:
    """The videos of an official Charades annotation file, each row checked (see the module docstring).
    Raises `AnnotationError` naming the file and line of the first bad row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Charades annotation file {path} does not exist (Charades_v1_train.csv / _test.csv)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise AnnotationError(f"{path}:{line}: not UTF-8 text; expected the Charades CSV") from None
    reader = csv.DictReader(text.splitlines(), strict=True)
    videos, seen = [], {}
    try:
        missing = {"id", "actions"} - set(reader.fieldnames or ())
        if missing:
            raise AnnotationError(
                f"{path}:1: the header lacks the column(s) {sorted(missing)}; expected the Charades CSV header "
                "'id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length'"
            )
        line = 1
        for row in reader:
            where, line = f"{path}:{line + 1}", reader.line_num  # the row's first line (quoted fields may span)
            if None in row.values() or None in row:
                raise AnnotationError(
                    f"{where}: the row has {len([v for v in row.values() if v is not None])} fields where the "
                    f"header has {len(reader.fieldnames)} (a missing column or a stray comma)"
                )
            video_id = row["id"].strip()
            if not re.fullmatch(r"[A-Za-z0-9_-]+", video_id):
                raise AnnotationError(f"{where}: video id {video_id!r} is empty or not a plain name")
            if video_id in seen:
                raise AnnotationError(
                    f"{where}: video id {video_id!r} is listed again (first at line {seen[video_id]})"
                )
            seen[video_id] = where.rsplit(":", 1)[1]
            try:
                actions = parse_actions(row["actions"], num_classes)
            except ValueError as error:
                raise AnnotationError(f"{where}: {error}") from None
            videos.append(CharadesVideo(video_id, actions))
    except csv.Error as error:
        raise AnnotationError(f"{path}:{reader.line_num}: malformed CSV ({error})") from None
    if not videos:
        raise AnnotationError(f"{path} lists no videos")
    return videos


def read_classes(path: str | os.PathLike) -> list[str]:
    """``Charades_v1_classes.txt`` (``c000 Holding some clothes`` per line, in order) -> the class names."""
    names = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        cid, _, name = line.strip().partition(" ")
        if cid != f"c{len(names):03d}" or not name.strip():
            raise AnnotationError(f"{path}:{number}: expected 'c{len(names):03d} <class name>', got {line.strip()!r}")
        names.append(name.strip())
    return names


def clip_targets(actions: Sequence[Action], start: float, end: float, num_classes: int) -> torch.Tensor:
    """Multi-hot ``(num_classes,)`` float: 1 for each class with an instance overlapping the closed time span
    ``[start, end]`` (seconds) of a clip, else 0."""
    if start > end:
        raise ValueError(f"the clip's span must satisfy start <= end, got [{start}, {end}]")
    target = torch.zeros(num_classes)
    for action in actions:
        if action.start <= end and action.end >= start:
            target[action.label] = 1.0
    return target


def video_targets(actions: Sequence[Action], num_classes: int) -> torch.Tensor:
    """Multi-hot ``(num_classes,)``: every class the video has an instance of."""
    target = torch.zeros(num_classes)
    for action in actions:
        target[action.label] = 1.0
    return target


def frame_span(indices: np.ndarray, fps: float) -> tuple[float, float]:
    """The time span (seconds) a clip of frame `indices` covers: from the time of its first frame to that of
    its last, ``[min / fps, max / fps]`` (frame i shows time i / fps). The frames between two sampled ones
    count: an action inside the span is in the clip's targets even when it falls between samples."""
    return float(indices.min()) / fps, float(indices.max()) / fps


class CharadesDataset(VideoDataset):
    """Clips of the Charades videos ``video_root/<id>.mp4`` listed in an official annotation file, with
    multi-hot targets ``(num_classes,)``:

    - ``"train"``: ``(clip (3, T, c, c), clip_targets)``, a clip at a random position (T frames `sampling_rate`
      apart), augmented as for Kinetics (App. D.3);
    - ``"val"``: the centre clip and its frame-level targets;
    - ``"test"``: ``(views (num_clips * num_crops, 3, T, c, c), video_targets)``.

    An unreadable file is handled as in `VideoDataset` (replaced in training; in evaluation a zero item whose
    targets are all `EXCLUDED`, which evaluation drops and counts)."""

    def __init__(
        self,
        annotation_file: str | os.PathLike,
        video_root: str | os.PathLike,
        mode: str = "train",
        num_frames: int = 16,
        sampling_rate: int = 4,
        crop_size: int = 224,
        num_clips: int = 10,
        num_crops: int = 3,
        *,
        num_classes: int = NUM_CLASSES,
        augmentation: Augmentation | None = Augmentation(),
        test_short_side: int | None = None,
        backend: str = "auto",
        max_failures: int | None = None,
        video_extension: str = ".mp4",
    ) -> None:
        self.video_extension = video_extension
        super().__init__(
            annotation_file,
            video_root,
            mode,
            num_frames,
            sampling_rate,
            crop_size,
            num_clips,
            num_crops,
            augmentation=augmentation,
            test_short_side=test_short_side,
            num_classes=num_classes,
            backend=backend,
            max_failures=max_failures,
        )

    def _read_samples(self, annotation_file, num_classes, classes) -> tuple[list, None]:
        videos = read_charades_csv(annotation_file, num_classes)
        return [(f"{v.id}{self.video_extension}", v.actions) for v in videos], None

    def _load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, actions = self.samples[index]
        with open_video(self.root / path, self.backend) as video:
            fps = video.fps
            if not fps > 0:
                raise UnreadableFile(self.root / path, "the file states no frame rate, so frames have no times")
            clips = self.clip_indices(len(video))
            frames = video.get_frames(np.concatenate(clips))
        views = torch.cat([self.transform(chunk) for chunk in np.split(frames, len(clips))])  # (views, 3, T, c, c)
        if self.mode == "test":
            return views, video_targets(actions, self.num_classes)
        return views[0], clip_targets(actions, *frame_span(clips[0], fps), self.num_classes)

    def __getitem__(self, index: int):
        item, target = super().__getitem__(index)
        if isinstance(target, int) and target == EXCLUDED:  # the placeholder of an unreadable file
            target = torch.full((self.num_classes,), float(EXCLUDED))
        return item, target
