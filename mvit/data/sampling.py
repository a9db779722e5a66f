"""Which frames make a clip (paper §4, "Training" and "Inference"; Appendix D).

Two ways to pick ``T`` frames from a video of ``n`` frames:

- *stride* sampling (Kinetics): ``T`` frames ``tau`` apart, i.e. a window of ``(T - 1) * tau + 1``
  frames. Training places the window at a random position, testing places ``K`` windows uniformly
  from the first possible position to the last.
- *segment* sampling (Something-Something): cut the video into ``T`` equal segments and take one frame
  from each, at a random place in training and the middle at test.

A `position` in [0, 1] says where: 0 is the first possible window (or the start of every segment), 1
the last. A video shorter than the window is padded by repeating its last frame, never an error.
"""

from __future__ import annotations

import numpy as np


def _check(num_video_frames: int, num_frames: int) -> None:
    if num_video_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_video_frames={num_video_frames}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")


def stride_clip(num_video_frames: int, num_frames: int, sampling_rate: int, position: float) -> np.ndarray:
    """Indices ``(num_frames,)`` of a window of `num_frames` frames, `sampling_rate` apart, starting
    at `position` (0: first frame, 1: the last start that fits)."""
    _check(num_video_frames, num_frames)
    if sampling_rate < 1:
        raise ValueError(f"sampling_rate must be >= 1, got {sampling_rate}")
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"position must lie in [0, 1], got {position}")
    span = (num_frames - 1) * sampling_rate + 1
    start = int(round(position * max(num_video_frames - span, 0)))
    indices = start + sampling_rate * np.arange(num_frames)
    return np.minimum(indices, num_video_frames - 1)


def segment_clip(num_video_frames: int, num_frames: int, offsets: float | np.ndarray) -> np.ndarray:
    """Indices ``(num_frames,)``: one frame from each of `num_frames` equal segments, at relative
    `offsets` in [0, 1) inside each segment (a scalar or one offset per segment)."""
    _check(num_video_frames, num_frames)
    offsets = np.broadcast_to(np.asarray(offsets, dtype=np.float64), (num_frames,))
    if offsets.min() < 0.0 or offsets.max() >= 1.0:
        raise ValueError(f"segment offsets must lie in [0, 1), got {offsets.min()}..{offsets.max()}")
    segment = num_video_frames / num_frames
    indices = np.floor((np.arange(num_frames) + offsets) * segment).astype(np.int64)
    return np.minimum(indices, num_video_frames - 1)


def uniform_positions(num_clips: int) -> np.ndarray:
    """Positions of `num_clips` test clips spread uniformly over the video (one clip: the middle)."""
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    return np.array([0.5]) if num_clips == 1 else np.linspace(0.0, 1.0, num_clips)
