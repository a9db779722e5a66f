"""The optimiser and learning-rate schedule of the paper's recipe (Appendix D).

- AdamW (SGD with momentum for fine-tuning on SSv2, §D.4), with no weight decay on the parameters the
  model lists in ``no_weight_decay()`` (biases, norms, positional embeddings, class token);
- a learning rate linear in the global batch: ``lr * global_batch / 512``;
- per optimizer step, a linear warmup from ``start_lr`` to the peak, then a half-period cosine down to
  ``final_lr``.

`lr_schedule` builds a run's schedule from its `TrainConfig`; the trainer uses it, and so can a reader.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from .config import OptimSection, TrainConfig


def scaled_lr(lr: float, global_batch: int, reference_batch: int = 512) -> float:
    """The linear scaling rule: `lr` is the rate for `reference_batch` clips per optimizer step."""
    return lr * global_batch / reference_batch


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: ``"decay"`` (weight decay `weight_decay`) and ``"no_decay"`` (0), split by the
    names in ``model.no_weight_decay()``. Frozen parameters (``requires_grad=False``) are left out."""
    if not hasattr(model, "no_weight_decay"):
        raise TypeError(
            f"{type(model).__name__} has no no_weight_decay() method naming the parameters that "
            "take no weight decay; add one (see mvit.model.MViT.no_weight_decay)"
        )
    skip = set(model.no_weight_decay())
    named = dict(model.named_parameters())
    unknown = sorted(skip - set(named))
    if unknown:
        raise ValueError(f"no_weight_decay() names parameters the model does not have: {unknown[:5]}")
    decay = [p for n, p in named.items() if p.requires_grad and n not in skip]
    no_decay = [p for n, p in named.items() if p.requires_grad and n in skip]
    return [
        {"name": "decay", "params": decay, "weight_decay": weight_decay},
        {"name": "no_decay", "params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, section: OptimSection, lr: float) -> torch.optim.Optimizer:
    """``section.name`` ("adamw" | "sgd") over `param_groups(model, section.weight_decay)`, starting at
    `lr`; the schedule sets each step's learning rate."""
    groups = param_groups(model, section.weight_decay)
    if section.name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=section.momentum)
    return torch.optim.AdamW(groups, lr=lr, betas=section.betas, eps=section.eps)


@dataclass(frozen=True)
class WarmupCosine:
    """Learning rate of optimizer step ``step`` (0-based) out of ``total_steps``::

        step < warmup_steps:  start_lr + (peak_lr - start_lr) * step / warmup_steps
        otherwise:            final_lr + (peak_lr - final_lr) * (1 + cos(pi * t)) / 2,
                              t = (step - warmup_steps) / (total_steps - warmup_steps)

    A pure function of the step: resuming only needs the step number.
    """

    peak_lr: float
    total_steps: int
    warmup_steps: int = 0
    start_lr: float = 0.0
    final_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.total_steps < 1 or not 0 <= self.warmup_steps < self.total_steps:
            raise ValueError(f"need 0 <= warmup_steps ({self.warmup_steps}) < total_steps ({self.total_steps})")

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start_lr + (self.peak_lr - self.start_lr) * step / self.warmup_steps
        t = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        return self.final_lr + (self.peak_lr - self.final_lr) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def lr_schedule(cfg: TrainConfig, steps_per_epoch: int, world_size: int = 1) -> WarmupCosine:
    """The learning rate of every optimizer step of the run `cfg` with `steps_per_epoch` optimizer steps per
    epoch on `world_size` processes (the one schedule the trainer uses).

    The peak is ``optim.lr`` scaled to the global batch ``data.batch_size x world_size x optim.accum_steps``
    (`scaled_lr`); ``optim.warmup_epochs`` of linear warmup from ``peak x optim.warmup_start_ratio``, then
    the cosine to ``peak x optim.final_lr_ratio`` at the end of ``optim.epochs``.

    >>> from mvit.engine import load_config
    >>> lr_schedule(load_config("k400_mvit_b_16x4"), steps_per_epoch=100, world_size=128).peak_lr  # 128 x 4 clips
    0.0016
    """
    o = cfg.optim
    peak = scaled_lr(o.lr, cfg.data.batch_size * world_size * o.accum_steps, o.lr_reference_batch)
    return WarmupCosine(
        peak_lr=peak,
        total_steps=o.epochs * steps_per_epoch,
        warmup_steps=round(o.warmup_epochs * steps_per_epoch),
        start_lr=peak * o.warmup_start_ratio,
        final_lr=peak * o.final_lr_ratio,
    )
