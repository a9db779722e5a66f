"""Write mp4 files with PyAV (no ffmpeg binary needed): new videos from frames, and trimmed, resized
copies of existing ones (what the dataset scripts do to Kinetics and Something-Something).

Files are written under a temporary name and renamed when complete, so a file that exists is whole:
scripts that skip existing outputs can be stopped and resumed at any time.
"""

from __future__ import annotations

import functools
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from .decoding import VideoDecodeError


@functools.cache
def video_codec() -> str:
    """The H.264 encoder when this PyAV build has one (``libx264``), else MPEG-4 part 2."""
    import av

    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # this build lacks the encoder
            continue
    raise RuntimeError("this PyAV build has neither the libx264 nor the mpeg4 encoder; reinstall av from PyPI")


def _open_stream(container, width: int, height: int, fps: Fraction | float):
    stream = container.add_stream(video_codec(), rate=Fraction(fps).limit_denominator(100000))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if stream.codec_context.name == "libx264":
        stream.options = {"crf": "12", "preset": "ultrafast"}
    else:
        stream.bit_rate = 8 * width * height * int(round(float(fps)))
    return stream


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Write uint8 frames ``(T, H, W, 3)`` (H and W even) to the mp4 file `path`."""
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H and W must be even for yuv420p video, got {height}x{width}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = _open_stream(container, width, height, fps)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)
    return path


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(height, width)`` with the short side set to `short_side`, aspect kept, both rounded to even."""
    scale = short_side / min(height, width)
    return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))


def transcode(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    start: float | None = None,
    end: float | None = None,
    short_side: int | None = None,
) -> Path:
    """Copy the video `src` to the mp4 `dst`, keeping only seconds ``[start, end)`` and resizing the
    short side to `short_side` (None: keep each). Audio is dropped. Raises `VideoDecodeError` naming
    `src` when it cannot be read or has no frames in the range."""
    import av

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise VideoDecodeError(src, "no such file")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.name + ".tmp")
    written = 0
    try:
        with av.open(str(src)) as source, av.open(str(tmp), "w", format="mp4") as target:
            if not source.streams.video:
                raise VideoDecodeError(src, "no video stream")
            in_stream = source.streams.video[0]
            fps = in_stream.average_rate or Fraction(25)
            if start:
                source.seek(int(start / in_stream.time_base), stream=in_stream, backward=True)
            out_stream = None
            for frame in source.decode(in_stream):
                time = frame.time if frame.time is not None else 0.0
                if start is not None and time < start - 1e-6:
                    continue
                if end is not None and time >= end - 1e-6:
                    break
                if out_stream is None:
                    height, width = (
                        (frame.height, frame.width)
                        if short_side is None
                        else scaled_size(frame.height, frame.width, short_side)
                    )
                    height, width = height - height % 2, width - width % 2
                    out_stream = _open_stream(target, width, height, fps)
                image = frame.reformat(width=out_stream.width, height=out_stream.height, format="yuv420p")
                # Number the frames in the output's own clock (one tick per frame at `fps`); the decoded
                # frame's timestamps belong to the source and would give every frame time 0.
                image.pts, image.time_base = written, 1 / Fraction(out_stream.average_rate)
                target.mux(out_stream.encode(image))
                written += 1
            if out_stream is not None:
                target.mux(out_stream.encode())
    except av.error.FFmpegError as error:
        tmp.unlink(missing_ok=True)
        reason = getattr(error, "strerror", None) or str(error)
        raise VideoDecodeError(src, f"PyAV cannot transcode it ({reason})") from error
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if written == 0:
        tmp.unlink(missing_ok=True)
        raise VideoDecodeError(src, f"no frames between {start} s and {end} s")
    os.replace(tmp, dst)
    return dst
