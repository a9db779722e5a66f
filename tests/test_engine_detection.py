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


def test_meter_scores_only_the_evaluated_classes_and_they_alone_compete_for_the_top_50():
    """One keyframe, 26 boxes x 2 classes = 52 labelled detections; the one true box of class 1 has the lowest
    class-1 score. With class 2 evaluated, its 26 high scores push that box out of the 50 kept (AP 0); with
    class 2 not evaluated (as AVA drops its 20 unevaluated actions first), all 26 class-1 rows stay and the
    true positive comes last (AP 1/26)."""
    from mvit.engine.tasks import DetectionMeter

    boxes = torch.tensor([[0.03 * i, 0.0, 0.03 * i + 0.02, 0.1] for i in range(26)])
    probabilities = torch.cat([torch.full((26, 1), 0.5), torch.full((26, 1), 0.9)], dim=1)
    probabilities[0, 0] = 0.1
    gt_labels = torch.tensor([[1.0, 1.0]])
    target = {"keys": [0], "boxes": [boxes], "labels": torch.zeros(26, 2), "gt_boxes": [boxes[:1]]}
    both = DetectionMeter(2)
    both.add(probabilities, {**target, "gt_labels": [gt_labels]})
    assert both.summary()["per_class_ap"][0] == pytest.approx(0.0)
    first = DetectionMeter(2)
    first.add(probabilities, {**target, "gt_labels": [gt_labels], "evaluated": torch.tensor([True, False])})
    summary = first.summary()
    assert summary["per_class_ap"][0] == pytest.approx(100 / 26) and summary["classes_scored"] == 1
    assert summary["frame_mAP"] == pytest.approx(100 / 26)
