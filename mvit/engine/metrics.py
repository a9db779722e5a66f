"""Evaluation: clip-level and video-level (multi-view) scores with the metric of the run's task
(`mvit.engine.tasks`): top-1/top-5 accuracy, per-class accuracy and the confusion matrix for
classification; mean average precision over classes for multi-label classification.

Video-level testing (paper §4, Appendix D) takes V views of each video (K clips uniformly spaced in
time x crops) and combines their scores: the mean of the softmax scores for classification, the maximum
of each class's sigmoid score for multi-label classification (Charades, Appendix D.3).

A video that cannot be read is never scored and never replaced by another: the evaluation datasets
(`mvit.data.VideoDataset` and `ImageFolderDataset` in their val/test modes) give it the label
`mvit.data.EXCLUDED`, and `evaluate` leaves it out and reports it (``unreadable_files``, ``unreadable``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Union

import torch
from torch import nn

from .distributed import Context, autocast

if TYPE_CHECKING:
    from .tasks import Task


def multi_view_scores(logits: torch.Tensor) -> torch.Tensor:
    """``logits: (B, V, K)`` of V views of each of B videos -> ``(B, K)``: the mean over views of the
    softmax scores."""
    return logits.float().softmax(dim=-1).mean(dim=1)


class Tally:
    """Running counts over (scores, labels) batches: a confusion matrix, top-5 hits and the summed
    negative log-likelihood. ``scores`` are probabilities ``(B, K)``."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.top5 = torch.zeros((), dtype=torch.int64, device=device)
        self.nll = torch.zeros((), dtype=torch.float64, device=device)

    def add(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        k = self.confusion.shape[0]
        pred = scores.argmax(dim=-1)
        self.confusion += torch.bincount(labels * k + pred, minlength=k * k).view(k, k)
        top = scores.topk(min(5, k), dim=-1).indices
        self.top5 += (top == labels[:, None]).any(dim=-1).sum()
        self.nll += -scores.gather(1, labels[:, None]).clamp_min(1e-12).log().sum().double()

    def count(self) -> int:
        return int(self.confusion.sum())

    def reduce(self, ctx: Optional[Context]) -> None:
        """Sum the counts over processes."""
        if ctx is not None:
            for t in (self.confusion, self.top5, self.nll):
                ctx.sum(t)

    def summary(self, prefix: str = "") -> dict:
        confusion = self.confusion.cpu()
        n = int(confusion.sum())
        if n == 0:
            raise ValueError("evaluation saw no samples: the loader is empty")
        per_class = confusion.diag().double() / confusion.sum(dim=1).double().clamp_min(1)
        per_class[confusion.sum(dim=1) == 0] = float("nan")
        return {
            f"{prefix}top1": 100.0 * float(confusion.diag().sum()) / n,
            f"{prefix}top5": 100.0 * float(self.top5) / n,
            f"{prefix}loss": float(self.nll) / n,
            f"{prefix}per_class_acc": (100.0 * per_class).tolist(),
            f"{prefix}confusion": confusion.tolist(),
            f"{prefix}num_samples": n,
        }


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Iterable,
    *,
    num_classes: Optional[int] = None,
    multi_view: bool = False,
    device: Optional[torch.device] = None,
    precision: str = "fp32",
    ctx: Optional[Context] = None,
    task: Union[str, "Task", None] = None,
) -> dict:
    """Score `model` over `loader` with the metric of `task` (a name of `mvit.engine.tasks.TASKS` or a
    `Task`; None: classification).

    Classification, clip-level (``multi_view=False``): batches ``(x (B, 3, T, H, W), labels (B,))``; returns
    ``top1``, ``top5`` (percent), ``loss`` (mean cross-entropy), ``per_class_acc`` (percent, NaN for a class
    with no samples), ``confusion`` (``[true][predicted]`` counts) and ``num_samples``.
    Multilabel: labels ``(B, K)`` multi-hot; returns ``mAP`` (percent), ``loss`` (mean binary cross-entropy),
    ``per_class_ap``, ``classes_scored`` and ``num_samples`` (see `mvit.engine.tasks.MultiLabelMeter`).
    Video-level (``multi_view=True``): batches ``(views (B, V, 3, T, H, W), labels)``; the same keys for the
    views' scores combined by the task (softmax mean; sigmoid max), plus ``view_top1``, ``view_mAP``, ...
    counting each view as a clip. Every result also holds ``metric``, the key of the task's headline number.
    Samples whose label marks them unreadable (`EXCLUDED`) are left out of every count: ``unreadable_files``
    is their number and ``unreadable`` the list of ``{"path", "reason"}`` that the loader's dataset recorded
    (its failures are reset first). Under DDP (`ctx`) each process evaluates its shard and the counts and
    lists are combined.
    """
    from .tasks import Task, get_task

    task = task if isinstance(task, Task) else get_task(task)
    if num_classes is None:
        num_classes = getattr(getattr(model, "config", None), "num_classes", None)
        if num_classes is None:
            raise ValueError("pass num_classes: the model has no config.num_classes")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    videos = task.meter(num_classes, device)
    views = task.meter(num_classes, device) if multi_view else None
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "reset_failures"):
        dataset.reset_failures()
    excluded = torch.zeros((), dtype=torch.int64, device=device)
    for batch in loader:
        x, labels = task.to_device(batch, device)
        readable = task.readable(labels)
        if not readable.all():
            excluded += int((~readable).sum())
            x, labels = task.select(x, labels, readable)
            if len(labels) == 0:
                continue
        if multi_view:
            with autocast(device, precision):
                outputs = task.forward_views(model, x)
            scores = task.scores(outputs)  # (B, V, K)
            videos.add(task.combine_views(scores), labels)
            views.add(scores.flatten(0, 1), task.view_labels(labels, scores.shape[1]))
        else:
            with autocast(device, precision):
                outputs = task.forward(model, x)
            videos.add(task.scores(outputs), labels)
    model.train(was_training)
    failures = [{"path": f.path, "reason": f.reason} for f in getattr(dataset, "failures", [])]
    if ctx is not None:
        ctx.sum(excluded)
        failures = [f for part in ctx.gather(failures) for f in part]
    videos.reduce(ctx)
    if videos.count() == 0 and int(excluded) > 0:
        listing = "".join(f"\n  {f['path']}: {f['reason']}" for f in failures[:20])
        raise ValueError(f"evaluation found no readable sample: all {int(excluded)} were unreadable{listing}")
    result = {"metric": task.metric, **videos.summary()}
    if views is not None:
        views.reduce(ctx)
        result.update(views.summary(prefix="view_"))
    result.update(unreadable_files=int(excluded), unreadable=failures)
    return result


# ----------------------------------------------------------------------------------------------------
# mean average precision (multi-label: Charades, paper §4.2 and Appendix D.3)
# ----------------------------------------------------------------------------------------------------


def average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """Average precision of one class: ``scores (N,)`` (any real numbers, higher = more confident) and
    ``targets (N,)`` (1 = the class is present, 0 = absent) -> AP in [0, 1], NaN when no target is positive.

    Ranking the N samples by score, ``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score values
    (thresholds), where ``P_n`` and ``R_n`` are the precision and recall of calling every sample with a
    score >= the n-th highest value positive. Samples with tied scores cross the threshold together, so
    their order among themselves does not matter: the definition of scikit-learn's
    ``average_precision_score`` (no interpolation), which the tests compare against.

    A class without a positive sample has no recall, so its AP is undefined: NaN here (scikit-learn
    returns 0 with a warning). `mean_average_precision` leaves such classes out of the mean, as
    PySlowFast's Charades evaluation (``get_map`` in ``slowfast/utils/meters.py``) does: with a few
    thousand validation videos some of the 157 classes may lack a positive, and counting them as 0
    would lower the mean for a reason that has nothing to do with the model.
    """
    scores, targets = scores.detach().double().flatten().cpu(), targets.detach().flatten().cpu()
    if scores.shape != targets.shape or scores.numel() == 0:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must be equal, non-empty")
    positive = targets > 0.5
    total = int(positive.sum())
    if total == 0:
        return float("nan")
    order = torch.argsort(scores, descending=True, stable=True)
    ranked, hits = scores[order], positive[order].double()
    tp = hits.cumsum(0)
    last_of_group = torch.ones_like(ranked, dtype=torch.bool)  # the last sample of each run of tied scores
    last_of_group[:-1] = ranked[1:] != ranked[:-1]
    tp = tp[last_of_group]
    called = torch.nonzero(last_of_group).flatten().double() + 1  # samples called positive at each threshold
    precision, recall = tp / called, tp / total
    gain = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((gain * precision).sum())


def per_class_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``scores (N, K)``, ``targets (N, K)`` multi-hot -> ``(K,)`` float64: the AP of each class (column),
    NaN for a class with no positive sample."""
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must both be (N, K)")
    aps = [average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
    return torch.tensor(aps, dtype=torch.float64)


def mean_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> float:
    """mAP in [0, 1]: the mean of `per_class_average_precision` over the classes that have at least one
    positive sample (see `average_precision` for why the others are left out); NaN if no class has one."""
    ap = per_class_average_precision(scores, targets)
    scored = ap[~ap.isnan()]
    return float(scored.mean()) if len(scored) else float("nan")
