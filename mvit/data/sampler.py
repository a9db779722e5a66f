"""Repeated augmentation (paper Appendix D: "2 repeated augmentation copies"), split across DDP ranks.

Each epoch shuffles the dataset, repeats every index `num_repeats` times in a row, and deals the
sequence to the ranks like cards (rank ``r`` takes positions ``r, r + R, r + 2R, ...``). The copies of
one clip therefore land on different ranks at the same step and are augmented differently, and over all
ranks every index appears exactly `num_repeats` times. When ``num_repeats * len(dataset)`` is not a
multiple of the number of ranks, the sequence is padded from its start so all ranks get equally many
indices (at most ``R - 1`` extra draws per epoch).
"""

from __future__ import annotations

import math
from typing import Iterator, Sized

import torch
import torch.distributed as dist


class RepeatAugSampler(torch.utils.data.Sampler[int]):
    """Indices for one rank: ``ceil(num_repeats * len(dataset) / num_replicas)`` per epoch,
    deterministic given `seed` and the epoch set with `set_epoch`. `num_replicas` / `rank` default to
    the initialised process group (1 / 0 without one)."""

    def __init__(
        self,
        dataset: Sized,
        num_repeats: int = 2,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None:
            num_replicas = dist.get_world_size() if distributed else 1
        if rank is None:
            rank = dist.get_rank() if distributed else 0
        if num_repeats < 1:
            raise ValueError(f"num_repeats must be >= 1, got {num_repeats}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got rank {rank} of {num_replicas}")
        if len(dataset) == 0:
            raise ValueError("the dataset is empty; nothing to sample")
        self.dataset_size = len(dataset)
        self.num_repeats, self.num_replicas, self.rank = num_repeats, num_replicas, rank
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.num_samples = math.ceil(num_repeats * self.dataset_size / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.dataset_size, generator=generator)
        else:
            order = torch.arange(self.dataset_size)
        repeated = order.repeat_interleave(self.num_repeats)
        total = self.num_samples * self.num_replicas  # pad by wrapping around to the start
        repeated = repeated.repeat(math.ceil(total / len(repeated)))[:total]
        return iter(repeated[self.rank :: self.num_replicas].tolist())
