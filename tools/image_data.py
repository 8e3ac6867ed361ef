"""Image datasets for training and evaluating weight-sharing supernets, split the same way every time.

`load_splits(data)` reads Fashion-MNIST (its idx files, parsed here), CIFAR-10 (torchvision) or an
image folder with `train/` and `val/`, and returns three splits: `train`, the official training set
minus its LAST `valid_size` images, which are `valid` (fixed, not random, so every run selects on the
same images; for image folders, which are ordered by class, a fixed seeded sample), and `test`, the
official test split, reported only. `fixed_batches` draws the seeded
BN-recalibration batches, `loader` a seeded DataLoader.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from collm_nas.errors import CollmNasError
from collm_nas.tools.data import user_data_dir
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset, default_collate

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
CACHE = user_data_dir()  # the torchvision root when none is given
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
FOLDER_RESOLUTION = 224
_IDX_FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_FASHION_MNIST_HINT = (
    "Install it with apt-get install dataset-fashion-mnist (Debian), or "
    "torchvision.datasets.FashionMNIST(root, download=True) and pass --data-root root"
)


class DatasetError(CollmNasError, FileNotFoundError):
    """A dataset that is missing, corrupt, or too small for the split asked for."""


@dataclass(frozen=True)
class ImageSplits:
    """Training, validation (held out from the official training set) and test splits."""

    name: str  # "fashion-mnist", "cifar10" or "folder"
    source: str  # the path read
    train: Dataset
    valid: Dataset
    test: Dataset
    channels: int
    resolution: int
    classes: int


def load_splits(data: str, valid_size: int = 10_000, root: str | None = None) -> ImageSplits:
    """The splits of `data`: "fashion-mnist", "cifar10" or the path of an image folder."""
    if data == "fashion-mnist":
        return _fashion_mnist(valid_size, root)
    if data == "cifar10":
        return _cifar10(valid_size, root)
    return _image_folder(Path(data).expanduser(), valid_size)


def _split_sizes(total: int, valid_size: int, name: str) -> int:
    """The number of training images left once the last `valid_size` are held out."""
    if not 0 <= valid_size < total:
        raise DatasetError(f"cannot hold out {valid_size} validation images of the {total} in {name}'s training set")
    return total - valid_size


# --- Fashion-MNIST ---------------------------------------------------------------------------


def fashion_mnist_folder(root: str | None = None) -> Path:
    """The first folder holding the four idx files: `root`, Debian's, then `<root or cache>/FashionMNIST/raw`."""
    candidates = [Path(root).expanduser()] if root else []
    candidates += [DEBIAN_FASHION_MNIST, Path(root or CACHE).expanduser() / "FashionMNIST" / "raw"]
    tried = []
    for folder in candidates:
        missing = [name for pair in _IDX_FILES.values() for name in pair if not (folder / name).is_file()]
        if not missing:
            return folder
        tried.append(f"{folder} (no such folder)" if not folder.is_dir() else f"{folder} (lacks {', '.join(missing)})")
    raise DatasetError(f"Fashion-MNIST not found; tried {'; '.join(tried)}. {_FASHION_MNIST_HINT}")


def read_idx(path: Path, magic: int) -> np.ndarray:
    """The uint8 array of an idx gz file (big-endian int32 magic, then one count per dimension)."""
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as err:  # not gzip, or the gzip stream cut short
        raise DatasetError(f"{path} is corrupt: {err}. {_FASHION_MNIST_HINT}") from None
    dims = magic & 0xFF
    header = 4 * (1 + dims)
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated: {len(raw)} bytes, shorter than its header. {_FASHION_MNIST_HINT}")
    found, *shape = (int(v) for v in np.frombuffer(raw, ">i4", count=1 + dims))
    if found != magic:
        raise DatasetError(f"{path} has magic number {found}, expected {magic}; not an idx file of this kind")
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DatasetError(
            f"{path} is truncated or has trailing bytes: {len(raw)} bytes, its header {shape} "
            f"implies {expected}. {_FASHION_MNIST_HINT}"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _fashion_mnist_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images (N x 1 x 28 x 28 float32) and int64 labels of one split."""
    images_file, labels_file = (folder / name for name in _IDX_FILES[split])
    pixels, labels = read_idx(images_file, 2051), read_idx(labels_file, 2049)
    if len(pixels) != len(labels):
        raise DatasetError(f"{images_file} holds {len(pixels)} images but {labels_file} {len(labels)} labels")
    if len(labels) and labels.max() >= 10:
        raise DatasetError(f"{labels_file} has label {labels.max()}; Fashion-MNIST has 10 classes")
    # Normalised once here rather than per item: ~190 MB for the 60k training images, but an epoch
    # of batches of 256 then costs one index and stack per batch (about 4x faster on 2 cores).
    images = torch.from_numpy(pixels.astype(np.float32)).unsqueeze(1)
    images.div_(255.0).sub_(FASHION_MNIST_MEAN).div_(FASHION_MNIST_STD)
    return images, torch.from_numpy(labels.astype(np.int64))


def _fashion_mnist(valid_size: int, root: str | None) -> ImageSplits:
    folder = fashion_mnist_folder(root)
    images, labels = _fashion_mnist_split(folder, "train")
    kept = _split_sizes(len(images), valid_size, "fashion-mnist")
    return ImageSplits(
        "fashion-mnist", str(folder),
        train=TensorDataset(images[:kept], labels[:kept]),  # views: no copy
        valid=TensorDataset(images[kept:], labels[kept:]),
        test=TensorDataset(*_fashion_mnist_split(folder, "test")),
        channels=1, resolution=28, classes=10,
    )


# --- CIFAR-10 and image folders --------------------------------------------------------------


def _cifar10(valid_size: int, root: str | None) -> ImageSplits:
    from torchvision import datasets, transforms

    hint = ("download it with torchvision.datasets.CIFAR10(root, download=True) and pass the root "
            "(supernet commands: --data-root ROOT; a search: --evaluator-option data_root=ROOT)")
    if not root:
        raise DatasetError(f"cifar10 needs a data root; {hint}")
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)])
    try:
        train, test = (datasets.CIFAR10(root, train=t, download=False, transform=transform) for t in (True, False))
    except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
        raise DatasetError(f"CIFAR-10 not readable in {root} ({err}); {hint}") from None
    kept = _split_sizes(len(train), valid_size, "cifar10")
    return ImageSplits(
        "cifar10", str(root), Subset(train, range(kept)), Subset(train, range(kept, len(train))), test,
        channels=3, resolution=32, classes=10,
    )


def _image_folder(path: Path, valid_size: int) -> ImageSplits:
    """`path/train` and `path/val` in ImageFolder layout. ImageFolder orders images by class, so
    validation is a fixed seeded sample (at most a fifth of train), not the last images."""
    from collm_nas.tools.supernet_eval import ImageFolderLayoutError, check_image_folder, eval_transform
    from torchvision.datasets import ImageFolder

    try:
        classes = check_image_folder(path / "train", classes=1 << 30, allow_fewer_classes=True)
        if check_image_folder(path / "val", classes=len(classes)) != classes:
            raise ImageFolderLayoutError(f"{path}/val has other class folders than {path}/train")
    except ImageFolderLayoutError as err:
        raise DatasetError(f"{err} (an image folder dataset needs {path}/train and {path}/val)") from None
    transform = eval_transform(FOLDER_RESOLUTION)
    train = ImageFolder(str(path / "train"), transform=transform)
    kept = _split_sizes(len(train), min(valid_size, len(train) // 5), str(path))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    return ImageSplits(
        "folder", str(path), Subset(train, sorted(order[:kept])), Subset(train, sorted(order[kept:])),
        ImageFolder(str(path / "val"), transform=transform),
        channels=3, resolution=FOLDER_RESOLUTION, classes=len(classes),
    )


# --- batches ---------------------------------------------------------------------------------


def fixed_batches(dataset: Dataset, batch_size: int, count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`count` batches of (images, labels) drawn without replacement by a `seed`ed permutation."""
    needed = batch_size * count
    if needed > len(dataset):
        raise DatasetError(f"{count} batches of {batch_size} need {needed} images; the split has {len(dataset)}")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:needed]
    batches = []
    for chunk in order.split(batch_size):
        if isinstance(dataset, TensorDataset):  # index the tensors at once
            images, labels = (t[chunk] for t in dataset.tensors)
        else:
            images, labels = default_collate([dataset[i] for i in chunk.tolist()])
        batches.append((images, labels))
    return batches


def loader(dataset: Dataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    """Batches in the main process (num_workers 0), in an order fixed by `seed` when shuffled."""
    return DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, num_workers=0,
        generator=torch.Generator().manual_seed(seed),
    )
