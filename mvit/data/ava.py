"""AVA v2.2 (paper §4.3, Table 8, Appendix D.2): the official files, training boxes, keyframe-centred
clips, and a dataset for `mvit.detection`.

The official files (https://research.google.com/ava/download.html):

- annotations ``ava_{train,val}_v2.2.csv``: ``video_id, timestamp, x1, y1, x2, y2, action_id, person_id``
  per line, one line per (person, action) at a keyframe (a person doing three actions is three lines with
  the same box); timestamps are whole seconds of the movie, 902 to 1798 (the annotated 15 minutes start at
  900 s); coordinates are normalised to ``[0, 1]``;
- a label map, ``ava_action_list_v2.2.pbtxt`` (80 actions, ``item { name: "..." id: N }``), and the list
  of the 60 evaluated classes, ``ava_action_list_v2.2_for_activitynet_2019.pbtxt`` (same format);
- ``ava_{train,val}_excluded_timestamps_v2.2.csv``: ``video_id, timestamp`` keyframes left out;
- person proposals of a detector, supplied by the user (AVA ships none; PySlowFast uses a Faster R-CNN's):
  ``video_id, timestamp, x1, y1, x2, y2, [action_id,] score`` per line (PySlowFast's files leave the action
  column empty).

Every reader names the file and line of a malformed line, a coordinate outside ``[0, 1]``, an action id
not in the label map, and the dataset names the annotation line of a keyframe its video does not reach.

Training boxes (App. D.2): "ground-truth boxes, and proposals overlapping with ground-truth boxes by IoU >
0.9" (`training_boxes`; a proposal takes the actions of the box it overlaps most). Evaluation scores the
proposals of each keyframe; a proposal's labels, used only for the validation loss, are those of the
ground-truth box it overlaps by IoU >= 0.5, if any. Ground truth of classes outside the evaluated list is
dropped at evaluation, as the official evaluation drops it (so those classes get no AP).

Clips (App. D.2, "a single clip with T frames sampled with stride tau centered at the frame that is to be
evaluated"): `keyframe_clip`. PySlowFast counts the stride in frames at 30 fps; here frame times are
computed at 30 fps and read at the video's own rate, so a video of any frame rate gives the same instants.
Frames are resized (not cropped) to the square input so that every box stays whole, with a random
horizontal flip (boxes flipped with it) in training: a simplification of PySlowFast's short-side jitter
and crops, which can cut boxes.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..detection import box_iou, collate_detection
from .decoding import open_video
from .transforms import KINETICS_MEAN, KINETICS_STD, frames_to_tensor, normalize

FPS = 30  # the frame rate the sampling stride is counted in (PySlowFast's AVA frames)
SEGMENT_START = 900  # the annotated 15 minutes of each movie start at 900 s
KEYFRAMES = range(902, 1799)  # the annotated timestamps, 902 .. 1798
Key = tuple[str, int]  # (video_id, timestamp)


class AVAFormatError(ValueError):
    """A malformed AVA file; the message starts with ``file:line:``."""


@dataclass
class PersonBox:
    """One person at a keyframe: the box ``(x1, y1, x2, y2)`` in ``[0, 1]``, the set of action ids, the
    person id (None when the file has no such column), and the line it first appeared on."""

    box: tuple[float, float, float, float]
    actions: set[int] = field(default_factory=set)
    person_id: Optional[int] = None
    line: int = 0


def _rows(path: str | os.PathLike) -> list[tuple[int, list[str]]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; see mvit.data.ava for the AVA files")
    with open(path, newline="", encoding="utf-8") as f:
        return [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), start=1) if any(row)]


def _number(text: str, kind: type, where: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise AVAFormatError(f"{where}: {what} {text!r} is not a{'n integer' if kind is int else ' number'}") from None


def _key_and_box(row: list[str], where: str) -> tuple[Key, tuple[float, float, float, float]]:
    video_id, timestamp = row[0], _number(row[1], int, where, "timestamp")
    if not video_id:
        raise AVAFormatError(f"{where}: empty video id")
    box = tuple(_number(v, float, where, name) for v, name in zip(row[2:6], ("x1", "y1", "x2", "y2")))
    if not all(0.0 <= v <= 1.0 for v in box):
        raise AVAFormatError(f"{where}: box {list(box)} has a coordinate outside [0, 1]; AVA boxes are normalised")
    if box[2] < box[0] or box[3] < box[1]:
        raise AVAFormatError(f"{where}: box {list(box)} has x2 < x1 or y2 < y1; expected x1, y1, x2, y2")
    return (video_id, timestamp), box  # type: ignore[return-value]


def read_label_map(path: str | os.PathLike) -> dict[int, str]:
    """An AVA label map (``item { name: "..." id: N }`` blocks, ``label_id`` accepted for ``id``) -> ``{id:
    name}``. A block without a name or an id, a non-integer or repeated id, or an unknown line is an error
    naming the line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; it is ava_action_list_v2.2*.pbtxt of the AVA release")
    labels: dict[int, str] = {}
    item: Optional[dict] = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line, where = raw.strip(), f"{path}:{number}"
        if not line:
            continue
        if line.startswith("item") and line.endswith("{"):
            item = {"line": number}
        elif line == "}" and item is not None:
            if "name" not in item or "id" not in item:
                raise AVAFormatError(f"{path}:{item['line']}: an item without a name or an id")
            if item["id"] in labels:
                raise AVAFormatError(f"{where}: id {item['id']} appears twice")
            labels[item["id"]] = item["name"]
            item = None
        elif item is not None and line.startswith("name:") and line.count('"') == 2:
            item["name"] = line.split('"')[1]
        elif item is not None and line.startswith(("id:", "label_id:")):
            item["id"] = _number(line.split(":", 1)[1].strip(), int, where, "id")
        elif item is not None and line.startswith("label_type:"):
            continue
        else:
            raise AVAFormatError(f'{where}: unexpected line {line!r}; expected item {{ name: "..." id: N }} blocks')
    if item is not None:
        raise AVAFormatError(f"{path}:{item['line']}: an item that is not closed with '}}'")
    if not labels:
        raise AVAFormatError(f'{path}: no items; expected item {{ name: "..." id: N }} blocks')
    return labels


def read_annotations(path: str | os.PathLike, label_map: dict[int, str]) -> dict[Key, list[PersonBox]]:
    """An annotation file (``video_id, timestamp, x1, y1, x2, y2, action_id[, person_id]``) -> the people of
    every keyframe, lines of the same box (or person id) merged. Errors name the line: a wrong number of
    columns, a number that does not parse, a coordinate outside [0, 1], an action id not in `label_map`,
    a timestamp outside AVA's 902..1798."""
    people: dict[Key, dict] = {}
    for number, row in _rows(path):
        where = f"{path}:{number}"
        if len(row) not in (7, 8):
            raise AVAFormatError(
                f"{where}: {len(row)} columns; expected video_id, timestamp, x1, y1, x2, y2, action_id, person_id"
            )
        key, box = _key_and_box(row, where)
        if key[1] not in KEYFRAMES:
            raise AVAFormatError(f"{where}: timestamp {key[1]} is outside AVA's annotated seconds 902..1798")
        action = _number(row[6], int, where, "action id")
        if action not in label_map:
            raise AVAFormatError(
                f"{where}: action id {action} is not in the label map ({len(label_map)} ids, "
                f"{min(label_map)}..{max(label_map)}); use the label map of this annotation file"
            )
        person = _number(row[7], int, where, "person id") if len(row) == 8 and row[7] != "" else None
        ident = ("person", person) if person is not None else ("box", box)
        entry = people.setdefault(key, {}).setdefault(ident, PersonBox(box, set(), person, number))
        entry.actions.add(action)
    return {key: list(found.values()) for key, found in people.items()}


def read_proposals(path: str | os.PathLike, min_score: float = 0.0) -> dict[Key, list[tuple[tuple, float]]]:
    """A detector's person boxes (``video_id, timestamp, x1, y1, x2, y2, score`` or with an (empty) action
    column before the score) -> ``{key: [(box, score)]}``, keeping scores >= `min_score`. Errors name the
    line: the column count, numbers, a coordinate outside [0, 1], a score outside [0, 1]."""
    found: dict[Key, list] = {}
    for number, row in _rows(path):
        where = f"{path}:{number}"
        if len(row) not in (7, 8):
            raise AVAFormatError(f"{where}: {len(row)} columns; expected video_id, timestamp, x1, y1, x2, y2, score")
        key, box = _key_and_box(row, where)
        score = _number(row[-1], float, where, "score")
        if not 0.0 <= score <= 1.0:
            raise AVAFormatError(f"{where}: score {score} is outside [0, 1]")
        if score >= min_score:
            found.setdefault(key, []).append((box, score))
    return found


def read_excluded(path: str | os.PathLike) -> set[Key]:
    """An excluded-timestamps file (``video_id, timestamp`` per line) -> the set of keyframes."""
    keys = set()
    for number, row in _rows(path):
        where = f"{path}:{number}"
        if len(row) != 2:
            raise AVAFormatError(f"{where}: {len(row)} columns; expected video_id, timestamp")
        keys.add((row[0], _number(row[1], int, where, "timestamp")))
    return keys


def training_boxes(
    people: list[PersonBox], proposals: list[tuple[tuple, float]], iou_threshold: float = 0.9
) -> tuple[np.ndarray, list[set[int]]]:
    """The training samples of one keyframe (App. D.2): every ground-truth box, then every proposal that
    overlaps a ground-truth box by IoU >= `iou_threshold`, with the actions of the box it overlaps most.
    Returns ``(boxes (K, 4), [actions of each box])``."""
    gt = np.array([p.box for p in people], dtype=np.float64).reshape(-1, 4)
    boxes, actions = [*gt], [set(p.actions) for p in people]
    if proposals and len(gt):
        iou = box_iou(np.array([b for b, _ in proposals]), gt)
        for (box, _), overlaps in zip(proposals, iou):
            if overlaps.max() >= iou_threshold:
                boxes.append(np.array(box))
                actions.append(set(people[int(overlaps.argmax())].actions))
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), actions


def keyframe_clip(
    time: float, video_fps: float, num_video_frames: int, num_frames: int, sampling_rate: int
) -> np.ndarray:
    """Frame indices of a clip of `num_frames` frames, `sampling_rate` frames apart at 30 fps, centred on the
    instant `time` (seconds from the video's start): frame ``j`` shows the instant
    ``time + (j - num_frames // 2) * sampling_rate / 30``, read at the video's `video_fps` and clamped to
    the video (PySlowFast repeats the first or last frame the same way)."""
    offsets = (np.arange(num_frames) - num_frames // 2) * sampling_rate / FPS
    indices = np.floor((time + offsets) * video_fps + 1e-6).astype(np.int64)
    return np.clip(indices, 0, num_video_frames - 1)


def read_manifest(path: str | os.PathLike) -> dict[str, dict]:
    """``videos.json`` of `data_scripts/ava.py`: ``{video_id: {"path": relative path, "fps": float,
    "num_frames": int, "start": seconds of the movie at its first frame}}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; prepare the AVA folder with data_scripts/ava.py")
    videos = json.loads(path.read_text())
    for video_id, entry in videos.items():
        if not {"path", "fps", "num_frames", "start"} <= set(entry):
            raise AVAFormatError(f"{path}: the entry of {video_id!r} lacks path, fps, num_frames or start")
    return videos


class AVADataset(torch.utils.data.Dataset):
    """Keyframes of an AVA folder prepared by ``data_scripts/ava.py`` (``root/videos.json``,
    ``root/videos/<id>.mp4``, ``root/{train,val}.csv``, ``root/label_map.pbtxt``,
    ``root/evaluated_classes.pbtxt``, and optionally ``root/{train,val}_proposals.csv`` and
    ``root/{train,val}_excluded.csv``).

    Items ``(clip float (3, T, S, S), target)`` for `mvit.detection.collate_detection` (the ``collate_fn``):
    ``target = {"key": (video_id, timestamp), "boxes": (K, 4), "labels": (K, C), "gt_boxes": (M, 4),
    "gt_labels": (M, C), "evaluated": (C,) bool}``, label column j is action id ``class_ids[j]`` (the label
    map's ids, sorted); ``evaluated`` marks the columns of ``evaluated_class_ids``.
    ``mode="train"``: the keyframes with ground truth, boxes = `training_boxes`; ``"val"``: the annotated
    keyframes, boxes = the proposals with score >= `min_proposal_score` (PySlowFast's
    ``DETECTION_SCORE_THRESH``), ground truth restricted to the evaluated classes.
    """

    collate_fn = staticmethod(collate_detection)

    def __init__(
        self,
        root: str | os.PathLike,
        mode: str = "train",
        num_frames: int = 16,
        sampling_rate: int = 4,
        crop_size: int = 224,
        min_proposal_score: float = 0.8,
        proposal_iou: float = 0.9,
        flip: bool = True,
    ) -> None:
        if mode not in ("train", "val"):
            raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
        self.root, self.mode = Path(root), mode
        self.num_frames, self.sampling_rate, self.crop_size = num_frames, sampling_rate, crop_size
        self.proposal_iou, self.flip = proposal_iou, flip and mode == "train"
        self.label_map = read_label_map(self.root / "label_map.pbtxt")
        self.class_ids = sorted(self.label_map)
        self.classes = [self.label_map[i] for i in self.class_ids]
        self.num_classes = len(self.class_ids)
        evaluated = read_label_map(self.root / "evaluated_classes.pbtxt")
        unknown = sorted(set(evaluated) - set(self.label_map))
        if unknown:
            raise AVAFormatError(f"{self.root / 'evaluated_classes.pbtxt'}: ids {unknown} are not in label_map.pbtxt")
        self.evaluated_class_ids = sorted(evaluated)
        self.videos = read_manifest(self.root / "videos.json")
        annotation_file = self.root / f"{mode}.csv"
        people = read_annotations(annotation_file, self.label_map)
        proposal_file = self.root / f"{mode}_proposals.csv"
        self.proposals = read_proposals(proposal_file, min_proposal_score) if proposal_file.is_file() else {}
        if mode == "val" and not self.proposals:
            raise FileNotFoundError(
                f"{proposal_file} does not exist or has no box; evaluation scores a detector's boxes"
            )
        excluded_file = self.root / f"{mode}_excluded.csv"
        excluded = read_excluded(excluded_file) if excluded_file.is_file() else set()
        self.keyframes: list[Key] = []
        self.people: dict[Key, list[PersonBox]] = {}
        for key in sorted(people):
            if key in excluded:
                continue
            entry = self.videos.get(key[0])
            line = min(p.line for p in people[key])
            if entry is None:
                raise AVAFormatError(
                    f"{annotation_file}:{line}: video {key[0]!r} is not in {self.root / 'videos.json'}; "
                    "prepare it with data_scripts/ava.py or remove its lines"
                )
            if (
                int(np.floor((key[1] - entry["start"]) * entry["fps"])) >= entry["num_frames"]
                or key[1] < entry["start"]
            ):
                raise AVAFormatError(
                    f"{annotation_file}:{line}: keyframe {key[1]} s of {key[0]!r} is missing: its video covers "
                    f"{entry['start']} s to {entry['start'] + entry['num_frames'] / entry['fps']:.1f} s"
                )
            self.keyframes.append(key)
            self.people[key] = people[key]
        self._column = {c: j for j, c in enumerate(self.class_ids)}
        self._evaluated = torch.zeros(self.num_classes)
        self._evaluated[[self._column[c] for c in self.evaluated_class_ids]] = 1.0

    def __len__(self) -> int:
        return len(self.keyframes)

    def _multi_hot(self, actions: list[set[int]]) -> torch.Tensor:
        labels = torch.zeros(len(actions), self.num_classes)
        for row, ids in enumerate(actions):
            labels[row, [self._column[i] for i in ids]] = 1.0
        return labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        key = self.keyframes[index]
        people, entry = self.people[key], self.videos[key[0]]
        gt = np.array([p.box for p in people], dtype=np.float64).reshape(-1, 4)
        gt_labels = self._multi_hot([p.actions for p in people])
        proposals = self.proposals.get(key, [])
        if self.mode == "train":
            boxes, actions = training_boxes(people, proposals, self.proposal_iou)
            labels = self._multi_hot(actions)
        else:
            gt_labels = gt_labels * self._evaluated  # the official evaluation drops the other classes
            boxes = np.array([b for b, _ in proposals], dtype=np.float64).reshape(-1, 4)
            iou = box_iou(boxes, gt)
            labels = torch.zeros(len(boxes), self.num_classes)
            if len(gt):
                hit = iou.max(axis=1) >= 0.5
                labels[torch.from_numpy(hit)] = gt_labels[torch.from_numpy(iou.argmax(axis=1)[hit])]
        indices = keyframe_clip(
            key[1] - entry["start"], entry["fps"], entry["num_frames"], self.num_frames, self.sampling_rate
        )
        with open_video(self.root / entry["path"]) as video:
            frames = video.get_frames(indices)
        clip = normalize(frames_to_tensor(torch.from_numpy(frames)), KINETICS_MEAN, KINETICS_STD)  # (T, 3, H, W)
        clip = F.interpolate(clip, size=(self.crop_size, self.crop_size), mode="bilinear", align_corners=False)
        boxes_t, gt_t = torch.as_tensor(boxes, dtype=torch.float32), torch.as_tensor(gt, dtype=torch.float32)
        if self.flip and torch.rand(()) < 0.5:
            clip = clip.flip(-1)
            boxes_t = torch.stack([1 - boxes_t[:, 2], boxes_t[:, 1], 1 - boxes_t[:, 0], boxes_t[:, 3]], dim=1)
            gt_t = torch.stack([1 - gt_t[:, 2], gt_t[:, 1], 1 - gt_t[:, 0], gt_t[:, 3]], dim=1)
        target = {"key": key, "boxes": boxes_t, "labels": labels, "gt_boxes": gt_t, "gt_labels": gt_labels}
        target["evaluated"] = self._evaluated.bool()  # the metric scores only the evaluated classes
        return clip.permute(1, 0, 2, 3).contiguous(), target
