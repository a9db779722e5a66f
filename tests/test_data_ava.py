"""AVA: the official files' parsers (every malformed line an error with file and line), training boxes,
keyframe-centred clips, the dataset, and data_scripts/ava.py end to end on fake movies into the recipe."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ava_fakes import LABEL_MAP, make_release, script_args, write

from mvit.data.ava import (
    AVADataset,
    AVAFormatError,
    PersonBox,
    keyframe_clip,
    read_annotations,
    read_excluded,
    read_label_map,
    read_proposals,
    training_boxes,
)

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"
sys.path.insert(0, str(SCRIPTS))


def test_label_map(tmp_path):
    assert read_label_map(write(tmp_path / "m.pbtxt", LABEL_MAP)) == {
        1: "bend/bow (at the waist)",
        2: "stand",
        3: "talk to (e.g., self, a person, a group)",
    }


@pytest.mark.parametrize(
    "text, line, message",
    [
        ('item {\n  name: "a"\n  id: x\n}\n', 3, "id 'x' is not an integer"),
        ('item {\n  name: "a"\n}\n', 1, "without a name or an id"),
        ('item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 1\n}\n', 8, "id 1 appears twice"),
        ('item {\n  colour: "red"\n}\n', 2, "unexpected line"),
        ('item {\n  name: "a"\n  id: 1\n', 1, "not closed"),
    ],
)
def test_label_map_errors_name_the_line(tmp_path, text, line, message):
    path = write(tmp_path / "m.pbtxt", text)
    with pytest.raises(AVAFormatError, match=rf"^{re.escape(str(path))}:{line}: .*{re.escape(message)}"):
        read_label_map(path)


def test_annotations_merge_the_actions_of_a_person(tmp_path):
    labels = read_label_map(write(tmp_path / "m.pbtxt", LABEL_MAP))
    path = write(
        tmp_path / "a.csv",
        "vid1,0902,0.1,0.2,0.5,0.9,1,0\nvid1,0902,0.1,0.2,0.5,0.9,3,0\nvid1,0902,0.6,0.1,0.9,0.8,2,1\n"
        "vid2,1798,0.0,0.0,1.0,1.0,2,0\n",
    )
    people = read_annotations(path, labels)
    assert set(people) == {("vid1", 902), ("vid2", 1798)}
    first, second = people[("vid1", 902)]
    assert first.box == (0.1, 0.2, 0.5, 0.9) and first.actions == {1, 3} and first.person_id == 0 and first.line == 1
    assert second.actions == {2} and second.line == 3


@pytest.mark.parametrize(
    "row, message",
    [
        ("vid1,0902,0.1,0.2,0.5,0.9,1", None),  # 7 columns (no person id) are accepted
        ("vid1,0902,0.1,0.2,0.5,0.9", "6 columns"),
        ("vid1,09x2,0.1,0.2,0.5,0.9,1,0", "timestamp '09x2' is not an integer"),
        ("vid1,0902,0.1,abc,0.5,0.9,1,0", "y1 'abc' is not a number"),
        ("vid1,0902,0.1,0.2,1.2,0.9,1,0", "outside [0, 1]"),
        ("vid1,0902,-0.1,0.2,0.5,0.9,1,0", "outside [0, 1]"),
        ("vid1,0902,0.6,0.2,0.5,0.9,1,0", "x2 < x1"),
        ("vid1,0902,0.1,0.2,0.5,0.9,7,0", "action id 7 is not in the label map"),
        ("vid1,0902,0.1,0.2,0.5,0.9,one,0", "action id 'one' is not an integer"),
        ("vid1,0902,0.1,0.2,0.5,0.9,1,p", "person id 'p' is not an integer"),
        ("vid1,0899,0.1,0.2,0.5,0.9,1,0", "outside AVA's annotated seconds 902..1798"),
        (",0902,0.1,0.2,0.5,0.9,1,0", "empty video id"),
    ],
)
def test_annotation_errors_name_file_and_line(tmp_path, row, message):
    labels = read_label_map(write(tmp_path / "m.pbtxt", LABEL_MAP))
    path = write(tmp_path / "a.csv", f"vid0,0903,0.1,0.2,0.5,0.9,2,0\n{row}\n")
    if message is None:
        assert read_annotations(path, labels)[("vid1", 902)][0].actions == {1}
        return
    with pytest.raises(AVAFormatError, match=rf"^{re.escape(str(path))}:2: .*{re.escape(message)}"):
        read_annotations(path, labels)


def test_proposals_and_excluded(tmp_path):
    path = write(tmp_path / "p.csv", "vid1,0902,0.1,0.2,0.5,0.9,,0.95\nvid1,0902,0.2,0.2,0.6,0.9,0.5\n")
    assert read_proposals(path) == {("vid1", 902): [((0.1, 0.2, 0.5, 0.9), 0.95), ((0.2, 0.2, 0.6, 0.9), 0.5)]}
    assert read_proposals(path, min_score=0.8) == {("vid1", 902): [((0.1, 0.2, 0.5, 0.9), 0.95)]}
    for row, message in [
        ("vid1,0902,0.1,0.2,0.5,0.9,,1.5", "score 1.5 is outside [0, 1]"),
        ("vid1,0902,0.1,0.2,0.5,0.9,,high", "score 'high' is not a number"),
        ("vid1,0902,0.1,0.2,0.5", "5 columns"),
        ("vid1,0902,0.1,0.2,0.5,1.9,0.9", "outside [0, 1]"),
    ]:
        bad = write(tmp_path / "bad.csv", f"vid1,0902,0.1,0.2,0.5,0.9,0.9\n{row}\n")
        with pytest.raises(AVAFormatError, match=rf"^{re.escape(str(bad))}:2: .*{re.escape(message)}"):
            read_proposals(bad)
    assert read_excluded(write(tmp_path / "e.csv", "vid1,0902\nvid2,1000\n")) == {("vid1", 902), ("vid2", 1000)}
    with pytest.raises(AVAFormatError, match=r"e2.csv:1: 3 columns"):
        read_excluded(write(tmp_path / "e2.csv", "vid1,0902,x\n"))


def test_training_boxes_add_proposals_at_iou_0_9():
    people = [PersonBox((0.0, 0.0, 0.5, 0.5), {1}), PersonBox((0.5, 0.5, 1.0, 1.0), {2, 3})]
    proposals = [
        ((0.0, 0.0, 0.5, 0.48), 0.99),  # IoU 0.96 with the first box: kept, actions {1}
        ((0.5, 0.5, 1.0, 0.97), 0.9),  # IoU 0.94 with the second: kept, actions {2, 3}
        ((0.0, 0.0, 0.5, 0.4), 0.99),  # IoU 0.8: dropped
        ((0.2, 0.2, 0.4, 0.4), 0.99),  # inside, small: dropped
    ]
    boxes, actions = training_boxes(people, proposals)
    np.testing.assert_allclose(boxes, [[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0, 0, 0.5, 0.48], [0.5, 0.5, 1, 0.97]])
    assert actions == [{1}, {2, 3}, {1}, {2, 3}]
    assert training_boxes(people, [])[0].shape == (2, 4)


def test_keyframe_clip_is_centred_and_rate_independent():
    # 16 frames, 4 apart at 30 fps: instants (j - 8) * 4 / 30 s around the keyframe; keyframe at position 8
    at30 = keyframe_clip(100.0, 30.0, 10_000, 16, 4)
    assert at30[8] == 3000 and np.all(np.diff(at30) == 4) and at30[0] == 3000 - 32
    at15 = keyframe_clip(100.0, 15.0, 10_000, 16, 4)
    assert at15[8] == 1500 and np.all(np.diff(at15) == 2)  # the same instants at half the frame rate
    np.testing.assert_array_equal(keyframe_clip(0.1, 30.0, 20, 4, 4), [0, 0, 3, 7])  # clamped at the start
    assert keyframe_clip(10.0, 30.0, 301, 4, 8).max() == 300  # and at the end


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("ava_release"))


def test_data_script_end_to_end_into_the_recipe(release, tmp_path, capsys):
    ava_script = importlib.import_module("ava")
    out = tmp_path / "ava"
    assert ava_script.main([*script_args(release, out), "--dry-run"]) == 0
    assert not out.exists() and "2 movies, 2 to cut" in capsys.readouterr().out
    assert ava_script.main(script_args(release, out)) == 0
    manifest = json.loads((out / "videos.json").read_text())
    assert set(manifest) == {"movieA_1", "movieB-2"}
    entry = manifest["movieA_1"]
    assert entry["start"] == 900 and entry["fps"] == pytest.approx(2.0) and 7 <= entry["num_frames"] <= 8
    for name in ("train.csv", "val.csv", "label_map.pbtxt", "evaluated_classes.pbtxt", "val_excluded.csv"):
        assert (out / name).is_file()
    # resumable: a second run cuts nothing and keeps the files
    stamp = (out / "videos" / "movieA_1.mp4").stat().st_mtime_ns
    capsys.readouterr()
    assert ava_script.main(script_args(release, out)) == 0
    assert "0 to cut" in capsys.readouterr().out and (out / "videos" / "movieA_1.mp4").stat().st_mtime_ns == stamp

    train = AVADataset(out, "train", num_frames=4, sampling_rate=15, crop_size=32)
    val = AVADataset(out, "val", num_frames=4, sampling_rate=15, crop_size=32, min_proposal_score=0.8)
    assert len(train) == 2 and train.class_ids == [1, 2, 3] and train.evaluated_class_ids == [1, 2]
    clip, target = train[0]  # movieA_1 at 902 s: the ground truth plus the proposal at IoU >= 0.9
    assert clip.shape == (3, 4, 32, 32) and target["key"] == ("movieA_1", 902)
    assert target["boxes"].shape == (2, 4) and target["labels"].tolist() == [[1, 0, 1], [1, 0, 1]]
    clip, target = val[0]  # the proposal above 0.8, labelled by the ground truth it overlaps
    assert len(val) == 1 and target["boxes"].shape == (1, 4)
    assert target["labels"].tolist() == [[0, 1, 0]]  # class 3 is not evaluated: dropped from the val truth
    assert target["gt_labels"].tolist() == [[0, 1, 0]]
    assert target["evaluated"].tolist() == [True, True, False]  # the metric scores classes 1 and 2 only

    # the recipe trains and evaluates on this folder (input shrunk, one step)
    from mvit.engine import load_config
    from mvit.engine import train as run

    cfg = load_config(
        "ava_mvit_b_16x4",
        [
            f"data.root={out}",
            "model.config.num_classes=3",
            "model.config.input_size=[4,32,32]",
            "data.sampling_rate=15",
            "data.batch_size=2",
            "data.num_workers=0",
            "optim.epochs=1",
            "optim.warmup_epochs=0",
            "run.device=cpu",
            "run.eval_every_epochs=1",
            "run.progress=false",
            "run.log_every_steps=1",
            f"run.output_dir={tmp_path / 'run'}",
        ],
    )
    torch.set_num_threads(1)
    history = run(cfg)
    assert len(history["steps"]) == 1 and np.isfinite(history["steps"][0]["loss"])
    assert "val_frame_mAP" in history["epochs"][-1] and history["epochs"][-1]["val_num_samples"] == 1


def test_data_script_errors(release, tmp_path, capsys):
    ava_script = importlib.import_module("ava")

    def fails(args, match):
        capsys.readouterr()
        assert ava_script.main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and re.search(match, err), err

    bad = tmp_path / "bad"
    bad.mkdir()
    for f in (release / "ava_v2.2").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    write(bad / "ava_val_v2.2.csv", "movieB-2,0902,0.1,0.1,0.6,0.6,2,0\nmovieB-2,0902,0.1,0.1,0.6,1.6,2,0\n")
    args = script_args(release, tmp_path / "out")
    fails([*args[:2], "--annotations", str(bad), *args[4:]], r"ava_val_v2\.2\.csv:2: .*outside \[0, 1\]")
    write(bad / "ava_val_v2.2.csv", "movieC,0902,0.1,0.1,0.6,0.6,2,0\n")
    fails([*args[:2], "--annotations", str(bad), *args[4:]], r"1 of 3 annotated movies are not in .*movieC")
    fails([*args[:5], str(tmp_path / "nope.csv"), *args[6:]], r"proposal file .*nope\.csv does not exist")
    assert not (tmp_path / "out").exists()
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "ava.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--dry-run" in result.stdout


def test_dataset_names_a_missing_keyframe(release, tmp_path):
    ava_script = importlib.import_module("ava")
    out = tmp_path / "ava"
    assert ava_script.main(script_args(release, out)) == 0
    # a keyframe at 1500 s: annotated range, but beyond the 4 s of the fake movie
    write(out / "train.csv", "movieA_1,0902,0.1,0.2,0.5,0.9,1,0\nmovieA_1,1500,0.1,0.2,0.5,0.9,1,0\n")
    with pytest.raises(AVAFormatError, match=r"train\.csv:2: keyframe 1500 s of 'movieA_1' is missing"):
        AVADataset(out, "train", num_frames=4, sampling_rate=15, crop_size=32)
    write(out / "train.csv", "movieZ,0902,0.1,0.2,0.5,0.9,1,0\n")
    with pytest.raises(AVAFormatError, match=r"train\.csv:1: video 'movieZ' is not in"):
        AVADataset(out, "train", num_frames=4, sampling_rate=15, crop_size=32)
