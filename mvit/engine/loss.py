"""The training objectives: cross-entropy against soft targets (classification) and per-class binary
cross-entropy (multi-label).

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


def multilabel_binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The per-class sigmoid loss of multi-label classification (Charades, paper Appendix D.3):
    ``logits: (B, K)``, ``targets: (B, K)`` in [0, 1] (multi-hot) -> mean over the batch and the K classes of
    ``-(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z)))`` (computed in float32, from the logits: stable for
    any z). Each class is a yes/no question of its own; the rows need not sum to 1."""
    if logits.shape != targets.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)} and multi-hot targets {tuple(targets.shape)} must have the same "
            "shape (B, num_classes); does model.config.num_classes match the dataset?"
        )
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())
