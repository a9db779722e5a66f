"""Mixup and CutMix on a batch, with label smoothing (paper Appendix D).

The paper mixes half of each batch with Mixup (alpha 0.8) and the other half with CutMix (alpha 1.0).
Each sample ``i`` is mixed with its neighbour ``i - 1`` (the batch rolled by one; the loader already
shuffled it), with its own mixing weight ``lam ~ Beta(alpha, alpha)``:

- Mixup: ``x_i <- lam * x_i + (1 - lam) * x_{i-1}``;
- CutMix: a box covering about ``1 - lam`` of the frame is pasted from ``x_{i-1}`` (the same box in every
  frame of a clip), and ``lam`` becomes the share of the frame the box left untouched.

Targets mix the same way: ``y_i <- lam * s(y_i) + (1 - lam) * s(y_{i-1})`` with ``s`` one-hot with
label smoothing ``eps``: ``1 - eps + eps / K`` on the label and ``eps / K`` elsewhere.
"""

from __future__ import annotations

import torch


def smooth_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    """``(B,)`` int -> ``(B, num_classes)`` float: one-hot with label smoothing."""
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got {labels.min()}..{labels.max()}")
    off = smoothing / num_classes
    target = torch.full((len(labels), num_classes), off, device=labels.device)
    target.scatter_(1, labels.view(-1, 1), 1.0 - smoothing + off)
    return target


class MixupCutmix:
    """``x, y_soft = mix(x, y)``: x ``(B, 3, T, H, W)`` or ``(B, 3, H, W)``, y ``(B,)`` int ->
    x mixed (same shape, a new tensor), y_soft ``(B, num_classes)`` float, rows summing to 1.

    `switch_prob` is the share of the batch mixed with CutMix rather than Mixup (0.5: half and half,
    as in the paper), chosen at random each call. An alpha of 0 turns that method off (the other then
    takes the whole batch). Random numbers come from torch's generator.
    """

    def __init__(
        self,
        num_classes: int,
        mixup_alpha: float = 0.8,
        cutmix_alpha: float = 1.0,
        label_smoothing: float = 0.1,
        switch_prob: float = 0.5,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"alphas must be >= 0 (0 turns a method off), got {mixup_alpha}, {cutmix_alpha}")
        if not 0.0 <= label_smoothing < 1.0 or not 0.0 <= switch_prob <= 1.0:
            raise ValueError(
                f"label_smoothing must lie in [0, 1) and switch_prob in [0, 1], got {label_smoothing}, {switch_prob}"
            )
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha
        if mixup_alpha == 0:
            switch_prob = 1.0
        if cutmix_alpha == 0:
            switch_prob = 0.0
        self.switch_prob = switch_prob

    @staticmethod
    def _beta(alpha: float, size: int) -> torch.Tensor:
        if alpha == 0 or size == 0:
            return torch.ones(size)
        return torch.distributions.Beta(alpha, alpha).sample((size,))

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.ndim not in (4, 5) or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"expected x (B, 3, H, W) or (B, 3, T, H, W) and y (B,), got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        batch = x.shape[0]
        partner = torch.roll(torch.arange(batch), 1)
        order = torch.randperm(batch)
        num_cutmix = round(self.switch_prob * batch)
        cutmix, mixup = order[:num_cutmix], order[num_cutmix:]

        lam = torch.ones(batch)
        lam[mixup] = self._beta(self.mixup_alpha, len(mixup))
        shape = (-1,) + (1,) * (x.ndim - 1)
        out = x.clone()
        lam_mixup = lam[mixup].to(x.device, x.dtype).view(shape)
        out[mixup] = lam_mixup * x[mixup] + (1 - lam_mixup) * x[partner[mixup]]

        height, width = x.shape[-2:]
        for i, box_lam in zip(cutmix.tolist(), self._beta(self.cutmix_alpha, len(cutmix)).tolist()):
            top, bottom, left, right = _cutmix_box(height, width, box_lam)
            out[i, ..., top:bottom, left:right] = x[partner[i], ..., top:bottom, left:right]
            lam[i] = 1.0 - (bottom - top) * (right - left) / (height * width)

        target = smooth_one_hot(y, self.num_classes, self.label_smoothing)
        lam = lam.to(target.device)[:, None]
        soft = lam * target + (1 - lam) * target[partner.to(target.device)]
        return out, soft


def _cutmix_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """``(top, bottom, left, right)`` of a box of about ``(1 - lam)`` of the frame, centred at a random
    point and clipped to the frame."""
    ratio = (1.0 - lam) ** 0.5
    box_h, box_w = int(height * ratio), int(width * ratio)
    cy, cx = int(torch.randint(height, ()).item()), int(torch.randint(width, ()).item())
    top, bottom = max(cy - box_h // 2, 0), min(cy + box_h // 2, height)
    left, right = max(cx - box_w // 2, 0), min(cx + box_w // 2, width)
    return top, bottom, left, right
