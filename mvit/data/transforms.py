"""Spatial transforms of a clip, identical for every frame (paper Appendix D).

A clip enters as uint8 frames ``(T, H, W, 3)`` (what the decoders return) and leaves as float views
``(V, 3, T, crop, crop)``, normalised: both transforms return this rank, V = 1 for training and the number
of crops for testing, so a consumer indexes or concatenates views without looking at the rank.
Training applies, with the same random parameters to every frame: an Inception-style random resized
crop, a horizontal flip, RandAugment, normalisation, then Random Erasing. Testing resizes the short
side and takes one centre crop or three crops along the long side. torchvision's ``transforms.v2`` does
each step: given a ``(T, 3, H, W)`` tensor it draws its random parameters once and applies them to all
``T`` frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

KINETICS_MEAN = (0.45, 0.45, 0.45)
KINETICS_STD = (0.225, 0.225, 0.225)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation. The defaults are the paper's Kinetics recipe (Appendix D); for
    Something-Something use ``Augmentation(flip=False)`` (left/right is part of its labels).

    RandAugment: `randaug_layers` operations, each applied with probability `randaug_prob`, at
    `randaug_magnitude` on a 0..10 scale (timm's ``rand-m7-n4``; the magnitude is not jittered).
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: bool = True
    randaug_layers: int = 4
    randaug_magnitude: int = 7
    randaug_prob: float = 0.5
    erase_prob: float = 0.25

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if not 0 <= self.randaug_magnitude <= 10:
            raise ValueError(f"randaug_magnitude is on a 0..10 scale, got {self.randaug_magnitude}")
        for name in ("randaug_prob", "erase_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")


IMAGENET_AUGMENTATION = Augmentation(randaug_layers=2, randaug_magnitude=9, randaug_prob=0.5)
"""The DeiT recipe the paper uses for ImageNet (§5): RandAugment n2 m9, otherwise as for Kinetics."""


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> uint8 ``(T, 3, H, W)``."""
    frames = torch.as_tensor(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
    return frames.permute(0, 3, 1, 2)


def normalize(frames: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """uint8 ``(..., 3, H, W)`` -> float ``(..., 3, H, W)``: ``(x / 255 - mean) / std`` per channel."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (frames.float() / 255.0 - mean_t) / std_t


class TrainTransform:
    """uint8 frames ``(T, H, W, 3)`` -> float views ``(1, 3, T, crop_size, crop_size)``: one augmented view."""

    def __init__(
        self,
        crop_size: int,
        augmentation: Augmentation = Augmentation(),
        mean: tuple[float, ...] = KINETICS_MEAN,
        std: tuple[float, ...] = KINETICS_STD,
    ) -> None:
        self.augmentation, self.mean, self.std = augmentation, mean, std
        a = augmentation
        steps: list = [v2.RandomResizedCrop(crop_size, scale=a.crop_scale, ratio=a.crop_ratio, antialias=True)]
        if a.flip:
            steps.append(v2.RandomHorizontalFlip())
        steps += [
            v2.RandomApply(
                [v2.RandAugment(num_ops=1, magnitude=a.randaug_magnitude, num_magnitude_bins=11)], p=a.randaug_prob
            )
            for _ in range(a.randaug_layers)
        ]
        self.geometric = v2.Compose(steps)
        self.erase = v2.RandomErasing(p=a.erase_prob, value="random") if a.erase_prob > 0 else None

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        clip = normalize(self.geometric(frames_to_tensor(frames)), self.mean, self.std)
        if self.erase is not None:
            clip = self.erase(clip)
        return clip.permute(1, 0, 2, 3).unsqueeze(0).contiguous()


class EvalTransform:
    """uint8 frames ``(T, H, W, 3)`` -> float views ``(num_crops, 3, T, crop_size, crop_size)``.

    The short side is resized to `short_side`, then one centre crop (``num_crops=1``) or three crops
    at the start, centre and end of the long side (``num_crops=3``). Default `short_side`: 256/224 of
    the crop for one crop (the paper's 256 -> 224), the crop size itself for three crops, so that the
    three crops cover the whole frame.
    """

    def __init__(
        self,
        crop_size: int,
        num_crops: int = 1,
        short_side: int | None = None,
        mean: tuple[float, ...] = KINETICS_MEAN,
        std: tuple[float, ...] = KINETICS_STD,
    ) -> None:
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops must be 1 (centre crop) or 3 (crops along the long side), got {num_crops}")
        if short_side is None:
            short_side = round(crop_size * 256 / 224) if num_crops == 1 else crop_size
        if short_side < crop_size:
            raise ValueError(f"short_side ({short_side}) must be at least crop_size ({crop_size})")
        self.crop_size, self.num_crops, self.short_side = crop_size, num_crops, short_side
        self.mean, self.std = mean, std

    def crop_boxes(self, height: int, width: int) -> list[tuple[int, int]]:
        """Top-left corners ``(top, left)`` of the crops in a frame already resized to ``height x width``."""
        c = self.crop_size
        centre = ((height - c) // 2, (width - c) // 2)
        if self.num_crops == 1:
            return [centre]
        if width >= height:
            return [(centre[0], left) for left in (0, (width - c) // 2, width - c)]
        return [(top, centre[1]) for top in (0, (height - c) // 2, height - c)]

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        clip = F.resize(frames_to_tensor(frames), [self.short_side], antialias=True)
        height, width = clip.shape[-2:]
        views = [
            F.crop(clip, top, left, self.crop_size, self.crop_size) for top, left in self.crop_boxes(height, width)
        ]
        views = normalize(torch.stack(views), self.mean, self.std)
        return views.permute(0, 2, 1, 3, 4).contiguous()


class ImageTransform:
    """uint8 ``(1, H, W, 3)`` -> float ``(3, crop_size, crop_size)``: the clip transforms with T = 1,
    normalised with ImageNet's statistics. Training with `augmentation` None means resize and centre
    crop only, as in evaluation."""

    def __init__(
        self, train: bool, crop_size: int, augmentation: Augmentation | None, short_side: int | None = None
    ) -> None:
        if train and augmentation is not None:
            self.clip_transform = TrainTransform(crop_size, augmentation, IMAGENET_MEAN, IMAGENET_STD)
        else:
            self.clip_transform = EvalTransform(crop_size, 1, short_side, IMAGENET_MEAN, IMAGENET_STD)

    def __call__(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        return self.clip_transform(frames)[0, :, 0]  # the one view (1, 3, 1, c, c) -> (3, c, c)
