"""The inputs of a run: datasets built from the ``data`` section of a `TrainConfig`, samplers and loaders.

Two pieces make a resumed run repeat exactly what an uninterrupted one does:

- `EpochOrder`: the order of an epoch comes from the (repeated-augmentation) sampler, which is
  deterministic given the seed and the epoch; a run resumed mid-epoch starts at the first batch not yet
  done instead of re-reading the ones before it.
- `SeededSamples`: every sample's augmentation draws from RNGs seeded by (seed, epoch, rank, position in
  the epoch), so it does not depend on the number of loader workers, on which worker loads it, or on
  where the run was resumed. The two copies of a clip under repeated augmentation sit at different
  positions, so they get different augmentations.

Datasets: `DATASETS` maps each ``data.dataset`` name to a builder ``(cfg, model_cfg) -> (train, val, test)``
(``None`` for a split the dataset lacks). Adding a dataset is one builder function here plus one entry in
`DATASETS`; the config check, its error message and ``train --help`` take the names from that table.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import random
from pathlib import Path
from typing import Callable, Iterator, Optional

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
        raise ConfigError(
            f"model.config.num_classes={num_classes} but the {split} set has {own} classes; "
            f"set model.config.num_classes={own}"
        )
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise ConfigError(f"the {split} set is empty; check data.root and the annotation files")


def eval_loader(cfg: TrainConfig, dataset: Dataset, ctx: Context) -> DataLoader:
    """Batches of `dataset` in order, each item on exactly one process."""
    return DataLoader(
        dataset,
        batch_size=cfg.data.eval_batch_size or cfg.data.batch_size,
        sampler=ShardSampler(len(dataset), ctx.rank, ctx.world_size),  # type: ignore[arg-type]
        num_workers=cfg.data.num_workers,
        pin_memory=ctx.device.type == "cuda",
        collate_fn=getattr(dataset, "collate_fn", None),  # a dataset whose items need their own batching (detection)
    )


Splits = tuple[Dataset, Optional[Dataset], Optional[Dataset]]  # (train, val, test); None: the split does not exist


def build_datasets(cfg: TrainConfig, model_cfg: MViTConfig) -> Splits:
    """``(train, val, test)`` for ``cfg.data``, made by ``DATASETS[cfg.data.dataset]``; clips have the model's
    ``input_size`` (T, H, W). ``data.options`` adds keyword arguments of the dataset class (checked against its
    signature)."""
    t, size, width = model_cfg.input_size
    if size != width:
        raise ConfigError(
            f"model.config.input_size={model_cfg.input_size}: the data pipeline crops squares; use equal H and W"
        )
    return DATASETS[cfg.data.dataset](cfg, model_cfg)


def synthetic_splits(cfg: TrainConfig, model_cfg: MViTConfig) -> Splits:
    """The in-memory temporal dataset `mvit.data.SyntheticVideoDataset` (no test views); ``data.train_size`` and
    ``data.val_size`` clips."""
    from ..data import SyntheticVideoDataset

    return (
        _generated(SyntheticVideoDataset, cfg, model_cfg, "train"),
        _generated(SyntheticVideoDataset, cfg, model_cfg, "val"),
        None,
    )


def _generated(cls: type, cfg: TrainConfig, model_cfg: MViTConfig, split: str, **kwargs) -> Dataset:
    """The `split` of an in-memory dataset `cls` that generates its clips: ``model.config.input_size`` clips,
    ``data.train_size`` (train) or ``data.val_size`` (val) of them (None: the dataset's default), `kwargs` more."""
    d, (t, size, _) = cfg.data, model_cfg.input_size
    n = d.train_size if split == "train" else d.val_size
    sizes = {"num_samples": n} if n else {}
    return _construct(cls, d.options, split=split, num_frames=t, size=size, **sizes, **kwargs)


def digits_splits(cfg: TrainConfig, model_cfg: MViTConfig) -> Splits:
    """scikit-learn's handwritten digits (`mvit.data.DigitsDataset`), no test views."""
    from ..data import DigitsDataset

    d, size = cfg.data, model_cfg.input_size[1]
    augmentation = _augmentation(cfg.augment.transform)
    return (
        _construct(DigitsDataset, d.options, split="train", size=size, **augmentation),
        _construct(DigitsDataset, d.options, split="val", size=size),
        None,
    )


def imagefolder_splits(cfg: TrainConfig, model_cfg: MViTConfig) -> Splits:
    """`mvit.data.ImageFolderDataset` over ``root/train/<class>/*`` and ``root/val/<class>/*`` (no test views)."""
    from ..data import ImageFolderDataset

    d, size = cfg.data, model_cfg.input_size[1]
    root = _root(d.root, d.dataset)
    augmentation = _augmentation(cfg.augment.transform)
    train = _construct(ImageFolderDataset, d.options, root=root / "train", mode="train", crop_size=size, **augmentation)
    val = _construct(
        ImageFolderDataset, d.options, root=root / "val", mode="val", crop_size=size, classes=train.classes
    )  # the same class names, or an error naming them
    return train, val, None


def video_splits(cfg: TrainConfig, model_cfg: MViTConfig) -> Splits:
    """`mvit.data.VideoDataset` over ``root/train.csv`` and ``root/val.csv`` (paths relative to ``root``); the test
    set is ``val.csv`` in multi-view ``"test"`` mode. The on-disk synthetic dataset written by
    ``data_scripts/make_synthetic.py`` is such a folder."""
    from ..data import VideoDataset

    d = cfg.data
    root = _root(d.root, d.dataset)
    annotations = {split: root / f"{split}.csv" for split in ("train", "val")}
    for path in annotations.values():
        if not path.is_file():
            raise ConfigError(
                f"data.root={str(root)!r} has no {path.name}; a video dataset folder holds train.csv "
                "and val.csv (lines 'relative/path.mp4 label'), see data_scripts/"
            )
    return _annotated_splits(VideoDataset, cfg, model_cfg, annotations, video_root=root)


def _annotated_splits(
    cls: type, cfg: TrainConfig, model_cfg: MViTConfig, annotations: dict, video_root: Path
) -> Splits:
    """`cls` (`mvit.data.VideoDataset` or a subclass) over ``annotations["train"]`` in ``"train"`` mode (with
    ``augment.transform``), and over ``annotations["val"]`` twice: clip-level ``"val"`` and multi-view ``"test"``
    (``data.num_clips x data.num_crops`` views)."""
    d, (t, size, _) = cfg.data, model_cfg.input_size
    common = dict(
        video_root=video_root,
        num_frames=t,
        sampling_rate=d.sampling_rate,
        crop_size=size,
        num_clips=d.num_clips,
        num_crops=d.num_crops,
        num_classes=model_cfg.num_classes,
    )  # labels are checked against the model's head
    augmentation = _augmentation(cfg.augment.transform)
    return (
        _construct(cls, d.options, annotation_file=annotations["train"], mode="train", **augmentation, **common),
        _construct(cls, d.options, annotation_file=annotations["val"], mode="val", **common),
        _construct(cls, d.options, annotation_file=annotations["val"], mode="test", **common),
    )


def synthetic_multilabel_splits(cfg: TrainConfig, model_cfg: MViTConfig) -> Splits:
    """The in-memory multi-label set `mvit.data.SyntheticMultiLabelDataset` (Charades' stand-in, for
    ``model.task=multilabel``): random clips for training, the centre clip for validation and
    ``data.num_clips`` clips of the validation videos for the video-level test; ``data.sampling_rate`` apart."""
    from ..data import SyntheticMultiLabelDataset

    views = dict(sampling_rate=cfg.data.sampling_rate, num_clips=cfg.data.num_clips)
    return (
        _generated(SyntheticMultiLabelDataset, cfg, model_cfg, "train", **views),
        _generated(SyntheticMultiLabelDataset, cfg, model_cfg, "val", **views),
        _generated(SyntheticMultiLabelDataset, cfg, model_cfg, "val", mode="test", **views),
    )


def charades_splits(cfg: TrainConfig, model_cfg: MViTConfig) -> Splits:
    """`mvit.data.CharadesDataset` over the folder ``data_scripts/charades.py`` writes: ``root/train.csv`` and
    ``root/val.csv`` (the official ``Charades_v1_train.csv`` / ``_test.csv`` rows), videos ``root/videos/<id>.mp4``;
    the test set is ``val.csv`` in multi-view mode (``data.num_clips x data.num_crops`` views)."""
    from ..data import CharadesDataset

    d = cfg.data
    root = _root(d.root, d.dataset)
    annotations = {split: root / f"{split}.csv" for split in ("train", "val")}
    for path in (*annotations.values(), root / "videos"):
        if not path.exists():
            raise ConfigError(
                f"data.root={str(root)!r} has no {path.name}; prepare it with data_scripts/charades.py (train.csv, "
                "val.csv and videos/ from the official release)"
            )
    return _annotated_splits(CharadesDataset, cfg, model_cfg, annotations, video_root=root / "videos")


def synthetic_detection_splits(cfg: TrainConfig, model_cfg: MViTConfig) -> Splits:
    """The in-memory detection set `mvit.data.synthetic_detection.SyntheticDetectionDataset` (moving objects whose
    action is their direction; model.task=detection), ``data.train_size`` and ``data.val_size`` clips, no test views."""
    from ..data.synthetic_detection import SyntheticDetectionDataset

    return (
        _generated(SyntheticDetectionDataset, cfg, model_cfg, "train"),
        _generated(SyntheticDetectionDataset, cfg, model_cfg, "val"),
        None,
    )


def ava_splits(cfg: TrainConfig, model_cfg: MViTConfig) -> Splits:
    """`mvit.data.ava.AVADataset` over the folder ``data_scripts/ava.py`` writes (``data.root``): train keyframes
    with ground truth and proposals at IoU >= 0.9, val keyframes scored on the proposals; one clip per keyframe
    (no test views). ``data.sampling_rate`` is counted in frames at 30 fps."""
    from ..data.ava import AVADataset

    d, (t, size, _) = cfg.data, model_cfg.input_size
    root = _root(d.root, d.dataset)
    common = dict(root=root, num_frames=t, sampling_rate=d.sampling_rate, crop_size=size)
    return (
        _construct(AVADataset, d.options, mode="train", **common),
        _construct(AVADataset, d.options, mode="val", **common),
        None,
    )


# The one list of dataset names: ``data.dataset`` is checked against these keys (and ``train --help`` lists them).
DATASETS: dict[str, Callable[[TrainConfig, MViTConfig], Splits]] = {
    "synthetic": synthetic_splits,
    "video": video_splits,
    "digits": digits_splits,
    "imagefolder": imagefolder_splits,
    "synthetic_detection": synthetic_detection_splits,
    "ava": ava_splits,
    "synthetic_multilabel": synthetic_multilabel_splits,
    "charades": charades_splits,
}


def _construct(cls: type, options: dict, **engine_kwargs) -> Dataset:
    """``cls(**engine_kwargs, **options)``; ``data.options`` may only name other arguments of `cls`."""
    params = [p for p in inspect.signature(cls).parameters if p != "self"]
    for key in options:
        if key in engine_kwargs or (key == "augmentation" and key in params):
            raise ConfigError(
                f"data.options.{key} is set by the engine (from model.config.input_size, data.* or "
                "augment.transform); set it there instead"
            )
        if key not in params:
            close = difflib.get_close_matches(key, params, n=1)
            hint = f" (did you mean 'data.options.{close[0]}'?)" if close else ""
            raise ConfigError(
                f"unknown config key 'data.options.{key}' for {cls.__name__}{hint}; its arguments: {', '.join(params)}"
            )
    try:
        return cls(**engine_kwargs, **options)
    except (ValueError, FileNotFoundError, ModuleNotFoundError) as err:  # a bad annotation line, class folder or
        # data.options value, or a dataset whose optional dependency is missing (the error names the extra)
        raise ConfigError(str(err)) from None


def _root(root: Optional[str], dataset: str) -> Path:
    if root is None:
        raise ConfigError(f"data.dataset={dataset!r} needs data.root, the dataset folder (data.root=PATH)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise ConfigError(
            f"data.root={root!r} is not a folder; prepare the dataset with data_scripts/ or point data.root at it"
        )
    return path


def _augmentation(spec) -> dict:
    """``augment.transform`` as keyword arguments of a training dataset: {} for "default" (the dataset's
    own), ``augmentation=None`` for "none", else ``augmentation=Augmentation(**spec)``."""
    if spec == "default":
        return {}
    if spec == "none":
        return {"augmentation": None}
    from ..data import Augmentation

    try:
        return {"augmentation": Augmentation(**spec)}
    except TypeError as err:
        raise ConfigError(f"augment.transform: {err}; valid keys are the fields of mvit.data.Augmentation") from None
    except ValueError as err:
        raise ConfigError(f"augment.transform: {err}") from None
