"""A fake Charades release for the tests: a few tiny videos at 24 fps and official-style annotation files."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from mvit.data import write_video

HEADER = [
    "id", "subject", "scene", "quality", "relevance", "verified", "script", "objects", "descriptions", "actions",
    "length",
]  # fmt: skip
FPS = 24.0
# id -> actions; videos of 48 frames (2 s) at 24 fps
TRAIN = {"AAA01": "c092 0.00 0.90;c147 0.50 2.00", "BBB02": "", "CCC03": "c000 1.20 1.90"}
VAL = {"DDD04": "c156 0.00 2.00;c003 1.00 1.50", "EEE05": "c010 0.10 0.30"}


def write_csv(path: Path, rows: dict[str, str], extra: list[list[str]] = ()) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for video_id, actions in rows.items():
            writer.writerow(
                [video_id, "S1", "Kitchen", "6", "7", "Yes", 'A person, "quoted", cooks.', "pan", "", actions, "2.0"]
            )
        for row in extra:
            writer.writerow(row)
    return path


def make_release(root: Path, num_frames: int = 48, size: tuple[int, int] = (32, 40)) -> dict[str, Path]:
    """``root/Charades_v1_480/<id>.mp4`` and ``root/Charades/Charades_v1_{train,test,classes}``; returns the two
    folders."""
    videos, annotations = root / "Charades_v1_480", root / "Charades"
    annotations.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for video_id in [*TRAIN, *VAL]:
        frames = rng.integers(0, 255, (num_frames, *size, 3), dtype=np.uint8)
        write_video(videos / f"{video_id}.mp4", frames, FPS)
    write_csv(annotations / "Charades_v1_train.csv", TRAIN)
    write_csv(annotations / "Charades_v1_test.csv", VAL)
    (annotations / "Charades_v1_classes.txt").write_text("".join(f"c{i:03d} Action number {i}\n" for i in range(157)))
    return {"videos": videos, "annotations": annotations}
