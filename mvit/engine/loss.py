"""The training objective: cross-entropy against soft targets.

Label smoothing and Mixup/CutMix (`mvit.data.MixupCutmix`) turn integer labels into probability
vectors over the classes; the loss is then ``-sum_k y_k log softmax(z)_k``, averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``logits: (B, K)``, ``targets: (B, K)`` rows summing to 1 -> mean over the batch of
    ``-sum_k targets_k * log_softmax(logits)_k`` (computed in float32)."""
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and soft targets {tuple(targets.shape)} must have the same "
            "shape (B, num_classes); does model.config.num_classes match the dataset?"
        )
    return -(targets.float() * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()
