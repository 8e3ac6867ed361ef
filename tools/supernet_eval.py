"""Pieces every weight-sharing (supernet) evaluator needs, whatever the network.

Image folders in torchvision `ImageFolder` layout (`<root>/<class>/<image>`) checked up front
with one clear error, deterministic loaders over a fixed random subset, ImageNet-style
evaluation and calibration transforms, BatchNorm recalibration (reset the running statistics,
then forward in train mode without gradients, as OFA and SPOS do before scoring a subnet) and
top-1 accuracy over a loader. `tools/evaluators/supernet.py` (OFA MobileNetV3) is built on them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from collm_nas.errors import CollmNasError
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageFolderLayoutError(CollmNasError, ValueError):
    """The image folder is missing or not in ImageNet (ImageFolder) layout."""


def check_image_folder(path: str | Path, classes: int, allow_fewer_classes: bool = False) -> list[str]:
    """Class folder names of an ImageNet-layout folder, or a clear `ImageFolderLayoutError`."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    root = Path(path).expanduser()
    layout = f"expected ImageNet layout {root}/<class folder, e.g. n01440764>/<image>.JPEG"
    if not root.is_dir():
        raise ImageFolderLayoutError(f"image folder {root} does not exist; {layout}")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        loose = [p for p in root.iterdir() if p.suffix.lower() in IMG_EXTENSIONS]
        hint = f" (it holds {len(loose)} images directly)" if loose else ""
        raise ImageFolderLayoutError(f"{root} has no class subfolders{hint}; {layout}")
    empty = [
        f for f in folders
        if not any(p.suffix.lower() in IMG_EXTENSIONS for p in (root / f).rglob("*"))
    ]
    if empty:
        raise ImageFolderLayoutError(
            f"{len(empty)} class folders of {root} hold no images (e.g. {empty[:3]}); {layout}"
        )
    if len(folders) > classes or (len(folders) < classes and not allow_fewer_classes):
        raise ImageFolderLayoutError(
            f"{root} has {len(folders)} class folders; the network classifies {classes} "
            "classes, so the folder needs exactly one subfolder per class"
            + ("" if len(folders) > classes else
               " (to evaluate on fewer classes whose folders are the first ones in ImageNet's "
               "sorted order, set allow_fewer_classes)")
        )
    return folders


def eval_transform(resolution: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Resize to resolution / 0.875, centre crop, normalise (the usual ImageNet evaluation)."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(int(math.ceil(resolution / 0.875))),
        transforms.CenterCrop(resolution),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def calibration_transform(resolution: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Training-style augmentation for the BN recalibration batches (OFA's)."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.RandomResizedCrop(resolution),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(brightness=32.0 / 255.0, saturation=0.5),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def image_loader(
    folder: str | Path, transform, count: int | None, seed: int, batch_size: int,
    num_workers: int = 0, device: str = "cpu",
) -> torch.utils.data.DataLoader:
    """Batches of (images, labels) from an image folder, in a fixed order: every image, or a
    fixed random subset of `count` chosen by `seed`."""
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(str(folder), transform=transform)
    if count is not None and count < len(dataset):
        rng = np.random.default_rng(seed)
        indices = sorted(rng.choice(len(dataset), size=count, replace=False).tolist())
        dataset = torch.utils.data.Subset(dataset, indices)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
        pin_memory=device.startswith("cuda"), generator=torch.Generator().manual_seed(seed),
    )


# --- BN recalibration and top-1 ------------------------------------------------------------


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches, device: str = "cpu") -> int:
    """Replace every BatchNorm's running statistics by their average over `batches`.

    Resets the statistics, forwards in train mode without gradients with a cumulative average
    (momentum None), then restores each layer's momentum and puts the model in eval mode.
    Returns the number of images seen.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    seen = 0
    try:
        for images, _ in batches:
            model(images.to(device))
            seen += len(images)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        model.eval()
    if seen == 0:
        raise ValueError("BatchNorm recalibration got no images")
    return seen


@torch.no_grad()
def top1_accuracy(model: nn.Module, batches, device: str = "cpu") -> float:
    """Top-1 accuracy in percent of `model` (eval mode) over `batches` of (images, labels)."""
    model.eval()
    correct = total = 0
    for images, labels in batches:
        logits = model(images.to(device))
        correct += int((logits.argmax(1).cpu() == labels).sum())
        total += len(labels)
    if total == 0:
        raise ValueError("no validation images to evaluate")
    return 100.0 * correct / total
