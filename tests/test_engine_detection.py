"""model.task=detection through the engine: the detector is built from the recipe, trains on the synthetic
detection set, logs and evaluates AVA's frame-mAP, and loads back from its checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from mvit.detection import MViTDetector
from mvit.engine import ConfigError, load_config, train
from mvit.engine.network import build_model_from_config
from mvit.engine.trainer import evaluate_checkpoint


def _small(tmp_path, *extra):
    return load_config(
        "cpu_synthetic_detection_mvit",
        [
            "data.train_size=16",
            "data.val_size=8",
            "data.batch_size=4",
            "optim.epochs=1",
            "optim.warmup_epochs=0",
            "run.log_every_steps=1",
            "run.progress=false",
            f"run.output_dir={tmp_path}",
            *extra,
        ],
    )


def test_detection_run_trains_logs_and_evaluates_frame_map(tmp_path):
    torch.set_num_threads(1)
    cfg = _small(tmp_path)
    assert isinstance(build_model_from_config(cfg.model), MViTDetector)
    history = train(cfg)
    assert len(history["steps"]) == 4 and all(torch.isfinite(torch.tensor(s["loss"])) for s in history["steps"])
    last = history["epochs"][-1]
    assert 0 <= last["val_frame_mAP"] <= 100 and last["val_num_samples"] == 8 and last["val_classes_scored"] >= 1
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("val_frame_mAP" in r for r in records)
    results = evaluate_checkpoint(cfg, tmp_path / "checkpoint.pt")
    assert set(results) == {"val"} and results["val"]["metric"] == "frame_mAP"
    assert results["val"]["frame_mAP"] == pytest.approx(last["val_frame_mAP"])


def test_detection_refuses_mixup_and_views():
    with pytest.raises(ConfigError, match="Appendix D.2.*set all three to 0"):
        load_config("cpu_synthetic_detection_mvit", ["augment.mixup_alpha=0.8"])
    from mvit.engine.tasks import get_task

    with pytest.raises(ConfigError, match="one clip per keyframe"):
        get_task("detection").combine_views(torch.zeros(1, 2, 3))
