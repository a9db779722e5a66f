"""What a run learns and how it is scored: the engine's notion of a *task* (``model.task`` in a recipe).

The paper uses one backbone for three kinds of problem (§4, Appendix D): single-label classification
(Kinetics, Something-Something, ImageNet), multi-label classification (Charades) and spatio-temporal
action detection (AVA). They differ only in what a batch holds, the loss, how the scores of several test
views of one video are combined, and the metric. Everything else in the engine (optimizer, schedule,
checkpoints, resume, DDP, logging) is shared and never asks which task it runs.

=================  ==========================================  ==========================  ==============
task               training loss                               test views combined by      metric (key)
=================  ==========================================  ==========================  ==============
``classification`` soft-target cross-entropy (Mixup/CutMix,    mean of the softmax scores  top-1 / top-5
                   label smoothing), App. D.1                  (§4, App. D.1)              (``top1``)
``multilabel``     per-class sigmoid binary cross-entropy,     max over clips of the       mAP over classes
                   no Mixup (App. D.3)                         sigmoid scores (App. D.3)   (``mAP``)
``detection``      per-box, per-class sigmoid binary           one clip centred on the     AVA frame-mAP
                   cross-entropy on RoI features (App. D.2)    keyframe (App. D.2)         (``frame_mAP``)
=================  ==========================================  ==========================  ==============

What a task must provide (a subclass of `Task`, registered in `TASKS` by `register`; the defaults of
`Task` are the classification ones where that makes sense):

- ``build_model(name, config)``: the network of ``model.name`` with the ``model.config`` overrides
  (`mvit.build_model`; detection: `mvit.detection.build_detector`, the same state dict).
- ``name`` (the ``model.task`` value) and ``metric``, the key of the headline number in every result
  (``top1``, ``mAP``): ``mvit eval`` prints it first, the trainer logs ``val_<metric>`` per epoch and
  ``<metric>`` in the test record of ``metrics.jsonl``, and ``summary_keys`` lists the keys shown beside it.
- ``check(cfg)``: raise `ConfigError` for settings the task cannot honour (multilabel refuses Mixup);
  called by `mvit.engine.load_config`, so a mistake fails before anything is built.
- ``batch_transform(cfg, num_classes)``: a function ``(inputs, labels) -> (inputs, targets)`` applied to
  every training batch on its device (Mixup/CutMix and label smoothing for classification).
- ``to_device(batch, device) -> (inputs, labels)``: split a loader batch. Classification and multilabel
  batches are ``(clips (B, 3, T, H, W), labels)``; a task with another layout (detection: clips plus boxes)
  returns its own ``inputs`` (any structure) and overrides ``clips(inputs)`` (the clip tensor, used for
  the batch size and the NaN check of the inputs), ``forward(model, inputs)`` and ``forward_views``.
- ``readable(labels) -> (B,) bool``: False for the placeholders of unreadable files (`mvit.data.EXCLUDED`
  as the label; a row of EXCLUDED for multi-hot labels), which evaluation drops and counts;
  ``select(inputs, labels, keep)`` keeps those rows.
- ``forward(model, inputs) -> outputs`` and ``loss(outputs, targets) -> scalar``.
- ``scores(outputs)``: the outputs as the probabilities the metric ranks (softmax, sigmoid);
  ``combine_views(scores (B, V, K)) -> (B, K)`` for video-level testing.
- ``meter(num_classes, device)``: an accumulator with ``add(scores, labels)``, ``reduce(ctx)`` (sum or
  gather over DDP processes), ``count()`` (samples added) and ``summary(prefix) -> dict`` (the metric and
  the rest, each key with `prefix`, e.g. ``view_`` for the per-view numbers of a multi-view test).

>>> from mvit.engine.tasks import get_task
>>> task = get_task("multilabel")
>>> task.metric
'mAP'
"""

from __future__ import annotations

import difflib
from typing import Any, Callable, Optional

import torch
from torch import nn

from ..data.failures import EXCLUDED
from .config import ConfigError, TrainConfig
from .loss import multilabel_binary_cross_entropy, soft_target_cross_entropy
from .metrics import Tally, per_class_average_precision

BatchTransform = Callable[[Any, torch.Tensor], tuple[Any, torch.Tensor]]


class Task:
    """The interface the engine calls (see the module docstring); the defaults are those of a batch
    ``(clips (B, 3, T, H, W), labels)`` and a model called as ``model(clips) -> (B, K)``."""

    name: str = ""
    metric: str = ""
    summary_keys: tuple[str, ...] = ()
    description: str = ""

    def check(self, cfg: TrainConfig) -> None:
        """Raise `ConfigError` for settings this task cannot honour."""

    def build_model(self, name: str, config: dict) -> nn.Module:
        from ..model import build_model

        return build_model(name, **config)

    def batch_transform(self, cfg: TrainConfig, num_classes: int) -> BatchTransform:
        raise NotImplementedError

    def to_device(self, batch, device: torch.device) -> tuple[Any, torch.Tensor]:
        x, labels = batch
        return x.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def clips(self, inputs) -> torch.Tensor:
        return inputs

    def readable(self, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def select(self, inputs, labels: torch.Tensor, keep: torch.Tensor) -> tuple[Any, torch.Tensor]:
        return inputs[keep], labels[keep]

    def forward(self, model: nn.Module, inputs) -> torch.Tensor:
        return model(inputs)

    def forward_views(self, model: nn.Module, inputs) -> torch.Tensor:
        """``inputs (B, V, 3, T, H, W)`` -> outputs ``(B, V, K)``: every view through the model at once."""
        b, v = inputs.shape[:2]
        return model(inputs.flatten(0, 1)).view(b, v, -1)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def combine_views(self, scores: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def view_labels(self, labels: torch.Tensor, num_views: int) -> torch.Tensor:
        """The labels of each of `num_views` views of every video (each view is scored as a clip)."""
        return labels.repeat_interleave(num_views, dim=0)

    def meter(self, num_classes: int, device: torch.device):
        raise NotImplementedError


class Classification(Task):
    """One label per clip (Kinetics, SSv2, ImageNet): soft-target cross-entropy after Mixup/CutMix and label
    smoothing (App. D.1); test views averaged as softmax scores; top-1 and top-5 accuracy (percent)."""

    name, metric, summary_keys = "classification", "top1", ("top1", "top5")
    description = "one label per clip: softmax cross-entropy, top-1/top-5"

    def batch_transform(self, cfg: TrainConfig, num_classes: int) -> BatchTransform:
        from ..data import MixupCutmix

        a = cfg.augment
        return MixupCutmix(
            num_classes,
            mixup_alpha=a.mixup_alpha,
            cutmix_alpha=a.cutmix_alpha,
            label_smoothing=a.label_smoothing,
            switch_prob=a.switch_prob,
        )

    def readable(self, labels: torch.Tensor) -> torch.Tensor:
        return labels != EXCLUDED

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return soft_target_cross_entropy(outputs, targets)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().softmax(dim=-1)

    def combine_views(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.mean(dim=1)

    def meter(self, num_classes: int, device: torch.device) -> Tally:
        return Tally(num_classes, device)


class MultiLabel(Task):
    """Several labels per clip (Charades): targets are multi-hot ``(B, K)`` float rows; per-class sigmoid
    binary cross-entropy without Mixup, CutMix or label smoothing (App. D.3: "the same data augmentation
    schemes as for Kinetics ... except of using Mixup"; this package, like PySlowFast's ``MIXUP`` settings,
    treats Mixup and CutMix as one switch, and label smoothing belongs to the softmax target). Test views:
    the maximum over clips of each class's sigmoid score ("we spatio-temporally max-pool prediction scores
    from multiple clips", App. D.3). Metric: mean average precision over the classes with a positive
    sample (`mvit.engine.metrics.mean_average_precision`), in percent."""

    name, metric, summary_keys = "multilabel", "mAP", ("mAP",)
    description = "several labels per clip: per-class sigmoid + binary cross-entropy, mAP"

    def check(self, cfg: TrainConfig) -> None:
        a = cfg.augment
        if a.mixup_alpha > 0 or a.cutmix_alpha > 0:
            raise ConfigError(
                f"model.task=multilabel trains without Mixup and CutMix (paper Appendix D.3), but "
                f"augment.mixup_alpha={a.mixup_alpha} and augment.cutmix_alpha={a.cutmix_alpha}; set "
                "augment.mixup_alpha=0 augment.cutmix_alpha=0"
            )
        if a.label_smoothing > 0:
            raise ConfigError(
                f"model.task=multilabel has 0/1 targets per class (sigmoid), but augment.label_smoothing="
                f"{a.label_smoothing} smooths a softmax target; set augment.label_smoothing=0"
            )

    def batch_transform(self, cfg: TrainConfig, num_classes: int) -> BatchTransform:
        def multi_hot(x, labels):
            if labels.ndim != 2 or labels.shape[1] != num_classes:
                raise ValueError(
                    f"model.task=multilabel needs multi-hot labels (B, {num_classes}), got {tuple(labels.shape)}; "
                    "is the dataset a multi-label one (e.g. data.dataset=charades)?"
                )
            return x, labels.float()

        return multi_hot

    def readable(self, labels: torch.Tensor) -> torch.Tensor:
        return ~(labels == EXCLUDED).all(dim=-1)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return multilabel_binary_cross_entropy(outputs, targets)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().sigmoid()

    def combine_views(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.amax(dim=1)

    def meter(self, num_classes: int, device: torch.device) -> "MultiLabelMeter":
        return MultiLabelMeter(num_classes)


class MultiLabelMeter:
    """Keeps every ``(scores (B, K), multi-hot labels (B, K))`` pair (AP needs the whole ranking) and the
    summed binary cross-entropy of the scores. ``summary``: ``mAP`` (percent), ``loss``, ``per_class_ap``
    (percent, NaN for a class without a positive), ``classes_scored`` (the classes in the mean) and
    ``num_samples``."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def add(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        self.scores.append(scores.detach().float().cpu())
        self.labels.append(labels.detach().float().cpu())

    def reduce(self, ctx) -> None:
        if ctx is not None and ctx.distributed:
            parts = ctx.gather((self.scores, self.labels))
            self.scores = [s for part in parts for s in part[0]]
            self.labels = [y for part in parts for y in part[1]]

    def count(self) -> int:
        return sum(len(s) for s in self.scores)

    def summary(self, prefix: str = "") -> dict:
        if self.count() == 0:
            raise ValueError("evaluation saw no samples: the loader is empty")
        scores, labels = torch.cat(self.scores), torch.cat(self.labels)
        p = scores.double().clamp(1e-12, 1 - 1e-12)
        bce = -(labels * p.log() + (1 - labels) * (1 - p).log()).mean()
        ap = per_class_average_precision(scores, labels)
        scored = ~ap.isnan()
        return {
            f"{prefix}mAP": 100.0 * float(ap[scored].mean()) if scored.any() else float("nan"),
            f"{prefix}loss": float(bce),
            f"{prefix}per_class_ap": (100.0 * ap).tolist(),
            f"{prefix}classes_scored": int(scored.sum()),
            f"{prefix}num_samples": len(scores),
        }


class Detection(Task):
    """Spatio-temporal action detection (AVA): a batch is ``(clips (B, 3, T, H, W), target)`` from
    `mvit.detection.collate_detection` (the dataset's ``collate_fn``); the model is an
    `mvit.detection.MViTDetector` called as ``model(clips, boxes)`` -> per-box logits ``(K, C)``. Loss: the
    per-class sigmoid binary cross-entropy of every box (App. D.2: "a per-class, sigmoid classifier"), no
    Mixup, CutMix or label smoothing (they mix whole clips, not boxes). Testing is one clip per keyframe
    (App. D.2), so there are no views to combine. Metric: AVA's frame-level mAP at IoU 0.5 over the classes
    with ground truth (`mvit.detection.frame_map`), in percent (`DetectionMeter`)."""

    name, metric, summary_keys = "detection", "frame_mAP", ("frame_mAP",)
    description = "per-box actions on RoI features: per-class sigmoid + binary cross-entropy, AVA frame-mAP"

    def check(self, cfg: TrainConfig) -> None:
        a = cfg.augment
        if a.mixup_alpha > 0 or a.cutmix_alpha > 0 or a.label_smoothing > 0:
            raise ConfigError(
                "model.task=detection trains on per-box 0/1 targets (paper Appendix D.2), but augment.mixup_alpha="
                f"{a.mixup_alpha}, augment.cutmix_alpha={a.cutmix_alpha}, augment.label_smoothing={a.label_smoothing}; "
                "set all three to 0"
            )

    def build_model(self, name: str, config: dict) -> nn.Module:
        from ..detection import build_detector

        return build_detector(name, **config)

    def batch_transform(self, cfg: TrainConfig, num_classes: int) -> BatchTransform:
        def box_labels(inputs, target):
            labels = target["labels"]
            if labels.ndim != 2 or labels.shape[1] != num_classes:
                raise ValueError(
                    f"model.task=detection needs multi-hot box labels (K, {num_classes}), got {tuple(labels.shape)}"
                )
            return inputs, labels.float()

        return box_labels

    def to_device(self, batch, device: torch.device) -> tuple[Any, dict]:
        clips, target = batch
        inputs = (clips.to(device, non_blocking=True), [b.to(device) for b in target["boxes"]])
        return inputs, {**target, "labels": target["labels"].to(device)}

    def clips(self, inputs) -> torch.Tensor:
        return inputs[0]

    def readable(self, labels: dict) -> torch.Tensor:
        return torch.ones(len(labels["keys"]), dtype=torch.bool)

    def forward(self, model: nn.Module, inputs) -> torch.Tensor:
        clips, boxes = inputs
        return model(clips, boxes)

    def forward_views(self, model: nn.Module, inputs) -> torch.Tensor:
        raise ConfigError(
            "model.task=detection tests one clip per keyframe (Appendix D.2); set run.multi_view_eval=false"
        )

    def combine_views(self, scores: torch.Tensor) -> torch.Tensor:
        return self.forward_views(None, scores)  # the same refusal

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from ..detection import detection_loss

        return detection_loss(outputs, targets)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float().sigmoid()

    def meter(self, num_classes: int, device: torch.device) -> "DetectionMeter":
        return DetectionMeter(num_classes)


class DetectionMeter:
    """Keeps, per keyframe, the scored boxes ``(K, 4)`` with their probabilities ``(K, C)`` and box labels, and
    the ground truth ``(M, 4)`` with its labels ``(M, C)``. Column j is class id ``j + 1`` (AVA's 1-based
    ids). Only the columns of the batches' ``evaluated`` mask are scored (all when there is none), as the
    official evaluation drops the other classes before anything else. ``summary``: ``frame_mAP`` (percent;
    `mvit.detection.frame_map` at IoU 0.5 over the evaluated classes with ground truth), ``loss`` (binary
    cross-entropy of the box probabilities against the box labels), ``per_class_ap`` (percent, NaN for a
    class without ground truth or not evaluated), ``classes_scored``, ``num_samples`` (keyframes) and
    ``num_boxes``."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.keyframes: list[tuple] = []
        self.evaluated = torch.ones(num_classes, dtype=torch.bool)

    def add(self, scores: torch.Tensor, labels: dict) -> None:
        if "evaluated" in labels:
            self.evaluated = labels["evaluated"].detach().cpu().bool()
        scores, box_labels = scores.detach().float().cpu(), labels["labels"].detach().float().cpu()
        start = 0
        for key, boxes, gt_boxes, gt_labels in zip(
            labels["keys"], labels["boxes"], labels["gt_boxes"], labels["gt_labels"]
        ):
            end = start + len(boxes)
            self.keyframes.append((key, boxes.cpu(), scores[start:end], box_labels[start:end], gt_boxes, gt_labels))
            start = end

    def reduce(self, ctx) -> None:
        if ctx is not None and ctx.distributed:
            self.keyframes = [k for part in ctx.gather(self.keyframes) for k in part]

    def count(self) -> int:
        return len(self.keyframes)

    def summary(self, prefix: str = "") -> dict:
        import math

        import numpy as np

        from ..detection import frame_map, labelled_detections

        if not self.keyframes:
            raise ValueError("evaluation saw no keyframes: the loader is empty")
        ids = np.arange(1, self.num_classes + 1)
        ground_truth, detections = {}, {}
        for key, boxes, probabilities, _, gt_boxes, gt_labels in self.keyframes:
            rows, cols = np.nonzero(gt_labels.numpy() > 0.5)
            ground_truth[key] = (gt_boxes.numpy()[rows], ids[cols])
            detections[key] = labelled_detections(boxes, probabilities, ids)
        result = frame_map(ground_truth, detections, ids[self.evaluated.numpy()])
        p = torch.cat([k[2] for k in self.keyframes]).double().clamp(1e-12, 1 - 1e-12)
        y = torch.cat([k[3] for k in self.keyframes]).double()
        bce = float(-(y * p.log() + (1 - y) * (1 - p).log()).mean()) if p.numel() else float("nan")
        aps = [result.per_class.get(int(c), math.nan) for c in ids]
        return {
            f"{prefix}frame_mAP": 100.0 * result.mean_ap,
            f"{prefix}loss": bce,
            f"{prefix}per_class_ap": [100.0 * ap for ap in aps],
            f"{prefix}classes_scored": sum(not math.isnan(ap) for ap in aps),
            f"{prefix}num_samples": len(self.keyframes),
            f"{prefix}num_boxes": len(p),
        }


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add `task` to `TASKS` under ``task.name`` (the value ``model.task`` selects it by)."""
    if not task.name or not task.metric:
        raise ValueError("a task needs a name and a metric")
    TASKS[task.name] = task
    return task


for _task in (Classification(), MultiLabel(), Detection()):
    register(_task)


def task_names() -> list[str]:
    return list(TASKS)


def get_task(name: Optional[str]) -> Task:
    """The registered task `name` (None: classification); an unknown name is a `ConfigError`."""
    name = name or "classification"
    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"model.task={name!r} is not a task{hint}; tasks: {', '.join(TASKS)}")
    return TASKS[name]
