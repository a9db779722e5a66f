"""DDP under ``torchrun --nproc_per_node 2`` on the CPU (gloo): both processes hold identical weights
after every step, and the loss equals that of one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent

# No randomness in the step (no dropout, stochastic depth or Mixup) and the data in order, so that two
# processes with 4 clips each see the same 8 clips per step as one process with 8. The repeated-
# augmentation sampler deals positions like cards: rank 0 gets clips 0, 2, 4, 6, rank 1 gets 1, 3, 5, 7.
# SGD, whose update is linear in the gradient: AdamW's first steps move every weight by about +-lr
# whatever the gradient's size, so a rounding difference in a near-zero gradient could flip a sign.
COMMON = [
    "model.name=mvit_tiny",
    "model.config.num_classes=4",
    "model.config.input_size=[2, 16, 16]",
    "model.config.embed_dim=8",
    "model.config.drop_path=0.0",
    "model.config.dropout=0.0",
    "data.num_workers=0",
    "data.shuffle=false",
    "augment.repeat_aug=1",
    "augment.mixup_alpha=0",
    "augment.cutmix_alpha=0",
    "optim.epochs=2",
    "optim.warmup_epochs=0.5",
    "optim.name=sgd",
    "optim.lr=20",
    "run.device=cpu",
    "run.progress=false",
    "run.log_every_steps=1",
    "run.multi_view_eval=false",
]

SCRIPT = textwrap.dedent("""
    import os, sys, torch
    from torch.utils.data import TensorDataset
    from mvit.engine import load_config, train
    torch.set_num_threads(1)
    out, batch = sys.argv[1], sys.argv[2]
    rank = int(os.environ.get("RANK", "0"))
    g = torch.Generator().manual_seed(0)
    y = torch.arange(16) % 4
    x = torch.randn(16, 3, 2, 16, 16, generator=g) + y.view(-1, 1, 1, 1, 1)
    weights = []

    def hook(model, info):
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]).clone())

    cfg = load_config(None, {common!r} + ["data.batch_size=" + batch, "run.output_dir=" + out])
    history = train(cfg, TensorDataset(x, y), TensorDataset(x, y), on_step=hook)
    torch.save({{"weights": weights, "history": history}}, f"{{out}}/rank{{rank}}.pt")
""")


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(SCRIPT.format(common=COMMON))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(script),
            str(tmp_path / "ddp"),
            "4",
        ],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    single = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "single"), "8"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out, _ = ddp.communicate(timeout=300)
    assert ddp.returncode == 0, out[-3000:]
    assert single.returncode == 0, single.stderr[-3000:]

    r0, r1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    one = torch.load(tmp_path / "single" / "rank0.pt", weights_only=True)
    steps = len(one["weights"])
    assert steps == 4 and len(r0["weights"]) == len(r1["weights"]) == steps  # 16 clips / 8 per step x 2 epochs
    for step in range(steps):
        assert torch.equal(r0["weights"][step], r1["weights"][step]), f"ranks differ after step {step + 1}"
        torch.testing.assert_close(r0["weights"][step], one["weights"][step], rtol=1e-5, atol=1e-6)
    ddp_loss = [s["loss"] for s in r0["history"]["steps"]]
    assert ddp_loss == [s["loss"] for s in r1["history"]["steps"]]  # the loss is averaged over processes
    torch.testing.assert_close(ddp_loss, [s["loss"] for s in one["history"]["steps"]], rtol=1e-5, atol=1e-6)
    assert r0["history"]["steps"][0]["lr"] == one["history"]["steps"][0]["lr"]  # lr follows the global batch
    # validation is sharded over the processes and summed: both see all 16 clips
    assert r0["history"]["epochs"][-1]["val_num_samples"] == 16
    assert r0["history"]["epochs"][-1]["val_top1"] == one["history"]["epochs"][-1]["val_top1"]
