"""Data problems as evaluation and the engine see them: an unreadable file is excluded and reported,
never replaced and counted; folder-per-class splits must agree; bad annotations are configuration errors."""

import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

import mvit.data as data
from mvit.data import synthetic
from mvit.engine import ConfigError, evaluate
from mvit.engine.config import load_config
from mvit.engine.inputs import build_datasets


class _Oracle(nn.Module):
    """Predicts class 0 for every clip: what is checked is which clips are counted."""

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes, self.dummy = num_classes, nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return torch.zeros(x.shape[0], self.num_classes) + self.dummy


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(out, num_train=0, num_val=10, num_frames=8, size=32, seed=0)
    (out / "bad.mp4").write_bytes((out / "val" / "000000.mp4").read_bytes()[:300])  # truncated
    lines = (out / "val.csv").read_text().splitlines()
    (out / "with_bad.csv").write_text("\n".join(lines[:5] + ["bad.mp4 3", "missing.mp4 4"] + lines[5:]) + "\n")
    return out


@pytest.mark.parametrize("mode, workers", [("val", 0), ("test", 2)])
def test_evaluation_excludes_and_lists_unreadable_files(root, mode, workers):
    dataset = data.VideoDataset(root / "with_bad.csv", root, mode, 4, 2, 32, num_clips=2)
    loader = DataLoader(dataset, batch_size=3, num_workers=workers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = evaluate(_Oracle(10), loader, num_classes=10, multi_view=mode == "test")
    assert result["num_samples"] == 10 and sum(map(sum, result["confusion"])) == 10  # no substitute counted
    assert result["unreadable_files"] == 2
    assert sorted(f["path"] for f in result["unreadable"]) == [str(root / "bad.mp4"), str(root / "missing.mp4")]
    assert all(f["reason"] for f in result["unreadable"])
    if mode == "test":
        assert result["view_num_samples"] == 20
    with warnings.catch_warnings():  # a second evaluation reports the same files, not twice as many
        warnings.simplefilter("ignore", RuntimeWarning)
        assert evaluate(_Oracle(10), loader, num_classes=10, multi_view=mode == "test")["unreadable_files"] == 2


def test_evaluation_of_only_unreadable_files_is_an_error(root, tmp_path):
    (tmp_path / "bad.csv").write_text("bad.mp4 0\nmissing.mp4 1\n")
    dataset = data.VideoDataset(tmp_path / "bad.csv", root, "val", 4, 2, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=r"no readable sample: all 2 were unreadable\n  .*bad\.mp4"):
            evaluate(_Oracle(10), DataLoader(dataset, batch_size=2), num_classes=10)


def _image_tree(root, splits):
    rng = np.random.default_rng(0)
    for split, classes in splits.items():
        for name in classes:
            (root / split / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / split / name / "a.png")


def _config(root, dataset="imagefolder"):
    return load_config(
        None,
        [
            f"data.dataset={dataset}",
            f"data.root={root}",
            "model.name=mvit_tiny",
            "model.config.num_classes=2",
            "model.config.input_size=[2,16,16]",
        ],
    )


def test_imagefolder_ignores_jupyter_checkpoints_and_refuses_a_class_mismatch(tmp_path):
    _image_tree(tmp_path, {"train": ["cat", "dog"], "val": [".ipynb_checkpoints", "__MACOSX", "cat", "dog"]})
    (tmp_path / "train" / "empty").mkdir()
    cfg = _config(tmp_path)
    train, val, _ = build_datasets(cfg, SimpleNamespace(input_size=(1, 16, 16), num_classes=2))
    assert train.classes == val.classes == ["cat", "dog"] and [label for _, label in val.samples] == [0, 1]
    _image_tree(tmp_path, {"val": ["cow"]})
    with pytest.raises(ConfigError, match=r"only in .*val: \['cow'\], missing from .*val: \[\]"):
        build_datasets(cfg, SimpleNamespace(input_size=(1, 16, 16), num_classes=2))


def test_bad_annotation_line_is_a_config_error_naming_file_and_line(root, tmp_path):
    shutil.copy(root / "val.csv", tmp_path / "train.csv")
    (tmp_path / "val.csv").write_text("val/000000.mp4 0\nval/000001.mp4 one\n")
    cfg = _config(tmp_path, "video")
    model_cfg = SimpleNamespace(input_size=(4, 32, 32), num_classes=10)
    with pytest.raises(ConfigError, match=r"val\.csv:2: the label 'one' is not an integer"):
        build_datasets(cfg, model_cfg)
    (tmp_path / "val.csv").write_text("val/000000.mp4 0\nval/000001.mp4 12\n")
    with pytest.raises(ConfigError, match=r"val\.csv:2: label 12 is out of range \[0, 9\]"):
        build_datasets(cfg, model_cfg)
