"""Spatial transforms: shapes, normalisation, the same random parameters for every frame, flips that
can be switched off, and the test-time crops."""

import numpy as np
import pytest
import torch

from mvit.data import KINETICS_MEAN, KINETICS_STD, Augmentation, EvalTransform, ImageTransform, TrainTransform


def still_clip(t=4, h=48, w=64, seed=0):
    """A clip whose frames are all the same random picture: uint8 (T, H, W, 3)."""
    frame = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return np.repeat(frame[None], t, axis=0)


def test_train_transform_shape_and_identical_frames():
    torch.manual_seed(0)
    transform = TrainTransform(32, Augmentation(randaug_prob=1.0, erase_prob=0.0))
    for _ in range(10):  # every frame gets the same crop, flip and RandAugment operations
        views = transform(still_clip())
        assert views.shape == (1, 3, 4, 32, 32) and views.dtype == torch.float32  # one view, the eval rank
        clip = views[0]
        for t in range(1, 4):
            torch.testing.assert_close(clip[:, t], clip[:, 0])


def test_random_erasing_erases_the_same_box_in_every_frame():
    torch.manual_seed(0)
    transform = TrainTransform(32, Augmentation(randaug_layers=0, erase_prob=1.0))
    clip = transform(still_clip())[0]
    reference = TrainTransform(32, Augmentation(randaug_layers=0, erase_prob=0.0))
    torch.manual_seed(0)
    plain = reference(still_clip())[0]
    erased = (clip != plain).any(dim=0)  # (T, H, W)
    assert erased.any() and (erased == erased[0]).all()


def test_normalisation_uses_the_kinetics_statistics():
    grey = np.full((2, 40, 40, 3), round(0.45 * 255), dtype=np.uint8)
    views = EvalTransform(32)(grey)
    assert views.shape == (1, 3, 2, 32, 32)
    assert views.abs().max() < 0.01  # (0.45 - 0.45) / 0.225
    white = EvalTransform(32)(np.full((2, 40, 40, 3), 255, dtype=np.uint8))
    torch.testing.assert_close(white, torch.full_like(white, (1 - KINETICS_MEAN[0]) / KINETICS_STD[0]))


def test_flip_can_be_switched_off():
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, None, :, None] * 4, (2, 64, 1, 3))  # brighter to the right
    no_crop = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), randaug_layers=0, erase_prob=0.0)
    torch.manual_seed(0)
    flipping = [TrainTransform(64, Augmentation(flip=True, **no_crop))(ramp)[0] for _ in range(20)]
    fixed = [TrainTransform(64, Augmentation(flip=False, **no_crop))(ramp)[0] for _ in range(20)]
    rising = [bool(c[0, 0, 0, -1] > c[0, 0, 0, 0]) for c in flipping]
    assert 0 < sum(rising) < 20  # some flipped, some not
    assert all(c[0, 0, 0, -1] > c[0, 0, 0, 0] for c in fixed)


def test_random_resized_crop_changes_scale():
    torch.manual_seed(0)
    clip = still_clip(2, 64, 64)
    outputs = [TrainTransform(32, Augmentation(randaug_layers=0, erase_prob=0.0, flip=False))(clip) for _ in range(5)]
    assert len({round(float(o.std()), 4) for o in outputs}) > 1


def test_train_and_eval_transforms_return_views_of_the_same_rank():
    frames = still_clip(2, 48, 96)
    train = TrainTransform(32, Augmentation(randaug_layers=0, erase_prob=0.0))(frames)
    shapes = [train.shape] + [EvalTransform(32, num_crops=n)(frames).shape for n in (1, 3)]
    assert shapes == [(1, 3, 2, 32, 32), (1, 3, 2, 32, 32), (3, 3, 2, 32, 32)]


def test_three_crops_cover_the_long_side():
    frames = still_clip(2, 48, 96)
    transform = EvalTransform(32, num_crops=3)
    assert transform.short_side == 32
    views = transform(frames)
    assert views.shape == (3, 3, 2, 32, 32)
    assert transform.crop_boxes(32, 64) == [(0, 0), (0, 16), (0, 32)]
    assert transform.crop_boxes(64, 32) == [(0, 0), (16, 0), (32, 0)]
    assert EvalTransform(224).short_side == 256


def test_image_transform_gives_three_channel_images():
    frames = still_clip(1, 40, 40)
    assert ImageTransform(False, 32, None)(frames).shape == (3, 32, 32)
    assert ImageTransform(True, 32, Augmentation())(frames).shape == (3, 32, 32)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(crop_scale=(0.5, 0.2)), "crop_scale"),
        (dict(randaug_magnitude=12), "0..10"),
        (dict(erase_prob=1.5), "erase_prob"),
    ],
)
def test_bad_augmentation_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Augmentation(**kwargs)


def test_bad_frames_and_crops():
    with pytest.raises(ValueError, match=r"uint8 frames \(T, H, W, 3\)"):
        EvalTransform(32)(np.zeros((2, 3, 40, 40), dtype=np.uint8))
    with pytest.raises(ValueError, match="num_crops"):
        EvalTransform(32, num_crops=2)
