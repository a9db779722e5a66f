"""A synthetic video dataset whose classes only time can tell apart: our CPU stand-in for
Something-Something (paper §4.1, Table 9's frame-shuffle test).

Ten classes in five pairs. Within a pair, the second class is exactly the first played backwards:
the clip of class ``2k + 1`` drawn with some random parameters is the clip of class ``2k`` drawn with
the same parameters, frames in reverse order. So:

- no single frame tells the two classes of a pair apart (a random frame of one class has the same
  distribution as a random frame of its twin), nor does the *set* of frames: a clip with its frames
  shuffled carries no information about which twin it is. A model can only beat 50% within a pair by
  using temporal order, and shuffled clips cap any model at 50% (Table 9's test becomes sharp);
- appearance is random and shared by all classes: background colour and noise, object colour,
  shape, size, position, speed.

The classes are deliberately ones that a small model learns in minutes on a CPU: each can be read off
local space-time patterns (an edge moving one way, an object growing or fading in, the scene
brightening). Classes that
need relations between distant tokens (a rotation's sense, the order of two separate events) were tried
and left out: `mvit_tiny` stayed at chance on them for the first hundred steps.

A second class set, ``"mixed"``, adds classes that appearance alone decides, for Table 9's contrast
(Kinetics is mostly appearance, Something-Something mostly order). Its ten classes form two groups:

- **order** (labels 0-5): three of the pairs above (moving right / left, approaching / receding,
  getting brighter / darker), drawn exactly as in the temporal set;
- **appearance** (labels 6-9): a still object over a background striped horizontally, vertically or
  diagonally, or checkered (the order classes have plain backgrounds); only the noise changes from frame
  to frame. Any frame shows the pattern, so a bag of frames can solve these classes. (Two weaker designs
  were tried first and left the classes unlearned in the six epochs of the book's recipe: rings, crosses
  and bars carrying one of the five changes as a nuisance, which `mvit_tiny` and `vit_tiny` put mostly in
  the order class of the change, and the same shapes standing still, which `mvit_tiny` told apart in half
  of the clips and a bag-of-frames ViT in one of ten.)

The same function, `render_sample`, makes the frames of the in-memory `SyntheticVideoDataset` and of
the mp4 files written by `generate`, so the two are identical up to video compression.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .encoding import write_video
from .transforms import KINETICS_MEAN, KINETICS_STD, frames_to_tensor, normalize

CLASSES = (
    "moving right",
    "moving left",
    "moving down",
    "moving up",
    "approaching",
    "receding",
    "appearing",
    "disappearing",
    "getting brighter",
    "getting darker",
)
FAMILIES = ("horizontal", "vertical", "scale", "fade", "light")  # pair k: classes 2k, 2k + 1
ORDER_FAMILIES = ("horizontal", "scale", "light")  # the pairs kept in the mixed set
APPEARANCE_CLASSES = ("horizontal stripes", "vertical stripes", "diagonal stripes", "checkerboard")
CLASS_SETS = {
    "temporal": CLASSES,
    "mixed": tuple(CLASSES[2 * FAMILIES.index(f) + d] for f in ORDER_FAMILIES for d in (0, 1)) + APPEARANCE_CLASSES,
}
SPLITS = {"train": 0, "val": 1, "test": 2}
FPS = 8.0


# Signed distances (pixels; negative inside) of the shapes, on broadcast coordinate offsets.
def _disc(dx, dy, r):
    return np.sqrt(dx * dx + dy * dy) - r


def _square(dx, dy, r):
    return np.maximum(np.abs(dx), np.abs(dy)) - 0.89 * r  # about the area of a disc of radius r


def _diamond(dx, dy, r):
    return (np.abs(dx) + np.abs(dy) - 1.25 * r) / np.sqrt(2.0)


SHAPES = (_disc, _square, _diamond)


# Background patterns of the appearance classes: 1 on the "on" half of each period, else 0.
def _horizontal_stripes(x, y, period, phase):
    return np.floor(2 * (y + phase) / period) % 2


def _vertical_stripes(x, y, period, phase):
    return _horizontal_stripes(y, x, period, phase)


def _diagonal_stripes(x, y, period, phase):
    return np.floor(2 * (x + y + phase) / (period * np.sqrt(2.0))) % 2


def _checkerboard(x, y, period, phase):
    return (_horizontal_stripes(x, y, period, phase) + _vertical_stripes(x, y, period, phase)) % 2


TEXTURES = (_horizontal_stripes, _vertical_stripes, _diagonal_stripes, _checkerboard)  # APPEARANCE_CLASSES[i]


def _colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A background colour and an object colour on the other side of mid-grey (dark on light or light
    on dark, at random), so that the object always stands out."""
    if rng.random() < 0.5:
        return rng.uniform(0.0, 0.35, 3), rng.uniform(0.6, 1.0, 3)
    return rng.uniform(0.65, 1.0, 3), rng.uniform(0.0, 0.4, 3)


def _render_forward(family: str, num_frames: int, size: int, rng: np.random.Generator, texture=None) -> np.ndarray:
    """Float frames ``(T, S, S, 3)`` in [0, 1] of the first class of `family`, parameters from `rng`:
    one object (disc, square or diamond) over a noisy background, plain or patterned by `texture`
    (one of `TEXTURES`, with family ``"still"``)."""
    s = float(size)
    t = np.linspace(0.0, 1.0, num_frames)[:, None, None]  # (T, 1, 1) normalised time
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # pixel centres, (S, S)
    background, colour = _colours(rng)
    shape = SHAPES[rng.integers(len(SHAPES))]
    opacity, light = np.ones_like(t), np.ones_like(t)
    if family in ("horizontal", "vertical"):
        r = rng.uniform(0.12, 0.17) * s
        travel = rng.uniform(0.4, 0.6) * s
        along = rng.uniform(r, s - r - travel) + travel * t  # moves right (or down) over the clip
        across = rng.uniform(r, s - r)
        cx, cy = (along, across) if family == "horizontal" else (across, along)
    elif family == "scale":
        r_start, growth = rng.uniform(0.07, 0.1) * s, rng.uniform(2.5, 3.5)
        r = r_start * growth**t  # grows: approaching
        cx, cy = rng.uniform(min(r_start * growth, s / 2), max(s - r_start * growth, s / 2), 2)
    elif family == "fade":
        r = rng.uniform(0.15, 0.22) * s
        cx, cy = rng.uniform(r, s - r, 2)
        opacity = t  # fades in: appearing
    elif family == "still":  # nothing changes but the noise (the appearance classes of the mixed set)
        r = rng.uniform(0.12, 0.2) * s
        cx, cy = rng.uniform(r, s - r, 2)
        period = rng.uniform(0.18, 0.28) * s
        phase = rng.uniform(0.0, period)
    elif family == "light":
        r = rng.uniform(0.12, 0.2) * s
        cx, cy = rng.uniform(r, s - r, 2)
        dim = rng.uniform(0.25, 0.45)
        light = dim + (1 - dim) * t  # the whole scene brightens, from `dim` to full light
    else:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES} or 'still'")
    noise = rng.uniform(0.0, 0.05)
    video = background + noise * rng.standard_normal((num_frames, size, size, 3))
    if texture is not None and family != "still":
        raise ValueError("a texture goes with family 'still'")
    if texture is not None:  # the pattern shifts the background by 0.25 towards mid-grey, away from the object
        video = video + (0.25 if background.mean() < 0.5 else -0.25) * texture(x, y, period, phase)[..., None]
    cover = opacity * np.clip(0.5 - shape(x - cx, y - cy, r), 0.0, 1.0)  # (T, S, S) anti-aliased edges
    return light[..., None] * (video * (1 - cover[..., None]) + colour * cover[..., None])


def _check_classes(classes: str) -> tuple[str, ...]:
    if classes not in CLASS_SETS:
        raise ValueError(f"classes must be one of {tuple(CLASS_SETS)}, got {classes!r}")
    return CLASS_SETS[classes]


def class_groups(classes: str = "temporal") -> dict[str, list[int]]:
    """Labels of each group of a class set: ``{"order": [...]}`` for the temporal set, ``{"order": [0..5],
    "appearance": [6..9]}`` for the mixed one."""
    names = _check_classes(classes)
    groups = {
        "order": [i for i, name in enumerate(names) if name in CLASSES],
        "appearance": [i for i, name in enumerate(names) if name in APPEARANCE_CLASSES],
    }
    return {group: labels for group, labels in groups.items() if labels}


def render_clip(
    label: int, num_frames: int, size: int, rng: np.random.Generator, classes: str = "temporal"
) -> np.ndarray:
    """uint8 frames ``(num_frames, size, size, 3)`` of class `label` of the class set `classes`,
    parameters drawn from `rng`."""
    names = _check_classes(classes)
    if not 0 <= label < len(names):
        raise ValueError(f"label must lie in [0, {len(names) - 1}], got {label}")
    if num_frames < 4 or size < 16:
        raise ValueError(f"need num_frames >= 4 and size >= 16 to draw the classes, got {num_frames}, {size}")
    name = names[label]
    if name in APPEARANCE_CLASSES:  # a still object: the background's pattern decides
        video = _render_forward("still", num_frames, size, rng, texture=TEXTURES[APPEARANCE_CLASSES.index(name)])
    else:
        temporal = CLASSES.index(name)
        video = _render_forward(FAMILIES[temporal // 2], num_frames, size, rng)
        if temporal % 2:
            video = video[::-1]
    return np.round(np.clip(video, 0.0, 1.0) * 255).astype(np.uint8)


def sample_label(index: int, classes: str = "temporal") -> int:
    """Labels cycle through the classes, so every split is balanced."""
    return index % len(_check_classes(classes))


def render_sample(
    split: str, index: int, num_frames: int, size: int, seed: int, classes: str = "temporal"
) -> tuple[np.ndarray, int]:
    """``(frames uint8 (T, S, S, 3), label)`` of sample `index` of `split`; its parameters come from a
    generator seeded by ``(seed, split, index)``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
    label = sample_label(index, classes)
    rng = np.random.default_rng([seed, SPLITS[split], index])
    return render_clip(label, num_frames, size, rng, classes), label


class SyntheticVideoDataset(torch.utils.data.Dataset):
    """In memory, no files: items ``(clip, label)`` with clip float ``(3, num_frames, size, size)``,
    normalised as `VideoDataset` normalises (mean 0.45, std 0.225). Deterministic: item ``i`` is the
    same on every call and equals, up to compression, the video ``generate`` writes for it.

    ``classes``: ``"temporal"`` (the ten order-defined classes) or ``"mixed"`` (six order-defined and four
    appearance-defined classes, see the module docstring); the engine selects it with
    ``data.options.classes=mixed``."""

    def __init__(
        self,
        split: str = "train",
        num_samples: int = 500,
        num_frames: int = 8,
        size: int = 32,
        seed: int = 0,
        classes: str = "temporal",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.split, self.num_samples, self.num_frames, self.size, self.seed = split, num_samples, num_frames, size, seed
        self.class_set = classes
        self.classes = _check_classes(classes)
        self.num_classes = len(self.classes)
        self.groups = class_groups(classes)

    def __len__(self) -> int:
        return self.num_samples

    def frames(self, index: int) -> tuple[np.ndarray, int]:
        """``(uint8 frames (T, S, S, 3), label)`` of item `index`, before normalisation."""
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        return render_sample(self.split, index, self.num_frames, self.size, self.seed, self.class_set)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = self.frames(index)
        clip = normalize(frames_to_tensor(torch.from_numpy(frames)), KINETICS_MEAN, KINETICS_STD)
        return clip.permute(1, 0, 2, 3).contiguous(), label


def generate(
    out_dir: str | os.PathLike,
    num_train: int = 500,
    num_val: int = 100,
    num_frames: int = 16,
    size: int = 64,
    seed: int = 0,
) -> dict[str, Path]:
    """Write the synthetic dataset as mp4 files: ``out_dir/{train,val}/NNNNNN.mp4``, the annotation
    files ``train.csv`` / ``val.csv`` (``train/000000.mp4 0`` per line, for `VideoDataset`), and
    ``classes.txt`` (one class name per line, line i = label i).

    Resumable: videos that already exist are kept (files appear whole or not at all). `out_dir`
    remembers its settings in ``synthetic.json``; resuming with other settings is an error.
    Returns the paths ``{"root", "train", "val", "classes"}``."""
    if size % 2:
        raise ValueError(f"size must be even (mp4 stores colour at half resolution), got {size}")
    out_dir = Path(out_dir)
    settings = dict(num_frames=num_frames, size=size, seed=seed)
    paths = {
        "root": out_dir,
        "train": out_dir / "train.csv",
        "val": out_dir / "val.csv",
        "classes": out_dir / "classes.txt",
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    record = out_dir / "synthetic.json"
    if record.exists():
        previous = json.loads(record.read_text())
        if previous != settings:
            raise ValueError(
                f"{out_dir} holds a synthetic set made with {previous}, not {settings}; "
                "use another folder or delete this one"
            )
    record.write_text(json.dumps(settings))
    for split, count in (("train", num_train), ("val", num_val)):
        lines = []
        for index in range(count):
            name = f"{split}/{index:06d}.mp4"
            label = sample_label(index)
            if not (out_dir / name).exists():
                frames, _ = render_sample(split, index, num_frames, size, seed)
                write_video(out_dir / name, frames, FPS)
            lines.append(f"{name} {label}\n")
        paths[split].write_text("".join(lines))
    paths["classes"].write_text("".join(f"{name}\n" for name in CLASSES))
    return paths
