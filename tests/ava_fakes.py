"""A fake AVA release (two short movies whose seconds 900..904 exist, at 2 fps; the official files in their
format) for the AVA tests and the recipe tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mvit.data import write_video

LABEL_MAP = """item {
  name: "bend/bow (at the waist)"
  id: 1
  label_type: PERSON_MOVEMENT
}
item {
  name: "stand"
  id: 2
}
item {
  name: "talk to (e.g., self, a person, a group)"
  label_id: 3
}
"""
EVALUATED = 'item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\nitem {\n  name: "stand"\n  id: 2\n}\n'


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def make_release(root: Path) -> Path:
    """Write the fake release under `root`: ``videos/``, ``ava_v2.2/``, ``train_boxes.csv``, ``val_boxes.csv``."""
    videos, annotations = root / "videos", root / "ava_v2.2"
    videos.mkdir(parents=True)
    annotations.mkdir()
    rng = np.random.default_rng(0)
    for name, ext in (("movieA_1", ".mp4"), ("movieB-2", ".mkv")):
        frames = rng.integers(0, 255, (904 * 2, 32, 48, 3), dtype=np.uint8)  # 904 s at 2 fps
        write_video(videos / f"{name}{ext}", frames, fps=2.0)
    write(annotations / "ava_action_list_v2.2.pbtxt", LABEL_MAP)
    write(annotations / "ava_action_list_v2.2_for_activitynet_2019.pbtxt", EVALUATED)
    write(
        annotations / "ava_train_v2.2.csv",
        "movieA_1,0902,0.1,0.2,0.5,0.9,1,0\nmovieA_1,0902,0.1,0.2,0.5,0.9,3,0\nmovieB-2,0903,0.5,0.1,0.9,0.9,2,0\n",
    )
    write(annotations / "ava_val_v2.2.csv", "movieB-2,0902,0.1,0.1,0.6,0.6,2,0\nmovieB-2,0902,0.1,0.1,0.6,0.6,3,0\n")
    write(annotations / "ava_val_excluded_timestamps_v2.2.csv", "movieA_1,0903\n")
    write(root / "train_boxes.csv", "movieA_1,0902,0.1,0.2,0.5,0.88,,0.99\nmovieA_1,0902,0.6,0.6,0.9,0.9,,0.99\n")
    write(root / "val_boxes.csv", "movieB-2,0902,0.12,0.1,0.6,0.6,,0.97\nmovieB-2,0902,0.7,0.7,0.9,0.9,,0.5\n")
    return root


def script_args(release: Path, out: Path) -> list[str]:
    """The arguments of data_scripts/ava.py for the fake release."""
    return [
        "--videos",
        str(release / "videos"),
        "--annotations",
        str(release / "ava_v2.2"),
        "--val-proposals",
        str(release / "val_boxes.csv"),
        "--train-proposals",
        str(release / "train_boxes.csv"),
        "--out",
        str(out),
    ]
