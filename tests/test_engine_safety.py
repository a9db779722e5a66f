"""Issue 9, the engine's part: bad settings are refused before any work, a checkpoint never holds
diverged weights, one run per output folder, the history of settings and of metrics survives resumes,
and unreadable files, a full disk or an unusable folder give one clear error."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from mvit.engine import (
    ConfigError,
    NonFiniteLossError,
    TrainingInterrupted,
    evaluate,
    load_checkpoint,
    load_config,
    save_checkpoint,
    train,
)
from mvit.engine.checkpoint import OutputDirLock
from mvit.engine.network import build_model_from_config

sys.path.insert(0, str(Path(__file__).parent))
from test_engine_train import TINY, tiny_data  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------- value ranges


@pytest.mark.parametrize(
    "override, key, valid",
    [
        ("optim.clip_grad_norm=-1", "optim.clip_grad_norm", "positive"),
        ("optim.clip_grad_norm=0", "optim.clip_grad_norm", "positive"),
        ("optim.weight_decay=-0.01", "optim.weight_decay", "not be negative"),
        ("optim.final_lr_ratio=1.5", "optim.final_lr_ratio", "[0, 1]"),
        ("optim.final_lr_ratio=-0.1", "optim.final_lr_ratio", "[0, 1]"),
        ("optim.warmup_start_ratio=2", "optim.warmup_start_ratio", "[0, 1]"),
        ("optim.lr=.nan", "optim.lr", "finite"),
        ("optim.lr=.inf", "optim.lr", "finite"),
        ("optim.lr=0", "optim.lr", "positive"),
        ("optim.eps=.nan", "optim.eps", "finite"),
        ("optim.eps=0", "optim.eps", "positive"),
        ("optim.weight_decay=.inf", "optim.weight_decay", "finite"),
        ("optim.warmup_epochs=.nan", "optim.warmup_epochs", "finite"),
        ("augment.label_smoothing=-.inf", "augment.label_smoothing", "finite"),
        ("run.seed=-1", "run.seed", "not be negative"),
        ("data.train_size=-3", "data.train_size", "at least 1"),
        ("data.train_size=0", "data.train_size", "at least 1"),
        ("data.val_size=0", "data.val_size", "at least 1"),
        ("data.eval_batch_size=0", "data.eval_batch_size", "at least 1"),
        ("optim.betas=[0.9,1.5]", "optim.betas[1]", "[0, 1)"),
        ("optim.betas=[1.0,0.999]", "optim.betas[0]", "[0, 1)"),
        ("optim.betas=[-0.1,0.999]", "optim.betas[0]", "[0, 1)"),
        ("optim.betas=[0.9,.nan]", "optim.betas[1]", "finite"),
        ("optim.momentum=1", "optim.momentum", "[0, 1)"),
        ("optim.momentum=-0.5", "optim.momentum", "[0, 1)"),
        ("augment.mixup_alpha=-1", "augment.mixup_alpha", "not be negative"),
        ("augment.cutmix_alpha=-0.5", "augment.cutmix_alpha", "not be negative"),
        ("augment.switch_prob=1.2", "augment.switch_prob", "[0, 1]"),
        ("augment.switch_prob=-0.2", "augment.switch_prob", "[0, 1]"),
        ("augment.label_smoothing=1", "augment.label_smoothing", "[0, 1)"),
        ("model.config.input_size=[8,30,30]", "model.config.input_size", "multiple of the stride"),
        ("model.config.input_size=[7,32,32]", "model.config.input_size", "multiple of the stride"),
        ("model.config.input_size=[8,0,32]", "model.config.input_size", "positive multiple"),
        ("model.config.patch_stride=[2,0,4]", "model.config.input_size", "positive multiple"),
        ("model.config.drop_path=.nan", "drop_path", "[0, 1)"),
        ("model.config.norm_eps=.nan", "model.config.norm_eps", "finite"),
        ("model.config.norm_eps=0", "model.config.norm_eps", "positive"),
        ("model.config.num_classes=0", "model.config.num_classes", "at least 1"),
        ("model.config.num_heads=0", "model.config.num_heads", "at least 1"),
        ("model.config.embed_dim=0", "model.config.embed_dim", "at least 1"),
    ],
)
def test_values_out_of_range_are_refused_naming_the_key_and_the_range(override, key, valid):
    with pytest.raises(ConfigError) as err:
        load_config("cpu_synthetic_mvit", [override])
    assert key in str(err.value) and valid in str(err.value), str(err.value)


def test_values_at_the_edges_of_their_ranges_are_accepted():
    cfg = load_config(
        "cpu_synthetic_mvit",
        [
            "optim.clip_grad_norm=null",
            "optim.weight_decay=0",
            "optim.final_lr_ratio=1",
            "optim.warmup_start_ratio=0",
            "run.seed=0",
            "data.train_size=1",
            "optim.betas=[0,0.5]",
            "optim.momentum=0",
            "augment.mixup_alpha=0",
            "augment.switch_prob=1",
            "model.config.input_size=[2,4,4]",
        ],
    )
    assert cfg.optim.clip_grad_norm is None and cfg.model.config["input_size"] == (2, 4, 4)


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "recipe.yaml"
    bad.write_text("optim:\n  lr: 0.1\n   epochs: 3\n")
    with pytest.raises(ConfigError, match=r"recipe\.yaml, line 3, column \d+, is not valid YAML"):
        load_config(bad)
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(bytes(range(128, 256)))
    with pytest.raises(ConfigError, match=r"weights\.yaml is not a text file"):
        load_config(binary)
    with pytest.raises(ConfigError, match=r"optim\.betas=\[0\.9.*not valid YAML"):
        load_config("cpu_synthetic_mvit", ["optim.betas=[0.9"])


# ------------------------------------------------------------------------------------- the NaN guard


def _weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_diverged_weights_never_reach_the_checkpoint(tmp_path):
    """The issue's case: a run resumed with a huge lr. The step that blows the weights up still has a finite
    loss; the checkpoint of that step is held until the next loss, which is NaN, so it is never written."""
    train(
        load_config(None, TINY + ["optim.epochs=1", "optim.warmup_epochs=0", f"run.output_dir={tmp_path}"]),
        tiny_data(8),
        tiny_data(4, seed=1),
    )
    good = load_checkpoint(tmp_path / "checkpoint.pt")
    cfg = load_config(
        None,
        TINY
        + [
            "optim.epochs=3",
            "optim.warmup_epochs=0",
            "optim.lr=1e38",
            "run.checkpoint_every_steps=1",
            f"run.output_dir={tmp_path}",
        ],
    )
    with pytest.warns(UserWarning, match="optim.lr"), pytest.raises(NonFiniteLossError) as err:
        train(cfg, tiny_data(8), tiny_data(4, seed=1))
    message = str(err.value)
    assert "weights diverged" in message and "nothing was saved from this point" in message
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    on_disk = f"epoch {ckpt['epoch']}, iteration {ckpt['micro']}, optimizer step {ckpt['step']}"
    assert f"still holds the checkpoint of {on_disk}" in message  # the message tells what is on disk
    model = build_model_from_config(load_config(None, TINY).model)
    model.load_state_dict(ckpt["model"])
    loader = DataLoader(tiny_data(8), batch_size=4)
    assert math.isfinite(evaluate(model, loader, num_classes=4)["loss"])  # the weights on disk are sound
    assert ckpt["step"] >= good["step"] and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_weights_that_turn_nan_are_not_saved_and_the_earlier_checkpoint_stays(tmp_path):
    def poison(model, info):
        if info["step"] == 3:
            with torch.no_grad():
                next(model.parameters())[0] = float("nan")

    cfg = load_config(None, TINY + ["run.checkpoint_every_steps=1", f"run.output_dir={tmp_path}"])
    with pytest.raises(NonFiniteLossError, match="optimizer step 2") as err:
        train(cfg, tiny_data(), on_step=poison)
    assert "weights diverged" in str(err.value)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 2 and all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_no_save_of_non_finite_weights_at_the_end_of_an_epoch(tmp_path):
    """No later loss to check (last step of the last epoch, no validation): the save itself refuses."""

    def poison(model, info):
        if info["step"] == 4:  # 8 clips x 2 repeats / batch 4: the last step
            with torch.no_grad():
                next(model.parameters())[0] = float("inf")

    cfg = load_config(None, TINY + ["optim.epochs=1", "optim.warmup_epochs=0", f"run.output_dir={tmp_path}"])
    with pytest.raises(NonFiniteLossError, match="hold NaN/inf after optimizer step 4") as err:
        train(cfg, tiny_data(8), on_step=poison)
    assert "no checkpoint has been written" in str(err.value)
    assert not (tmp_path / "checkpoint.pt").exists() and not list(tmp_path.glob(".*.tmp"))


def test_a_non_finite_validation_loss_stops_without_saving(tmp_path):
    cfg = load_config(None, TINY + ["optim.epochs=2", f"run.output_dir={tmp_path}"])
    val = tiny_data(4, seed=1)
    calls = []

    def poison_second_validation(model, info):  # after epoch 0's save, make the weights give inf logits
        calls.append(info["step"])
        if info["step"] == 24:
            with torch.no_grad():
                model.head.bias.fill_(float("inf"))
                model.head.weight.zero_()

    with pytest.raises(NonFiniteLossError, match="validation loss is nan after optimizer step 24") as err:
        train(cfg, tiny_data(), val, on_step=poison_second_validation)
    assert "still holds the checkpoint of epoch 1, iteration 0, optimizer step 12" in str(err.value)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["step"] == 12


# ------------------------------------------------------------------------------- one run per folder

CLI = [
    sys.executable,
    "-m",
    "mvit",
    "train",
    "--config",
    "cpu_synthetic_mvit",
    *TINY,
    "model.config.num_classes=10",
    "model.config.input_size=[4, 16, 16]",
    "data.train_size=8",
    "data.val_size=4",
    "optim.warmup_epochs=1",
]


def _cli(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, "--output-dir", str(out), *extra],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.mark.slow
def test_a_second_run_on_a_folder_in_use_is_refused_and_a_killed_runs_folder_is_free(tmp_path):
    out = tmp_path / "run"
    first = _cli(out, "optim.epochs=500")
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").is_file() and time.time() < deadline and first.poll() is None:
        time.sleep(0.05)
    assert first.poll() is None, first.communicate()
    second = _cli(out, "optim.epochs=500")
    _, stderr = second.communicate(timeout=120)
    assert second.returncode == 2, stderr
    assert stderr.startswith("error: ") and f"{out} is in use by another run (process {first.pid} " in stderr
    first.kill()  # SIGKILL: no cleanup; the lock file stays, the lock itself goes with the process
    first.communicate(timeout=60)
    assert (out / ".lock").is_file()
    cfg = load_config(
        "cpu_synthetic_mvit",
        CLI[CLI.index("cpu_synthetic_mvit") + 1 :]
        + ["optim.epochs=500", f"run.output_dir={out}", "run.checkpoint_every_steps=1"],
    )
    sent = []

    def stop(model, info):
        if not sent:
            sent.append(os.kill(os.getpid(), signal.SIGTERM))

    with pytest.raises(TrainingInterrupted):  # the folder is free: the run resumes, then stops at once
        train(cfg, on_step=stop)
    assert load_checkpoint(out / "checkpoint.pt")["step"] >= 1


def test_the_lock_is_held_by_one_process_at_a_time(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from mvit.engine.checkpoint import OutputDirLock
        lock = OutputDirLock({str(tmp_path)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(ConfigError, match=f"process {holder.pid} holds"):
        train(load_config(None, TINY + [f"run.output_dir={tmp_path}"]), tiny_data(8))
    assert not (tmp_path / "checkpoint.pt").exists()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    with OutputDirLock(tmp_path) as lock:  # free again
        assert (lock.dir / ".lock").read_text().strip() == str(os.getpid())


def test_an_output_dir_that_is_a_file_or_read_only_is_refused_before_any_work(tmp_path, monkeypatch):
    path = tmp_path / "taken"
    path.write_text("not a folder")
    with pytest.raises(ConfigError, match=f"{path} is an existing file"):
        train(load_config(None, TINY + [f"run.output_dir={path}"]), tiny_data(8))
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() == 0:  # root may write anywhere: stand in for a read-only folder (as on a read-only mount)
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != folder)
    else:
        folder.chmod(0o500)
    with pytest.raises(ConfigError, match=f"{folder} (is read-only|cannot be written)"):
        train(load_config(None, TINY + [f"run.output_dir={folder}"]), tiny_data(8))
    assert not (folder / "checkpoint.pt").exists()


# -------------------------------------------------------------------------------- settings history


def test_resuming_with_changed_settings_keeps_the_original_and_the_history(tmp_path):
    first = load_config(None, TINY + ["optim.epochs=1", "optim.warmup_epochs=0", f"run.output_dir={tmp_path}"])
    train(first, tiny_data(8))
    second = load_config(
        None,
        TINY + ["optim.epochs=2", "optim.warmup_epochs=0", "run.seed=7", "optim.lr=0.1", f"run.output_dir={tmp_path}"],
    )
    with pytest.warns(UserWarning) as warned:
        train(second, tiny_data(8))
    message = " ".join(str(w.message) for w in warned if "changed settings" in str(w.message))
    assert "run.seed 0 -> 7" in message and "optim.lr 0.2 -> 0.1" in message and "optim.epochs 1 -> 2" in message
    assert load_config(tmp_path / "config.yaml") == first  # the settings the run started with
    history = [json.loads(line) for line in (tmp_path / "config_history.jsonl").read_text().splitlines()]
    assert [h["event"] for h in history] == ["start", "resume"] and history[1]["step"] == 4
    assert history[1]["changed"] == {"optim.epochs": [1, 2], "optim.lr": [0.2, 0.1], "run.seed": [0, 7]}
    assert load_config(history[1]["config"]) == second and load_config(history[0]["config"]) == first


def test_a_resume_changing_only_harmless_settings_does_not_warn(tmp_path, recwarn):
    cfg = TINY + ["optim.epochs=1", "optim.warmup_epochs=0", f"run.output_dir={tmp_path}"]
    train(load_config(None, cfg), tiny_data(8))
    train(load_config(None, cfg + ["run.log_every_steps=2", "run.checkpoint_every_steps=5"]), tiny_data(8))
    assert not [w for w in recwarn if "changed settings" in str(w.message)]
    last = json.loads((tmp_path / "config_history.jsonl").read_text().splitlines()[-1])
    assert last["changed"] == {"run.checkpoint_every_steps": [0, 5], "run.log_every_steps": [1, 2]}


# ------------------------------------------------------------------------- checkpoint files, full disk


@pytest.mark.parametrize(
    "content, said",
    [
        (b"", "an empty file"),
        (b"step: 3\nweights: none\n", "not a PyTorch file"),
        (bytes(range(256)) * 64, "not a PyTorch file"),
        ("truncated", "truncated"),
    ],
)
def test_unreadable_checkpoint_files_are_named_with_the_fix(tmp_path, content, said):
    path = tmp_path / "checkpoint.pt"
    if content == "truncated":
        save_checkpoint({"step": 1, "w": torch.randn(1000)}, path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=f"{path} cannot be read as a PyTorch checkpoint: .*{said}.*delete it"):
        load_checkpoint(path)
    with pytest.raises(ConfigError, match=str(path)):  # a run resuming from it stops the same way
        train(load_config(None, TINY + [f"run.output_dir={tmp_path}"]), tiny_data(8))


def test_checkpoints_carry_a_format_version(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1}, path)
    assert load_checkpoint(path)["format"] == 1
    torch.save({"step": 1, "model": {}}, path)  # as written before versions existed
    with pytest.raises(ConfigError, match="no 'format' version"):
        load_checkpoint(path)
    torch.save({"step": 1, "format": 99}, path)
    with pytest.raises(ConfigError, match="checkpoint format 99, this mvit reads format 1"):
        load_checkpoint(path)
    torch.save([1, 2], path)
    with pytest.raises(ConfigError, match="not a training checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("failure", ["ENOSPC", "zip writer"])
def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch, failure):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def full(obj, f):
        f.write(b"partial")
        if failure == "ENOSPC":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 2026944 vs 2026832")

    monkeypatch.setattr(torch, "save", full)
    if failure == "zip writer":  # torch's zip writer gives no errno; the free space tells
        monkeypatch.setattr("shutil.disk_usage", lambda p: type("usage", (), {"free": 4096})())
    with pytest.raises(ConfigError, match=f"disk is full while writing {path}.*previous checkpoint {path} is intact"):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path)["step"] == 1 and not list(tmp_path.glob(".*.tmp"))


def test_other_write_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    def broken(obj, f):
        raise RuntimeError("a bug")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        save_checkpoint({"step": 2}, tmp_path / "checkpoint.pt")
    assert not list(tmp_path.glob(".*"))
