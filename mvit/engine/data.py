"""Datasets and loaders for the engine, built from the ``data`` section of a `TrainConfig`.

Two pieces make a resumed run repeat exactly what an uninterrupted one does:

- `EpochOrder`: the order of an epoch comes from the (repeated-augmentation) sampler, which is
  deterministic given the seed and the epoch; a run resumed mid-epoch starts at the first batch not yet
  done instead of re-reading the ones before it.
- `SeededSamples`: every sample's augmentation draws from RNGs seeded by (seed, epoch, rank, position in
  the epoch), so it does not depend on the number of loader workers, on which worker loads it, or on
  where the run was resumed. The two copies of a clip under repeated augmentation sit at different
  positions, so they get different augmentations.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import random
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..configs import MViTConfig
from .config import ConfigError, TrainConfig
from .distributed import Context


class EpochOrder(Sampler):
    """Yields ``(index, sample_seed)`` for the positions ``start, start+1, ...`` of one epoch's order.

    ``sampler``: a per-process sampler with ``set_epoch`` (e.g. `mvit.data.RepeatAugSampler`).
    Call `set_epoch` before each pass.
    """

    def __init__(self, sampler: Sampler, seed: int, rank: int) -> None:
        self.sampler, self.seed, self.rank = sampler, seed, rank
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return max(len(self.sampler) - self.start, 0)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        self.sampler.set_epoch(self.epoch)
        order = list(self.sampler)
        for position in range(self.start, len(order)):
            seed = np.random.SeedSequence([self.seed, self.epoch, self.rank, position]).generate_state(1)[0]
            yield int(order[position]), int(seed)


class SeededSamples(Dataset):
    """``dataset[index]`` computed with Python, NumPy and torch (CPU) RNGs seeded by ``sample_seed``;
    the caller's RNG states are restored afterwards. Keys are the ``(index, sample_seed)`` pairs of
    `EpochOrder`."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, seed = key
        with _seeded(seed):
            return self.dataset[index]


@contextlib.contextmanager
def _seeded(seed: int):
    py, npy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)  # the CPU generator only: CUDA streams are left alone
    try:
        yield
    finally:
        random.setstate(py)
        np.random.set_state(npy)
        torch.set_rng_state(cpu)


class ShardSampler(Sampler):
    """Indices ``rank, rank + world_size, ...`` of a dataset of ``size`` items: every item is seen by
    exactly one process, none twice (evaluation must not count padding)."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1) -> None:
        self.size, self.rank, self.world_size = size, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.world_size))


def num_classes_of(dataset: Dataset) -> Optional[int]:
    """The dataset's ``num_classes`` (or ``len(classes)``) when it declares one."""
    if hasattr(dataset, "num_classes"):
        return int(dataset.num_classes)
    if hasattr(dataset, "classes"):
        return len(dataset.classes)
    return None


def check_dataset(dataset: Dataset, num_classes: int, split: str) -> None:
    """The dataset's classes must match the model's head."""
    own = num_classes_of(dataset)
    if own is not None and own != num_classes:
        raise ConfigError(f"model.config.num_classes={num_classes} but the {split} set has {own} classes; "
                          f"set model.config.num_classes={own}")
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ConfigError(f"the {split} set is empty; check data.root and the annotation files")


def eval_loader(cfg: TrainConfig, dataset: Dataset, ctx: Context) -> DataLoader:
    """Batches of `dataset` in order, each item on exactly one process."""
    return DataLoader(dataset, batch_size=cfg.data.eval_batch_size or cfg.data.batch_size,
                      sampler=ShardSampler(len(dataset), ctx.rank, ctx.world_size),  # type: ignore[arg-type]
                      num_workers=cfg.data.num_workers, pin_memory=ctx.device.type == "cuda")


def build_datasets(cfg: TrainConfig, model_cfg: MViTConfig) -> tuple[Dataset, Optional[Dataset], Optional[Dataset]]:
    """``(train, val, test)`` for ``cfg.data``; clips have the model's ``input_size`` (T, H, W).

    - ``synthetic``: the in-memory temporal dataset of `mvit.data.synthetic` (no files; no test views);
    - ``video``: `mvit.data.VideoDataset` over ``root/train.csv`` and ``root/val.csv`` (paths relative to
      ``root``); the test set is ``val.csv`` in multi-view ``"test"`` mode. The on-disk synthetic dataset
      written by ``data_scripts/make_synthetic.py`` is such a folder;
    - ``digits``: scikit-learn's handwritten digits (`mvit.data.DigitsDataset`);
    - ``imagefolder``: ``root/train/<class>/*`` and ``root/val/<class>/*``.
    ``data.options`` adds keyword arguments of the dataset class (checked against its signature).
    """
    from .. import data as datasets

    d = cfg.data
    t, h, w = model_cfg.input_size
    if h != w:
        raise ConfigError(f"model.config.input_size={model_cfg.input_size}: the data pipeline crops squares; "
                          "use equal H and W")
    augmentation = _augmentation(cfg.augment.transform)
    if d.dataset == "synthetic":
        cls = datasets.synthetic.SyntheticVideoDataset
        _check_options(cls, d.options)
        sizes = {"train": d.train_size, "val": d.val_size}
        train, val = (cls(split, **({"num_samples": sizes[split]} if sizes[split] else {}), num_frames=t, size=h,
                          **d.options) for split in ("train", "val"))
        return train, val, None
    if d.dataset == "digits":
        cls = datasets.DigitsDataset
        _check_options(cls, d.options)
        aug = {} if augmentation == "default" else {"augmentation": augmentation}
        return cls("train", size=h, **aug, **d.options), cls("val", size=h, **d.options), None
    root = _root(d.root, d.dataset)
    if d.dataset == "imagefolder":
        cls = datasets.ImageFolderDataset
        _check_options(cls, d.options)
        aug = {} if augmentation == "default" else {"augmentation": augmentation}
        return (cls(root / "train", "train", crop_size=h, **aug, **d.options),
                cls(root / "val", "val", crop_size=h, **d.options), None)
    cls = datasets.VideoDataset
    _check_options(cls, d.options)
    aug = {} if augmentation == "default" else {"augmentation": augmentation}
    common = dict(num_frames=t, sampling_rate=d.sampling_rate, crop_size=h, num_clips=d.num_clips,
                  num_crops=d.num_crops, **d.options)
    annotations = {split: root / f"{split}.csv" for split in ("train", "val")}
    for split, path in annotations.items():
        if not path.is_file():
            raise ConfigError(f"data.root={str(root)!r} has no {path.name}; a video dataset folder holds train.csv "
                              "and val.csv (lines 'relative/path.mp4 label'), see data_scripts/")
    return (cls(annotations["train"], root, "train", **aug, **common),
            cls(annotations["val"], root, "val", **common),
            cls(annotations["val"], root, "test", **common))


def _root(root: Optional[str], dataset: str) -> Path:
    if root is None:
        raise ConfigError(f"data.dataset={dataset!r} needs data.root, the dataset folder (data.root=PATH)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConfigError(f"data.root={root!r} is not a folder; prepare the dataset with data_scripts/ "
                          "or point data.root at it")
    return path


def _check_options(cls: type, options: dict) -> None:
    """``data.options`` must name keyword arguments of the dataset class that the engine does not set."""
    params = [p for p in inspect.signature(cls).parameters if p not in ENGINE_SET]
    for key in options:
        if key not in params:
            close = difflib.get_close_matches(key, params, n=1)
            hint = f" (did you mean 'data.options.{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key 'data.options.{key}' for {cls.__name__}{hint}; "
                              f"valid options: {', '.join(params)}")


ENGINE_SET = ("self", "split", "mode", "annotation_file", "video_root", "root", "num_frames", "size",
              "crop_size", "sampling_rate", "num_clips", "num_crops", "augmentation", "num_samples")


def _augmentation(spec):
    """``augment.transform``: "default" (the dataset's own), "none", or Augmentation fields as a dict."""
    if spec == "default":
        return "default"
    if spec == "none":
        return None
    from ..data import Augmentation

    try:
        return Augmentation(**spec)
    except TypeError as err:
        raise ConfigError(f"augment.transform: {err}; valid keys are the fields of mvit.data.Augmentation") from None
    except ValueError as err:
        raise ConfigError(f"augment.transform: {err}") from None
