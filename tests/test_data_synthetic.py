"""The synthetic temporal dataset: twins are time reversals (so shuffled frames cannot tell them
apart), appearance varies, everything is deterministic, and the mp4 writer is resumable."""

import json

import numpy as np
import pytest
import torch

import mvit
import mvit.data as data
from mvit.data import synthetic


@pytest.mark.parametrize("pair", range(len(synthetic.CLASSES) // 2))
def test_each_odd_class_is_its_twin_played_backwards(pair):
    forward = synthetic.render_clip(2 * pair, 8, 32, np.random.default_rng(7))
    backward = synthetic.render_clip(2 * pair + 1, 8, 32, np.random.default_rng(7))
    np.testing.assert_array_equal(backward, forward[::-1])
    assert not np.array_equal(forward, backward)  # the clip does change over time


def test_shuffled_frames_cannot_tell_twins_apart():
    """The multiset of frames of a clip and of its twin is the same: whatever a model computes from
    shuffled frames, it gives the same answer for both."""
    rng = np.random.default_rng
    for pair in range(len(synthetic.CLASSES) // 2):
        a = synthetic.render_clip(2 * pair, 8, 32, rng(3))
        b = synthetic.render_clip(2 * pair + 1, 8, 32, rng(3))
        key = lambda clip: sorted(frame.tobytes() for frame in clip)  # noqa: E731
        assert key(a) == key(b)


def test_appearance_varies_within_a_class():
    clips = [synthetic.render_clip(0, 8, 32, np.random.default_rng(seed)) for seed in range(6)]
    backgrounds = {tuple(clip[0, 0, 0] // 32) for clip in clips}
    assert len(backgrounds) >= 4
    assert all(clip.dtype == np.uint8 and clip.shape == (8, 32, 32, 3) for clip in clips)


def test_in_memory_dataset_is_balanced_deterministic_and_normalised():
    num_classes = len(synthetic.CLASSES)
    dataset = data.SyntheticVideoDataset("train", 2 * num_classes, num_frames=8, size=32, seed=0)
    labels = [dataset[i][1] for i in range(2 * num_classes)]
    assert np.bincount(labels).tolist() == [2] * num_classes
    clip, label = dataset[4]
    assert clip.shape == (3, 8, 32, 32) and clip.dtype == torch.float32 and label == 4
    torch.testing.assert_close(dataset[4][0], clip)
    other_seed = data.SyntheticVideoDataset("train", 20, num_frames=8, size=32, seed=1)
    other_split = data.SyntheticVideoDataset("val", 20, num_frames=8, size=32, seed=0)
    assert not torch.equal(other_seed[4][0], clip) and not torch.equal(other_split[4][0], clip)
    frames, _ = dataset.frames(4)
    expected = (torch.from_numpy(frames).float() / 255 - 0.45) / 0.225
    torch.testing.assert_close(clip, expected.permute(3, 0, 1, 2))


def test_generate_writes_a_video_dataset_and_resumes(tmp_path):
    paths = synthetic.generate(tmp_path, num_train=12, num_val=4, num_frames=8, size=32, seed=0)
    lines = paths["train"].read_text().splitlines()
    assert lines[:2] == ["train/000000.mp4 0", "train/000001.mp4 1"] and len(lines) == 12
    assert paths["classes"].read_text().splitlines() == list(synthetic.CLASSES)
    assert json.loads((tmp_path / "synthetic.json").read_text()) == {"num_frames": 8, "size": 32, "seed": 0}
    with data.open_video(tmp_path / "val" / "000003.mp4") as video:
        assert len(video) == 8 and video.get_frames([0]).shape == (1, 32, 32, 3)

    first = tmp_path / "train" / "000000.mp4"
    stamp = first.stat().st_mtime_ns
    (tmp_path / "train" / "000005.mp4").unlink()  # as if interrupted
    synthetic.generate(tmp_path, num_train=12, num_val=4, num_frames=8, size=32, seed=0)
    assert first.stat().st_mtime_ns == stamp and (tmp_path / "train" / "000005.mp4").exists()
    with pytest.raises(ValueError, match="made with .* use another folder"):
        synthetic.generate(tmp_path, num_train=12, num_val=4, num_frames=8, size=32, seed=1)


def test_bad_settings():
    with pytest.raises(ValueError, match="even"):
        synthetic.generate("/tmp/never", size=33)
    with pytest.raises(ValueError, match="split"):
        data.SyntheticVideoDataset("training")
    with pytest.raises(ValueError, match="num_frames >= 4"):
        synthetic.render_clip(0, 2, 32, np.random.default_rng(0))


def test_in_memory_dataset_works_with_worker_processes():
    dataset = data.SyntheticVideoDataset("val", 6, num_frames=4, size=16, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2)
    clips, labels = zip(*loader)
    torch.testing.assert_close(torch.cat(clips), torch.stack([dataset[i][0] for i in range(6)]))
    assert torch.cat(labels).tolist() == [0, 1, 2, 3, 4, 5]


def test_mixed_set_has_order_and_appearance_groups():
    names = synthetic.CLASS_SETS["mixed"]
    groups = synthetic.class_groups("mixed")
    assert len(names) == 10 and sorted(groups["order"] + groups["appearance"]) == list(range(10))
    assert [names[i] for i in groups["appearance"]] == list(synthetic.APPEARANCE_CLASSES)
    assert synthetic.class_groups("temporal") == {"order": list(range(10))}
    with pytest.raises(ValueError, match="classes must be one of"):
        synthetic.class_groups("kinetics")


def test_mixed_order_classes_are_the_temporal_clips_and_twins():
    """The order classes of the mixed set are drawn exactly as in the temporal set, so a pair's twins
    are still time reversals of each other (shuffled frames cannot tell them apart)."""
    mixed = synthetic.CLASS_SETS["mixed"]
    for label in synthetic.class_groups("mixed")["order"]:
        ours = synthetic.render_clip(label, 8, 32, np.random.default_rng(5), "mixed")
        temporal = synthetic.render_clip(synthetic.CLASSES.index(mixed[label]), 8, 32, np.random.default_rng(5))
        np.testing.assert_array_equal(ours, temporal)
    for pair in range(3):
        a = synthetic.render_clip(2 * pair, 8, 32, np.random.default_rng(9), "mixed")
        b = synthetic.render_clip(2 * pair + 1, 8, 32, np.random.default_rng(9), "mixed")
        np.testing.assert_array_equal(b, a[::-1])


def test_appearance_classes_are_still_patterns():
    """Each appearance class is a background pattern: stripes vary across their direction and not along it,
    a checkerboard varies both ways; nothing but the noise changes from frame to frame, so every frame (and
    any order of them) shows the class. A plain background of an order class varies neither way."""

    def variation(clip):
        mean = clip.astype(float).mean(axis=(0, 3))  # over frames and channels: (H, W)
        along_x = np.abs(np.diff(mean, axis=1)).mean()  # changes from column to column
        along_y = np.abs(np.diff(mean, axis=0)).mean()
        diagonal = np.abs(mean[1:, :-1] - mean[:-1, 1:]).mean()  # along the anti-diagonal, where x + y is constant
        return along_x, along_y, diagonal

    names = synthetic.CLASS_SETS["mixed"]
    for seed in range(8):
        for label in synthetic.class_groups("mixed")["appearance"]:
            clip = synthetic.render_clip(label, 8, 64, np.random.default_rng(seed), "mixed")
            assert clip.shape == (8, 64, 64, 3) and clip.dtype == np.uint8
            # still: frame-to-frame differences are noise only (std <= 0.05, i.e. about 13 levels)
            assert np.abs(np.diff(clip.astype(float), axis=0)).mean() < 15
            x, y, d = variation(clip)
            name = names[label]
            if name == "horizontal stripes":
                assert y > 2 * x, (seed, x, y)
            elif name == "vertical stripes":
                assert x > 2 * y, (seed, x, y)
            elif name == "diagonal stripes":
                assert x > 1.5 * d and y > 1.5 * d, (seed, x, y, d)  # the stair-stepped edges vary a little
            else:
                assert x > 3 and y > 3 and d > 3, (seed, x, y, d)
        still_object = synthetic.CLASS_SETS["mixed"].index("getting brighter")  # plain background, the object stays
        plain = synthetic.render_clip(still_object, 8, 64, np.random.default_rng(seed), "mixed")
        assert max(variation(plain)) < max(variation(clip)) / 3


def test_mixed_dataset_through_the_engine_options():
    from mvit.engine import load_config
    from mvit.engine.inputs import build_datasets

    cfg = load_config("cpu_synthetic_mvit", ["data.options.classes=mixed", "data.train_size=20", "data.val_size=10"])
    train_set, val_set, _ = build_datasets(cfg, mvit.get_config(cfg.model.name, **cfg.model.config))
    assert train_set.classes == synthetic.CLASS_SETS["mixed"] and val_set.num_classes == 10
    assert np.bincount([val_set[i][1] for i in range(10)]).tolist() == [1] * 10
    frames, label = val_set.frames(7)
    np.testing.assert_array_equal(frames, synthetic.render_sample("val", 7, 8, 32, 0, "mixed")[0])
    assert label == 7 and not np.array_equal(frames, synthetic.render_sample("val", 7, 8, 32, 0)[0])
