"""Every shipped recipe builds its model and takes optimizer steps on the CPU (tiny random data, input
shrunk where the model is big), and its data settings are accepted by its dataset class."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from ava_fakes import make_release as make_ava_release
from ava_fakes import script_args as ava_script_args
from charades_fakes import make_release
from torch.utils.data import TensorDataset
from torchvision.io import write_png

from mvit.configs import get_config
from mvit.data import RepeatAugSampler, synthetic
from mvit.engine import list_recipes, load_config, train
from mvit.engine.inputs import build_datasets

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_scripts"))  # the scripts import `_common`
SMALL_INPUT = {
    "video": [4, 64, 64],
    "charades": [4, 64, 64],
    "ava": [4, 64, 64],
    "imagefolder": [1, 64, 64],
}  # paper-scale, shrunk


def _cpu_step_overrides(name: str, tmp_path) -> list[str]:
    cfg = load_config(name)
    shrink = SMALL_INPUT.get(cfg.data.dataset)
    return ([f"model.config.input_size={shrink}"] if shrink else []) + [
        "data.batch_size=1",
        "data.num_workers=0",
        "optim.epochs=1",
        "optim.warmup_epochs=0",
        "run.device=cpu",
        "run.eval_every_epochs=0",
        "run.multi_view_eval=false",
        "run.progress=false",
        "run.log_every_steps=1",
        f"run.output_dir={tmp_path}",
    ]


def _one_sample(cfg, model_cfg):
    """One random training sample of the recipe's task and input size."""
    t, h, w = model_cfg.input_size
    k = model_cfg.num_classes
    if cfg.model.task == "detection":  # a clip with boxes and per-box labels, batched by the dataset's collate_fn
        from mvit.data.synthetic_detection import SyntheticDetectionDataset

        class OneClip(SyntheticDetectionDataset):
            num_classes = k

            def __getitem__(self, index):
                clip, target = super().__getitem__(index)
                labels = torch.zeros(len(target["boxes"]), k)
                labels[:, -1] = 1.0
                return clip, {**target, "labels": labels, "gt_labels": labels}

        return OneClip("train", num_samples=1, num_frames=t, size=h)
    shape = (3, h, w) if t == 1 else (3, t, h, w)
    labels = torch.eye(k)[[k - 1]] if cfg.model.task == "multilabel" else torch.tensor([k - 1])  # multi-hot or index
    return TensorDataset(torch.randn(1, *shape), labels)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_recipes())
def test_recipe_takes_optimizer_steps_on_the_cpu(name, tmp_path):
    torch.set_num_threads(1)
    cfg = load_config(name, _cpu_step_overrides(name, tmp_path))
    model_cfg = get_config(cfg.model.name, **cfg.model.config)
    steps = train(cfg, _one_sample(cfg, model_cfg))["steps"]
    assert len(steps) == cfg.augment.repeat_aug and all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)
    assert steps[0]["lr"] == pytest.approx(cfg.optim.lr / cfg.optim.lr_reference_batch)  # batch 1, no warmup


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory):
    """A 2-video dataset folder (train.csv, val.csv), a 2-class image folder tree and a Charades folder written
    by data_scripts/charades.py from a fake release."""
    root = tmp_path_factory.mktemp("data")
    release = make_release(root / "charades_release")
    args = ["--videos", str(release["videos"]), "--annotations", str(release["annotations"])]
    assert importlib.import_module("charades").main([*args, "--out", str(root / "charades")]) == 0
    ava = make_ava_release(root / "ava_release")
    assert importlib.import_module("ava").main(ava_script_args(ava, root / "ava")) == 0
    synthetic.generate(root / "videos", num_train=2, num_val=2, num_frames=16, size=32, seed=0)
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / "images" / split / c).mkdir(parents=True)
            write_png(torch.randint(0, 255, (3, 40, 48), dtype=torch.uint8), str(root / "images" / split / c / "0.png"))
    return {
        "video": root / "videos",
        "imagefolder": root / "images",
        "charades": root / "charades",
        "ava": root / "ava",
    }


@pytest.mark.parametrize("name", list_recipes())
def test_recipe_data_settings_build_its_datasets(name, data_roots):
    cfg = load_config(name)
    overrides = [f"data.root={data_roots[cfg.data.dataset]}"] if cfg.data.dataset in data_roots else []
    if cfg.data.dataset == "imagefolder":
        overrides.append("model.config.num_classes=2")
    if cfg.data.dataset == "ava":
        overrides.append("model.config.num_classes=3")  # the fake release's label map
    shrink = SMALL_INPUT.get(cfg.data.dataset)
    cfg = load_config(name, overrides + ([f"model.config.input_size={shrink}"] if shrink else []))
    model_cfg = get_config(cfg.model.name, **cfg.model.config)
    train_set, val_set, test_set = build_datasets(cfg, model_cfg)
    t, h, w = model_cfg.input_size
    clip, label = train_set[0]
    assert tuple(clip.shape) == ((3, h, w) if t == 1 else (3, t, h, w))
    if cfg.model.task == "detection":  # per-box multi-hot labels
        assert label["labels"].shape == (len(label["boxes"]), model_cfg.num_classes)
    elif cfg.model.task == "multilabel":  # a multi-hot row
        assert tuple(label.shape) == (model_cfg.num_classes,)
    else:
        assert 0 <= label < model_cfg.num_classes
    assert val_set[0][0].shape == clip.shape
    if test_set is not None:
        views, _ = test_set[0]
        assert tuple(views.shape) == (cfg.data.num_clips * cfg.data.num_crops, *clip.shape)


def test_imagenet_recipe_computes_deit_300_passes_with_deit_warmup():
    """App. D.5: 100 epochs x 3 repeated-augmentation copies, "overall computation equals 300 epochs"; DeiT
    warms up for 5 of its 300 passes. Passes are counted through the sampler the engine draws an epoch from."""
    cfg = load_config("imagenet_mvit_b_16")
    images, ranks = 1_000, 8
    draws_per_epoch = sum(
        len(RepeatAugSampler(range(images), cfg.augment.repeat_aug, ranks, rank)) for rank in range(ranks)
    )
    passes_per_epoch = draws_per_epoch / images
    assert cfg.optim.epochs * passes_per_epoch == pytest.approx(300)
    assert cfg.optim.warmup_epochs * passes_per_epoch == pytest.approx(5)
