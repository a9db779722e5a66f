"""`VideoDataset`: clips from video files, sampled and augmented as in the paper (§4, Appendix D)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .annotations import VIDEO_EXTENSIONS, read_annotation_file, read_class_folders
from .decoding import BACKENDS, open_video
from .failures import FileDataset
from .sampling import segment_clip, stride_clip, uniform_positions
from .transforms import KINETICS_MEAN, KINETICS_STD, Augmentation, EvalTransform, TrainTransform

MODES = ("train", "val", "test")
SAMPLINGS = ("stride", "segment")


class VideoDataset(FileDataset):
    """Clips of the videos listed in `annotation_file` (paths relative to `video_root`), or of a
    folder-per-class tree at `video_root` when `annotation_file` is None.

    Items by `mode`:

    - ``"train"``: ``(clip, label)``, clip float ``(3, num_frames, crop_size, crop_size)``: one clip at a
      random position in time, augmented by `augmentation` (None: resize and centre crop only).
    - ``"val"``: ``(clip, label)``, the same shape: the clip in the middle of the video, centre crop.
    - ``"test"``: ``(views, label)``, views float ``(num_clips * num_crops, 3, num_frames, crop, crop)``:
      `num_clips` clips spread uniformly in time, each cut into `num_crops` spatial crops (clip-major).

    `sampling="stride"` takes `num_frames` frames `sampling_rate` apart (Kinetics, T x tau);
    ``"segment"`` takes one frame from each of `num_frames` equal segments (Something-Something; then
    use ``Augmentation(flip=False)``). Short videos are padded by repeating their last frame.

    A file that cannot be read is recorded in `failures` (workers included) with a warning and, in
    ``"train"`` mode, replaced by another sample; in ``"val"`` and ``"test"`` mode the item is a zero
    placeholder labelled `EXCLUDED` (-1), which `mvit.engine.evaluate` leaves out and reports. More than
    `max_failures` of them (default: 1% of the dataset, at least 10) stop loading with the list. Call
    `reset_failures()` at the start of each epoch. `classes`: for a folder-per-class tree, the class
    names it must have (the training set's, so that labels mean the same in both splits).
    """

    def __init__(
        self,
        annotation_file: str | os.PathLike | None,
        video_root: str | os.PathLike,
        mode: str = "train",
        num_frames: int = 16,
        sampling_rate: int = 4,
        crop_size: int = 224,
        num_clips: int = 5,
        num_crops: int = 1,
        *,
        sampling: str = "stride",
        augmentation: Augmentation | None = Augmentation(),
        test_short_side: int | None = None,
        mean: tuple[float, ...] = KINETICS_MEAN,
        std: tuple[float, ...] = KINETICS_STD,
        num_classes: int | None = None,
        backend: str = "auto",
        max_failures: int | None = None,
        classes: list[str] | None = None,
    ) -> None:
        for name, value, options in (
            ("mode", mode, MODES),
            ("sampling", sampling, SAMPLINGS),
            ("backend", backend, BACKENDS),
        ):
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        if num_frames < 1 or sampling_rate < 1 or crop_size < 1 or num_clips < 1:
            raise ValueError(
                "num_frames, sampling_rate, crop_size and num_clips must all be >= 1, got "
                f"{num_frames}, {sampling_rate}, {crop_size}, {num_clips}"
            )
        self.root = Path(video_root)
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"video_root {self.root} is not a folder; point it at the folder the annotation paths are relative to"
            )
        self.samples, self.classes = self._read_samples(annotation_file, num_classes, classes)
        self.num_classes = num_classes or (
            len(self.classes) if self.classes else 1 + max(label for _, label in self.samples)
        )
        self.mode, self.sampling, self.backend = mode, sampling, backend
        self.num_frames, self.sampling_rate = num_frames, sampling_rate
        self.num_clips = num_clips if mode == "test" else 1
        self.num_crops, self.crop_size = (num_crops if mode == "test" else 1), crop_size
        if mode == "train" and augmentation is not None:
            self.transform = TrainTransform(crop_size, augmentation, mean, std)
        else:
            self.transform = EvalTransform(crop_size, self.num_crops, test_short_side, mean, std)
        self._init_failures(max_failures, replace=mode == "train")

    def _read_samples(
        self, annotation_file: str | os.PathLike | None, num_classes: int | None, classes: list[str] | None
    ) -> tuple[list, list[str] | None]:
        """``(samples [(relative path, label)], class names or None)``; a subclass with another annotation format
        (`mvit.data.charades.CharadesDataset`) overrides it."""
        if annotation_file is None:
            return read_class_folders(self.root, VIDEO_EXTENSIONS, classes)
        return read_annotation_file(annotation_file, num_classes), None

    def clip_indices(self, num_video_frames: int) -> list[np.ndarray]:
        """Frame indices of each clip this mode takes from a video of `num_video_frames` frames."""
        if self.mode == "train":
            if self.sampling == "stride":
                return [stride_clip(num_video_frames, self.num_frames, self.sampling_rate, torch.rand(()).item())]
            return [segment_clip(num_video_frames, self.num_frames, torch.rand(self.num_frames).numpy())]
        positions = uniform_positions(self.num_clips)
        if self.sampling == "stride":
            return [stride_clip(num_video_frames, self.num_frames, self.sampling_rate, p) for p in positions]
        offsets = (np.arange(self.num_clips) + 0.5) / self.num_clips
        return [segment_clip(num_video_frames, self.num_frames, o) for o in offsets]

    def _placeholder(self) -> torch.Tensor:
        clip = (3, self.num_frames, self.crop_size, self.crop_size)
        return torch.zeros((self.num_clips * self.num_crops, *clip) if self.mode == "test" else clip)

    def _load(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        with open_video(self.root / path, self.backend) as video:
            clips = self.clip_indices(len(video))
            frames = video.get_frames(np.concatenate(clips))  # one decoding pass for all clips
        # per clip, the transform's views (1 or crops, 3, T, c, c); train and val take one clip and one crop
        views = torch.cat([self.transform(chunk) for chunk in np.split(frames, len(clips))])
        return (views if self.mode == "test" else views[0]), label
