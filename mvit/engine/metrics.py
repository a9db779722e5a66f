"""Evaluation: clip-level and video-level (multi-view) accuracy, per-class accuracy, confusion matrix.

Video-level testing (paper §4, Appendix D) takes V views of each video (K clips uniformly spaced in
time x crops) and averages the softmax scores of the views before taking the top class.

A video that cannot be read is never scored and never replaced by another: the evaluation datasets
(`mvit.data.VideoDataset` and `ImageFolderDataset` in their val/test modes) give it the label
`mvit.data.EXCLUDED`, and `evaluate` leaves it out and reports it (``unreadable_files``, ``unreadable``).
"""

from __future__ import annotations

from typing import Iterable, Optional

import torch
from torch import nn

from ..data.failures import EXCLUDED
from .distributed import Context, autocast


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
) -> dict:
    """Accuracy of `model` over `loader`.

    Clip-level (``multi_view=False``): batches ``(x (B, 3, T, H, W), labels (B,))``; returns ``top1``,
    ``top5`` (percent), ``loss`` (mean cross-entropy), ``per_class_acc`` (percent, NaN for a class with no
    samples), ``confusion`` (``[true][predicted]`` counts) and ``num_samples``.
    Video-level (``multi_view=True``): batches ``(views (B, V, 3, T, H, W), labels (B,))``; the same keys
    for the view-averaged scores, plus ``view_top1``, ``view_top5``, ... counting each view as a clip.
    Samples labelled `EXCLUDED` (unreadable files) are left out of every count: ``unreadable_files`` is
    their number and ``unreadable`` the list of ``{"path", "reason"}`` that the loader's dataset recorded
    (its failures are reset first). Under DDP (`ctx`) each process evaluates its shard and the counts and
    lists are combined.
    """
    if num_classes is None:
        num_classes = getattr(getattr(model, "config", None), "num_classes", None)
        if num_classes is None:
            raise ValueError("pass num_classes: the model has no config.num_classes")
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    videos = Tally(num_classes, device)
    views = Tally(num_classes, device) if multi_view else None
    dataset = getattr(loader, "dataset", None)
    if hasattr(dataset, "reset_failures"):
        dataset.reset_failures()
    excluded = torch.zeros((), dtype=torch.int64, device=device)
    for x, labels in loader:
        readable = labels != EXCLUDED
        if not readable.all():
            excluded += int((~readable).sum())
            x, labels = x[readable], labels[readable]
            if len(labels) == 0:
                continue
        x, labels = x.to(device, non_blocking=True), labels.to(device, non_blocking=True).long()
        if multi_view:
            b, v = x.shape[:2]
            with autocast(device, precision):
                logits = model(x.flatten(0, 1)).view(b, v, -1)
            videos.add(multi_view_scores(logits), labels)
            views.add(logits.float().softmax(dim=-1).flatten(0, 1), labels.repeat_interleave(v))
        else:
            with autocast(device, precision):
                logits = model(x)
            videos.add(logits.float().softmax(dim=-1), labels)
    model.train(was_training)
    failures = [{"path": f.path, "reason": f.reason} for f in getattr(dataset, "failures", [])]
    if ctx is not None:
        ctx.sum(excluded)
        failures = [f for part in ctx.gather(failures) for f in part]
    videos.reduce(ctx)
    if int(videos.confusion.sum()) == 0 and int(excluded) > 0:
        listing = "".join(f"\n  {f['path']}: {f['reason']}" for f in failures[:20])
        raise ValueError(f"evaluation found no readable sample: all {int(excluded)} were unreadable{listing}")
    result = videos.summary()
    if views is not None:
        views.reduce(ctx)
        result.update(views.summary(prefix="view_"))
    result.update(unreadable_files=int(excluded), unreadable=failures)
    return result
