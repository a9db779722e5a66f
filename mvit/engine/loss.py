"""The training objective: cross-entropy against soft targets.

Label smoothing and Mixup/CutMix both turn an integer label into a probability vector over the
classes; the loss is then ``-sum_k y_k log softmax(z)_k``, averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """``labels: (B,)`` int -> ``(B, num_classes)``: ``1 - smoothing + smoothing/K`` on the label,
    ``smoothing/K`` elsewhere (each row sums to 1)."""
    off = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off, device=labels.device)
    return targets.scatter_(1, labels.long().unsqueeze(1), 1.0 - smoothing + off)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``logits: (B, K)``, ``targets: (B, K)`` rows summing to 1 -> mean over the batch of
    ``-sum_k targets_k * log_softmax(logits)_k`` (computed in float32)."""
    if logits.shape != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and soft targets {tuple(targets.shape)} must have the same "
                         "shape (B, num_classes); does model.config.num_classes match the dataset?")
    return -(targets.float() * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()
