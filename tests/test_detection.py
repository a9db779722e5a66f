"""The action-detection head (App. D.2) and AVA's frame-level mAP: shapes, gradients, boxes at and
outside the frame, and the metric against hand-computed cases and an independent brute-force computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision.ops import roi_align

from mvit.detection import (
    RoIFeatures,
    box_iou,
    build_detector,
    collate_detection,
    detection_loss,
    evaluate_detector,
    frame_map,
    labelled_detections,
    match_detections,
    voc_average_precision,
)


@pytest.fixture(scope="module")
def detector():
    torch.manual_seed(0)
    return build_detector("mvit_tiny", num_classes=5, dropout=0.0, drop_path=0.0)


def test_feature_map_is_the_token_grid(detector):
    x = torch.randn(2, 3, 8, 64, 64)
    features = detector.feature_map(x)
    assert features.shape == (2, 128, 4, 4, 4)  # mvit_tiny: stride 2 x 16 x 16 at the last stage
    tokens, _ = detector.forward_features(x)
    # token (t, h, w) of the flattened sequence (time outer) sits at features[:, :, t, h, w]
    torch.testing.assert_close(features[:, :, 1, 2, 3], tokens[:, 1 + (1 * 16 + 2 * 4 + 3)])


def test_detector_shapes_and_gradients_reach_the_backbone(detector):
    x = torch.randn(2, 3, 8, 64, 64)
    boxes = [torch.tensor([[0.1, 0.1, 0.5, 0.6], [0.4, 0.2, 0.9, 1.0]]), torch.tensor([[0.0, 0.0, 1.0, 1.0]])]
    detector.zero_grad()
    logits = detector(x, boxes)
    assert logits.shape == (3, 5)
    detection_loss(logits, torch.zeros(3, 5)).backward()
    assert detector.patch_embed.weight.grad.abs().sum() > 0
    assert detector.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in detector.parameters()), "a weight the detector does not use"


def test_detector_state_dict_is_mvits():
    """The same keys and shapes as the classification model: Kinetics weights load as they are."""
    from mvit import build_model
    from mvit.convert import load_pretrained

    detector = build_detector("mvit_tiny", num_classes=5)
    classifier = build_model("mvit_tiny", num_classes=400)
    assert detector.state_dict().keys() == classifier.state_dict().keys()
    assert load_pretrained(detector, classifier.state_dict(), new_head=True) == ["head.weight", "head.bias"]
    torch.testing.assert_close(detector.blocks[1].attn.qkv.weight, classifier.blocks[1].attn.qkv.weight)


def test_rows_follow_the_boxes_of_their_clip(detector):
    """A box's logits depend only on its own clip, and an empty box list gives no rows."""
    detector.eval()
    x = torch.randn(2, 3, 8, 64, 64)
    box = torch.tensor([[0.2, 0.2, 0.7, 0.8]])
    both = detector(x, [box, box])
    torch.testing.assert_close(both[1:], detector(x[1:], [box]))
    assert not torch.allclose(both[0], both[1])
    empty = detector(x, [torch.zeros(0, 4), torch.zeros(0, 4)])
    assert empty.shape == (0, 5)
    detector.zero_grad()
    detection_loss(empty, torch.zeros(0, 5)).backward()  # a batch without boxes trains nothing, no error


def test_head_is_roi_align_per_frame_then_means_and_max():
    """The head against a direct computation: RoIAlign of each frame, average over time, max over the
    r x r cell; equal to PySlowFast's order (average over time first, one RoIAlign)."""
    head = RoIFeatures(resolution=3)
    features = torch.randn(2, 6, 4, 5, 7, dtype=torch.float64)
    boxes = [torch.tensor([[0.1, 0.2, 0.6, 0.9]], dtype=torch.float64), torch.tensor([[0.5, 0.0, 1.0, 0.5]]).double()]
    got = head(features, boxes)
    expected, swapped = [], []
    for b, box in enumerate(boxes):
        cells = box * torch.tensor([7, 5, 7, 5])
        per_frame = [
            roi_align(features[b : b + 1, :, t], [cells], 3, 1.0, 0, aligned=True) for t in range(features.shape[2])
        ]
        expected.append(torch.stack(per_frame).mean(0).amax(dim=(-2, -1)))
        swapped.append(roi_align(features[b : b + 1].mean(2), [cells], 3, 1.0, 0, aligned=True).amax(dim=(-2, -1)))
    torch.testing.assert_close(got, torch.cat(expected))
    torch.testing.assert_close(got, torch.cat(swapped))


def test_box_partly_outside_is_clipped_and_entirely_outside_is_an_error():
    head = RoIFeatures(resolution=2)
    features = torch.randn(1, 4, 2, 4, 4)
    overhang = head(features, [torch.tensor([[-0.2, 0.5, 0.5, 1.3]])])
    torch.testing.assert_close(overhang, head(features, [torch.tensor([[0.0, 0.5, 0.5, 1.0]])]))
    with pytest.raises(ValueError, match="entirely outside the frame"):
        head(features, [torch.tensor([[1.1, 0.2, 1.5, 0.4]])])
    with pytest.raises(ValueError, match="x2 < x1"):
        head(features, [torch.tensor([[0.6, 0.2, 0.4, 0.4]])])
    with pytest.raises(ValueError, match="finite"):
        head(features, [torch.tensor([[0.1, float("nan"), 0.4, 0.4]])])
    with pytest.raises(ValueError, match="one \\(K_b, 4\\) per clip"):
        head(features, [torch.zeros(0, 4), torch.zeros(0, 4)])


def test_box_iou_by_hand():
    a = np.array([[0.0, 0.0, 0.5, 0.5]])
    b = np.array([[0.25, 0.25, 0.75, 0.75], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]])
    np.testing.assert_allclose(box_iou(a, b), [[0.0625 / 0.4375, 0.0, 1.0]])


# --------------------------------------------------------------------------------------------------
# The metric


def test_voc_ap_by_hand():
    # ranking TP, FP, TP against 3 ground-truth boxes: precision 1, 1/2, 2/3 at recall 1/3, 1/3, 2/3;
    # monotone: 1 up to recall 1/3, 2/3 up to 2/3, then 0: AP = 1/3 + 1/3 * 2/3 = 5/9
    assert voc_average_precision(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 3) == pytest.approx(5 / 9)
    # the order comes from the scores, not from the given order
    assert voc_average_precision(np.array([0.7, 0.9, 0.8]), np.array([True, True, False]), 3) == pytest.approx(5 / 9)
    assert voc_average_precision(np.zeros(0), np.zeros(0, dtype=bool), 2) == 0.0
    assert math.isnan(voc_average_precision(np.array([0.5]), np.array([False]), 0))
    # a later true positive lifts the precision of earlier recall levels: FP, TP, TP against 2 -> 2/3
    assert voc_average_precision(np.array([3.0, 2.0, 1.0]), np.array([False, True, True]), 2) == pytest.approx(2 / 3)


def test_matching_by_hand():
    gt = np.array([[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 1.0, 1.0]])
    dets = np.array(
        [
            [0.0, 0.0, 0.4, 0.4],  # exact on gt 0
            [0.02, 0.0, 0.42, 0.4],  # also best on gt 0 (IoU 0.9), lower score: duplicate -> FP
            [0.6, 0.6, 1.0, 1.0],  # IoU 0.64 with gt 1 -> TP
            [0.0, 0.0, 0.2, 0.2],  # IoU 0.25 -> FP
        ]
    )
    scores = np.array([0.9, 0.8, 0.3, 0.95])
    assert match_detections(dets, scores, gt).tolist() == [True, False, True, False]
    # the same duplicate with the higher score takes gt 0 instead
    assert match_detections(dets, np.array([0.8, 0.9, 0.3, 0.95]), gt).tolist() == [False, True, True, False]


def test_frame_map_by_hand():
    """Two keyframes, classes 1 and 2 evaluated, class 3 not evaluated, class 4 evaluated without
    ground truth (NaN, left out of the mean)."""
    a, b, c = [0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]
    ground_truth = {
        ("v", 902): (np.array([a, a, b]), np.array([1, 2, 1])),
        ("v", 903): (np.array([c, c]), np.array([1, 3])),
    }
    detections = {
        ("v", 902): (np.array([a, b, a, b]), np.array([1, 1, 2, 2]), np.array([0.9, 0.4, 0.6, 0.7])),
        ("v", 903): (np.array([c, a, c]), np.array([1, 1, 3]), np.array([0.5, 0.8, 0.9])),
        ("w", 902): (np.array([a]), np.array([1]), np.array([0.99])),  # no ground truth: ignored
    }
    result = frame_map(ground_truth, detections, classes=[1, 2, 4])
    # class 1: ranked 0.9 TP, 0.8 FP (box a on keyframe 903), 0.5 TP, 0.4 TP; 3 gt
    #   precision 1, 1/2, 2/3, 3/4 at recall 1/3, 1/3, 2/3, 1 -> AP = 1/3 * 1 + 1/3 * 3/4 + 1/3 * 3/4 = 5/6
    # class 2: ranked 0.7 FP (box b), 0.6 TP; 1 gt -> AP = 1/2
    assert result.per_class[1] == pytest.approx(5 / 6)
    assert result.per_class[2] == pytest.approx(1 / 2)
    assert math.isnan(result.per_class[4]) and 3 not in result.per_class
    assert result.mean_ap == pytest.approx((5 / 6 + 1 / 2) / 2)


def test_max_per_keyframe_keeps_the_best_labelled_detections():
    a = [0.0, 0.0, 0.5, 0.5]
    ground_truth = {0: (np.array([a]), np.array([1]))}
    # the true positive has the lowest of three scores: with two kept it is dropped
    detections = {0: (np.array([a, a, a]), np.array([1, 2, 2]), np.array([0.1, 0.5, 0.6]))}
    assert frame_map(ground_truth, detections, [1, 2], max_per_keyframe=None).mean_ap == pytest.approx(1.0)
    assert frame_map(ground_truth, detections, [1, 2], max_per_keyframe=2).mean_ap == pytest.approx(0.0)


def _brute_force_frame_map(ground_truth, detections, classes, threshold=0.5):
    """An independent computation: matching by trying the detections one at a time in score order with
    explicit IoU loops, AP as the sum over true positives of the best precision at any rank at or after
    it, divided by the number of ground-truth boxes (the same area, counted per recall step)."""

    def iou(p, q):
        w = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        h = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - w * h
        return w * h / union if union > 0 else 0.0

    aps = {}
    for cls in classes:
        ranked, num_gt = [], 0
        for key, (gt_boxes, gt_ids) in ground_truth.items():
            mine = [list(g) for g, i in zip(gt_boxes, gt_ids) if i == cls]
            num_gt += len(mine)
            if key not in detections:
                continue
            boxes, ids, scores = detections[key]
            dets = sorted(
                [(s, list(bx), n) for n, (bx, i, s) in enumerate(zip(boxes, ids, scores)) if i == cls],
                key=lambda d: -d[0],
            )
            used = set()
            for score, bx, _ in dets:
                overlaps = [iou(bx, g) for g in mine]
                best = max(range(len(mine)), key=lambda j: overlaps[j]) if mine else None
                hit = best is not None and overlaps[best] >= threshold and best not in used
                if hit:
                    used.add(best)
                ranked.append((score, hit))
        if num_gt == 0:
            continue
        ranked.sort(key=lambda r: -r[0])
        precisions = [sum(h for _, h in ranked[: n + 1]) / (n + 1) for n in range(len(ranked))]
        aps[cls] = sum(max(precisions[n:]) for n, (_, hit) in enumerate(ranked) if hit) / num_gt
    return aps


@pytest.mark.parametrize("seed", range(6))
def test_frame_map_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    classes = [1, 2, 3]

    def random_boxes(n):
        xy = rng.uniform(0, 0.6, (n, 2))
        return np.concatenate([xy, xy + rng.uniform(0.2, 0.4, (n, 2))], axis=1)

    ground_truth, detections = {}, {}
    for key in range(8):
        m = int(rng.integers(0, 4))
        gt_boxes, gt_ids = random_boxes(m), rng.integers(1, 4, m)
        ground_truth[key] = (gt_boxes, gt_ids)
        # detections: jittered copies of ground truth (some good, some not) and random boxes
        jittered = gt_boxes + rng.normal(0, 0.06, gt_boxes.shape)
        boxes = np.concatenate([jittered, jittered, random_boxes(3)])
        ids = np.concatenate([gt_ids, rng.integers(1, 4, m), rng.integers(1, 4, 3)])
        detections[key] = (boxes, ids, rng.uniform(0, 1, len(boxes)))  # continuous: no ties
    got = frame_map(ground_truth, detections, classes, max_per_keyframe=None)
    expected = _brute_force_frame_map(ground_truth, detections, classes)
    assert expected, "the case has no ground truth"
    for cls in classes:
        if cls in expected:
            assert got.per_class[cls] == pytest.approx(expected[cls])
        else:
            assert math.isnan(got.per_class[cls])
    assert got.mean_ap == pytest.approx(np.mean(list(expected.values())))


def test_perfect_and_reversed_scores():
    boxes = np.array([[0.1 * i, 0.0, 0.1 * i + 0.1, 0.1] for i in range(4)])
    ground_truth = {0: (boxes[:2], np.array([1, 1]))}
    good = {0: (boxes, np.array([1] * 4), np.array([0.9, 0.8, 0.2, 0.1]))}
    bad = {0: (boxes, np.array([1] * 4), np.array([0.1, 0.2, 0.8, 0.9]))}
    assert frame_map(ground_truth, good, [1]).mean_ap == pytest.approx(1.0)
    # FP, FP, TP, TP: precisions 1/3 and 1/2 at recall 1/2 and 1 -> monotone: 1/2, 1/2 -> AP 1/2
    assert frame_map(ground_truth, bad, [1]).mean_ap == pytest.approx(0.5)


def test_labelled_detections_rows():
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    probabilities = torch.tensor([[0.1, 0.9], [0.7, 0.2]])
    b, ids, scores = labelled_detections(boxes, probabilities, [4, 7])
    assert ids.tolist() == [4, 7, 4, 7]
    np.testing.assert_allclose(scores, [0.1, 0.9, 0.7, 0.2], rtol=1e-6)
    np.testing.assert_allclose(b, boxes.double().numpy()[[0, 0, 1, 1]])


def test_evaluate_detector_on_a_loader(detector):
    """Through the loader path: ground truth taken from the targets, every box scored for every class."""
    torch.manual_seed(1)
    eye = torch.eye(5)
    samples = [
        (
            torch.randn(3, 8, 64, 64),
            {
                "key": ("v", k),
                "boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]),
                "labels": eye[[k % 5, (k + 1) % 5]],
                "gt_boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]),
                "gt_labels": eye[[k % 5, (k + 1) % 5]],
            },
        )
        for k in range(4)
    ]
    loader = [collate_detection(samples[:3]), collate_detection(samples[3:])]
    result = evaluate_detector(detector, loader, class_ids=[1, 2, 3, 4, 5])
    assert set(result.per_class) == {1, 2, 3, 4, 5}
    assert 0.0 <= result.mean_ap <= 1.0
    # the same numbers from the rows built by hand
    ground_truth, detections = {}, {}
    detector.eval()
    with torch.no_grad():
        for clips, target in loader:
            probabilities = torch.sigmoid(detector(clips, target["boxes"]))
            for key, boxes, labels in zip(target["keys"], target["gt_boxes"], target["gt_labels"]):
                rows, cols = np.nonzero(labels.numpy())
                ground_truth[key] = (boxes.numpy()[rows], cols + 1)
                detections[key] = labelled_detections(boxes, probabilities[:2], [1, 2, 3, 4, 5])
                probabilities = probabilities[2:]
    assert frame_map(ground_truth, detections, [1, 2, 3, 4, 5]).per_class == pytest.approx(result.per_class)
