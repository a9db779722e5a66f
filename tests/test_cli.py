"""The command line: help texts, train then eval, multi-view eval of a video folder, flops, convert,
and clear errors (exit code 2) for bad config keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mvit import build_model
from mvit.cli import EXIT_CONFIG, main
from mvit.data import synthetic
from mvit.engine.config import describe_keys

ROOT = Path(__file__).resolve().parent.parent
TINY = ["model.config.input_size=[4, 16, 16]", "model.config.embed_dim=8", "data.train_size=16", "data.val_size=8",
        "data.batch_size=4", "optim.epochs=1", "optim.warmup_epochs=0", "run.progress=false"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_python_m_mvit_help_lists_the_subcommands():
    out = subprocess.run([sys.executable, "-m", "mvit", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
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
    for key, _, _, comment in describe_keys():
        assert key in text
    assert "k400_mvit_b_16x4" in text and "cpu_synthetic_mvit" in text
    for command, options in (("eval", ("--checkpoint", "--source", "--splits", "--output")),
                             ("flops", ("--input-size",)), ("convert", ("--from", "--to", "--model"))):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = capsys.readouterr().out
        assert all(option in text for option in options)


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
    assert main(["eval", "--config", "cpu_synthetic_mvit", "--checkpoint", str(out / "checkpoint.pt"),
                 "--output", str(tmp_path / "eval.json"), *TINY]) == 0
    brief = json.loads(capsys.readouterr().out)
    assert brief["val"]["top1"] == summary["val_top1"] and "test" not in brief  # synthetic: no test views
    full = json.loads((tmp_path / "eval.json").read_text())
    assert len(full["val"]["confusion"]) == 10 and len(full["val"]["per_class_acc"]) == 10


def test_eval_of_a_video_folder_averages_views(tmp_path, capsys):
    synthetic.generate(tmp_path / "videos", num_train=2, num_val=3, num_frames=16, size=32, seed=0)
    model = build_model("mvit_tiny", input_size=(4, 16, 16), embed_dim=8)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    code = main(["eval", "--config", "cpu_synthetic_mvit", "--checkpoint", str(tmp_path / "weights.pt"),
                 "data.dataset=video", f"data.root={tmp_path / 'videos'}", "data.num_clips=2", "data.num_crops=3",
                 "data.sampling_rate=2", *TINY])
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


def test_convert_round_trip_through_torchvisions_layout(tmp_path, capsys):
    model = build_model("mvit_tiny")
    torch.save({"model": model.state_dict(), "epoch": 3}, tmp_path / "ours.pt")  # a training checkpoint
    assert main(["convert", str(tmp_path / "ours.pt"), str(tmp_path / "tv.pt"), "--to", "torchvision"]) == 0
    tv = torch.load(tmp_path / "tv.pt", weights_only=True)
    assert any(k.startswith("conv_proj.") for k in tv)
    assert main(["convert", str(tmp_path / "tv.pt"), str(tmp_path / "back.pt"), "--from", "torchvision",
                 "--model", "mvit_tiny"]) == 0
    back = torch.load(tmp_path / "back.pt", weights_only=True)
    assert back.keys() == model.state_dict().keys()
    assert all(torch.equal(back[k], v) for k, v in model.state_dict().items())
    capsys.readouterr()
    code = main(["convert", str(tmp_path / "tv.pt"), str(tmp_path / "x.pt"), "--from", "torchvision",
                 "--model", "mvit_tiny", "num_classes=7"])
    assert code == EXIT_CONFIG and "head.weight" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()


def test_recipes_lists_the_shipped_recipes(capsys):
    assert main(["recipes"]) == 0
    assert "ssv2_mvit_b_16x4" in capsys.readouterr().out.split()
