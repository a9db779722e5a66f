"""Spatio-temporal action detection with MViT as the backbone (paper §4.3, Table 8, Appendix D.2): the
RoI head, the detector, and AVA's frame-level mean average precision.

**The head** (App. D.2, "a detector similar to Faster R-CNN with minimal modifications adapted for video").
The last stage's tokens are put back on their space-time grid, a feature map ``(B, C, T', H', W')``
(`mvit.model.MViT.feature_map`). A 2-D person box of the keyframe is replicated along time into a 3-D RoI;
RoIAlign (`torchvision.ops.roi_align`) extracts an ``r x r`` feature from every frame of the map, the
frames are averaged (temporal global average pooling), the ``r x r`` cell is max-pooled, and the model's
classifier (MViT's ``head``, now on RoI features instead of the class token) gives one logit per class,
read through a per-class sigmoid (an actor can do several actions at once). The detector's state dict is
exactly MViT's, so Kinetics weights load unchanged. PySlowFast's ``ResNetRoIHead``
(``slowfast/models/head_helper.py``) averages over time first and then runs one RoIAlign; RoIAlign is
linear in the feature map, so the two orders give the same numbers (a test checks it).

Boxes are ``(x1, y1, x2, y2)`` normalised to ``[0, 1]`` by the clip's width and height, as in AVA's
files. The head clips a box that is partly outside the frame to the frame (a detector's proposal may
overhang by a pixel); a box entirely outside, with ``x2 < x1`` or ``y2 < y1``, or not finite is a
`ValueError`. Data files are stricter: `mvit.data.ava` rejects any coordinate outside ``[0, 1]``.

**The metric**, `frame_map`: AVA's official frame-level mAP (ActivityNet's ``get_ava_performance.py`` with
the PASCAL VOC evaluator of ``ava/object_detection_evaluation.py``), re-implemented:

1. per keyframe, keep the 50 highest-scoring labelled detections (``max_per_keyframe``); detections
   on keyframes without ground truth are ignored;
2. per class and keyframe, walk the detections by decreasing score; each one is compared with the
   ground-truth box of that class it overlaps most; it is a true positive when that IoU is >= 0.5 and
   the box was not matched before (then it is matched), else a false positive;
3. per class, rank all its detections by score over all keyframes; precision and recall along the
   ranking; AP is the area under the precision-recall curve made monotone (VOC 2010+, every recall
   point); a class without ground truth has no AP (NaN) and is left out of the mean.

Ties in score are broken by the order the detections were given (the reference's sort leaves it
unspecified). Note step 2: a detection whose best box is already taken is a false positive even if
another box of the class overlaps it by 0.5; this is the reference's rule.

API::

    detector = build_detector("mvit_tiny", num_classes=4)        # an MViT whose head reads RoI features
    logits = detector(clips, boxes)    # clips (B, 3, T, H, W), boxes: B tensors (K_b, 4) -> (sum K_b, classes)
    probabilities = logits.sigmoid()   # per class
    result = frame_map(ground_truth, detections, classes=[1, 2, 3, 4])
    result.mean_ap, result.per_class   # float, {class id: AP or NaN}

``ground_truth`` maps a keyframe key (any hashable, e.g. ``("video_id", 902)``) to ``(boxes (M, 4),
class_ids (M,))``, one row per labelled box as in AVA's CSV (a person doing two actions is two rows);
``detections`` maps a key to ``(boxes (N, 4), class_ids (N,), scores (N,))``. `labelled_detections`
turns a head's ``(K, C)`` probabilities into those rows. `train_detector` and `evaluate_detector` run
the training steps and the evaluation over a loader of `collate_detection` batches, for a notebook that
wants a bare loop::

    from torch.utils.data import DataLoader
    from mvit.data.synthetic_detection import CLASS_IDS, SyntheticDetectionDataset
    train = DataLoader(SyntheticDetectionDataset("train", 400), 8, shuffle=True, collate_fn=collate_detection)
    val = DataLoader(SyntheticDetectionDataset("val", 200), 16, collate_fn=collate_detection)
    losses = train_detector(detector, train, torch.optim.AdamW(detector.parameters(), 1e-3), epochs=6)
    evaluate_detector(detector, val, CLASS_IDS).mean_ap

Through the engine, ``model.task: detection`` (`mvit.engine.tasks.Detection`) builds this detector from a
recipe, trains it and logs ``val_frame_mAP``; ``mvit eval`` reports ``frame_mAP``. Recipes:
``cpu_synthetic_detection_mvit`` (the synthetic set of `mvit.data.synthetic_detection`, a minute or two on
a laptop CPU) and ``ava_mvit_b_16x4`` (App. D.2 on AVA, `mvit.data.ava`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Hashable, Iterable, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from .configs import MViTConfig, get_config
from .model import MViT

# --------------------------------------------------------------------------------------------------
# Boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box of `a` ``(N, 4)`` with every box of `b` ``(M, 4)``, boxes as
    ``(x1, y1, x2, y2)``: ``(N, M)`` in float64 (0 where both boxes have no area)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def clip_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Normalised boxes ``(K, 4)`` clipped to the frame ``[0, 1]``; a `ValueError` for a box that is not
    finite, has ``x2 < x1`` or ``y2 < y1``, or lies entirely outside the frame."""
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (K, 4) as (x1, y1, x2, y2), got {tuple(boxes.shape)}")
    if not torch.isfinite(boxes).all():
        raise ValueError("boxes must be finite numbers")
    x1, y1, x2, y2 = boxes.unbind(1)
    if ((x2 < x1) | (y2 < y1)).any():
        raise ValueError("a box has x2 < x1 or y2 < y1; boxes are (x1, y1, x2, y2), normalised to [0, 1]")
    if ((x1 >= 1) | (y1 >= 1) | (x2 <= 0) | (y2 <= 0)).any():
        bad = ", ".join(f"{v:.3g}" for v in boxes[(x1 >= 1) | (y1 >= 1) | (x2 <= 0) | (y2 <= 0)][0].tolist())
        raise ValueError(f"the box ({bad}) lies entirely outside the frame; boxes are normalised to [0, 1]")
    return boxes.clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------------
# The head and the detector


class RoIFeatures(nn.Module):
    """The pooled feature of every box (App. D.2), no parameters.

    ``features: (B, C, T, H, W)``, ``boxes``: a sequence of B tensors ``(K_b, 4)`` of normalised
    ``(x1, y1, x2, y2)`` (the boxes of clip b; ``K_b`` may be 0) -> ``(K, C)`` with ``K = sum K_b``, rows in
    the order of the boxes: each box replicated over the T frames, RoIAlign per frame, the average over
    time, the maximum over the ``r x r`` cell.

    ``resolution``: RoIAlign's output size ``r`` (PySlowFast's ``DETECTION.ROI_XFORM_RESOLUTION``, 7);
    ``aligned``: RoIAlign's half-pixel alignment (PySlowFast's ``DETECTION.ALIGNED``, True).
    """

    def __init__(self, resolution: int = 7, aligned: bool = True) -> None:
        super().__init__()
        self.resolution, self.aligned = resolution, aligned

    def forward(self, features: torch.Tensor, boxes: Sequence[torch.Tensor]) -> torch.Tensor:
        b, c, t, h, w = features.shape
        if len(boxes) != b:
            raise ValueError(f"got {len(boxes)} box tensors for a batch of {b} clips; pass one (K_b, 4) per clip")
        scale = features.new_tensor([w, h, w, h])
        rois = []  # (K * T, 5): frame index in the (B * T) stack, then the box in feature-map cells
        for i, clip_boxes_ in enumerate(boxes):
            cells = clip_boxes(clip_boxes_.to(features)) * scale
            frames = (i * t + torch.arange(t, device=features.device, dtype=features.dtype)).repeat(len(cells))
            rois.append(torch.cat((frames[:, None], cells.repeat_interleave(t, dim=0)), dim=1))
        rois = torch.cat(rois) if rois else features.new_zeros(0, 5)
        frames = features.transpose(1, 2).reshape(b * t, c, h, w)  # every frame of every clip
        pooled = roi_align(frames, rois, self.resolution, spatial_scale=1.0, sampling_ratio=0, aligned=self.aligned)
        pooled = pooled.reshape(-1, t, c, self.resolution, self.resolution).mean(dim=1)  # temporal average
        return pooled.amax(dim=(-2, -1))  # spatial max pooling


class MViTDetector(MViT):
    """MViT with the detection head of App. D.2: the classifier reads each box's RoI features of the last
    stage's map instead of the class token.

    ``clips: (B, 3, T, H, W)``, ``boxes``: B tensors ``(K_b, 4)``, normalised ``(x1, y1, x2, y2)`` on the
    keyframe -> logits ``(sum K_b, num_classes)``; a per-class sigmoid gives the probabilities.

    The head is MViT's own ``head_drop`` + ``head`` (dropout, then a Linear of the last stage's width to
    ``num_classes``) and the RoI pooling has no parameters, so the state dict is exactly MViT's: a Kinetics
    checkpoint loads with `mvit.convert.load_pretrained` (``new_head=True`` for the new classes), as App. D.2
    initialises from the Kinetics models.
    """

    def __init__(self, config: MViTConfig, resolution: int = 7) -> None:
        super().__init__(config)
        self.roi = RoIFeatures(resolution)

    def forward(self, clips: torch.Tensor, boxes: Sequence[torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        return self.head(self.head_drop(self.roi(self.feature_map(clips), boxes)))


def build_detector(name: str, resolution: int = 7, **overrides) -> MViTDetector:
    """`MViTDetector` on the preset `name` (`mvit.list_models()`) with `MViTConfig` `overrides`.

    >>> detector = build_detector("mvit_b_16x4", num_classes=80, drop_path=0.4)
    """
    return MViTDetector(get_config(name, **overrides), resolution)


# --------------------------------------------------------------------------------------------------
# Frame-level mAP (the official AVA protocol)


@dataclass
class FrameMAP:
    """`frame_map`'s result: the mean over classes with ground truth, and every evaluated class's AP
    (NaN for a class without ground truth)."""

    mean_ap: float
    per_class: dict[int, float]
    iou_threshold: float


def voc_average_precision(scores: np.ndarray, is_tp: np.ndarray, num_gt: int) -> float:
    """Area under the monotone precision-recall curve of detections `scores` ``(N,)`` with true-positive
    flags `is_tp` ``(N,)`` against `num_gt` ground-truth boxes (PASCAL VOC 2010+, every recall point).
    NaN when `num_gt` is 0; ties in score keep the given order."""
    if num_gt == 0:
        return math.nan
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.asarray(is_tp, dtype=bool)[order]
    if tp.sum() > num_gt:
        raise ValueError(f"{int(tp.sum())} true positives for {num_gt} ground-truth boxes")
    cum_tp = np.cumsum(tp)
    precision = cum_tp / np.arange(1, len(tp) + 1)
    recall = cum_tp / num_gt
    precision = np.concatenate(([0.0], precision, [0.0]))
    recall = np.concatenate(([0.0], recall, [1.0]))
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or beyond
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def match_detections(
    boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float = 0.5
) -> np.ndarray:
    """True-positive flags ``(N,)`` of one class's detections on one keyframe, in the given order: by
    decreasing score, each detection takes the ground-truth box it overlaps most when that IoU is
    >= `iou_threshold` and the box is still free."""
    is_tp = np.zeros(len(boxes), dtype=bool)
    if len(boxes) == 0 or len(gt_boxes) == 0:
        return is_tp
    iou = box_iou(boxes, gt_boxes)
    best = iou.argmax(axis=1)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        j = best[i]
        if iou[i, j] >= iou_threshold and not taken[j]:
            is_tp[i] = taken[j] = True
    return is_tp


def frame_map(
    ground_truth: Mapping[Hashable, tuple],
    detections: Mapping[Hashable, tuple],
    classes: Iterable[int],
    iou_threshold: float = 0.5,
    max_per_keyframe: Optional[int] = 50,
) -> FrameMAP:
    """AVA's frame-level mAP over the evaluated `classes` (see the module docstring for the protocol).

    ``ground_truth[key] = (boxes (M, 4), class_ids (M,))``; ``detections[key] = (boxes (N, 4),
    class_ids (N,), scores (N,))``; rows with a class not in `classes` are ignored, as are detections on
    keyframes absent from `ground_truth`. ``max_per_keyframe``: the reference keeps the 50 best labelled
    detections per keyframe (None: all).
    """
    classes = [int(c) for c in classes]
    scores: dict[int, list[np.ndarray]] = {c: [] for c in classes}
    flags: dict[int, list[np.ndarray]] = {c: [] for c in classes}
    num_gt = dict.fromkeys(classes, 0)
    for key, (gt_boxes, gt_ids) in ground_truth.items():
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        gt_ids = np.asarray(gt_ids).reshape(-1)
        for c in classes:
            num_gt[c] += int((gt_ids == c).sum())
        if key not in detections:
            continue
        boxes, ids, det_scores = (np.asarray(a) for a in detections[key])
        boxes, ids, det_scores = boxes.reshape(-1, 4).astype(np.float64), ids.reshape(-1), det_scores.reshape(-1)
        keep = np.isin(ids, classes)
        boxes, ids, det_scores = boxes[keep], ids[keep], det_scores[keep].astype(np.float64)
        if max_per_keyframe is not None and len(det_scores) > max_per_keyframe:
            top = np.sort(np.argsort(-det_scores, kind="stable")[:max_per_keyframe])
            boxes, ids, det_scores = boxes[top], ids[top], det_scores[top]
        for c in np.unique(ids):
            mine = ids == c
            scores[int(c)].append(det_scores[mine])
            flags[int(c)].append(match_detections(boxes[mine], det_scores[mine], gt_boxes[gt_ids == c], iou_threshold))
    per_class = {
        c: voc_average_precision(
            np.concatenate(scores[c]) if scores[c] else np.zeros(0),
            np.concatenate(flags[c]) if flags[c] else np.zeros(0, dtype=bool),
            num_gt[c],
        )
        for c in classes
    }
    evaluated = [ap for ap in per_class.values() if not math.isnan(ap)]
    return FrameMAP(float(np.mean(evaluated)) if evaluated else math.nan, per_class, iou_threshold)


def labelled_detections(boxes: torch.Tensor, probabilities: torch.Tensor, class_ids: Sequence[int]) -> tuple:
    """A head's output for one keyframe as `frame_map` detection rows: every box with every class.

    ``boxes (K, 4)``, ``probabilities (K, C)`` (column j is class ``class_ids[j]``) -> ``(boxes (K*C, 4),
    class_ids (K*C,), scores (K*C,))`` as NumPy arrays."""
    k, c = probabilities.shape
    ids = np.asarray(class_ids)
    if len(ids) != c:
        raise ValueError(f"{c} score columns but {len(ids)} class ids")
    return (
        np.repeat(boxes.detach().cpu().double().numpy().reshape(k, 4), c, axis=0),
        np.tile(ids, k),
        probabilities.detach().cpu().double().numpy().reshape(-1),
    )


# --------------------------------------------------------------------------------------------------
# Batches, training and evaluation over a loader


def collate_detection(batch: Sequence[tuple[torch.Tensor, dict]]) -> tuple[torch.Tensor, dict]:
    """Detection samples -> one batch.

    A sample is ``(clip (3, T, H, W), target)`` with ``target = {"key": keyframe key, "boxes": (K, 4) the
    boxes to classify (training: ground truth and proposals; evaluation: the detector's proposals),
    "labels": (K, C) their multi-hot targets, "gt_boxes": (M, 4), "gt_labels": (M, C) the keyframe's
    ground truth}``, and optionally ``"evaluated": (C,) bool``, the label columns the metric scores (AVA
    evaluates 60 of its 80 actions; default all). The batch is ``(clips (B, 3, T, H, W), {"keys": [B],
    "boxes": [B x (K_b, 4)], "labels": (sum K_b, C), "gt_boxes": [B x (M_b, 4)], "gt_labels": [B x (M_b, C)]
    [, "evaluated": (C,)]})``."""
    clips = torch.stack([clip for clip, _ in batch])
    targets = [target for _, target in batch]
    collated = {
        "keys": [t["key"] for t in targets],
        "boxes": [t["boxes"] for t in targets],
        "labels": torch.cat([t["labels"] for t in targets]),
        "gt_boxes": [t["gt_boxes"] for t in targets],
        "gt_labels": [t["gt_labels"] for t in targets],
    }
    if "evaluated" in targets[0]:
        collated["evaluated"] = targets[0]["evaluated"]
    return clips, collated


def detection_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the per-class sigmoids, averaged over boxes and classes; ``logits`` and
    ``labels`` ``(K, C)`` (multi-hot). Zero, with a gradient, for a batch without boxes."""
    if logits.numel() == 0:
        return logits.sum()
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits))


def train_detector(
    model: MViTDetector, loader: Iterable, optimizer: torch.optim.Optimizer, epochs: int = 1, clip_grad: float = 1.0
) -> list[float]:
    """`epochs` passes of training steps over `loader` (batches of `collate_detection`); the loss of every
    step. Gradients are clipped at L2 norm `clip_grad`."""
    model.train()
    device = next(model.parameters()).device
    losses = []
    for _ in range(epochs):
        for clips, target in loader:
            boxes = [b.to(device) for b in target["boxes"]]
            loss = detection_loss(model(clips.to(device), boxes), target["labels"].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            losses.append(loss.item())
    return losses


@torch.no_grad()
def predict_detections(model: MViTDetector, loader: Iterable, class_ids: Sequence[int]) -> tuple[dict, dict]:
    """``(ground_truth, detections)`` for `frame_map` from a loader of `collate_detection` batches: each
    keyframe's ground-truth boxes with their classes (column j of ``gt_labels`` is class ``class_ids[j]``),
    and the model's sigmoid score of every box it was given for every class."""
    model.eval()
    device = next(model.parameters()).device
    ids = np.asarray(class_ids)
    ground_truth, detections = {}, {}
    for clips, target in loader:
        probabilities = torch.sigmoid(model(clips.to(device), [b.to(device) for b in target["boxes"]])).cpu()
        start = 0
        for key, boxes, gt_boxes, gt_labels in zip(
            target["keys"], target["boxes"], target["gt_boxes"], target["gt_labels"]
        ):
            rows, cols = np.nonzero(gt_labels.bool().numpy())
            ground_truth[key] = (gt_boxes.numpy()[rows], ids[cols])
            detections[key] = labelled_detections(boxes, probabilities[start : start + len(boxes)], class_ids)
            start += len(boxes)
    return ground_truth, detections


def evaluate_detector(model: MViTDetector, loader: Iterable, class_ids: Sequence[int], **kwargs) -> FrameMAP:
    """`frame_map` of the model's scores for the boxes of `loader`'s targets (`predict_detections`);
    `kwargs` go to `frame_map`."""
    ground_truth, detections = predict_detections(model, loader, class_ids)
    return frame_map(ground_truth, detections, class_ids, **kwargs)
