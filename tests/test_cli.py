"""The command line: help texts, train then eval, multi-view eval of a video folder, flops, convert, and a
user's mistakes (bad keys, YAML, output paths, checkpoint files, layouts): one ``error:`` line and exit code 2
before any work, the traceback only with ``--debug``; JSON output without NaN."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch

from mvit import build_model
from mvit.cli import EXIT_CONFIG, main
from mvit.data import synthetic
from mvit.engine.config import TrainConfig, describe_keys

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "model.config.input_size=[4, 16, 16]",
    "model.config.embed_dim=8",
    "data.train_size=16",
    "data.val_size=8",
    "data.batch_size=4",
    "optim.epochs=1",
    "optim.warmup_epochs=0",
    "run.progress=false",
]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_python_m_mvit_help_lists_the_subcommands():
    out = subprocess.run(
        [sys.executable, "-m", "mvit", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0
    for command in ("train", "eval", "flops", "convert", "recipes"):
        assert command in out.stdout


def test_train_help_documents_every_option_and_config_key(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option in ("--config", "--output-dir", "key=value"):
        assert option in text
    for key, _, _, help_text in describe_keys():
        assert key in text and help_text in text
    assert "k400_mvit_b_16x4" in text and "cpu_synthetic_mvit" in text
    for command, options in (
        ("eval", ("--checkpoint", "--source", "--splits", "--output")),
        ("flops", ("--input-size",)),
        ("convert", ("--from", "--to", "--model")),
    ):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(option in text for option in options)


def test_every_config_key_has_help_in_its_field_metadata():
    sections = typing.get_type_hints(TrainConfig).values()
    keys = [f for section in sections for f in dataclasses.fields(section)]
    assert len(sections) == 5 and len(keys) == len(describe_keys())
    for f in keys:
        assert isinstance(f.metadata.get("help"), str) and f.metadata["help"].strip(), f.name


def test_bad_key_fails_before_training_with_exit_code_2(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--config", "cpu_synthetic_mvit", "--output-dir", str(out), "optim.lrr=0.1"])
    assert code == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "optim.lrr" in err and "did you mean 'optim.lr'" in err
    assert not out.exists()


def test_train_then_eval_give_the_same_validation_accuracy(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", "cpu_synthetic_mvit", "--output-dir", str(out), *TINY]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epoch"] == 0 and summary["val_num_samples"] == 8
    assert (
        main(
            [
                "eval",
                "--config",
                "cpu_synthetic_mvit",
                "--checkpoint",
                str(out / "checkpoint.pt"),
                "--output",
                str(tmp_path / "eval.json"),
                *TINY,
            ]
        )
        == 0
    )
    brief = json.loads(capsys.readouterr().out)
    assert brief["val"]["top1"] == summary["val_top1"] and "test" not in brief  # synthetic: no test views
    full = json.loads((tmp_path / "eval.json").read_text())
    assert len(full["val"]["confusion"]) == 10 and len(full["val"]["per_class_acc"]) == 10


def test_eval_of_a_video_folder_averages_views(tmp_path, capsys):
    synthetic.generate(tmp_path / "videos", num_train=2, num_val=3, num_frames=16, size=32, seed=0)
    model = build_model("mvit_tiny", input_size=(4, 16, 16), embed_dim=8)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    code = main(
        [
            "eval",
            "--config",
            "cpu_synthetic_mvit",
            "--checkpoint",
            str(tmp_path / "weights.pt"),
            "data.dataset=video",
            f"data.root={tmp_path / 'videos'}",
            "data.num_clips=2",
            "data.num_crops=3",
            "data.sampling_rate=2",
            *TINY,
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["val"]["num_samples"] == 3
    assert result["test"]["num_samples"] == 3 and result["test"]["view_num_samples"] == 3 * 2 * 3


def test_flops_of_mvit_b_16x4_match_the_paper(capsys):
    assert main(["flops", "mvit_b_16x4"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == 36_610_672 and result["gflops_per_view"] == pytest.approx(70.599, abs=1e-3)
    assert main(["flops", "mvit_b_16x4", "--input-size", "32", "224", "224", "num_classes=600"]) == 0
    result = json.loads(capsys.readouterr().out)
    # 200 more classes (768 weights + 1 bias each) and 8 more time steps in the temporal table (96 each)
    assert result["gflops_per_view"] > 2 * 70 and result["params"] == 36_610_672 + 200 * 769 + 8 * 96


def test_flops_blocks_prints_every_block(capsys):
    assert main(["flops", "mvit_b_16x4", "--blocks"]) == 0
    first, *table = capsys.readouterr().out.splitlines()
    assert json.loads(first)["params"] == 36_610_672
    assert len(table) == 2 + 16 + 1 and table[-1].startswith("total") and "8x56x56" in table[2]


def test_convert_round_trip_through_torchvisions_layout(tmp_path, capsys):
    model = build_model("mvit_tiny")
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "ours.pt")  # a training checkpoint
    assert main(["convert", str(tmp_path / "ours.pt"), str(tmp_path / "tv.pt"), "--to", "torchvision"]) == 0
    tv = torch.load(tmp_path / "tv.pt", weights_only=True)
    assert any(k.startswith("conv_proj.") for k in tv)
    assert (
        main(
            [
                "convert",
                str(tmp_path / "tv.pt"),
                str(tmp_path / "back.pt"),
                "--from",
                "torchvision",
                "--model",
                "mvit_tiny",
            ]
        )
        == 0
    )
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    capsys.readouterr()
    code = main(
        [
            "convert",
            str(tmp_path / "tv.pt"),
            str(tmp_path / "x.pt"),
            "--from",
            "torchvision",
            "--model",
            "mvit_tiny",
            "num_classes=7",
        ]
    )
    assert code == EXIT_CONFIG and "head.weight" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_recipes_lists_the_shipped_recipes(capsys):
    assert main(["recipes"]) == 0
    assert "ssv2_mvit_b_16x4" in capsys.readouterr().out.split()


# ---------------------------------------------------------------- user mistakes: one error line, exit code 2


def user_error(argv: list[str], capsys) -> str:
    """Run the command line; it must fail with exit code 2 and exactly one line, ``error: ...``."""
    capsys.readouterr()
    assert main(argv) == EXIT_CONFIG
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def bad_files(tmp_path) -> Path:
    """Checkpoint files a hurried user might pass: truncated, random, text, empty, a tensor, another model."""
    good = tmp_path / "tiny.pt"
    torch.save(build_model("mvit_tiny", input_size=(4, 16, 16), embed_dim=8).state_dict(), good)
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:1000])
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save(torch.zeros(2), tmp_path / "tensor.pt")
    torch.save(build_model("vit_tiny").state_dict(), tmp_path / "vit.pt")
    return tmp_path


@pytest.fixture
def no_evaluation(monkeypatch):
    """Fail the test if the evaluation runs: the mistakes below must be caught before it."""
    import mvit.engine

    def refuse(*args, **kwargs):
        raise AssertionError("the evaluation ran although an output path or argument was bad")

    monkeypatch.setattr(mvit.engine, "evaluate_checkpoint", refuse)


EVAL = ["eval", "--config", "cpu_synthetic_mvit", *TINY]


def test_eval_output_paths_are_checked_before_the_evaluation(tmp_path, bad_files, no_evaluation, capsys):
    ckpt = str(bad_files / "tiny.pt")
    line = user_error([*EVAL, "--checkpoint", ckpt, "--output", str(tmp_path / "nowhere" / "r.json")], capsys)
    assert f"the folder {tmp_path / 'nowhere'} does not exist" in line and "mkdir -p" in line
    line = user_error([*EVAL, "--checkpoint", ckpt, "--output", str(tmp_path)], capsys)
    assert f"--output {tmp_path} is a folder" in line
    line = user_error([*EVAL, "--checkpoint", ckpt, "--output", str(bad_files / "text.pt" / "r.json")], capsys)
    assert "is a file, not a folder" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders, so nothing is refused")
def test_read_only_output_paths_are_refused(tmp_path, bad_files, no_evaluation, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        line = user_error(
            [*EVAL, "--checkpoint", str(bad_files / "tiny.pt"), "--output", str(locked / "r.json")], capsys
        )
        assert "cannot be written" in line
        line = user_error(
            ["train", "--config", "cpu_synthetic_mvit", "--output-dir", str(locked / "run"), *TINY], capsys
        )
        assert "read-only" in line
    finally:
        locked.chmod(0o755)


def test_train_output_dir_that_is_a_file_is_refused(bad_files, capsys):
    a_file = bad_files / "text.pt"
    line = user_error(["train", "--config", "cpu_synthetic_mvit", "--output-dir", str(a_file), *TINY], capsys)
    assert f"--output-dir {a_file} is a file" in line
    line = user_error(["train", "--config", "cpu_synthetic_mvit", "--output-dir", str(a_file / "run"), *TINY], capsys)
    assert "cannot be created" in line and str(a_file) in line


def test_yaml_syntax_error_names_the_file(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  name: [mvit_tiny\n")
    line = user_error(["train", "--config", str(recipe), "--output-dir", str(tmp_path / "run")], capsys)
    assert str(recipe) in line and "YAML" in line


@pytest.mark.parametrize(
    "name,reason",
    [
        ("truncated.pt", "is not a readable PyTorch checkpoint"),
        ("random.pt", "is not a readable PyTorch checkpoint"),
        ("text.pt", "is not a readable PyTorch checkpoint"),
        ("empty.pt", "is empty (0 bytes)"),
        ("tensor.pt", "expected a state dict"),
        ("missing.pt", "no checkpoint file at"),
        (".", "is a folder"),
        ("vit.pt", "does not fit this model"),
    ],
)
def test_eval_of_a_bad_checkpoint_is_one_error_line(bad_files, name, reason, capsys):
    path = bad_files / name
    line = user_error([*EVAL, "--checkpoint", str(path)], capsys)
    assert str(path) in line and reason in line


def test_eval_of_another_models_checkpoint_says_so(bad_files, capsys):
    line = user_error([*EVAL, "--checkpoint", str(bad_files / "vit.pt")], capsys)
    assert "a checkpoint of another model" in line and "missing from the checkpoint" in line


def test_convert_mistakes_are_one_error_line_and_write_nothing(tmp_path, bad_files, capsys):
    tv = tmp_path / "tv.pt"
    assert main(["convert", str(bad_files / "tiny.pt"), str(tv), "--to", "torchvision"]) == 0
    out = tmp_path / "out.pt"
    line = user_error(["convert", str(tv), str(out), "--from", "pyslowfast"], capsys)
    assert line.startswith(f"error: {tv}: ") and "--from/--source torchvision" in line
    assert "in the torchvision layout, not pyslowfast's" in line
    line = user_error(["convert", str(tv), str(out), "--to", "torchvision"], capsys)
    assert "in the torchvision layout, not mvit's" in line
    line = user_error(["convert", str(bad_files / "truncated.pt"), str(out), "--from", "auto"], capsys)
    assert "truncated.pt is not a readable PyTorch checkpoint" in line
    line = user_error(["convert", str(tv), str(tmp_path / "no" / "out.pt"), "--from", "torchvision"], capsys)
    assert "does not exist" in line
    line = user_error(
        ["convert", str(tv), str(out), "--from", "torchvision", "--model", "mvit_tiny", "num_heads=3"], capsys
    )
    assert "num_heads=3" in line
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_failed_write_keeps_the_previous_file(tmp_path, bad_files, monkeypatch, capsys):
    out = tmp_path / "out.pt"
    out.write_bytes(b"previous")

    def disk_full(obj, f, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 2026944 vs 2026832")

    monkeypatch.setattr(torch, "save", disk_full)
    line = user_error(["convert", str(bad_files / "tiny.pt"), str(out), "--to", "torchvision"], capsys)
    assert f"could not write {out}" in line and "free some space" in line
    assert out.read_bytes() == b"previous" and not list(tmp_path.glob(".*.tmp"))


def test_eval_json_is_valid_json_without_nan(tmp_path, bad_files, capsys):
    """8 validation clips of 10 classes: some classes have no clip, so their accuracy is undefined (null)."""

    def strict(text: str):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not valid JSON"))

    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert main([*EVAL, "--checkpoint", str(bad_files / "tiny.pt"), "--output", str(out)]) == 0
    strict(capsys.readouterr().out)
    per_class = strict(out.read_text())["val"]["per_class_acc"]
    assert None in per_class and all(v is None or 0 <= v <= 100 for v in per_class)


def test_python_m_mvit_user_errors_have_no_traceback_unless_debug(bad_files):
    argv = [sys.executable, "-m", "mvit", *EVAL, "--checkpoint", str(bad_files / "truncated.pt")]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == EXIT_CONFIG and "Traceback" not in out.stderr
    assert [line for line in out.stderr.splitlines() if line.strip()] == [out.stderr.strip()]
    assert out.stderr.startswith("error: ") and "truncated.pt" in out.stderr
    out = subprocess.run([*argv, "--debug"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == EXIT_CONFIG and "Traceback" in out.stderr and "CheckpointError" in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: ")


def test_a_dataset_of_unreadable_videos_is_a_user_error(tmp_path):
    # Every video is a text file: loading gives up after max_failures, with the files listed, not a traceback.
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.mp4").write_text("not a video")
    for split in ("train", "val"):
        (tmp_path / f"{split}.csv").write_text("".join(f"{name}.mp4 0\n" for name in ("a", "b", "c")))
    argv = [
        sys.executable,
        "-m",
        "mvit",
        "train",
        "--config",
        "cpu_synthetic_video_mvit",
        "--output-dir",
        str(tmp_path / "run"),
        f"data.root={tmp_path}",
        "data.options={max_failures: 1}",
        "data.batch_size=2",
        "optim.epochs=1",
        "optim.warmup_epochs=0",
        "run.progress=false",
    ]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == EXIT_CONFIG, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in out.stderr and len(errors) == 1 and "files failed to load" in errors[0], out.stderr
    assert "a.mp4" in errors[0] or "c.mp4" in errors[0]  # the files it gave up on are named
