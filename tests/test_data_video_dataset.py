"""VideoDataset on real mp4 files (the synthetic set written to disk): shapes and values in every mode,
determinism, robustness to bad files (also inside DataLoader workers), and bad annotations."""

import pickle
import shutil
import warnings

import pytest
import torch

import mvit.data as data
from mvit.data import synthetic

NUM_FRAMES, SIZE = 12, 32


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """20 training and 10 validation videos of 12 frames, 32 x 32, plus some bad files."""
    out = tmp_path_factory.mktemp("synthetic")
    synthetic.generate(out, num_train=20, num_val=10, num_frames=NUM_FRAMES, size=SIZE, seed=0)
    (out / "bad").mkdir()
    (out / "bad" / "empty.mp4").write_bytes(b"")
    (out / "bad" / "text.mp4").write_text("not a video")
    (out / "bad" / "truncated.mp4").write_bytes((out / "train" / "000000.mp4").read_bytes()[:300])
    return out


def make(root, mode="train", annotation="train.csv", **kwargs):
    kwargs = {
        "num_frames": 4,
        "sampling_rate": 2,
        "crop_size": 24,
        "augmentation": data.Augmentation(flip=False, erase_prob=0.0),
        **kwargs,
    }
    return data.VideoDataset(root / annotation, root, mode, **kwargs)


def test_train_items(root):
    dataset = make(root)
    assert len(dataset) == 20 and dataset.num_classes == len(synthetic.CLASSES) == 10
    clip, label = dataset[3]
    assert clip.shape == (3, 4, 24, 24) and clip.dtype == torch.float32 and label == 3
    low, high = -0.45 / 0.225, 0.55 / 0.225  # pixel values 0 and 1 after normalisation
    assert low - 1e-5 <= clip.min() < clip.max() <= high + 1e-5


def test_val_items_are_deterministic_centre_clips(root):
    dataset = make(root, "val", "val.csv")
    clip, label = dataset[7]
    assert clip.shape == (3, 4, 24, 24) and label == 7
    torch.testing.assert_close(dataset[7][0], clip)


@pytest.mark.parametrize("num_crops", [1, 3])
def test_test_items_stack_all_views(root, num_crops):
    dataset = make(root, "test", "val.csv", num_clips=5, num_crops=num_crops)
    views, label = dataset[2]
    assert views.shape == (5 * num_crops, 3, 4, 24, 24) and label == 2
    assert not torch.equal(views[0], views[-1])  # first and last clip differ in time


def test_training_is_deterministic_given_the_seed(root):
    dataset = make(root)
    torch.manual_seed(1)
    first = [dataset[i][0] for i in range(3)]
    torch.manual_seed(1)
    second = [dataset[i][0] for i in range(3)]
    torch.manual_seed(2)
    third = [dataset[i][0] for i in range(3)]
    for a, b in zip(first, second):
        torch.testing.assert_close(a, b)
    assert any(not torch.equal(a, c) for a, c in zip(first, third))


def test_segment_sampling_and_backends_agree(root):
    clips = {
        backend: make(root, "val", "val.csv", sampling="segment", num_frames=6, backend=backend)[4][0]
        for backend in ("decord", "pyav")
    }
    assert clips["decord"].shape == (3, 6, 24, 24)
    torch.testing.assert_close(clips["decord"], clips["pyav"], rtol=0, atol=0)


def test_long_clips_from_short_videos_are_padded(root):
    clip, _ = make(root, "val", "val.csv", num_frames=8, sampling_rate=4)[0]  # wants 29 frames, has 12
    assert clip.shape == (3, 8, 24, 24)
    torch.testing.assert_close(clip[:, -1], clip[:, -2])  # the last frame repeats


def test_disk_files_match_the_in_memory_dataset(root):
    memory = data.SyntheticVideoDataset("train", 20, NUM_FRAMES, SIZE, seed=0)
    disk = data.VideoDataset(root / "train.csv", root, "val", NUM_FRAMES, 1, SIZE, test_short_side=SIZE)
    for index in (0, 5, 9):
        a, label_a = memory[index]
        b, label_b = disk[index]
        assert label_a == label_b and a.shape == b.shape
        assert (a - b).abs().mean() < 0.25  # equal up to H.264 compression (in units of the 0.225 std)


def test_folder_per_class_tree(tmp_path, root):
    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
        shutil.copy(root / "train" / "000001.mp4", tmp_path / name / "a.mp4")
    dataset = data.VideoDataset(None, tmp_path, "val", 4, 2, 24)
    assert dataset.classes == ["alpha", "beta"] and [label for _, label in dataset.samples] == [0, 1]
    assert dataset[1][0].shape == (3, 4, 24, 24)


def test_folder_per_class_tree_ignores_hidden_and_empty_folders(tmp_path, root):
    """Jupyter's .ipynb_checkpoints, macOS's __MACOSX and ._ files, and empty folders are not classes
    (they used to shift every label after them); a train/val class mismatch is named."""
    video = root / "train" / "000001.mp4"
    for split, names in (("train", ["alpha", "beta"]), ("val", ["alpha", "beta"])):
        for name in names:
            (tmp_path / split / name / ".ipynb_checkpoints").mkdir(parents=True)
            shutil.copy(video, tmp_path / split / name / "a.mp4")
            shutil.copy(video, tmp_path / split / name / "._a.mp4")
            shutil.copy(video, tmp_path / split / name / ".ipynb_checkpoints" / "a-checkpoint.mp4")
    for hidden in (".ipynb_checkpoints", "__MACOSX", "aaa_empty"):
        (tmp_path / "val" / hidden).mkdir()
    shutil.copy(video, tmp_path / "val" / ".ipynb_checkpoints" / "x.mp4")
    shutil.copy(video, tmp_path / "val" / "__MACOSX" / "x.mp4")
    train = data.VideoDataset(None, tmp_path / "train", "train", 4, 2, 24)
    val = data.VideoDataset(None, tmp_path / "val", "val", 4, 2, 24, classes=train.classes)
    assert train.classes == val.classes == ["alpha", "beta"]
    assert val.samples == [("alpha/a.mp4", 0), ("beta/a.mp4", 1)]
    shutil.copy(video, tmp_path / "val" / "aaa_empty" / "b.mp4")
    (tmp_path / "val" / "beta" / "a.mp4").unlink()
    with pytest.raises(data.AnnotationError, match=r"only in .*val: \['aaa_empty'\], missing from .*val: \['beta'\]"):
        data.VideoDataset(None, tmp_path / "val", "val", 4, 2, 24, classes=train.classes)


def bad_annotations(root, tmp_path, lines):
    path = tmp_path / "bad.csv"
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def test_bad_files_are_replaced_in_training_warned_and_counted(root, tmp_path):
    bad = ["bad/empty.mp4", "bad/text.mp4", "bad/truncated.mp4", "missing.mp4"]
    lines = [f"{path} 1" for path in bad] + [f"train/{i:06d}.mp4 {i}" for i in range(10)]
    dataset = data.VideoDataset(bad_annotations(root, tmp_path, lines), root, "train", 4, 2, 24, augmentation=None)
    for index, path in enumerate(bad):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clip, label = dataset[index]
        assert str(caught[0].message).startswith(f"skipping unreadable sample {root / path}: ")
        assert clip.shape == (3, 4, 24, 24)  # a good sample stood in
    failures = dataset.failures  # a stand-in drawn from the bad files fails too, and is counted
    assert {f.path for f in failures} == {str(root / path) for path in bad} and len(failures) >= 4
    reasons = {f.path: f.reason for f in failures}
    assert "empty" in reasons[str(root / "bad/empty.mp4")]
    assert "no such file" in reasons[str(root / "missing.mp4")]
    assert "Invalid data" in reasons[str(root / "bad/text.mp4")]
    dataset.reset_failures()
    assert dataset.failures == []


def test_too_many_failures_stop_with_the_list(root, tmp_path):
    lines = ["bad/text.mp4 0", "bad/empty.mp4 1", "missing.mp4 2"]
    dataset = data.VideoDataset(bad_annotations(root, tmp_path, lines), root, "train", 4, 2, 24, max_failures=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(data.TooManyFailures, match=r"3 files failed.*max_failures=2.*\n  .*\.mp4: "):
            dataset[0]  # every stand-in fails as well


@pytest.mark.parametrize("mode, shape", [("val", (3, 4, 24, 24)), ("test", (2 * 3, 3, 4, 24, 24))])
def test_bad_files_are_excluded_in_evaluation_never_replaced(root, tmp_path, mode, shape):
    lines = ["train/000000.mp4 0", "bad/truncated.mp4 1", "train/000002.mp4 2", "missing.mp4 3"]
    dataset = data.VideoDataset(
        bad_annotations(root, tmp_path, lines), root, mode, 4, 2, 24, num_clips=2, num_crops=3, max_failures=2
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        items = [dataset[i] for i in range(4)]
    assert [label for _, label in items] == [0, data.EXCLUDED, 2, data.EXCLUDED]
    assert all(clip.shape == shape for clip, _ in items)
    assert not items[1][0].any() and items[0][0].any()  # a zero placeholder, not another video
    assert "excluding unreadable sample" in str(caught[0].message)
    assert [f.path for f in dataset.failures] == [str(root / "bad/truncated.mp4"), str(root / "missing.mp4")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(data.TooManyFailures, match="3 files failed"):
            dataset[3]  # the limit still holds in evaluation


def test_failures_in_worker_processes_reach_the_main_process(root, tmp_path):
    lines = [f"train/{i:06d}.mp4 {i}" for i in range(6)] + ["bad/empty.mp4 1", "missing.mp4 2"]
    dataset = data.VideoDataset(bad_annotations(root, tmp_path, lines), root, "val", 4, 2, 24)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, num_workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        clips, labels = zip(*loader)
    assert sum(len(c) for c in clips) == 8
    assert sorted(f.path for f in dataset.failures) == sorted([str(root / "bad/empty.mp4"), str(root / "missing.mp4")])


def test_datasets_pickle(root):
    dataset = make(root)
    copy = pickle.loads(pickle.dumps(dataset))
    torch.manual_seed(0)
    a = dataset[1][0]
    torch.manual_seed(0)
    torch.testing.assert_close(copy[1][0], a)


@pytest.mark.parametrize(
    "line, message",
    [
        ("train/000000.mp4", r"bad\.csv:2: expected '<relative/path\.mp4> <label>'"),
        ("train/000000.mp4 three", r"bad\.csv:2: the label 'three' is not an integer"),
        ("train/000000.mp4 1.5", r"bad\.csv:2: the label '1\.5' is not an integer"),
        ("train/000000.mp4,", r"bad\.csv:2: expected"),
        ('"train/000000.mp4 3', r"bad\.csv:2: expected"),
        ("train/000000.mp4 -1", r"bad\.csv:2: label -1 is out of range"),
        ("train/000000.mp4 10", r"bad\.csv:2: label 10 is out of range \[0, 9\]"),
        (",3", r"bad\.csv:2: expected"),
    ],
)
def test_bad_annotation_lines_fail_at_construction(root, tmp_path, line, message):
    path = bad_annotations(root, tmp_path, ["train/000001.mp4,1", line])
    with pytest.raises(ValueError, match=message):
        data.VideoDataset(path, root, num_classes=10)


def test_binary_annotation_file_names_the_line(root, tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"train/000000.mp4 0\n" + (root / "train" / "000000.mp4").read_bytes()[:200])
    with pytest.raises(data.AnnotationError, match=r"binary\.csv:2: not UTF-8 text \(a binary file\?\)"):
        data.VideoDataset(path, root)


def test_paths_with_commas_spaces_and_quotes_round_trip(root, tmp_path):
    names = ["with,comma.mp4", "with space.mp4", 'with"quote.mp4', "#hash.mp4", "plain.mp4"]
    for name in names:
        shutil.copy(root / "train" / "000004.mp4", tmp_path / name)
    lines = [data.annotation_line(name, i) for i, name in enumerate(names)] + ["with,comma.mp4,1", "plain.mp4 , 2"]
    dataset = data.VideoDataset(bad_annotations(root, tmp_path, lines), tmp_path, "val", 4, 2, 24)
    assert dataset.samples == [(name, i) for i, name in enumerate(names)] + [("with,comma.mp4", 1), ("plain.mp4", 2)]
    assert all(dataset[i][1] >= 0 for i in range(len(dataset)))  # every file found and read


def test_missing_annotation_file_or_root(root, tmp_path):
    with pytest.raises(FileNotFoundError, match="annotation file .*nope.csv does not exist"):
        data.VideoDataset(tmp_path / "nope.csv", root)
    with pytest.raises(FileNotFoundError, match="video_root .*nowhere is not a folder"):
        data.VideoDataset(root / "train.csv", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="mode must be one of"):
        data.VideoDataset(root / "train.csv", root, mode="testing")
    empty = bad_annotations(root, tmp_path, ["# only a comment"])
    with pytest.raises(ValueError, match="lists no samples"):
        data.VideoDataset(empty, root)
