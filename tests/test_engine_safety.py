"""Issue 9, the engine's part: bad settings are refused before any work, a checkpoint never holds
diverged weights, one run per output folder, the history of settings and of metrics survives resumes,
and unreadable files, a full disk or an unusable folder give one clear error."""

from __future__ import annotations

import pytest

from mvit.engine import ConfigError, load_config


# ------------------------------------------------------------------------------------- value ranges

@pytest.mark.parametrize("override, key, valid", [
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
])
def test_values_out_of_range_are_refused_naming_the_key_and_the_range(override, key, valid):
    with pytest.raises(ConfigError) as err:
        load_config("cpu_synthetic_mvit", [override])
    assert key in str(err.value) and valid in str(err.value), str(err.value)


def test_values_at_the_edges_of_their_ranges_are_accepted():
    cfg = load_config("cpu_synthetic_mvit", [
        "optim.clip_grad_norm=null", "optim.weight_decay=0", "optim.final_lr_ratio=1", "optim.warmup_start_ratio=0",
        "run.seed=0", "data.train_size=1", "optim.betas=[0,0.5]", "optim.momentum=0", "augment.mixup_alpha=0",
        "augment.switch_prob=1", "model.config.input_size=[2,4,4]"])
    assert cfg.optim.clip_grad_norm is None and cfg.model.config["input_size"] == (2, 4, 4)


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "recipe.yaml"
    bad.write_text("optim:\n  lr: 0.1\n   epochs: 3\n")
    with pytest.raises(ConfigError, match=r"recipe\.yaml, line 3, column \d+, is not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"optim\.betas=\[0\.9.*not valid YAML"):
        load_config("cpu_synthetic_mvit", ["optim.betas=[0.9"])
