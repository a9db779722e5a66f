"""The synthetic detection set: boxes on the keyframe match the drawn objects, actions are the motion,
items are deterministic and batch with collate_detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mvit.data.synthetic_detection import DIRECTIONS, SyntheticDetectionDataset, render_detection_clip
from mvit.detection import box_iou, collate_detection


@pytest.mark.parametrize("seed", range(5))
def test_boxes_cover_the_objects_on_the_keyframe_and_actions_are_the_motion(seed):
    rng = np.random.default_rng(seed)
    frames, boxes, actions = render_detection_clip(8, 64, rng)
    assert frames.shape == (8, 64, 64, 3) and frames.dtype == np.uint8
    assert 2 <= len(boxes) <= 3 and len(set(actions.tolist())) == len(actions)  # distinct directions
    assert ((boxes >= 0) & (boxes <= 1)).all() and (box_iou(boxes, boxes) - np.eye(len(boxes))).max() == 0
    key, before, after = frames[4].astype(float), frames[2].astype(float), frames[6].astype(float)
    for box, action in zip(boxes, actions):
        x1, y1, x2, y2 = np.round(box * 64).astype(int)
        inside = key[y1:y2, x1:x2]
        # the object (its centre pixel differs from the clip's median colour) sits in its box
        centre = key[(y1 + y2) // 2, (x1 + x2) // 2]
        assert np.abs(centre - np.median(key.reshape(-1, 3), axis=0)).max() > 40
        assert inside.shape[0] > 5

        # it moves along its direction: its colour's centroid shifts that way between frames 2 and 6
        def centroid(frame):
            near = np.abs(frame - centre).max(axis=-1) < 20
            ys, xs = np.nonzero(near[max(y1 - 12, 0) : y2 + 12, max(x1 - 12, 0) : x2 + 12])
            return np.array([xs.mean(), ys.mean()])

        shift = centroid(after) - centroid(before)
        assert shift @ DIRECTIONS[action] > 3  # pixels


def test_items_are_deterministic_and_batch():
    train = SyntheticDetectionDataset("train", num_samples=4, num_frames=8, size=64, seed=3)
    val = SyntheticDetectionDataset("val", num_samples=4, num_frames=8, size=64, seed=3)
    clip, target = train[1]
    again, target_again = train[1]
    torch.testing.assert_close(clip, again)
    torch.testing.assert_close(target["boxes"], target_again["boxes"])
    assert clip.shape == (3, 8, 64, 64)
    assert torch.equal(target["boxes"], target["gt_boxes"])  # training: the ground truth itself
    assert (target["labels"].sum(1) == 1).all() and target["labels"].shape[1] == 4
    _, v = val[1]
    assert not torch.equal(v["boxes"], v["gt_boxes"])  # evaluation: jittered proposals
    assert (torch.from_numpy(box_iou(v["boxes"], v["gt_boxes"])).diagonal() > 0.5).all()
    assert not torch.equal(train[0][0], val[0][0])
    clips, batch = collate_detection([train[0], train[1], train[2]])
    assert clips.shape == (3, 3, 8, 64, 64)
    assert len(batch["boxes"]) == 3 and batch["labels"].shape == (sum(len(b) for b in batch["boxes"]), 4)
    assert batch["keys"] == [("train", 0), ("train", 1), ("train", 2)]
    with pytest.raises(ValueError, match="split"):
        SyntheticDetectionDataset("dev")
    with pytest.raises(IndexError):
        train[4]
