"""Every data script produces exactly what its recipe reads.

For each dataset: tiny fake inputs in the official layout (videos written with PyAV, as the package's
own encoder does), the script run on them, then ``python -m mvit train`` with the dataset's recipe,
shrunk only by overrides (input size, batch, one epoch of one step, no warmup, no loader workers,
CPU, fp32, 2 test clips), which trains one step and evaluates the val (clip) and test (multi-view)
splits. Kinetics and ImageNet run the recipes' own MViT-B (36.6 M / 37.0 M parameters); the SSv2 and
UCF-101 recipes use the same MViT-B 16x4 as Kinetics, so there ``model.name=mvit_tiny`` keeps the
file within a minute (an MViT-B step, its evaluations and its 0.4 GB checkpoint take about 10 s on
an idle 2-core CPU) while every data setting of those recipes (segment sampling, 3 crops, no flips,
101 classes) stays. The ImageNet head is cut to the fake tree's 2 classes (a class-folder dataset
must match the head).
"""

import csv
import importlib
import json
import shutil
import sys
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

import mvit.data as data
from mvit.cli import main as mvit_main

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"
sys.path.insert(0, str(SCRIPTS))
SHRINK = [
    "data.batch_size=2",
    "optim.epochs=1",
    "optim.warmup_epochs=0",
    "augment.repeat_aug=1",
    "data.num_workers=0",
    "run.device=cpu",
    "run.precision=fp32",
    "run.progress=false",
]
VIDEO_SHRINK = [*SHRINK, "model.config.input_size=[8,32,32]", "data.num_clips=2"]
SAME_MODEL_AS_KINETICS = ["model.name=mvit_tiny"]  # see above


def frames(num_frames, height=36, width=48, seed=0):
    """uint8 (T, H, W, 3): a bright square moving over noise."""
    rng = np.random.default_rng(seed)
    out = rng.integers(0, 60, (num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        out[t, 8:18, 2 * t % (width - 10) : 2 * t % (width - 10) + 10] = 250
    return out


def write(path, pixels, container_format, codec, fps=8):
    """Encode `pixels` into `path` with PyAV (the webm and avi of the official releases)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = pixels.shape[2], pixels.shape[1], "yuv420p"
        for frame in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def run_script(name, args):
    assert importlib.import_module(name).main(args) == 0


def train_and_evaluate(capsys, recipe, root, out, overrides, num_val, multi_view=True, keep=False):
    """One training step with `recipe` on `root`, then its val and test evaluations; returns the summary.
    The run folder `out` is removed unless `keep` (an MViT-B checkpoint holds 0.4 GB)."""
    capsys.readouterr()
    code = mvit_main(["train", "--config", recipe, "--output-dir", str(out), f"data.root={root}", *overrides])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["step"] == 1 and np.isfinite(summary["train_loss"]) and summary["unreadable_files"] == 0
    assert summary["val_num_samples"] == num_val and summary["val_unreadable_files"] == 0
    if multi_view:
        assert summary["test_num_samples"] == num_val
    assert (out / "checkpoint.pt").is_file()
    if not keep:
        shutil.rmtree(out)
    return summary


def test_kinetics(tmp_path, capsys):
    rows = {
        "train": [("abseiling", "aaaaaaaaaaa", 0, 2), ("playing guitar", "bbbbbbbbbbb", 1, 3)],
        "validate": [("playing guitar", "ccccccccccc", 0, 2), ("abseiling", "ddddddddddd", 1, 3)],
    }
    for split, entries in rows.items():
        with open(tmp_path / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
            writer.writerows([label, video, start, end, split, 0] for label, video, start, end in entries)
    for i, (_, video, _, _) in enumerate(rows["train"] + rows["validate"]):
        data.write_video(tmp_path / "raw" / f"{video}.mp4", frames(32, seed=i), fps=8)
    out = tmp_path / "k400"
    run_script(
        "kinetics",
        [
            "--csv",
            str(tmp_path / "train.csv"),
            str(tmp_path / "validate.csv"),
            "--raw-dir",
            str(tmp_path / "raw"),
            "--skip-download",
            "--short-side",
            "32",
            "--out",
            str(out),
        ],
    )
    train_and_evaluate(capsys, "k400_mvit_b_16x4", out, tmp_path / "run", VIDEO_SHRINK, num_val=2)


def test_something_something_v2(tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    templates = ["Moving [something] from left to right", "Moving [something] from right to left"]
    (labels / "something-something-v2-labels.json").write_text(
        json.dumps({t.replace("[", "").replace("]", ""): str(i) for i, t in enumerate(templates)})
    )
    splits = {"train": [("1", 0), ("2", 1)], "validation": [("3", 1), ("4", 0)]}
    for split, entries in splits.items():
        (labels / f"something-something-v2-{split}.json").write_text(
            json.dumps(
                [
                    {"id": video, "label": "moving a cup", "template": templates[k], "placeholders": ["a cup"]}
                    for video, k in entries
                ]
            )
        )
        for video, k in entries:
            write(tmp_path / "videos" / f"{video}.webm", frames(20, seed=int(video)), "webm", "libvpx-vp9", fps=12)
    out = tmp_path / "ssv2"
    run_script("ssv2", ["--videos", str(tmp_path / "videos"), "--labels", str(labels), "--out", str(out)])
    train_and_evaluate(
        capsys, "ssv2_mvit_b_16x4", out, tmp_path / "run", [*VIDEO_SHRINK, *SAME_MODEL_AS_KINETICS], num_val=2
    )


def test_ucf101(tmp_path, capsys):
    videos, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 Archery\r\n")  # the release's CRLF lines
    for i, name in enumerate(
        ["v_ApplyEyeMakeup_g01_c01", "v_ApplyEyeMakeup_g08_c01", "v_Archery_g01_c01", "v_Archery_g08_c01"]
    ):
        write(videos / name.split("_")[1] / f"{name}.avi", frames(24, 30, 40, seed=i), "avi", "mpeg4", fps=25)
    (splits / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\nArchery/v_Archery_g08_c01.avi 2\r\n"
    )
    (splits / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nArchery/v_Archery_g01_c01.avi\r\n"
    )
    out = tmp_path / "ucf101"
    run_script("ucf101", ["--videos", str(videos), "--splits", str(splits), "--split", "1", "--out", str(out)])
    train_and_evaluate(
        capsys, "ucf101_mvit_b_16x4", out, tmp_path / "run", [*VIDEO_SHRINK, *SAME_MODEL_AS_KINETICS], num_val=2
    )


def test_imagenet(tmp_path, capsys):
    rng = np.random.default_rng(0)
    wnids = ["n01440764", "n01443537"]
    (tmp_path / "train").mkdir()
    for wnid in wnids:
        with tarfile.open(tmp_path / "train" / f"{wnid}.tar", "w") as archive:
            for i in range(1):  # one training image per class: one step of batch 2
                image = tmp_path / f"{wnid}_{i}.JPEG"
                Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(image, format="JPEG")
                archive.add(image, arcname=image.name)
    (tmp_path / "val").mkdir()
    for i in range(1, 3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(
            tmp_path / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", format="JPEG"
        )
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n01443537 1 2 3 4\n"
        "ILSVRC2012_val_00000002,n01440764 5 6 7 8\n"
    )
    out = tmp_path / "in1k"
    run_script(
        "imagenet",
        [
            "--train",
            str(tmp_path / "train"),
            "--val",
            str(tmp_path / "val"),
            "--val-labels",
            str(tmp_path / "LOC_val_solution.csv"),
            "--out",
            str(out),
        ],
    )
    train_and_evaluate(
        capsys,
        "imagenet_mvit_b_16",
        out,
        tmp_path / "run",
        [*SHRINK, "model.config.input_size=[1,32,32]", "model.config.num_classes=2"],
        num_val=2,
        multi_view=False,
    )


def test_synthetic(tmp_path, capsys):
    out = tmp_path / "synthetic"
    run_script(
        "make_synthetic",
        ["--out", str(out), "--num-train", "2", "--num-val", "3", "--num-frames", "24", "--size", "32"],
    )
    train_and_evaluate(
        capsys, "cpu_synthetic_video_mvit", out, tmp_path / "run", [*SHRINK, "data.num_clips=2"], num_val=3, keep=True
    )
    code = mvit_main(
        [
            "eval",
            "--config",
            "cpu_synthetic_video_mvit",
            "--checkpoint",
            str(tmp_path / "run/checkpoint.pt"),
            f"data.root={out}",
            "data.num_clips=2",
        ]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["test"]["num_samples"] == 3 and result["test"]["view_num_samples"] == 6
