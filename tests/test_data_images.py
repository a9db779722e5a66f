"""Image datasets: scikit-learn's digits (real data in the package) and an ImageNet-style folder."""

import pickle
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import mvit.data as data


def test_digits_split_is_stratified_disjoint_and_complete():
    train, val = data.DigitsDataset("train"), data.DigitsDataset("val")
    assert len(train) + len(val) == 1797 and abs(len(val) - 0.2 * 1797) < 1
    assert train.num_classes == 10 and train.classes[3] == "3"
    counts = torch.bincount(val.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # about 36 of each digit
    flat = {bytes(img.numpy()) for img in train.images} & {bytes(img.numpy()) for img in val.images}
    assert len(flat) <= 2  # no image in both splits (beyond the odd exact duplicate in the source data)


def test_digits_items():
    image, label = data.DigitsDataset("val", size=32)[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32 and 0 <= label < 10
    mean = torch.tensor(data.IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(data.IMAGENET_STD).view(3, 1, 1)
    pixels = image * std + mean  # undo the ImageNet normalisation
    torch.testing.assert_close(pixels[0], pixels[1])  # grey digits: three equal channels
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5 and pixels.max() > 0.5


def test_image_datasets_pickle(folder):
    for dataset in (data.DigitsDataset("val"), data.ImageFolderDataset(folder, "val", crop_size=32)):
        copy = pickle.loads(pickle.dumps(dataset))
        torch.testing.assert_close(copy[0][0], dataset[0][0])


def test_digits_augmentation_and_no_flips():
    torch.manual_seed(0)
    augmented = data.DigitsDataset("train", 32, data.Augmentation(crop_scale=(0.6, 1.0), flip=False))
    a, b = augmented[0][0], augmented[0][0]
    assert a.shape == (3, 32, 32) and not torch.equal(a, b)
    with pytest.raises(ValueError, match="flip"):
        data.DigitsDataset("train", 32, data.Augmentation())


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    return tmp_path


def test_image_folder(folder):
    train = data.ImageFolderDataset(folder, "train", crop_size=32)
    val = data.ImageFolderDataset(folder, "val", crop_size=32)
    assert train.classes == ["cat", "dog"] and len(train) == 7
    image, label = val[0]
    assert image.shape == (3, 32, 32) and label == 0
    assert train[1][0].shape == (3, 32, 32)


def test_broken_image_is_replaced_and_counted(folder):
    dataset = data.ImageFolderDataset(folder, "val", crop_size=32)
    broken = [i for i, (path, _) in enumerate(dataset.samples) if path.endswith("broken.png")][0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        image, _ = dataset[broken]
    assert image.shape == (3, 32, 32) and "broken.png" in str(caught[0].message)
    assert [f.path for f in dataset.failures] == [str(folder / "dog" / "broken.png")]


def test_missing_folder():
    with pytest.raises(FileNotFoundError, match="one sub-folder per class"):
        data.ImageFolderDataset("/nonexistent/imagenet/train")


def test_digits_without_scikit_learn_names_the_extra(monkeypatch, tmp_path, capsys):
    from mvit.cli import EXIT_CONFIG, main

    for name in ("sklearn", "sklearn.datasets", "sklearn.model_selection"):
        monkeypatch.setitem(sys.modules, name, None)  # `import sklearn` now fails as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'mvit\[notebooks\]'"):
        data.DigitsDataset()
    code = main(["train", "--config", "cpu_digits_mvit", "--output-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_CONFIG and len(err) == 1 and "mvit[notebooks]" in err[0] and err[0].startswith("error:")
