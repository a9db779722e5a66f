"""Unit tests of mvit.engine against hand-computed values: config checking, the learning-rate schedule,
weight-decay groups, the loss with label smoothing and Mixup, multi-view averaging, checkpoints and the
resumable sample order."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mvit import build_model, get_config
from mvit.data import MixupCutmix, RepeatAugSampler, smooth_one_hot
from mvit.engine import ConfigError, evaluate, list_recipes, load_config, multi_view_scores
from mvit.engine.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from mvit.engine.inputs import EpochOrder, SeededSamples, ShardSampler
from mvit.engine.loss import soft_target_cross_entropy
from mvit.engine.optim import WarmupCosine, build_optimizer, lr_schedule, param_groups, scaled_lr

# ---------------------------------------------------------------------------------------------- config


def test_defaults_are_the_papers_kinetics_recipe():
    cfg = load_config()
    assert (cfg.optim.lr, cfg.optim.lr_reference_batch, cfg.optim.epochs, cfg.optim.warmup_epochs) == (
        1.6e-3,
        512,
        200,
        30,
    )
    assert cfg.optim.lr * cfg.optim.final_lr_ratio == pytest.approx(1.6e-5)
    assert (cfg.optim.weight_decay, cfg.optim.clip_grad_norm, cfg.augment.label_smoothing) == (0.05, 1.0, 0.1)
    assert (cfg.augment.mixup_alpha, cfg.augment.cutmix_alpha, cfg.augment.repeat_aug) == (0.8, 1.0, 2)


def test_overrides_are_typed_and_reach_nested_sections():
    cfg = load_config(
        "cpu_synthetic_mvit",
        [
            "optim.lr=1e-3",
            "optim.epochs=3",
            "model.config.input_size=[2, 16, 16]",
            "optim.clip_grad_norm=null",
            "run.precision=bf16",
        ],
    )
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)  # YAML reads "1e-3" as a string
    assert cfg.model.config["input_size"] == (2, 16, 16)
    assert cfg.optim.clip_grad_norm is None and cfg.run.precision == "bf16"


@pytest.mark.parametrize(
    "override, key, hint",
    [
        ("optim.warmup_epoch=3", "optim.warmup_epoch", "optim.warmup_epochs"),
        ("optm.lr=0.1", "optm", "optim"),
        ("model.config.drop_pth=0.1", "model.config.drop_pth", "model.config.drop_path"),
        ("run.presicion=bf16", "run.presicion", "run.precision"),
    ],
)
def test_unknown_key_is_named_with_the_closest_valid_key(override, key, hint):
    with pytest.raises(ConfigError) as err:
        load_config("cpu_synthetic_mvit", [override])
    assert key in str(err.value) and f"did you mean '{hint}'" in str(err.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.epochs=2.5", "optim.epochs"),
        ("optim.lr=fast", "optim.lr"),
        ("data.shuffle=1", "data.shuffle"),
        ("run.precision=fp8", "run.precision"),
        ("optim.betas=[0.9]", "optim.betas"),
        ("model.config.input_size=big", "model.config.input_size"),
        ("model.config.pool_mode=median", "pool_mode"),
    ],
)
def test_wrong_type_or_value_is_named(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config("cpu_synthetic_mvit", [override])


def test_dataset_names_come_from_the_registry(monkeypatch):
    from mvit.engine import inputs

    with pytest.raises(ConfigError) as err:
        load_config("cpu_synthetic_mvit", ["data.dataset=synthetc"])
    message = str(err.value)
    assert all(name in message for name in inputs.DATASETS) and "did you mean 'synthetic'" in message
    calls = []
    monkeypatch.setitem(inputs.DATASETS, "toy", lambda cfg, model_cfg: calls.append(cfg.data.dataset) or (1, 2, 3))
    cfg = load_config("cpu_synthetic_mvit", ["data.dataset=toy"])  # one registry entry makes a dataset valid
    assert inputs.build_datasets(cfg, get_config(cfg.model.name, **cfg.model.config)) == (1, 2, 3)
    assert calls == ["toy"]


def test_bad_ranges_and_names_fail_before_training():
    with pytest.raises(ConfigError, match="warmup_epochs"):
        load_config("cpu_synthetic_mvit", ["optim.epochs=2", "optim.warmup_epochs=2"])
    with pytest.raises(ConfigError, match="data.batch_size"):
        load_config("cpu_synthetic_mvit", ["data.batch_size=0"])
    with pytest.raises(ConfigError, match="mvit_tiny"):
        load_config(None, ["model.name=mvit_tinny"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(ConfigError, match="cpu_synthetic_mvit"):
        load_config("cpu_synthetic_mvitt")


def test_recipes_inherit_through_base(tmp_path):
    child = tmp_path / "child.yaml"
    child.write_text("base: cpu_synthetic_mvit\noptim:\n  epochs: 9\n")
    cfg, parent = load_config(child), load_config("cpu_synthetic_mvit")
    assert cfg.optim.epochs == 9 and cfg.optim.lr == parent.optim.lr and cfg.model == parent.model
    ssv2 = load_config("ssv2_mvit_b_16x4")  # inherits K400, changes the optimiser and the augmentation
    assert (ssv2.optim.name, ssv2.optim.lr, ssv2.model.config["num_classes"]) == ("sgd", 0.02, 174)
    assert ssv2.augment.transform == {"flip": False} and ssv2.augment.mixup_alpha == 0.8


def test_every_recipe_loads():
    assert {
        "k400_mvit_b_16x4",
        "k400_mvit_b_32x3",
        "ssv2_mvit_b_16x4",
        "imagenet_mvit_b_16",
        "ucf101_mvit_b_16x4",
        "cpu_synthetic_mvit",
        "cpu_synthetic_vit",
        "cpu_digits_mvit",
        "cpu_digits_vit",
    } <= set(list_recipes())
    for name in list_recipes():
        load_config(name)


# ------------------------------------------------------------------------------------ lr and groups


def test_lr_is_linear_in_the_global_batch():
    assert scaled_lr(1.6e-3, 512) == pytest.approx(1.6e-3)
    assert scaled_lr(1.6e-3, 4 * 8 * 2, 512) == pytest.approx(2e-4)  # 4 clips x 8 GPUs x 2 accumulation = 64


def test_lr_schedule_of_a_config_by_hand():
    cfg = load_config(None, ["data.batch_size=4", "optim.accum_steps=2", "optim.epochs=10", "optim.warmup_epochs=2.5"])
    schedule = lr_schedule(cfg, steps_per_epoch=8, world_size=3)
    peak = 1.6e-3 * (4 * 3 * 2) / 512  # global batch 24 against the reference 512
    assert schedule == WarmupCosine(
        peak_lr=pytest.approx(peak),
        total_steps=80,
        warmup_steps=20,
        start_lr=pytest.approx(peak * 0.01),
        final_lr=pytest.approx(peak * 0.01),
    )
    assert schedule(0) == pytest.approx(peak * 0.01) and schedule(20) == pytest.approx(peak)


def test_warmup_cosine_against_hand_values():
    s = WarmupCosine(peak_lr=1.0, total_steps=12, warmup_steps=4, start_lr=0.2, final_lr=0.1)
    # warmup: 0.2 + 0.8 * i / 4
    assert [s(i) for i in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    # cosine over the 8 remaining steps: 0.1 + 0.9 * (1 + cos(pi * j / 8)) / 2
    assert s(4) == pytest.approx(1.0)
    assert s(6) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))  # 0.86820...
    assert s(8) == pytest.approx(0.55)  # half way: the mean of peak and final
    assert s(11) == pytest.approx(0.1 + 0.45 * (1 + math.cos(7 * math.pi / 8)))
    assert s(12) == pytest.approx(0.1)
    assert all(s(i) >= s(i + 1) for i in range(4, 12))
    assert WarmupCosine(peak_lr=2.0, total_steps=5)(0) == 2.0  # no warmup: starts at the peak
    with pytest.raises(ValueError):
        WarmupCosine(peak_lr=1.0, total_steps=4, warmup_steps=4)


def test_weight_decay_groups_follow_no_weight_decay():
    model = build_model("mvit_tiny")
    groups = {g["name"]: g for g in param_groups(model, 0.05)}
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = {names[id(p)] for p in groups["no_decay"]["params"]}
    decay = {names[id(p)] for p in groups["decay"]["params"]}
    assert no_decay == model.no_weight_decay() and decay | no_decay == set(names.values())
    assert {"cls_token", "head.bias", "norm.weight", "patch_embed.bias"} <= no_decay
    assert any(n.startswith("pos_embed.") for n in no_decay)
    assert {"head.weight", "patch_embed.weight", "blocks.0.attn.qkv.weight"} <= decay
    assert (groups["decay"]["weight_decay"], groups["no_decay"]["weight_decay"]) == (0.05, 0.0)


def test_adamw_decays_only_the_decay_group():
    """With zero gradients AdamW's update is pure decoupled decay: w <- w * (1 - lr * wd)."""
    model = build_model("mvit_tiny_img", embed_dim=8, stage_depths=(1,))
    cfg = load_config(None, ["optim.weight_decay=0.5"])
    opt = build_optimizer(model, cfg.optim, lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        factor = 1.0 if n in model.no_weight_decay() else 1 - 0.1 * 0.5
        torch.testing.assert_close(p.detach(), before[n] * factor)


# ------------------------------------------------------------------------------------------------ loss


def test_soft_target_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.25, 0.25]])
    z = math.log(math.exp(2) + 2)  # log-sum-exp of the first row
    expected = ((z - 2.0) + math.log(3)) / 2  # row 2: uniform logits give log 3 whatever the targets
    assert soft_target_cross_entropy(logits, targets).item() == pytest.approx(expected)


def test_label_smoothing_by_hand():
    labels = torch.tensor([0])
    target = smooth_one_hot(labels, 3, 0.1)
    torch.testing.assert_close(target, torch.tensor([[0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]]))
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    log_p = [2 - math.log(math.exp(2) + 2), -math.log(math.exp(2) + 2), -math.log(math.exp(2) + 2)]
    expected = -sum(t * lp for t, lp in zip(target[0].tolist(), log_p))
    assert soft_target_cross_entropy(logits, target).item() == pytest.approx(expected)
    # smoothing raises the loss of a confident, correct prediction
    assert expected > soft_target_cross_entropy(logits, smooth_one_hot(labels, 3, 0.0)).item()


def test_mixup_loss_is_the_mix_of_the_two_losses():
    """Mixup's targets mix two smoothed one-hots with weight lam, so the loss is
    lam * CE(y_i) + (1 - lam) * CE(y_partner): checked with lam recovered from the targets."""
    torch.manual_seed(0)
    k, eps = 5, 0.1
    x, y = torch.randn(6, 3, 2, 8, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    _, soft = MixupCutmix(k, mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=eps)(x, y)
    partner = torch.roll(torch.arange(6), 1)
    one = smooth_one_hot(y, k, eps)
    logits = torch.randn(6, k)
    for i in range(6):
        if y[i] == y[partner[i]]:
            continue
        lam = (soft[i, y[i]] - eps / k) / (1 - eps)  # the weight on the sample's own label
        expected = lam * soft_target_cross_entropy(logits[i : i + 1], one[i : i + 1]) + (
            1 - lam
        ) * soft_target_cross_entropy(logits[i : i + 1], one[partner[i] : partner[i] + 1])
        torch.testing.assert_close(soft_target_cross_entropy(logits[i : i + 1], soft[i : i + 1]), expected)
    torch.testing.assert_close(soft.sum(1), torch.ones(6))


def test_loss_rejects_mismatched_classes():
    with pytest.raises(ValueError, match="num_classes"):
        soft_target_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))


# -------------------------------------------------------------------------------------------- metrics


class _Lookup(nn.Module):
    """A 'model' whose logits for a clip ``(C, T, H, W)`` are its C values at the first position."""

    config = None

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, :, 0, 0, 0]


def test_multi_view_averages_softmax_scores_by_hand():
    # video 0, two views: logits [4, 0, 0] and [0, 1, 1.5]. Softmax averaging picks class 0 (0.54) even
    # though the second view prefers class 2; averaging logits would pick class 0 too, but a vote is a tie.
    a, b = torch.tensor([4.0, 0, 0]), torch.tensor([0.0, 1.0, 1.5])
    pa, pb = a.softmax(0), b.softmax(0)
    expected = (pa + pb) / 2
    scores = multi_view_scores(torch.stack([a, b])[None])
    torch.testing.assert_close(scores[0], expected)
    assert expected[0].item() == pytest.approx((0.9640 + 0.1224) / 2, abs=1e-3)
    # video 1: [0, 3, 0] and [0, 0, 2.9]: logit mean [0, 1.5, 1.45] -> class 1; score mean also -> class 1
    views = torch.zeros(2, 2, 3, 1, 2, 2)  # (videos, views, C, T, H, W): the logits sit in C
    views[0, 0, :, 0, 0, 0], views[0, 1, :, 0, 0, 0] = a, b
    views[1, 0, :, 0, 0, 0] = torch.tensor([0.0, 3.0, 0.0])
    views[1, 1, :, 0, 0, 0] = torch.tensor([0.0, 0.0, 2.9])
    loader = DataLoader(TensorDataset(views, torch.tensor([0, 2])), batch_size=2)
    r = evaluate(_Lookup(), loader, num_classes=3, multi_view=True)
    assert r["top1"] == 50.0 and r["num_samples"] == 2  # video 1 (label 2) is predicted class 1
    assert r["confusion"] == [[1, 0, 0], [0, 0, 0], [0, 1, 0]]
    assert r["per_class_acc"][0] == 100.0 and r["per_class_acc"][2] == 0.0 and math.isnan(r["per_class_acc"][1])
    assert r["view_num_samples"] == 4 and r["view_top1"] == 50.0  # views: a->0 ok, b->2 no, ->1 no, ->2 ok
    p1 = (torch.tensor([0.0, 3.0, 0.0]).softmax(0) + torch.tensor([0.0, 0.0, 2.9]).softmax(0)) / 2
    assert r["loss"] == pytest.approx(-(math.log(expected[0]) + math.log(p1[2])) / 2, rel=1e-5)


def test_clip_level_top1_top5_and_confusion():
    descending = [6.0, 5, 4, 3, 2, 1, 0]
    logits = torch.tensor([[0.0, 1, 2, 3, 4, 5, 6], descending, descending])
    labels = torch.tensor([6, 1, 6])  # right; in the top 5 only (2nd); not even in the top 5 (7th)
    clips = logits[:, :, None, None, None]

    r = evaluate(_Lookup(), DataLoader(TensorDataset(clips, labels), batch_size=2), num_classes=7)
    assert r["top1"] == pytest.approx(100 / 3) and r["top5"] == pytest.approx(200 / 3)
    expected = [[0] * 7 for _ in range(7)]
    expected[6][6], expected[1][0], expected[6][0] = 1, 1, 1  # [true][predicted]
    assert r["confusion"] == expected
    assert r["per_class_acc"][6] == 50.0 and r["per_class_acc"][1] == 0.0


# ---------------------------------------------------------------------------------- checkpoints, RNG


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1  # the old checkpoint survives a failed write


def test_rng_state_round_trip_through_a_checkpoint_file(tmp_path):
    save_checkpoint({"rng": rng_state()}, tmp_path / "c.pt")
    draws = (random.random(), np.random.rand(), np.random.randn(), torch.rand(()).item())
    set_rng_state(load_checkpoint(tmp_path / "c.pt")["rng"])  # read back with weights_only=True
    assert (random.random(), np.random.rand(), np.random.randn(), torch.rand(()).item()) == draws


def test_epoch_order_resumes_mid_epoch_with_the_same_samples_and_seeds():
    data = TensorDataset(torch.arange(10))
    order = EpochOrder(RepeatAugSampler(data, num_repeats=2, num_replicas=2, rank=1, seed=3), seed=3, rank=1)
    order.set_epoch(4)
    full = list(order)
    order.set_epoch(4, start=6)
    assert list(order) == full[6:] and len(order) == len(full) - 6
    order.set_epoch(5)
    assert [i for i, _ in order] != [i for i, _ in full]  # a new epoch, a new order
    assert len({s for _, s in full}) == len(full)  # every position its own augmentation seed


def test_seeded_samples_do_not_depend_on_or_disturb_the_callers_rng():
    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(2) + np.random.rand() + random.random()

    data = SeededSamples(Noisy())
    torch.manual_seed(0)
    a = data[(1, 7)]
    after = torch.rand(())
    torch.manual_seed(123)
    np.random.seed(5)
    b = data[(1, 7)]
    torch.manual_seed(0)
    data[(2, 9)]
    assert torch.equal(a, b) and not torch.equal(a, data[(1, 8)])
    assert torch.equal(torch.rand(()), after)  # the global stream went on as if nothing was drawn


def test_shard_sampler_splits_without_padding():
    shards = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(7)) and [len(s) for s in shards] == [3, 2, 2]
