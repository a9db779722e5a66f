"""End-to-end behaviour of `mvit.engine.train` on a tiny model: exact resumption after SIGKILL, a
NaN loss, SIGTERM, gradient accumulation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from mvit.engine import NonFiniteLossError, TrainingInterrupted, load_checkpoint, load_config, train

ROOT = Path(__file__).resolve().parent.parent

# A model of a few thousand parameters on 2 x 16 x 16 clips; stochastic depth, dropout, Mixup/CutMix and
# repeated augmentation stay on so that resuming must restore every RNG and the sample order.
TINY = [
    "model.name=mvit_tiny",
    "model.config.num_classes=4",
    "model.config.input_size=[2, 16, 16]",
    "model.config.embed_dim=8",
    "model.config.drop_path=0.1",
    "model.config.dropout=0.1",
    "data.batch_size=4",
    "data.num_workers=0",
    "optim.epochs=2",
    "optim.warmup_epochs=0.5",
    "optim.lr=0.2",
    "run.device=cpu",
    "run.progress=false",
    "run.log_every_steps=1",
    "run.multi_view_eval=false",
]


def _metrics(output_dir: Path) -> list[dict]:
    """The records of ``output_dir/metrics.jsonl``, one JSON object a line."""
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_data(n: int = 24, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = torch.randn(n, 3, 2, 16, 16, generator=g) + y.view(-1, 1, 1, 1, 1)  # learnable: brightness = class
    return TensorDataset(x, y)


SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from test_engine_train import TINY, tiny_data
    from mvit.engine import load_config, train
    torch.set_num_threads(1)
    out, kill_at = sys.argv[1], int(sys.argv[2])

    def hook(model, info):
        if info["step"] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    cfg = load_config(None, TINY + ["run.checkpoint_every_steps=2", "run.output_dir=" + out])
    train(cfg, tiny_data(), tiny_data(8, seed=1), on_step=hook)
""")


def _start(script: Path, out: Path, kill_at: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), str(out), str(kill_at)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = proc.communicate(timeout=300)
    return proc.returncode, stdout, stderr


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_equals_an_uninterrupted_run(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    # 24 clips x 2 repeats / batch 4 = 12 steps per epoch; killed at step 17 (epoch 1, iteration 5), the
    # last checkpoint being step 16: the resumed run redoes step 17 and goes on.
    whole, killed = _start(script, tmp_path / "whole", -1), _start(script, tmp_path / "killed", 17)
    rc, _, stderr = _finish(whole)
    assert rc == 0, stderr
    rc, _, stderr = _finish(killed)
    assert rc == -signal.SIGKILL, stderr
    ckpt = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert (ckpt["step"], ckpt["epoch"], ckpt["micro"]) == (16, 1, 4)  # mid-epoch
    rc, stdout, stderr = _finish(_start(script, tmp_path / "killed", -1))
    assert rc == 0, stderr
    assert "resumed from" in stdout and "iteration 4" in stdout

    a = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")
    assert a["step"] == b["step"] == 24
    diff = max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"])
    losses = (
        [(s["step"], s["loss"]) for s in a["history"]["steps"]],
        [(s["step"], s["loss"]) for s in b["history"]["steps"]],
    )
    assert diff <= 1e-6, f"max abs weight difference {diff}; losses (uninterrupted, resumed): {losses}"
    assert losses[0] == losses[1]
    assert a["history"]["epochs"][-1]["val_top1"] == b["history"]["epochs"][-1]["val_top1"]
    for k, v in a["optimizer"]["state"].items():
        torch.testing.assert_close(v["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"], rtol=0, atol=1e-9)
    # metrics.jsonl describes one run: the records the killed run wrote after its checkpoint are gone
    whole_log, killed_log = (_metrics(tmp_path / name) for name in ("whole", "killed"))
    steps = [r["step"] for r in killed_log if r["kind"] == "train"]
    assert steps == list(range(1, 25))  # steps 17 and later were logged before the kill, then again
    drop = ("clips_per_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in killed_log] == [
        {k: v for k, v in r.items() if k not in drop} for r in whole_log
    ]


def test_nan_loss_stops_naming_the_iteration_and_keeps_the_last_good_checkpoint(tmp_path):
    data = tiny_data(16)
    data.tensors[0][9, 0, 0, 0, 0] = float("nan")  # in order, sample 9 sits in the third batch of 4
    cfg = load_config(
        None,
        TINY
        + [
            "data.shuffle=false",
            "augment.repeat_aug=1",
            "augment.mixup_alpha=0",
            "augment.cutmix_alpha=0",
            "run.checkpoint_every_steps=1",
            f"run.output_dir={tmp_path}",
        ],
    )
    seen = {}
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 0, iteration 3 \(optimizer step 3\)") as err:
        train(
            cfg,
            data,
            on_step=lambda model, info: seen.update(
                {info["step"]: {k: v.clone() for k, v in model.state_dict().items()}}
            ),
        )
    assert "still holds the checkpoint of epoch 0, iteration 2, optimizer step 2" in str(err.value)
    assert "input clips of this step hold NaN/inf" in str(err.value)  # the data's fault, not the weights'
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 2 and sorted(seen) == [1, 2]
    for k, v in ckpt["model"].items():
        assert torch.equal(v, seen[2][k]) and torch.isfinite(v).all()
    assert not list(tmp_path.glob(".*.tmp"))


def test_sigterm_writes_a_checkpoint_then_stops_and_the_run_resumes(tmp_path):
    cfg = load_config(None, TINY + ["run.checkpoint_every_steps=0", f"run.output_dir={tmp_path}"])
    with pytest.raises(TrainingInterrupted, match="SIGTERM") as err:
        train(cfg, tiny_data(), on_step=lambda model, info: info["step"] == 5 and os.kill(os.getpid(), signal.SIGTERM))
    assert err.value.signum == signal.SIGTERM
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    # the signal came after step 5; processes agree on stopping when they next compare notes, at the end
    # of step 6: the checkpoint holds step 6, mid-epoch
    assert (ckpt["step"], ckpt["epoch"], ckpt["micro"]) == (6, 0, 6)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is removed again
    history = train(cfg, tiny_data())
    assert [s["step"] for s in history["steps"]] == list(range(1, 25))


def test_gradient_accumulation_matches_the_larger_batch(tmp_path):
    common = TINY + [
        "data.shuffle=false",
        "augment.repeat_aug=1",
        "augment.mixup_alpha=0",
        "augment.cutmix_alpha=0",
        "model.config.drop_path=0.0",
        "model.config.dropout=0.0",
        "optim.epochs=3",
        "optim.lr=0.05",
    ]
    big = train(load_config(None, common + ["data.batch_size=8", f"run.output_dir={tmp_path / 'big'}"]), tiny_data())
    acc = train(
        load_config(None, common + ["data.batch_size=4", "optim.accum_steps=2", f"run.output_dir={tmp_path / 'acc'}"]),
        tiny_data(),
    )
    assert [s["lr"] for s in big["steps"]] == [s["lr"] for s in acc["steps"]]
    torch.testing.assert_close(
        [s["loss"] for s in acc["steps"]], [s["loss"] for s in big["steps"]], rtol=1e-5, atol=1e-6
    )
    a = load_checkpoint(tmp_path / "big" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "acc" / "checkpoint.pt")["model"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=5e-5)
    assert big["epochs"][-1]["train_loss"] < big["epochs"][0]["train_loss"]  # it learns


def test_run_folder_holds_config_environment_and_metrics(tmp_path):
    cfg = load_config(None, TINY + ["optim.epochs=1", "optim.warmup_epochs=0", f"run.output_dir={tmp_path}"])
    history = train(cfg, tiny_data(8), tiny_data(8, seed=1))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds.count("train") == 4 and kinds[-1] == "epoch"
    assert {"loss", "lr", "grad_norm", "clips_per_s", "epoch", "step"} <= set(records[0])
    assert records[-1]["val_top1"] == history["epochs"][-1]["val_top1"]
    env = json.loads((tmp_path / "environment.json").read_text())
    assert env["torch"] == torch.__version__ and env["world_size"] == 1
    assert load_config(tmp_path / "config.yaml") == cfg  # the saved config reproduces the run's


def test_dataset_with_other_classes_than_the_model_fails_before_training(tmp_path):
    cfg = load_config(None, TINY + ["model.config.num_classes=7", f"run.output_dir={tmp_path}"])
    data = tiny_data(8)
    data.num_classes = 4
    with pytest.raises(ValueError, match="model.config.num_classes=4"):
        train(cfg, data)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_cli_sigterm_exits_143_after_writing_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "mvit",
        "train",
        "--config",
        "cpu_synthetic_mvit",
        "--output-dir",
        str(out),
        *TINY,
        "model.config.num_classes=10",
        "model.config.input_size=[4, 16, 16]",
        "data.train_size=8",
        "data.val_size=4",
        "optim.epochs=500",
        "optim.warmup_epochs=1",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while not (metrics.is_file() and metrics.read_text().strip()) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM" in stderr and "checkpoint written" in stderr
    assert load_checkpoint(out / "checkpoint.pt")["step"] >= 1


def test_resuming_with_another_model_or_changed_settings(tmp_path):
    cfg = load_config(None, TINY + ["optim.epochs=1", "optim.warmup_epochs=0", f"run.output_dir={tmp_path}"])
    train(cfg, tiny_data(8))
    wider = load_config(None, TINY + ["model.config.embed_dim=16", f"run.output_dir={tmp_path}"])
    with pytest.raises(ValueError, match="model.config.embed_dim"):
        train(wider, tiny_data(8))
    longer = load_config(None, TINY + ["optim.epochs=2", f"run.output_dir={tmp_path}"])
    with pytest.warns(UserWarning, match="optim.epochs"):
        history = train(longer, tiny_data(8))
    assert [e["epoch"] for e in history["epochs"]] == [0, 1]  # the first epoch was kept, the second added


def test_tensorboard_is_used_when_installed_and_named_when_missing(tmp_path):
    try:
        import torch.utils.tensorboard  # noqa: F401

        installed = True
    except ImportError:
        installed = False
    cfg = load_config(
        None, TINY + ["optim.epochs=1", "optim.warmup_epochs=0", "run.tensorboard=true", f"run.output_dir={tmp_path}"]
    )
    if installed:
        train(cfg, tiny_data(8))
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    else:
        with pytest.raises(ValueError, match="pip install tensorboard"):
            train(cfg, tiny_data(8))
        assert not (tmp_path / "checkpoint.pt").exists()
