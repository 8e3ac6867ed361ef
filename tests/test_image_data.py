"""The image splits of `tools/image_data.py` on tiny synthetic idx files (and the real Debian
Fashion-MNIST files where installed): shapes, the fixed validation split, normalisation, seeded
batches and the dataset errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from collm_nas.tools import image_data
from collm_nas.tools.image_data import DatasetError, fixed_batches, load_splits, loader

TRAIN, TEST = 30, 10


def write_idx(path: Path, magic: int, array: np.ndarray, cut: int = 0) -> None:
    raw = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as fh:
        fh.write(raw[: len(raw) - cut])


def write_fashion_mnist(folder: Path, train: int = TRAIN, test: int = TEST) -> Path:
    """Image i of a split has every pixel i; its label is i % 10."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        pixels = np.arange(count, dtype=np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", 2051, pixels)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", 2049, np.arange(count) % 10)
    return folder


def pixel_ids(images: torch.Tensor) -> list[int]:
    """Undo the normalisation of each image's first pixel: the image's index."""
    return (images[:, 0, 0, 0] * image_data.FASHION_MNIST_STD + image_data.FASHION_MNIST_MEAN).mul(255).round().int().tolist()


@pytest.fixture
def splits(tmp_path):
    return load_splits("fashion-mnist", valid_size=5, root=str(write_fashion_mnist(tmp_path)))


def test_shapes_labels_and_the_given_root_searched_first(splits, tmp_path):
    assert (splits.name, splits.source) == ("fashion-mnist", str(tmp_path))
    assert (splits.channels, splits.resolution, splits.classes) == (1, 28, 10)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (TRAIN - 5, 5, TEST)
    image, label = splits.train[3]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32 and int(label) == 3


def test_validation_is_the_last_training_images(splits):
    assert pixel_ids(splits.train.tensors[0]) == list(range(TRAIN - 5))
    assert pixel_ids(splits.valid.tensors[0]) == list(range(TRAIN - 5, TRAIN))
    assert splits.valid.tensors[1].tolist() == [i % 10 for i in range(TRAIN - 5, TRAIN)]
    assert pixel_ids(splits.test.tensors[0]) == list(range(TEST))


def test_images_are_normalised_with_the_fashion_mnist_statistics(splits):
    image, _ = splits.train[7]
    assert torch.allclose(image, torch.full((1, 28, 28), (7 / 255 - 0.2860) / 0.3530))


def test_fixed_batches_are_seeded_and_drawn_without_replacement(splits):
    first = fixed_batches(splits.train, 4, 3, seed=1)
    again = fixed_batches(splits.train, 4, 3, seed=1)
    assert all(torch.equal(a, b) for x, y in zip(first, again) for a, b in zip(x, y))
    ids = [i for images, _ in first for i in pixel_ids(images)]
    assert len(first) == 3 and len(set(ids)) == 12
    assert ids != [i for images, _ in fixed_batches(splits.train, 4, 3, seed=2) for i in pixel_ids(images)]
    with pytest.raises(DatasetError, match="need 100 images"):
        fixed_batches(splits.train, 10, 10, seed=1)


def test_loader_order_is_fixed_by_the_seed(splits):
    def order(shuffle, seed):
        return [i for images, _ in loader(splits.train, 8, shuffle, seed) for i in pixel_ids(images)]

    assert order(True, 3) == order(True, 3) != order(True, 4)
    assert sorted(order(True, 3)) == order(False, 3) == list(range(TRAIN - 5))


def test_a_missing_dataset_names_every_path_tried_and_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(image_data, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    (tmp_path / "given").mkdir()
    with pytest.raises(DatasetError) as err:
        load_splits("fashion-mnist", root=str(tmp_path / "given"))
    message = str(err.value)
    for tried in (tmp_path / "given", tmp_path / "debian", tmp_path / "given" / "FashionMNIST" / "raw"):
        assert str(tried) in message
    assert "apt-get install dataset-fashion-mnist" in message and "--data-root" in message
    assert isinstance(err.value, FileNotFoundError)


def test_without_a_root_the_torchvision_cache_is_searched(tmp_path, monkeypatch):
    monkeypatch.setattr(image_data, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.setattr(image_data, "CACHE", tmp_path / "cache")
    write_fashion_mnist(tmp_path / "cache" / "FashionMNIST" / "raw")
    assert load_splits("fashion-mnist", valid_size=5).source == str(tmp_path / "cache" / "FashionMNIST" / "raw")


@pytest.mark.parametrize("damage, expected", [
    (lambda f: write_idx(f / "train-images-idx3-ubyte.gz", 2049, np.zeros((TRAIN, 28, 28))), "magic number 2049, expected 2051"),
    (lambda f: write_idx(f / "train-images-idx3-ubyte.gz", 2051, np.zeros((TRAIN, 28, 28)), cut=100), "truncated"),
    (lambda f: (f / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0" * 500)[:-20]), "corrupt"),
    (lambda f: write_idx(f / "t10k-labels-idx1-ubyte.gz", 2049, np.zeros(TEST - 1)), "9 labels"),
])
def test_a_corrupt_file_is_named_with_what_is_wrong(tmp_path, damage, expected):
    folder = write_fashion_mnist(tmp_path)
    damage(folder)
    with pytest.raises(DatasetError, match=expected) as err:
        load_splits("fashion-mnist", valid_size=5, root=str(folder))
    assert str(folder) in str(err.value)


def test_the_validation_split_must_leave_training_images(tmp_path):
    with pytest.raises(DatasetError, match="cannot hold out 30"):
        load_splits("fashion-mnist", valid_size=TRAIN, root=str(write_fashion_mnist(tmp_path)))


def test_cifar10_needs_a_root():
    with pytest.raises(DatasetError, match="CIFAR10"):
        load_splits("cifar10")


def test_an_image_folder_holds_out_at_most_a_fifth_of_train(tmp_path):
    from PIL import Image

    for split, count in (("train", 5), ("val", 1)):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (40, 30), (i * 40, 0, 0)).save(tmp_path / split / cls / f"{i}.png")
    splits = load_splits(str(tmp_path), valid_size=100)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (8, 2, 2)
    assert (splits.name, splits.channels, splits.resolution, splits.classes) == ("folder", 3, 224, 2)
    image, label = splits.valid[1]
    assert image.shape == (3, 224, 224) and label == 1
    with pytest.raises(DatasetError, match="val"):
        load_splits(str(tmp_path / "train"))


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_the_debian_fashion_mnist_files():
    splits = load_splits("fashion-mnist")
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (50_000, 10_000, 10_000)
    assert splits.classes == 10 and sorted(splits.train.tensors[1].unique().tolist()) == list(range(10))
    assert abs(float(splits.train.tensors[0].mean())) < 0.05


def test_an_image_folder_holds_out_a_sample_of_every_class(tmp_path):
    from PIL import Image

    for split, count in (("train", 10), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(tmp_path / split / cls / f"{i}.png")
    splits = load_splits(str(tmp_path), valid_size=4)
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (16, 4, 4)
    valid_labels = {int(splits.valid[i][1]) for i in range(len(splits.valid))}
    assert splits.classes == 2 and splits.train[0][0].shape == (3, 224, 224)
    assert len(valid_labels) == 2  # not the last class alone, as the last images would be
    with pytest.raises(DatasetError, match="train and .*val"):
        load_splits(str(tmp_path / "train"))
