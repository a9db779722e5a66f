"""Tasks (mvit.engine.tasks) and their metrics: mean average precision against scikit-learn on random and
edge cases, the multilabel loss and view pooling, the config checks, and the engine training, logging and
evaluating a multilabel run end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score
from torch.utils.data import DataLoader, TensorDataset

from mvit.data import EXCLUDED
from mvit.engine import ConfigError, evaluate, load_config, train
from mvit.engine.metrics import average_precision, mean_average_precision, per_class_average_precision
from mvit.engine.tasks import TASKS, Task, get_task


@pytest.mark.parametrize("seed", range(40))
def test_average_precision_matches_sklearn_on_random_cases(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    targets = rng.random(n) < rng.uniform(0.05, 0.95)
    if not targets.any():
        targets[rng.integers(n)] = True
    # half the cases with few distinct scores, so that ties across positives and negatives are common
    scores = rng.integers(0, 4, n).astype(float) if seed % 2 else rng.standard_normal(n)
    ours = average_precision(torch.tensor(scores), torch.tensor(targets))
    assert ours == pytest.approx(average_precision_score(targets, scores), abs=1e-12)


def test_average_precision_hand_computed_and_ties():
    # ranking + - + -: precision 1 at recall 1/2, 2/3 at recall 1 -> AP = (1 + 2/3) / 2
    assert average_precision(torch.tensor([0.9, 0.8, 0.7, 0.1]), torch.tensor([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # all four scores tied: one threshold, precision 2/4 at recall 1, whatever the order of the samples
    for targets in ([1, 1, 0, 0], [0, 0, 1, 1]):
        assert average_precision(torch.full((4,), 0.3), torch.tensor(targets)) == pytest.approx(0.5)
    # a tie between a positive and a negative at the top: both cross together (precision 1/2, not 1)
    tied = average_precision(torch.tensor([0.9, 0.9, 0.1]), torch.tensor([0, 1, 1]))
    assert (
        tied
        == pytest.approx(average_precision_score([0, 1, 1], [0.9, 0.9, 0.1]))
        == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    )
    assert average_precision(torch.tensor([0.2, 0.1]), torch.tensor([1, 1])) == 1.0  # every sample positive
    assert average_precision(torch.tensor([5.0]), torch.tensor([1])) == 1.0


def test_a_class_without_positives_is_left_out_of_the_mean():
    scores = torch.tensor([[0.9, 0.2, 0.5], [0.1, 0.8, 0.4], [0.7, 0.3, 0.6]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0]])  # class 2: no positive sample
    ap = per_class_average_precision(scores, targets)
    assert math.isnan(ap[2]) and ap[:2].tolist() == [1.0, 1.0]
    assert mean_average_precision(scores, targets) == 1.0  # not (1 + 1 + 0) / 3
    kept = [0, 1]
    expected = average_precision_score(targets[:, kept].numpy(), scores[:, kept].numpy(), average="macro")
    assert mean_average_precision(scores, targets) == pytest.approx(expected)
    assert math.isnan(mean_average_precision(scores, torch.zeros_like(targets)))


@pytest.mark.parametrize("seed", range(5))
def test_mean_average_precision_matches_sklearn_macro(seed):
    rng = np.random.default_rng(100 + seed)
    targets = rng.random((50, 7)) < 0.3
    targets[0] = True  # every class has a positive
    scores = rng.random((50, 7)).round(1)  # rounded: many ties
    ours = mean_average_precision(torch.tensor(scores), torch.tensor(targets))
    assert ours == pytest.approx(average_precision_score(targets, scores, average="macro"), abs=1e-12)


def test_average_precision_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="must be equal"):
        average_precision(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match=r"\(N, K\)"):
        per_class_average_precision(torch.zeros(3), torch.zeros(3))


def test_tasks_loss_views_and_readable():
    cls, multi = get_task("classification"), get_task("multilabel")
    assert (cls.metric, multi.metric) == ("top1", "mAP") and set(TASKS) >= {"classification", "multilabel"}
    logits = torch.tensor([[[2.0, -1.0], [-3.0, 0.5]]])  # 1 video, 2 views, 2 classes
    pooled = multi.combine_views(multi.scores(logits))
    assert torch.allclose(pooled, torch.sigmoid(torch.tensor([[2.0, 0.5]])))  # max over views, per class
    mean = cls.combine_views(cls.scores(logits))
    assert torch.allclose(mean, logits.softmax(-1).mean(1))
    targets = torch.tensor([[1.0, 0.0]])
    loss = multi.loss(torch.tensor([[2.0, -1.0]]), targets)
    expected = -(math.log(torch.sigmoid(torch.tensor(2.0))) + math.log(1 - torch.sigmoid(torch.tensor(-1.0)))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    labels = torch.tensor([[1, 0], [EXCLUDED, EXCLUDED]])
    assert multi.readable(labels).tolist() == [True, False]
    assert cls.readable(torch.tensor([3, EXCLUDED])).tolist() == [True, False]


def test_multilabel_refuses_mixup_and_smoothing_and_unknown_tasks():
    base = ["model.task=multilabel", "augment.label_smoothing=0"]
    with pytest.raises(ConfigError, match=r"without Mixup and CutMix \(paper Appendix D.3\).*mixup_alpha=0"):
        load_config("cpu_synthetic_mvit", base + ["augment.mixup_alpha=0.8"])
    with pytest.raises(ConfigError, match="label_smoothing=0"):
        load_config("cpu_synthetic_mvit", ["model.task=multilabel"])
    with pytest.raises(ConfigError, match="did you mean 'multilabel'"):
        load_config("cpu_synthetic_mvit", ["model.task=multilable"])
    assert load_config("cpu_synthetic_mvit", base).model.task == "multilabel"
    assert load_config("cpu_synthetic_mvit").model.task == "classification"


def test_every_task_implements_the_interface():
    for task in TASKS.values():
        for method in ("batch_transform", "readable", "loss", "scores", "combine_views", "meter"):
            assert getattr(type(task), method) is not getattr(Task, method), (task.name, method)


def _multilabel_data(n, seed, k=3):
    """Clips whose class c is present when channel c's mean is positive: a learnable multi-label set."""
    g = torch.Generator().manual_seed(seed)
    labels = (torch.rand(n, k, generator=g) < 0.5).float()
    x = torch.randn(n, 3, 4, 16, 16, generator=g) * 0.5
    x[:, :k] += (2 * labels - 1)[:, :, None, None, None]
    return x, labels


def test_multilabel_run_trains_logs_and_evaluates_map(tmp_path):
    torch.set_num_threads(1)
    overrides = [
        "model.task=multilabel",
        "model.config.num_classes=3",
        "model.config.input_size=[4,16,16]",
        "augment.label_smoothing=0",
        "data.batch_size=8",
        "optim.epochs=3",
        "optim.warmup_epochs=0",
        "optim.lr=0.2",
        "run.log_every_steps=1",
        "run.multi_view_eval=true",
        "run.progress=false",
        f"run.output_dir={tmp_path}",
    ]
    cfg = load_config("cpu_synthetic_mvit", overrides)
    x, y = _multilabel_data(64, 0)
    vx, vy = _multilabel_data(32, 1)
    views = TensorDataset(torch.stack([vx, vx.flip(-1)], dim=1), vy)  # 2 views per video
    history = train(cfg, TensorDataset(x, y), TensorDataset(vx, vy), views)
    last = history["epochs"][-1]
    assert "val_mAP" in last and "val_top1" not in last and last["val_classes_scored"] == 3
    assert last["val_mAP"] > 100 * vy.mean().item()  # above chance (the prevalence) after 3 epochs
    assert history["test"]["metric"] == "mAP" and "view_mAP" in history["test"]
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("val_mAP" in r for r in records) and any("mAP" in r for r in records if r.get("kind") == "test")


def test_evaluate_multilabel_excludes_unreadable_rows():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 16 * 16, 3))
    x, y = _multilabel_data(10, 2)
    y[3] = EXCLUDED
    result = evaluate(model, DataLoader(TensorDataset(x, y), batch_size=4), num_classes=3, task="multilabel")
    assert result["num_samples"] == 9 and result["unreadable_files"] == 1 and result["metric"] == "mAP"
    keep = torch.arange(10) != 3
    with torch.no_grad():
        scores = model(x[keep]).sigmoid()
    assert result["mAP"] == pytest.approx(100 * mean_average_precision(scores, y[keep]))


# the transfer recipes against the paper's Appendix D ------------------------------------------------------


def test_ssv2_recipe_follows_appendix_d4():
    """App. D.4: fine-tuned from Kinetics (model.pretrained, which the user sets), 100 epochs, 8 clips per GPU,
    lr 0.02 for 64 x 8 clips with half-period cosine decay, SGD, weight decay 1e-4, stochastic depth 0.4, the
    Kinetics augmentation of D.1 without flips, segment-based sampling, 1 clip x 3 crops at test."""
    cfg = load_config("ssv2_mvit_b_16x4")
    assert (cfg.optim.name, cfg.optim.epochs, cfg.data.batch_size, cfg.model.task) == ("sgd", 100, 8, "classification")
    assert cfg.optim.lr * 64 * 8 / cfg.optim.lr_reference_batch == pytest.approx(0.02)
    assert cfg.optim.weight_decay == 1e-4 and cfg.model.config["drop_path"] == 0.4
    assert cfg.augment.transform == {"flip": False} and cfg.data.options["sampling"] == "segment"
    assert (cfg.augment.mixup_alpha, cfg.augment.cutmix_alpha) == (0.8, 1.0)  # "the same as in D.1"
    assert (cfg.data.num_clips, cfg.data.num_crops) == (1, 3) and cfg.model.config["num_classes"] == 174


def test_charades_recipe_follows_appendix_d3():
    """App. D.3: fine-tuned from Kinetics, per-class sigmoid (the multilabel task), SGD, 200 epochs, 8 clips per
    GPU on 32 GPUs at base lr 0.6 with half-period cosine decay, stochastic depth 0.45, the Kinetics augmentation
    without Mixup; test scores max-pooled over clips (10 x 3 views, as PySlowFast's Charades test)."""
    cfg = load_config("charades_mvit_b_16x4")
    assert cfg.model.task == "multilabel" and cfg.model.config["num_classes"] == 157
    assert (cfg.optim.name, cfg.optim.epochs, cfg.data.batch_size) == ("sgd", 200, 8)
    assert cfg.optim.lr * 32 * 8 / cfg.optim.lr_reference_batch == pytest.approx(0.6)
    assert cfg.optim.weight_decay == 1e-4
    assert cfg.model.config["drop_path"] == 0.45 and cfg.augment.transform == "default"
    assert (cfg.augment.mixup_alpha, cfg.augment.cutmix_alpha, cfg.augment.label_smoothing) == (0.0, 0.0, 0.0)
    assert (cfg.data.num_clips, cfg.data.num_crops, cfg.data.dataset) == (10, 3, "charades")


def test_cli_train_and_eval_report_the_tasks_metric(tmp_path, capsys):
    from test_cli import TINY as tiny  # the CLI tests' tiny run

    from mvit.cli import main

    out = tmp_path / "run"
    assert main(["train", "--config", "cpu_synthetic_multilabel_mvit", "--output-dir", str(out), *tiny]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "val_mAP" in summary and "test_mAP" in summary and "val_top1" not in summary
    ckpt = str(out / "checkpoint.pt")
    assert main(["eval", "--config", "cpu_synthetic_multilabel_mvit", "--checkpoint", ckpt, *tiny]) == 0
    brief = json.loads(capsys.readouterr().out)
    assert (brief["task"], brief["metric"]) == ("multilabel", "mAP")
    assert list(brief["val"])[0] == "mAP" and list(brief["test"])[0] == "mAP"
    assert brief["val"]["mAP"] == pytest.approx(summary["val_mAP"]) and brief["test"]["num_samples"] == 8
    assert main(["eval", "--config", "cpu_synthetic_mvit", "--checkpoint", ckpt, *tiny]) == 2  # another model's head
    assert capsys.readouterr().err.startswith("error: ")


DDP_EVAL = """
import sys, torch
from torch.utils.data import TensorDataset
from mvit.engine import distributed, evaluate, load_config
from mvit.engine.inputs import eval_loader
torch.set_num_threads(1)
ctx = distributed.setup("cpu")
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 2 * 8 * 8, 5))
g = torch.Generator().manual_seed(1)
x, y = torch.randn(13, 3, 2, 8, 8, generator=g), (torch.rand(13, 5, generator=g) < 0.4).float()
cfg = load_config(None, ["data.batch_size=3", "data.num_workers=0"])
result = evaluate(model, eval_loader(cfg, TensorDataset(x, y), ctx), num_classes=5, ctx=ctx, task="multilabel")
if ctx.is_main:
    torch.save(result, sys.argv[1])
distributed.teardown(ctx)
"""


@pytest.mark.slow
def test_multilabel_evaluation_under_ddp_gathers_every_shard(tmp_path):
    """Two processes each score their shard; the gathered mAP equals that of one process over all samples."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp_eval.py"
    script.write_text(DDP_EVAL)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for args, out in ((run, "ddp.pt"), ([], "one.pt")):
        done = subprocess.run(
            [sys.executable, *args, str(script), str(tmp_path / out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    ddp, one = (torch.load(tmp_path / name, weights_only=False) for name in ("ddp.pt", "one.pt"))
    assert ddp["num_samples"] == one["num_samples"] == 13
    assert ddp["mAP"] == pytest.approx(one["mAP"], abs=1e-9) and ddp["loss"] == pytest.approx(one["loss"])
