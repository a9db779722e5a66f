"""A synthetic multi-label video set: our CPU stand-in for Charades (paper §4.2, Appendix D.3).

Each sample is a short "video" of `video_frames` frames in which several events happen, each over its own
stretch of time, overlapping one another. There are six event classes; an event of class k is an object of
the class's own colour (red, yellow, green, cyan, blue, magenta), of a random shape (disc, square or
diamond) and size, gliding along a random straight path while it lasts, over a noisy grey background. Each
class occurs in a video with probability `prevalence` (independently), over a random interval covering
20-60 % of the video; a video may hold none.

A sample is then treated exactly as a Charades video is (the same `mvit.data.charades` functions):

- training and clip-level validation cut a clip of `num_frames` frames `sampling_rate` apart (at a random
  position, or in the middle) and label it with the classes whose interval overlaps the clip's time span
  (`clip_targets`): frame-level targets, so a clip is not asked for events that happen elsewhere;
- video-level testing takes `num_clips` clips spread over the video, labels the video with every event it
  holds (`video_targets`) and max-pools each class's score over the clips (`mvit.engine.tasks`).

`SyntheticMultiLabelDataset` renders the videos in memory; `generate` writes them as mp4 files with
Charades-format annotation files, so that the Charades pipeline (`mvit.data.CharadesDataset`,
``data.dataset=charades``) runs on them unchanged.

Since a clip covers only part of a video, a single centre clip misses events that occur elsewhere in it,
which the max over several clips recovers: the reason for App. D.3's test-time pooling, visible here.

Objects are drawn in a random order, so one may pass in front of another and hide it for a frame or two
while its event is labelled: a little label noise, as in real videos.

The classes are deliberately easy to tell apart (colour alone decides which event it is), so that a small
MViT learns the set in about a minute on a CPU; what is hard is the multi-label part: several events at
once, events that start or end within the clip, and targets that change with the clip's position. The
chance level of average precision for a class is its frequency among the scored samples (a random ranking
puts positives at random places), so a model must beat the prevalence of the targets.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .charades import Action, clip_targets, frame_span, video_targets
from .encoding import write_video
from .sampling import stride_clip, uniform_positions
from .synthetic import SHAPES, SPLITS
from .transforms import KINETICS_MEAN, KINETICS_STD, frames_to_tensor, normalize

EVENTS = ("red object", "yellow object", "green object", "cyan object", "blue object", "magenta object")
COLOURS = np.array(
    [[0.9, 0.1, 0.1], [0.9, 0.9, 0.1], [0.1, 0.8, 0.1], [0.1, 0.85, 0.85], [0.15, 0.2, 0.95], [0.9, 0.1, 0.9]]
)
FPS = 8.0  # the time of frame i is i / FPS seconds
MODES = ("train", "val", "test")


def draw_events(rng: np.random.Generator, video_frames: int, prevalence: float) -> tuple[Action, ...]:
    """The events of one video: each class with probability `prevalence`, over a random interval of 20-60 %
    of the video (times in seconds: first and last frame shown, divided by `FPS`)."""
    events = []
    for label in range(len(EVENTS)):
        if rng.random() >= prevalence:
            continue
        length = max(2, int(round(rng.uniform(0.2, 0.6) * video_frames)))
        first = int(rng.integers(0, video_frames - length + 1))
        events.append(Action(label, first / FPS, (first + length - 1) / FPS))
    return tuple(events)


def render_video(events: tuple[Action, ...], video_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 frames ``(video_frames, size, size, 3)``: every event's object over its own frames."""
    s = float(size)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    grey = rng.uniform(0.35, 0.65)
    video = grey + rng.uniform(0.02, 0.06) * rng.standard_normal((video_frames, size, size, 1))
    video = np.repeat(video, 3, axis=-1)
    for event in sorted(events, key=lambda _: rng.random()):  # random drawing order: any may be in front
        shape = SHAPES[rng.integers(len(SHAPES))]
        r = rng.uniform(0.1, 0.16) * s
        start, end = rng.uniform(r, s - r, 2), rng.uniform(r, s - r, 2)
        first, last = int(round(event.start * FPS)), int(round(event.end * FPS))
        for t in range(first, last + 1):
            a = (t - first) / max(last - first, 1)
            cx, cy = (1 - a) * start + a * end
            cover = np.clip(0.5 - shape(x - cx, y - cy, r), 0.0, 1.0)[..., None]
            video[t] = video[t] * (1 - cover) + COLOURS[event.label] * cover
    return np.round(np.clip(video, 0.0, 1.0) * 255).astype(np.uint8)


def render_sample(
    split: str, index: int, video_frames: int, size: int, seed: int, prevalence: float
) -> tuple[np.ndarray, tuple[Action, ...]]:
    """``(frames uint8 (L, S, S, 3), events)`` of video `index` of `split`, from a generator seeded by
    ``(seed, split, index)``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    rng = np.random.default_rng([seed, SPLITS[split], index, 7])
    events = draw_events(rng, video_frames, prevalence)
    return render_video(events, video_frames, size, rng), events


class SyntheticMultiLabelDataset(torch.utils.data.Dataset):
    """In memory, deterministic: items by `mode` (default: ``"train"`` for the train split, else ``"val"``):

    - ``"train"``: ``(clip (3, num_frames, size, size), clip targets (6,))``, the clip at a random position
      (torch's generator) of video `index`;
    - ``"val"``: the centre clip and its targets;
    - ``"test"``: ``(views (num_clips, 3, num_frames, size, size), video targets (6,))``.

    Clips are normalised as `VideoDataset` normalises them (mean 0.45, std 0.225)."""

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 400,
        num_frames: int = 8,
        size: int = 32,
        *,
        mode: str | None = None,
        video_frames: int = 24,
        sampling_rate: int = 1,
        num_clips: int = 3,
        prevalence: float = 0.35,
        seed: int = 0,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        mode = mode or ("train" if split == "train" else "val")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if num_samples < 1 or num_clips < 1 or sampling_rate < 1:
            raise ValueError(
                f"num_samples, num_clips, sampling_rate must be >= 1, got {num_samples}, {num_clips}, {sampling_rate}"
            )
        if (num_frames - 1) * sampling_rate + 1 > video_frames:
            raise ValueError(
                f"a clip of {num_frames} frames {sampling_rate} apart does not fit in video_frames={video_frames}"
            )
        if not 0.0 < prevalence < 1.0:
            raise ValueError(f"prevalence must lie in (0, 1), got {prevalence}")
        if size < 16:
            raise ValueError(f"size must be >= 16 to draw the objects, got {size}")
        self.split, self.mode, self.num_samples = split, mode, num_samples
        self.num_frames, self.size, self.video_frames, self.sampling_rate = (
            num_frames,
            size,
            video_frames,
            sampling_rate,
        )
        self.num_clips = num_clips if mode == "test" else 1
        self.prevalence, self.seed = prevalence, seed
        self.classes = EVENTS
        self.num_classes = len(EVENTS)

    def __len__(self) -> int:
        return self.num_samples

    def video(self, index: int) -> tuple[np.ndarray, tuple[Action, ...]]:
        """``(uint8 frames (video_frames, S, S, 3), events)`` of video `index`."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        return render_sample(self.split, index, self.video_frames, self.size, self.seed, self.prevalence)

    def clip_indices(self) -> list[np.ndarray]:
        """Frame indices of each clip this mode takes from a video."""
        if self.mode == "train":
            positions = [torch.rand(()).item()]
        else:
            positions = uniform_positions(self.num_clips)
        return [stride_clip(self.video_frames, self.num_frames, self.sampling_rate, p) for p in positions]

    def _clip(self, frames: np.ndarray) -> torch.Tensor:
        clip = normalize(frames_to_tensor(torch.from_numpy(frames)), KINETICS_MEAN, KINETICS_STD)
        return clip.permute(1, 0, 2, 3).contiguous()  # (3, T, S, S)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        frames, events = self.video(index)
        clips = self.clip_indices()
        if self.mode == "test":
            return torch.stack([self._clip(frames[c]) for c in clips]), video_targets(events, self.num_classes)
        return self._clip(frames[clips[0]]), clip_targets(events, *frame_span(clips[0], FPS), self.num_classes)


CSV_HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length"


def charades_actions(events: tuple[Action, ...]) -> str:
    """Events in the ``actions`` field format of the Charades CSVs: ``c001 0.250 1.125;c004 ...``."""
    return ";".join(f"c{e.label:03d} {e.start:.3f} {e.end:.3f}" for e in events)


def generate(
    out_dir: str | os.PathLike,
    num_train: int = 400,
    num_val: int = 100,
    video_frames: int = 24,
    size: int = 32,
    seed: int = 0,
    prevalence: float = 0.35,
) -> dict[str, Path]:
    """Write the set in the layout `mvit.data.CharadesDataset` reads (the one ``data_scripts/charades.py`` writes):
    ``out_dir/videos/<id>.mp4`` at `FPS` frames per second, ``train.csv`` and ``val.csv`` with the official
    Charades columns (``actions`` as ``cNNN start end;...``, class ``cNNN`` = event NNN) and ``classes.txt``.
    Train with ``data.dataset=charades data.root=out_dir model.config.num_classes=6``: the clips and targets are
    those of `SyntheticMultiLabelDataset` up to video compression. Resumable: existing videos are kept (files
    appear whole or not at all); `out_dir` remembers its settings in ``synthetic_multilabel.json`` and
    resuming with other settings is an error. Returns the paths ``{"root", "train", "val", "classes"}``."""
    if size % 2:
        raise ValueError(f"size must be even (mp4 stores colour at half resolution), got {size}")
    out_dir = Path(out_dir)
    settings = dict(video_frames=video_frames, size=size, seed=seed, prevalence=prevalence)
    record = out_dir / "synthetic_multilabel.json"
    if record.exists() and json.loads(record.read_text()) != settings:
        raise ValueError(
            f"{out_dir} holds a synthetic multi-label set made with {json.loads(record.read_text())}, not {settings}; "
            "use another folder or delete this one"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings))
    paths = {
        "root": out_dir,
        "train": out_dir / "train.csv",
        "val": out_dir / "val.csv",
        "classes": out_dir / "classes.txt",
    }
    for split, count in (("train", num_train), ("val", num_val)):
        rows = [CSV_HEADER]
        for index in range(count):
            video_id = f"{split}{index:06d}"
            frames, events = render_sample(split, index, video_frames, size, seed, prevalence)
            target = out_dir / "videos" / f"{video_id}.mp4"
            if not target.exists():
                write_video(target, frames, FPS)
            rows.append(f"{video_id},,,,,,,,,{charades_actions(events)},{video_frames / FPS:.3f}")
        tmp = paths[split].with_name(paths[split].name + ".tmp")
        tmp.write_text("".join(f"{row}\n" for row in rows))
        tmp.replace(paths[split])
    paths["classes"].write_text("".join(f"c{i:03d} {name}\n" for i, name in enumerate(EVENTS)))
    return paths
