"""A synthetic spatio-temporal action detection set: our CPU stand-in for AVA (paper §4.3, App. D.2).

Every clip shows two or three objects (discs and squares of random colours over a noisy background),
each moving in a straight line at its own speed. An object's action is the direction it moves in:
right, left, down or up, and the objects of one clip all move in different directions. The clip is
centred on its keyframe (the middle frame, index ``T // 2``, as AVA's clips are centred on the annotated
second), and an object's box is its bounding box on the keyframe, normalised ``(x1, y1, x2, y2)``.

So, as in AVA, the label belongs to a box, not to the clip: the clip as a whole always holds several
actions, and a box's action can only be read from the motion *at that box* over time. A single frame
tells nothing (an object moving right and one moving left look alike on any frame).

Items are AVA-shaped (`mvit.detection.collate_detection`): ``(clip (3, T, S, S), target)`` with the
boxes to classify (training: the ground-truth boxes; evaluation: the ground-truth boxes jittered by a few
pixels, standing for a person detector's proposals), their multi-hot labels, and the keyframe's ground
truth. Class ids are 1-based like AVA's (`CLASS_IDS`); chance for the frame-mAP is about the share of
boxes of a class, 1/4 (the experiment measures it with random scores).
"""

from __future__ import annotations

import numpy as np
import torch

from ..detection import box_iou, collate_detection
from .synthetic import SPLITS, _colours
from .transforms import KINETICS_MEAN, KINETICS_STD, frames_to_tensor, normalize

ACTIONS = ("moving right", "moving left", "moving down", "moving up")
CLASS_IDS = (1, 2, 3, 4)  # AVA-style 1-based ids, column j of the labels is CLASS_IDS[j]
DIRECTIONS = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # (dx, dy) per action, y downwards


def render_detection_clip(
    num_frames: int, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(frames uint8 (T, S, S, 3), boxes (N, 4) normalised on the keyframe, actions (N,) in 0..3)`` of
    one clip with N = 2 or 3 objects, parameters drawn from `rng`."""
    if num_frames < 4 or size < 32:
        raise ValueError(f"need num_frames >= 4 and size >= 32 to draw the objects, got {num_frames}, {size}")
    s = float(size)
    background, _ = _colours(rng)
    t = np.arange(num_frames, dtype=np.float64) - num_frames // 2  # frames from the keyframe
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    actions = rng.permutation(len(ACTIONS))[: rng.integers(2, 4)]
    video = background + rng.uniform(0.0, 0.05) * rng.standard_normal((num_frames, size, size, 3))
    boxes = []
    for action in actions:
        r = rng.uniform(0.09, 0.13) * s
        speed = rng.uniform(0.035, 0.05) * s  # pixels per frame
        reach = speed * max(-t[0], t[-1])
        for _ in range(100):  # a keyframe position whose whole path stays in the frame, apart from the others
            lo = np.where(DIRECTIONS[action] != 0, r + reach, r)
            centre = rng.uniform(lo, s - lo)
            box = np.concatenate([centre - r, centre + r]) / s
            if not boxes or box_iou(box[None], np.array(boxes)).max() == 0:
                break
        else:
            continue  # no room: fewer objects
        boxes.append(box)
        colour = rng.uniform(0.0, 1.0, 3)
        if abs(colour - background).max() < 0.3:
            colour = 1.0 - background
        cx = centre[0] + speed * DIRECTIONS[action][0] * t
        cy = centre[1] + speed * DIRECTIONS[action][1] * t
        dx, dy = x - cx[:, None, None], y - cy[:, None, None]
        if rng.random() < 0.5:
            inside = r - np.sqrt(dx * dx + dy * dy)  # disc
        else:
            inside = 0.89 * r - np.maximum(np.abs(dx), np.abs(dy))  # square of about the disc's area
        cover = np.clip(inside + 0.5, 0.0, 1.0)[..., None]
        video = video * (1 - cover) + colour * cover
    kept = np.array(actions[: len(boxes)])
    frames = np.round(np.clip(video, 0.0, 1.0) * 255).astype(np.uint8)
    return frames, np.array(boxes, dtype=np.float64).reshape(-1, 4), kept


class SyntheticDetectionDataset(torch.utils.data.Dataset):
    """In memory, no files: ``num_samples`` clips of ``num_frames`` frames of ``size x size`` pixels,
    item i drawn from a generator seeded by ``(seed, split, i)`` (the same on every call).

    Items ``(clip float (3, T, S, S) normalised like VideoDataset, target)`` with ``target = {"key": (split,
    i), "boxes": (K, 4), "labels": (K, 4), "gt_boxes": (N, 4), "gt_labels": (N, 4)}``; in the "train" split
    ``boxes`` are the ground-truth boxes, otherwise the ground truth jittered (Gaussian, ``jitter`` of the
    box size per coordinate), standing for a detector's proposals. ``class_ids`` / ``evaluated_class_ids``:
    the ids of the label columns, all evaluated. ``collate_fn``: `mvit.detection.collate_detection`."""

    classes = ACTIONS
    num_classes = len(ACTIONS)
    class_ids = CLASS_IDS
    evaluated_class_ids = CLASS_IDS
    collate_fn = staticmethod(collate_detection)  # the engine's loaders batch items with it

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 400,
        num_frames: int = 8,
        size: int = 64,
        seed: int = 0,
        jitter: float = 0.05,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.split, self.num_samples, self.num_frames, self.size = split, num_samples, num_frames, size
        self.seed, self.jitter = seed, jitter

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index, 7])  # 7: apart from the temporal set
        frames, boxes, actions = render_detection_clip(self.num_frames, self.size, rng)
        clip = normalize(frames_to_tensor(torch.from_numpy(frames)), KINETICS_MEAN, KINETICS_STD)
        labels = torch.zeros(len(boxes), self.num_classes)
        labels[torch.arange(len(boxes)), torch.as_tensor(actions)] = 1.0
        gt = torch.as_tensor(boxes, dtype=torch.float32)
        proposals = gt
        if self.split != "train":
            side = (gt[:, 2:] - gt[:, :2]).repeat(1, 2)
            proposals = (gt + self.jitter * side * torch.from_numpy(rng.standard_normal(gt.shape)).float()).clamp(0, 1)
        target = {"key": (self.split, index), "boxes": proposals, "labels": labels, "gt_boxes": gt, "gt_labels": labels}
        return clip.permute(1, 0, 2, 3).contiguous(), target
