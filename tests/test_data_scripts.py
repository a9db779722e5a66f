"""The dataset scripts on small fake inputs made here: --help, --dry-run, the real run, resuming, and
clear errors. Nothing touches the network (Kinetics' download step is injected)."""

import csv
import importlib
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import mvit.data as data

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"
sys.path.insert(0, str(SCRIPTS))  # the scripts import their shared helpers as `_common`
NAMES = ["kinetics", "ssv2", "ucf101", "imagenet", "make_synthetic"]


def script(name):
    return importlib.import_module(name)


def assert_fails(capsys, name, args, match):
    """`name`.main(args) refuses with exit code 2 and one 'error: ...' line on stderr matching `match`."""
    capsys.readouterr()
    assert script(name).main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(match, err), err


def moving_frames(num_frames, height=48, width=64, seed=0):
    """uint8 (T, H, W, 3): a bright square moving over noise."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, (num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frames[t, 10:20, 2 * t % (width - 10) : 2 * t % (width - 10) + 10] = 250
    return frames


@pytest.mark.parametrize("name", NAMES)
def test_help(name):
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / f"{name}.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--dry-run" in result.stdout and "--out" in result.stdout


# Kinetics ---------------------------------------------------------------------------------------


@pytest.fixture
def kinetics(tmp_path):
    """Two official-style CSVs and 'downloaded' videos of 3 s at 8 fps (one of them missing)."""
    rows = {
        "train": [
            ("abseiling", "aaaaaaaaaaa", 0, 1),
            ("playing guitar", "bbbbbbbbbbb", 1, 2),
            ("abseiling", "ccccccccccc", 1, 3),
        ],
        "validate": [("playing guitar", "ddddddddddd", 0, 2), ("abseiling", "missing0000", 0, 1)],
    }
    for split, entries in rows.items():
        with open(tmp_path / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
            for label, video, start, end in entries:
                writer.writerow([label, video, start, end, split, 0])
    raw = tmp_path / "raw"
    for i, video in enumerate(["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc", "ddddddddddd"]):
        data.write_video(raw / f"{video}.mp4", moving_frames(24, seed=i), fps=8)
    return tmp_path


def kinetics_args(root, *extra):
    return [
        "--csv",
        str(root / "train.csv"),
        str(root / "validate.csv"),
        "--raw-dir",
        str(root / "raw"),
        "--out",
        str(root / "out"),
        "--short-side",
        "32",
        *extra,
    ]


def test_kinetics_trims_resizes_and_writes_annotations(kinetics):
    assert script("kinetics").main(kinetics_args(kinetics, "--skip-download")) == 0
    out = kinetics / "out"
    assert (out / "classes.txt").read_text().splitlines() == ["abseiling", "playing guitar"]
    train = (out / "train.csv").read_text().splitlines()
    assert train == [
        "train/abseiling/aaaaaaaaaaa_000000_000001.mp4 0",
        "train/playing_guitar/bbbbbbbbbbb_000001_000002.mp4 1",
        "train/abseiling/ccccccccccc_000001_000003.mp4 0",
    ]
    assert (out / "val.csv").read_text().splitlines() == ["val/playing_guitar/ddddddddddd_000000_000002.mp4 1"]
    assert "missing0000" in (out / "failed.txt").read_text()
    with data.open_video(out / "train/abseiling/ccccccccccc_000001_000003.mp4") as video:
        assert len(video) == 16  # seconds 1 to 3 at 8 fps
        assert video.get_frames([0]).shape == (1, 32, 42, 3)  # short side 32, aspect 4:3 kept (even width)
    # the trimmed clip starts one second (8 frames) into the original
    original = data.read_frames(kinetics / "raw" / "ccccccccccc.mp4", [8]).astype(float)
    trimmed = data.read_frames(out / "train/abseiling/ccccccccccc_000001_000003.mp4", [0]).astype(float)
    import torch

    resized = (
        torch.nn.functional.interpolate(
            torch.from_numpy(original).permute(0, 3, 1, 2), (32, 42), mode="bilinear", antialias=True
        )[0]
        .permute(1, 2, 0)
        .numpy()
    )
    assert np.abs(resized - trimmed[0]).mean() < 12
    dataset = data.VideoDataset(out / "train.csv", out, "val", 4, 2, 24)
    assert dataset[0][0].shape == (3, 4, 24, 24)


def test_kinetics_resumes_and_downloads_only_what_is_missing(kinetics):
    kinetics_script = script("kinetics")
    kinetics_script.main(kinetics_args(kinetics, "--skip-download"))
    done = kinetics / "out/train/abseiling/aaaaaaaaaaa_000000_000001.mp4"
    stamp = done.stat().st_mtime_ns
    asked = []

    def fake_download(youtube_id, raw_dir):
        asked.append(youtube_id)
        data.write_video(raw_dir / f"{youtube_id}.mp4", moving_frames(16), fps=8)

    assert kinetics_script.main(kinetics_args(kinetics), download=fake_download) == 0
    assert asked == ["missing0000"] and done.stat().st_mtime_ns == stamp
    assert len((kinetics / "out/val.csv").read_text().splitlines()) == 2
    assert (kinetics / "out/failed.txt").read_text() == ""


def test_kinetics_download_failures_are_listed(kinetics):
    def unavailable(youtube_id, raw_dir):
        raise RuntimeError("Video unavailable")

    assert script("kinetics").main(kinetics_args(kinetics), download=unavailable) == 0
    assert (
        "missing0000 val/abseiling/missing0000_000000_000001.mp4: download failed: Video unavailable"
        in (kinetics / "out/failed.txt").read_text()
    )


def test_kinetics_dry_run_and_errors(kinetics, capsys):
    assert script("kinetics").main(kinetics_args(kinetics, "--dry-run")) == 0
    assert "5 clips in 2 classes; 0 already prepared, 5 to do (4 already downloaded)" in capsys.readouterr().out
    assert not (kinetics / "out").exists()
    (kinetics / "bad.csv").write_text("youtube_id,start\nabc,1\n")
    assert_fails(
        capsys, "kinetics", ["--csv", str(kinetics / "bad.csv"), "--raw-dir", "r", "--out", "o"], "lacks the column"
    )
    assert_fails(
        capsys, "kinetics", ["--csv", str(kinetics / "nope.csv"), "--raw-dir", "r", "--out", "o"], "does not exist"
    )


# Something-Something v2 -------------------------------------------------------------------------


def write_webm(path, frames):
    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=12)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture
def ssv2(tmp_path):
    import json

    labels, videos = tmp_path / "labels", tmp_path / "videos"
    labels.mkdir()
    videos.mkdir()
    (labels / "something-something-v2-labels.json").write_text(
        json.dumps({"Moving something from left to right": "1", "Moving something from right to left": "0"})
    )
    train = [
        {
            "id": "11",
            "label": "moving cup from left to right",
            "template": "Moving [something] from left to right",
            "placeholders": ["cup"],
        },
        {
            "id": "12",
            "label": "moving pen from right to left",
            "template": "Moving [something] from right to left",
            "placeholders": ["pen"],
        },
    ]
    val = [
        {
            "id": "13",
            "label": "moving box from right to left",
            "template": "Moving [something] from right to left",
            "placeholders": ["box"],
        }
    ]
    (labels / "something-something-v2-train.json").write_text(json.dumps(train))
    (labels / "something-something-v2-validation.json").write_text(json.dumps(val))
    for i, video in enumerate(["11", "12", "13"]):
        write_webm(videos / f"{video}.webm", moving_frames(10, seed=i))
    return tmp_path


def test_ssv2_transcodes_and_writes_annotations(ssv2):
    args = ["--videos", str(ssv2 / "videos"), "--labels", str(ssv2 / "labels"), "--out", str(ssv2 / "out")]
    assert script("ssv2").main(args) == 0
    out = ssv2 / "out"
    assert (out / "classes.txt").read_text().splitlines() == [
        "Moving something from right to left",
        "Moving something from left to right",
    ]
    assert (out / "train.csv").read_text().splitlines() == ["videos/11.mp4 1", "videos/12.mp4 0"]
    assert (out / "val.csv").read_text().splitlines() == ["videos/13.mp4 0"]
    original = data.read_frames(ssv2 / "videos/12.webm", range(10)).astype(float)
    copy = data.read_frames(out / "videos/12.mp4", range(10)).astype(float)
    assert np.abs(original - copy).mean() < 6  # the same frames, re-encoded
    stamp = (out / "videos/11.mp4").stat().st_mtime_ns
    assert script("ssv2").main(args) == 0
    assert (out / "videos/11.mp4").stat().st_mtime_ns == stamp  # resumed, not redone


def test_ssv2_no_transcode_and_errors(ssv2, tmp_path, capsys):
    import json

    args = ["--videos", str(ssv2 / "videos"), "--labels", str(ssv2 / "labels"), "--out", str(ssv2 / "plain")]
    assert script("ssv2").main(args + ["--no-transcode"]) == 0
    assert (ssv2 / "plain/train.csv").read_text().splitlines() == ["webm/11.webm 1", "webm/12.webm 0"]
    assert not (ssv2 / "plain/videos").exists() and (ssv2 / "plain/webm").resolve() == (ssv2 / "videos").resolve()
    assert data.VideoDataset(ssv2 / "plain/val.csv", ssv2 / "plain", "val", 4, 2, 24)[0][1] == 0  # readable from OUT
    assert script("ssv2").main(args[:-1] + [str(ssv2 / "dry"), "--dry-run"]) == 0
    assert not (ssv2 / "dry").exists()
    (ssv2 / "labels/something-something-v2-validation.json").write_text(
        json.dumps([{"id": "14", "template": "Spinning [something]"}])
    )
    assert_fails(capsys, "ssv2", args, r"validation\.json:1 \(entry 0\): the template 'Spinning something'")
    assert_fails(
        capsys,
        "ssv2",
        ["--videos", str(tmp_path / "none"), "--labels", "x", "--out", "y"],
        "video folder .* does not exist",
    )


# UCF-101 ----------------------------------------------------------------------------------------


@pytest.fixture
def ucf(tmp_path):
    videos, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    names = {
        "ApplyEyeMakeup": ["v_ApplyEyeMakeup_g01_c01.avi", "v_ApplyEyeMakeup_g08_c01.avi"],
        "Archery": ["v_Archery_g01_c01.avi", "v_Archery_g08_c01.avi"],
    }
    for cls, files in names.items():
        (videos / cls).mkdir(parents=True)
        for file in files:
            (videos / cls / file).write_bytes(b"avi")  # only existence is checked
    (splits / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n"
    )
    (splits / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\n"
    )
    return tmp_path


def ucf_args(root, *extra):
    return [
        "--videos",
        str(root / "UCF-101"),
        "--splits",
        str(root / "ucfTrainTestlist"),
        "--out",
        str(root / "out"),
        "--split",
        "1",
        *extra,
    ]


def test_ucf101_writes_the_official_split(ucf):
    assert script("ucf101").main(ucf_args(ucf)) == 0
    out = ucf / "out"
    # what the ucf101_mvit_b_16x4 recipe reads with data.root=OUT: train.csv and val.csv (the test list)
    assert (out / "train.csv").read_text().splitlines() == [
        "videos/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 0",
        "videos/Archery/v_Archery_g08_c01.avi 1",
    ]
    assert (out / "val.csv").read_text().splitlines()[1] == "videos/Archery/v_Archery_g01_c01.avi 1"
    assert (out / "videos/Archery/v_Archery_g01_c01.avi").is_file()  # OUT/videos links to --videos
    assert (out / "classes.txt").read_text().splitlines() == ["ApplyEyeMakeup", "Archery"]
    (out / "train.csv").write_text("kept\n")
    script("ucf101").main(ucf_args(ucf))
    assert (out / "train.csv").read_text() == "kept\n"  # existing outputs are kept ...
    script("ucf101").main(ucf_args(ucf, "--force"))
    assert (out / "train.csv").read_text() != "kept\n"  # ... unless --force


def test_ucf101_errors_and_dry_run(ucf, capsys):
    assert script("ucf101").main(ucf_args(ucf, "--dry-run")) == 0 and not (ucf / "out").exists()
    (ucf / "UCF-101/Archery/v_Archery_g01_c01.avi").unlink()
    assert_fails(capsys, "ucf101", ucf_args(ucf), "1 videos of testlist01.txt are not in")
    (ucf / "ucfTrainTestlist/classInd.txt").write_text("1 ApplyEyeMakeup\nArchery\n")
    assert_fails(capsys, "ucf101", ucf_args(ucf), r"classInd.txt:2: expected '<index> <ClassName>'")


# ImageNet ---------------------------------------------------------------------------------------


@pytest.fixture
def imagenet(tmp_path):
    rng = np.random.default_rng(0)
    train = tmp_path / "train_tars"
    train.mkdir()
    for wnid in ("n01440764", "n01443537"):
        folder = tmp_path / "staging" / wnid
        folder.mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                folder / f"{wnid}_{i}.JPEG", format="JPEG"
            )
        with tarfile.open(train / f"{wnid}.tar", "w") as archive:
            for file in sorted(folder.iterdir()):
                archive.add(file, arcname=file.name)
    val = tmp_path / "val"
    val.mkdir()
    for i in range(1, 4):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
            val / f"ILSVRC2012_val_{i:08d}.JPEG", format="JPEG"
        )
    (tmp_path / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n01443537 1 2 3 4\n"
        "ILSVRC2012_val_00000002,n01440764 1 2 3 4 n01440764 5 6 7 8\n"
        "ILSVRC2012_val_00000003,n01443537 1 2 3 4\n"
    )
    return tmp_path


def imagenet_args(root, *extra):
    return [
        "--train",
        str(root / "train_tars"),
        "--val",
        str(root / "val"),
        "--val-labels",
        str(root / "LOC_val_solution.csv"),
        "--out",
        str(root / "out"),
        *extra,
    ]


def test_imagenet_extracts_and_sorts_into_class_folders(imagenet):
    assert script("imagenet").main(imagenet_args(imagenet)) == 0
    out = imagenet / "out"
    train = data.ImageFolderDataset(out / "train", "val", crop_size=16)
    val = data.ImageFolderDataset(out / "val", "val", crop_size=16)
    assert train.classes == val.classes == ["n01440764", "n01443537"]
    assert len(train) == 4 and [label for _, label in val.samples] == [0, 1, 1]
    assert val[0][0].shape == (3, 16, 16)
    marker = out / "train/n01440764/.done"
    stamp = marker.stat().st_mtime_ns
    assert script("imagenet").main(imagenet_args(imagenet)) == 0  # resumed: nothing redone
    assert marker.stat().st_mtime_ns == stamp


def test_imagenet_class_folders_plain_labels_and_errors(imagenet, capsys):
    assert script("imagenet").main(imagenet_args(imagenet, "--dry-run")) == 0
    assert "2 class archives, 2 to extract" in capsys.readouterr().out and not (imagenet / "out").exists()
    (imagenet / "labels.txt").write_text(
        "ILSVRC2012_val_00000001.JPEG n01443537\nILSVRC2012_val_00000002.JPEG n01440764\n"
    )
    args = [
        "--val",
        str(imagenet / "val"),
        "--val-labels",
        str(imagenet / "labels.txt"),
        "--out",
        str(imagenet / "out2"),
        "--mode",
        "copy",
    ]
    assert_fails(capsys, "imagenet", args, "1 images in .* have no label")
    (imagenet / "labels.txt").write_text("ILSVRC2012_val_00000001.JPEG\n")
    assert_fails(capsys, "imagenet", args, r"labels.txt:1: expected '<image file> <wnid>'")
    folders = imagenet / "staging"  # already one folder per class: linked as it is
    assert script("imagenet").main(["--train", str(folders), "--out", str(imagenet / "out3")]) == 0
    assert (imagenet / "out3/train").resolve() == folders.resolve()
    with pytest.raises(SystemExit):
        script("imagenet").main(["--out", str(imagenet / "out4")])


# Synthetic --------------------------------------------------------------------------------------


def test_make_synthetic(tmp_path, capsys):
    make = script("make_synthetic")
    args = ["--out", str(tmp_path / "syn"), "--num-train", "6", "--num-val", "2", "--num-frames", "8", "--size", "32"]
    assert make.main(args + ["--dry-run"]) == 0 and not (tmp_path / "syn").exists()
    assert make.main(args) == 0
    assert "new clips/s" in capsys.readouterr().out
    assert len((tmp_path / "syn/train.csv").read_text().splitlines()) == 6
    assert data.VideoDataset(tmp_path / "syn/val.csv", tmp_path / "syn", "val", 8, 1, 32)[1][1] == 1
    assert_fails(capsys, "make_synthetic", args + ["--seed", "3"], "use another folder")


# Hostile and malformed inputs: refused with one 'error:' line naming the file and line, exit 2, ---------
# nothing written outside --out -----------------------------------------------------------------------


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def write_kinetics_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
        writer.writerows(rows)


@pytest.mark.parametrize(
    "row, message",
    [
        (
            ["abseiling", "../../escaped", 0, 1, "train", 0],
            r"train\.csv:3: youtube_id '\.\./\.\./escaped' is not a plain",
        ),
        (["abseiling", "a/b", 0, 1, "train", 0], r"train\.csv:3: youtube_id 'a/b'"),
        (["abseiling", "*", 0, 1, "train", 0], r"train\.csv:3: youtube_id '\*'"),
        (["abseiling", "eeeeeeeeeee", "nan", 1, "train", 0], r"train\.csv:3: time_start='nan'"),
        (["abseiling", "eeeeeeeeeee", 2, 1, "train", 0], r"train\.csv:3: .*0 <= time_start < time_end"),
        (["abseiling", "eeeeeeeeeee", 0], r"train\.csv:3: 3 fields where the header has 6"),
    ],
)
def test_kinetics_refuses_hostile_or_malformed_rows(kinetics, capsys, row, message):
    write_kinetics_csv(kinetics / "train.csv", [["abseiling", "aaaaaaaaaaa", 0, 1, "train", 0], row])
    before = files_under(kinetics)
    assert_fails(capsys, "kinetics", kinetics_args(kinetics, "--skip-download"), message)
    assert files_under(kinetics) == before  # nothing written at all, inside or outside --out


@pytest.mark.parametrize(
    "content, message",
    [
        (
            b"label,youtube_id,time_start,time_end\nabseiling,aaaaaaaaaaa,0,1\n\x00\x01\xff\xfe",
            r"train\.csv:3: not UTF-8",
        ),
        (b'label,youtube_id,time_start,time_end\nabseiling,"aaaaaaaaaaa,0,1\n', r"train\.csv:\d: malformed CSV"),
    ],
)
def test_kinetics_binary_or_malformed_csv(kinetics, capsys, content, message):
    (kinetics / "train.csv").write_bytes(content)
    assert_fails(capsys, "kinetics", kinetics_args(kinetics, "--skip-download"), message)


def test_scripts_exit_2_without_a_traceback(kinetics):
    write_kinetics_csv(kinetics / "train.csv", [["abseiling", "../../../tmp/x", 0, 1, "train", 0]])
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "kinetics.py"), *kinetics_args(kinetics, "--skip-download")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and "train.csv:2: youtube_id '../../../tmp/x'" in result.stderr


@pytest.mark.parametrize(
    "entry, message",
    [
        (
            {"id": "../../escaped", "template": "Moving [something] from left to right"},
            r"train\.json:\d+ \(entry 2\): "
            r"video id '\.\./\.\./escaped' is not a plain name",
        ),
        (
            {"template": "Moving [something] from left to right"},
            r"train\.json:\d+ \(entry 2\): expected an object with",
        ),
        ("just a string", r"train\.json:\d+ \(entry 2\): expected an object"),
    ],
)
def test_ssv2_refuses_hostile_or_malformed_entries(ssv2, capsys, entry, message):
    import json

    path = ssv2 / "labels/something-something-v2-train.json"
    path.write_text(json.dumps(json.loads(path.read_text()) + [entry], indent=1))
    args = ["--videos", str(ssv2 / "videos"), "--labels", str(ssv2 / "labels"), "--out", str(ssv2 / "out")]
    before = files_under(ssv2)
    assert_fails(capsys, "ssv2", args, message)
    assert files_under(ssv2) == before


def test_ssv2_invalid_json_and_bad_label_index(ssv2, capsys):
    args = ["--videos", str(ssv2 / "videos"), "--labels", str(ssv2 / "labels"), "--out", str(ssv2 / "out")]
    (ssv2 / "labels/something-something-v2-validation.json").write_text('[\n {"id": "13",\n  "template": }\n]')
    assert_fails(capsys, "ssv2", args, r"validation\.json:3: invalid JSON at column")
    (ssv2 / "labels/something-something-v2-labels.json").write_text('{"Moving something": "first"}')
    assert_fails(capsys, "ssv2", args, r"labels\.json: the index of 'Moving something' is 'first'")


def test_ucf101_refuses_paths_out_of_the_video_folder_and_binary_lists(ucf, capsys):
    lists = ucf / "ucfTrainTestlist"
    (lists / "trainlist01.txt").write_text("Archery/v_Archery_g08_c01.avi 2\nArchery/../../secret.avi 2\n")
    assert_fails(capsys, "ucf101", ucf_args(ucf), r"trainlist01\.txt:2: expected '<Class>/<file>\.avi'")
    (lists / "trainlist01.txt").write_text("Archery/..\n")
    assert_fails(capsys, "ucf101", ucf_args(ucf), r"trainlist01\.txt:1: file name '\.\.' is not a plain name")
    (lists / "classInd.txt").write_bytes(b"1 ApplyEyeMakeup\n\x89PNG\r\n\x1a\n\x00\x00")
    assert_fails(capsys, "ucf101", ucf_args(ucf), r"classInd\.txt:2: not UTF-8 text")


@pytest.mark.parametrize(
    "labels, message",
    [
        ("ILSVRC2012_val_00000001.JPEG n/../../x\n", r"labels\.txt:1: 'n/\.\./\.\./x' is not an ImageNet class id"),
        ("ILSVRC2012_val_00000001.JPEG ../n01440764\n", r"labels\.txt:1: '\.\./n01440764' is not an ImageNet class id"),
        ("../../ILSVRC2012_val_00000001.JPEG n01440764\n", r"labels\.txt:1: image file '\.\./\.\./ILSVRC"),
    ],
)
def test_imagenet_refuses_hostile_class_ids(imagenet, capsys, labels, message):
    (imagenet / "labels.txt").write_text(labels)
    before = files_under(imagenet)
    assert_fails(
        capsys,
        "imagenet",
        ["--val", str(imagenet / "val"), "--val-labels", str(imagenet / "labels.txt"), "--out", str(imagenet / "out")],
        message,
    )
    assert files_under(imagenet) == before


def test_imagenet_refuses_hostile_csv_rows_and_tar_names(imagenet, capsys):
    (imagenet / "LOC_val_solution.csv").write_text("ImageId,PredictionString\nILSVRC2012_val_00000001,n/../x 1 2 3 4\n")
    assert_fails(capsys, "imagenet", imagenet_args(imagenet), r"LOC_val_solution\.csv:2: 'n/\.\./x' is not")
    (imagenet / "train_tars" / "n...tar").write_bytes(b"")
    assert_fails(
        capsys,
        "imagenet",
        ["--train", str(imagenet / "train_tars"), "--out", str(imagenet / "out")],
        r"n\.\.\.tar: 'n\.\.' is not an ImageNet class id",
    )
    assert not (imagenet / "out").exists()


def test_imagenet_refuses_a_tar_member_that_would_land_outside(imagenet, capsys):
    with tarfile.open(imagenet / "train_tars" / "n01440764.tar", "w") as archive:
        archive.add(imagenet / "val" / "ILSVRC2012_val_00000001.JPEG", arcname="../../escaped.JPEG")
    assert_fails(
        capsys,
        "imagenet",
        ["--train", str(imagenet / "train_tars"), "--out", str(imagenet / "out")],
        r"n01440764\.tar is not a readable, safe tar archive",
    )
    assert not list(imagenet.rglob("escaped.JPEG"))


@pytest.mark.parametrize("start, end, frames", [(None, None, 16), (0.5, 1.5, 8)])
def test_transcode_keeps_the_frame_rate_and_timestamps(tmp_path, start, end, frames):
    """A transcoded file keeps its source's frame rate and numbers its frames in its own clock (a copy whose
    frames all had time 0 reported a wrong rate and broke seeking by time)."""
    import av

    from mvit.data.encoding import transcode, write_video

    write_video(tmp_path / "src.mp4", np.zeros((16, 32, 32, 3), np.uint8), fps=8)
    transcode(tmp_path / "src.mp4", tmp_path / "dst.mp4", start=start, end=end)
    with av.open(str(tmp_path / "dst.mp4")) as container:
        stream = container.streams.video[0]
        times = [frame.time for frame in container.decode(stream)]
        rate = float(stream.average_rate)
    assert rate == 8.0
    assert times == pytest.approx([i / 8 for i in range(frames)])
