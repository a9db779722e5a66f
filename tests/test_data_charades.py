"""Charades: the annotation parser (every malformed line an error with file and line), frame-level targets,
the dataset over the release layout, the data script end to end into the recipe, and the synthetic
multi-label set that stands in for it."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from charades_fakes import FPS, HEADER, TRAIN, VAL, make_release, write_csv

from mvit.data import EXCLUDED, CharadesDataset, SyntheticMultiLabelDataset
from mvit.data.annotations import AnnotationError
from mvit.data.charades import Action, clip_targets, frame_span, parse_actions, read_charades_csv, video_targets
from mvit.data.synthetic_multilabel import EVENTS, render_sample
from mvit.engine import load_config, train
from mvit.engine.inputs import build_datasets

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"
sys.path.insert(0, str(SCRIPTS))


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return make_release(tmp_path_factory.mktemp("charades"))


# parser -------------------------------------------------------------------------------------------------


def test_parse_actions_and_the_official_csv(tmp_path):
    assert parse_actions("c092 11.90 21.20;c147 0.00 12.60") == (Action(92, 11.9, 21.2), Action(147, 0.0, 12.6))
    assert parse_actions("") == () and parse_actions(" ; ") == ()
    videos = read_charades_csv(write_csv(tmp_path / "t.csv", TRAIN))
    assert [v.id for v in videos] == list(TRAIN) and videos[1].actions == ()
    assert videos[0].actions == (Action(92, 0.0, 0.9), Action(147, 0.5, 2.0))


def _row(video_id="ZZZ09", actions="c001 0.00 1.00", fields=None):
    row = [video_id, "S1", "Kitchen", "6", "7", "Yes", "script", "pan", "", actions, "2.0"]
    return row if fields is None else row[:fields]


@pytest.mark.parametrize(
    "row, message",
    [
        (_row(fields=9), r"the row has 9 fields where the header has 11"),
        (_row(actions="c157 0.00 1.00"), r"class id 'c157' is not one of c000..c156"),
        (_row(actions="x12 0.00 1.00"), r"class id 'x12'"),
        (_row(actions="c001 2.00 1.00"), r"starts after it ends \(2.0 > 1.0\)"),
        (_row(actions="c001 zero 1.00"), r"the times must be numbers of seconds"),
        (_row(actions="c001 0.00"), r"is not 'cNNN start end'"),
        (_row(actions="c001 -1.00 1.00"), r"finite and not negative"),
        (_row(actions="c001 nan 1.00"), r"finite and not negative"),
        (_row(video_id="../x"), r"not a plain name"),
        (_row(video_id="AAA01"), r"video id 'AAA01' is listed again \(first at line 2\)"),
    ],
)
def test_every_malformed_line_is_an_error_with_file_and_line(tmp_path, row, message):
    path = write_csv(tmp_path / "bad.csv", TRAIN, extra=[row])  # header + 3 good rows: the bad one is line 5
    with pytest.raises(AnnotationError, match=re.escape(f"{path}:5: ") + ".*" + message):
        read_charades_csv(path)


def test_missing_columns_and_a_multiline_field_keep_line_numbers(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text("id,subject,length\nAAA01,S1,2.0\n")
    with pytest.raises(AnnotationError, match=r"cols.csv:1: the header lacks the column\(s\) \['actions'\]"):
        read_charades_csv(path)
    path.write_text(",".join(HEADER) + '\nA1,S,K,6,7,Yes,"two\nlines",p,,c001 0 1,2\nA2,S,K,6,7,Yes,s,p,,c999 0 1,2\n')
    with pytest.raises(AnnotationError, match=r"cols.csv:4: class id 'c999'"):  # the row after a 2-line field
        read_charades_csv(path)
    path.write_bytes(b",".join(h.encode() for h in HEADER) + b"\nA1,\xff\n")
    with pytest.raises(AnnotationError, match=r"cols.csv:2: not UTF-8"):
        read_charades_csv(path)


# targets ------------------------------------------------------------------------------------------------


def test_clip_targets_are_the_classes_overlapping_the_clip():
    actions = (Action(2, 1.0, 2.0), Action(5, 3.0, 4.0), Action(2, 6.0, 7.0))
    assert clip_targets(actions, 0.0, 0.9, 8).nonzero().flatten().tolist() == []
    assert clip_targets(actions, 0.0, 1.0, 8).nonzero().flatten().tolist() == [2]  # touching counts
    assert clip_targets(actions, 1.5, 3.5, 8).nonzero().flatten().tolist() == [2, 5]
    assert clip_targets(actions, 4.5, 5.5, 8).sum() == 0  # between two instances
    assert video_targets(actions, 8).nonzero().flatten().tolist() == [2, 5]
    assert frame_span(np.array([24, 28, 32]), 24.0) == (1.0, 32 / 24)
    with pytest.raises(ValueError, match="start <= end"):
        clip_targets(actions, 2.0, 1.0, 8)


# dataset ------------------------------------------------------------------------------------------------


def test_dataset_items_per_mode(release, tmp_path):
    common = dict(video_root=release["videos"], num_frames=4, sampling_rate=2, crop_size=16)
    train_set = CharadesDataset(release["annotations"] / "Charades_v1_train.csv", mode="train", **common)
    clip, target = train_set[0]
    assert clip.shape == (3, 4, 16, 16) and target.shape == (157,) and set(target.unique().tolist()) <= {0.0, 1.0}
    val = CharadesDataset(release["annotations"] / "Charades_v1_test.csv", mode="val", **common)
    assert FPS == 24.0  # the fake release's frame rate, which the times below assume
    # centre clip of 48 frames, 4 frames 2 apart: frames 20..26, i.e. [0.833, 1.083] s: c156 (0-2 s) and c003 (1-1.5 s)
    _, target = val[0]
    assert target.nonzero().flatten().tolist() == [3, 156]
    assert val[1][1].sum() == 0  # c010 lasts 0.1-0.3 s, outside the centre clip
    test = CharadesDataset(
        release["annotations"] / "Charades_v1_test.csv", mode="test", num_clips=2, num_crops=3, **common
    )
    views, target = test[1]
    assert views.shape == (6, 3, 4, 16, 16) and target.nonzero().flatten().tolist() == [10]  # the video's classes


def test_training_targets_follow_the_sampled_clip(release):
    ds = CharadesDataset(
        release["annotations"] / "Charades_v1_train.csv", release["videos"], "train", 4, 2, 16, augmentation=None
    )
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):  # AAA01: c092 over 0-0.9 s, c147 over 0.5-2 s; random clips see one or both
        seen.add(tuple(ds[0][1].nonzero().flatten().tolist()))
    assert seen <= {(92,), (147,), (92, 147)} and len(seen) >= 2


def test_an_unreadable_video_is_excluded_in_evaluation(release, tmp_path):
    (tmp_path / "videos").mkdir()
    for video_id in VAL:
        (tmp_path / "videos" / f"{video_id}.mp4").write_bytes((release["videos"] / f"{video_id}.mp4").read_bytes())
    (tmp_path / "videos" / "EEE05.mp4").write_bytes(b"not a video")
    ds = CharadesDataset(release["annotations"] / "Charades_v1_test.csv", tmp_path / "videos", "val", 4, 2, 16)
    with pytest.warns(RuntimeWarning, match="excluding unreadable sample"):
        clip, target = ds[1]
    assert clip.shape == (3, 4, 16, 16) and (target == EXCLUDED).all() and target.shape == (157,)


# data script --------------------------------------------------------------------------------------------


def script():
    return importlib.import_module("charades")


def test_script_help():
    result = subprocess.run(
        [sys.executable, str(SCRIPTS / "charades.py"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and "--dry-run" in result.stdout and "--short-side" in result.stdout


def _args(release, out):
    return ["--videos", str(release["videos"]), "--annotations", str(release["annotations"]), "--out", str(out)]


def test_script_end_to_end_into_the_recipe(release, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "out"
    assert script().main(_args(release, out) + ["--dry-run"]) == 0 and not out.exists()
    assert script().main(_args(release, out) + ["--short-side", "24", "--workers", "1"]) == 0
    assert sorted(p.name for p in (out / "videos").iterdir()) == sorted(f"{i}.mp4" for i in [*TRAIN, *VAL])
    assert (out / "classes.txt").read_text().splitlines()[92] == "Action number 92"
    assert [v.id for v in read_charades_csv(out / "val.csv")] == list(VAL)
    assert (out / "train.csv").read_text().splitlines()[0] == ",".join(HEADER)  # the official columns, kept
    before = (out / "videos" / "AAA01.mp4").stat().st_mtime_ns
    assert script().main(_args(release, out) + ["--short-side", "24"]) == 0  # resumed: nothing re-encoded
    assert (out / "videos" / "AAA01.mp4").stat().st_mtime_ns == before
    overrides = [
        f"data.root={out}",
        "model.config.input_size=[4,32,32]",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.num_clips=2",
        "data.num_crops=1",
        "optim.epochs=1",
        "optim.warmup_epochs=0",
        "run.device=cpu",
        "run.eval_every_epochs=1",
        "run.progress=false",
        f"run.output_dir={tmp_path / 'run'}",
    ]
    history = train(load_config("charades_mvit_b_16x4", overrides))
    assert len(history["steps"]) == 1 and np.isfinite(history["steps"][0]["loss"])
    assert history["epochs"][0]["val_num_samples"] == 2 and "val_mAP" in history["epochs"][0]
    assert history["test"]["num_samples"] == 2 and history["test"]["metric"] == "mAP"


def test_script_links_by_default_and_lists_missing_videos(release, tmp_path, capsys):
    out = tmp_path / "linked"
    (release["videos"] / "CCC03.mp4").rename(tmp_path / "CCC03.mp4")
    try:
        assert script().main(_args(release, out)) == 0
    finally:
        (tmp_path / "CCC03.mp4").rename(release["videos"] / "CCC03.mp4")
    assert (out / "videos").resolve() == release["videos"].resolve()
    assert [v.id for v in read_charades_csv(out / "train.csv")] == ["AAA01", "BBB02"]
    assert (out / "missing.txt").read_text() == "train: CCC03.mp4\n"


def test_script_errors_name_the_file_and_line(release, tmp_path, capsys):
    bad = tmp_path / "ann"
    bad.mkdir()
    write_csv(bad / "Charades_v1_train.csv", TRAIN)
    write_csv(bad / "Charades_v1_test.csv", VAL, extra=[_row(actions="c001 3.0 1.0")])
    capsys.readouterr()
    args = ["--videos", str(release["videos"]), "--annotations", str(bad), "--out", str(tmp_path / "o")]
    assert script().main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Charades_v1_test.csv:4: action" in err, err
    assert not (tmp_path / "o").exists()
    (bad / "Charades_v1_test.csv").unlink()
    assert script().main(args) == 2
    assert "annotation file" in capsys.readouterr().err


# the synthetic multi-label set ---------------------------------------------------------------------------


def test_synthetic_multilabel_targets_match_its_events():
    ds = SyntheticMultiLabelDataset("val", 50, num_frames=8, size=32)
    test = SyntheticMultiLabelDataset("val", 50, num_frames=8, size=32, mode="test", num_clips=3)
    for i in range(50):
        frames, events = ds.video(i)
        clip, target = ds[i]
        assert clip.shape == (3, 8, 32, 32) and target.shape == (len(EVENTS),)
        centre = (24 - 8) // 2  # stride_clip at position 0.5
        expected = {e.label for e in events if e.start * 8 <= centre + 7 and e.end * 8 >= centre}
        assert set(target.nonzero().flatten().tolist()) == expected
        views, video_target = test[i]
        assert views.shape == (3, 3, 8, 32, 32) and set(video_target.nonzero().flatten().tolist()) == {
            e.label for e in events
        }
    assert torch.equal(ds[3][0], ds[3][0])  # deterministic
    frames, events = render_sample("train", 0, 24, 32, 0, 0.35)
    assert frames.shape == (24, 32, 32, 3) and frames.dtype == np.uint8


def test_synthetic_multilabel_events_are_visible_where_they_occur():
    """An event's colour is on screen in its frames and absent outside them."""
    from mvit.data.synthetic_multilabel import COLOURS

    for index in range(10):
        frames, events = render_sample("train", index, 24, 32, 0, 0.5)
        for event in events:
            colour = np.round(COLOURS[event.label] * 255)
            near = (np.abs(frames.astype(float) - colour).max(axis=-1) < 20).sum(axis=(1, 2))  # pixels of the colour
            first, last = round(event.start * 8), round(event.end * 8)
            inside = [t for t in range(24) if first <= t <= last]
            alone = len(events) == 1
            # another object drawn over it may hide it in a frame or two: at least half its frames show it
            shown = sum(near[t] > 5 for t in inside)
            assert shown == len(inside) if alone else shown >= len(inside) / 2
            if alone:
                assert all(near[t] == 0 for t in range(24) if t not in inside)


def test_synthetic_multilabel_is_registered_and_checks_its_arguments():
    cfg = load_config("cpu_synthetic_multilabel_mvit")
    from mvit.configs import get_config

    train_set, val_set, test_set = build_datasets(cfg, get_config(cfg.model.name, **cfg.model.config))
    assert len(train_set) == 400 and test_set[0][0].shape == (3, 3, 8, 32, 32)
    with pytest.raises(ValueError, match="does not fit"):
        SyntheticMultiLabelDataset(num_frames=16, video_frames=8)
    with pytest.raises(ValueError, match="prevalence"):
        SyntheticMultiLabelDataset(prevalence=1.5)


def test_generated_multilabel_set_runs_through_the_charades_pipeline(tmp_path):
    from mvit.data.synthetic_multilabel import generate

    torch.set_num_threads(1)
    paths = generate(tmp_path / "ml", num_train=4, num_val=6, size=32, seed=3)
    assert read_charades_csv(paths["val"], num_classes=6)[0].id == "val000000"
    memory = SyntheticMultiLabelDataset("val", 6, num_frames=8, size=32, seed=3)
    files = CharadesDataset(paths["val"], paths["root"] / "videos", "val", 8, 1, 32, num_classes=6, test_short_side=32)
    for i in range(6):
        (clip, target), (clip_file, target_file) = memory[i], files[i]
        assert torch.equal(target, target_file)  # same events, same frame times (i / 8 s)
        assert (clip - clip_file).abs().mean() < 0.1  # the same frames up to compression (normalised units)
    assert generate(tmp_path / "ml", num_train=4, num_val=6, size=32, seed=3) == paths  # resumes
    with pytest.raises(ValueError, match="made with"):
        generate(tmp_path / "ml", size=32, seed=4)
    overrides = [
        "data.dataset=charades",
        f"data.root={paths['root']}",
        "data.batch_size=2",
        "optim.epochs=1",
        "optim.warmup_epochs=0",
        "run.progress=false",
        f"run.output_dir={tmp_path / 'run'}",
    ]
    history = train(load_config("cpu_synthetic_multilabel_mvit", overrides))
    assert history["epochs"][0]["val_num_samples"] == 6 and history["test"]["num_samples"] == 6
