"""Image datasets: the video pipeline with T = 1 (paper §5, ImageNet).

Items are ``(image, label)`` with image float ``(3, crop, crop)``, normalised with ImageNet's mean and
standard deviation. `DigitsDataset` holds real data that ships with scikit-learn (1,797 handwritten
digits, 8 x 8 pixels), so a CPU reader can train on real images without downloading anything.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .annotations import IMAGE_EXTENSIONS, read_class_folders
from .failures import FileDataset, UnreadableFile
from .transforms import IMAGENET_AUGMENTATION, Augmentation, ImageTransform


class ImageFolderDataset(FileDataset):
    """Images in an ImageNet-style tree ``root/<class>/<image>.jpg`` (classes numbered in sorted order).

    ``mode="train"``: random resized crop, flip, RandAugment, Random Erasing (`augmentation`, default the
    DeiT recipe; None: resize and centre crop only). ``mode="val"``: short side to 256/224 of
    `crop_size` (or `short_side`), centre crop. Unreadable images are recorded in `failures` and
    replaced (train) or excluded (val), as in `VideoDataset`. Hidden folders and folders without images
    are not classes; `classes` (the training set's class names) makes a mismatch an error.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        mode: str = "train",
        crop_size: int = 224,
        augmentation: Augmentation | None = IMAGENET_AUGMENTATION,
        short_side: int | None = None,
        max_failures: int | None = None,
        classes: list[str] | None = None,
    ) -> None:
        if mode not in ("train", "val"):
            raise ValueError(f"mode must be 'train' or 'val', got {mode!r}")
        self.root = Path(root)
        self.samples, self.classes = read_class_folders(self.root, IMAGE_EXTENSIONS, classes)
        self.num_classes = len(self.classes)
        self.mode, self.crop_size = mode, crop_size
        self._transform = ImageTransform(mode == "train", crop_size, augmentation, short_side)
        self._init_failures(max_failures, replace=mode == "train")

    def _placeholder(self) -> torch.Tensor:
        return torch.zeros(3, self.crop_size, self.crop_size)

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        try:
            with Image.open(self.root / path) as image:
                pixels = np.array(image.convert("RGB"))  # (H, W, 3) uint8
        except (OSError, ValueError) as error:  # missing, truncated or not an image
            raise UnreadableFile(self.root / path, f"cannot decode the image ({error})") from error
        return self._transform(pixels[None]), label


class DigitsDataset(torch.utils.data.Dataset):
    """scikit-learn's handwritten digits (1,797 images, 10 classes) as ``(3, size, size)`` images.

    The 8 x 8 grey images are scaled up to `size` (bilinear) and repeated over 3 channels. The split is
    stratified and fixed by `seed`: `val_fraction` of each class goes to ``"val"``. `augmentation`
    (default None) is applied in the ``"train"`` split only; never flip digits.
    """

    def __init__(
        self,
        split: str = "train",
        size: int = 32,
        augmentation: Augmentation | None = None,
        val_fraction: float = 0.2,
        seed: int = 0,
    ) -> None:
        try:
            from sklearn.datasets import load_digits
            from sklearn.model_selection import train_test_split
        except ModuleNotFoundError:
            raise ModuleNotFoundError(
                "DigitsDataset needs scikit-learn, part of mvit's notebooks extra: pip install 'mvit[notebooks]'",
                name="sklearn",
            ) from None
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if augmentation is not None and augmentation.flip:
            raise ValueError("flipping changes what a digit means; pass Augmentation(flip=False, ...)")
        digits = load_digits()
        train_idx, val_idx = train_test_split(
            np.arange(len(digits.target)), test_size=val_fraction, stratify=digits.target, random_state=seed
        )
        chosen = np.sort(train_idx if split == "train" else val_idx)
        small = torch.from_numpy(digits.images[chosen]).float()[:, None] / 16.0  # (N, 1, 8, 8) in [0, 1]
        large = torch.nn.functional.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)
        self.images = (large.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
        self.labels = torch.from_numpy(digits.target[chosen]).long()
        self.classes = [str(d) for d in range(10)]
        self.num_classes = 10
        self._transform = ImageTransform(split == "train", size, augmentation, size)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames = self.images[index].permute(1, 2, 0)[None]  # (1, size, size, 3) uint8
        return self._transform(frames), int(self.labels[index])
