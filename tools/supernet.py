"""Accuracy of OFA MobileNetV3 subnets with weights inherited from the trained supernet.

For users who have the official supernet checkpoint (`ofa_mbv3_d234_e346_k357_w1.2`, from
github han-cai/files `ofa/ofa_nets/`) and ImageNet in torchvision `ImageFolder` layout
(`val/<wnid>/<image>.JPEG`, 1000 class folders). Per architecture: copy the subnet out of the
supernet, recalibrate its BatchNorm statistics on a fixed random subset of calibration images
(reset the running statistics, then forward in train mode without gradients, as OFA does with
2,000 training images), and measure top-1 on the validation folder. The result is reported as
both `valid_acc` and `test_acc` (one image set).

Calibration images come from `calib_dir` (OFA uses the ImageNet *train* folder); by default the
validation folder itself, which is simpler but lets validation images shape the BN statistics.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from collm_nas.errors import CollmNasError
from collm_nas.spaces import get_space
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.spaces.mobilenet import NUM_CLASSES, extract_subnet, new_ofa_supernet
from collm_nas.tools.data import DataFileError, find_data_file
from pydantic import BaseModel
from torch import nn

CHECKPOINT_FILE = "ofa/ofa_mbv3_d234_e346_k357_w1.2"
VAL_DIR_ENV = "COLLM_NAS_IMAGENET_VAL"
HOW_TO_GET_CHECKPOINT = (
    "Get the official supernet weights ofa_mbv3_d234_e346_k357_w1.2 (github han-cai/files, "
    "ofa/ofa_nets/, also fetched by `ofa.model_zoo.ofa_net`) and save the file as "
    f"<data dir>/{CHECKPOINT_FILE}, or pass its path."
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SupernetCheckpointError(CollmNasError, ValueError):
    """The checkpoint is unreadable or belongs to another network."""


class ImageFolderLayoutError(CollmNasError, ValueError):
    """The image folder is missing or not in ImageNet (ImageFolder) layout."""


# --- checkpoint ----------------------------------------------------------------------------


def _canonical(key: str) -> str:
    """A name both OFA code generations agree on: `mobile_inverted_conv` is `conv`, and a wrapper
    segment repeated (`bn.bn`, `conv.conv`, `linear.linear`) counts once."""
    out: list[str] = []
    for part in key.split("."):
        part = "conv" if part == "mobile_inverted_conv" else part
        if out and part == out[-1] and part in ("bn", "conv", "linear"):
            continue
        out.append(part)
    return ".".join(out)


def load_supernet_checkpoint(supernet: nn.Module, path: str | Path) -> None:
    """Load an OFA MobileNetV3 w1.2 checkpoint into `supernet`, or explain why it does not fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise SupernetCheckpointError(
            f"{path} could not be read as a torch checkpoint ({type(err).__name__}: {err})"
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SupernetCheckpointError(
            f"{path} holds no state dict of tensors (expected a dict, or {{'state_dict': dict}})"
        )
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model_state = supernet.state_dict()
    by_canonical = {_canonical(k): k for k in model_state}
    resolved: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, tensor in state.items():
        name = by_canonical.get(_canonical(key))
        if name is None:
            unexpected.append(key)
        elif tuple(tensor.shape) != tuple(model_state[name].shape):
            mismatched.append(
                f"{key}: {tuple(tensor.shape)} vs {tuple(model_state[name].shape)} expected"
            )
        else:
            resolved[name] = tensor
    missing = [
        k for k in model_state if k not in resolved and not k.endswith("num_batches_tracked")
    ]
    if unexpected or mismatched or missing:
        parts = []
        if mismatched:
            parts.append(f"{len(mismatched)} tensors of the wrong shape (e.g. {mismatched[:3]})")
        if missing:
            parts.append(f"{len(missing)} supernet tensors missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unknown tensors (e.g. {unexpected[:3]})")
        raise SupernetCheckpointError(
            f"{path} is not a checkpoint of the OFA supernet ofa_mbv3_d234_e346_k357_w1.2 "
            "(MobileNetV3, width 1.2, kernel 3/5/7, expand 3/4/6, depth 2/3/4): "
            + "; ".join(parts)
        )
    for name, tensor in model_state.items():
        resolved.setdefault(name, tensor)  # num_batches_tracked absent from old checkpoints
    # nn.Module's own loader: OFA's override silently keeps random values for absent keys.
    nn.Module.load_state_dict(supernet, resolved, strict=True)


# --- image folders -------------------------------------------------------------------------


def check_image_folder(
    path: str | Path, classes: int = NUM_CLASSES, allow_fewer_classes: bool = False
) -> list[str]:
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
            f"{root} has {len(folders)} class folders; the supernet classifies {classes} ImageNet "
            "classes, so the folder needs exactly one subfolder per class"
            + ("" if len(folders) > classes else
               " (to evaluate on fewer classes whose folders are the first ones in ImageNet's "
               "sorted order, set allow_fewer_classes)")
        )
    return folders


def _eval_transform(resolution: int):
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(int(math.ceil(resolution / 0.875))),
        transforms.CenterCrop(resolution),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def _calibration_transform(resolution: int):
    from torchvision import transforms

    return transforms.Compose([
        transforms.RandomResizedCrop(resolution),
        transforms.RandomHorizontalFlip(),
        transforms.ColorJitter(brightness=32.0 / 255.0, saturation=0.5),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


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


# --- the evaluator -------------------------------------------------------------------------


class OFASupernetEvaluator(Evaluator):
    """Top-1 of OFA MobileNetV3 w1.2 subnets with inherited weights and recalibrated BN."""

    kind = "supernet"
    thread_safe = False  # `subnet` copies out of the one shared supernet

    def __init__(
        self,
        val_dir: str | Path,
        checkpoint: str | Path | None = None,
        *,
        calib_images: int = 2000,
        calib_dir: str | Path | None = None,
        val_images: int | None = None,
        batch_size: int = 100,
        device: str = "cpu",
        num_workers: int = 0,
        allow_fewer_classes: bool = False,
        seed: int = 0,
        supernet: nn.Module | None = None,
    ):
        """`checkpoint`: the official weights (a path; required unless `supernet` is given,
        e.g. a randomly initialised one for tests). `calib_images`: images used to recalibrate
        BN per subnet. `val_images`: evaluate on a fixed random subset (None: every image)."""
        if calib_images < 1:
            raise ValueError("calib_images must be at least 1")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.space = get_space("mobilenet")
        self.device = device
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.calib_images = calib_images
        self.val_images = val_images
        self.val_dir = Path(val_dir).expanduser()
        self.calib_dir = Path(calib_dir).expanduser() if calib_dir else self.val_dir
        self.classes = check_image_folder(self.val_dir, NUM_CLASSES, allow_fewer_classes)
        if self.calib_dir != self.val_dir:
            check_image_folder(self.calib_dir, NUM_CLASSES, allow_fewer_classes)
        if supernet is None:
            if checkpoint is None:
                raise ValueError(
                    "the supernet evaluator needs the supernet checkpoint path. "
                    + HOW_TO_GET_CHECKPOINT
                )
            supernet = new_ofa_supernet()
            load_supernet_checkpoint(supernet, checkpoint)
        self.supernet = supernet.eval()
        self._cache: dict[str, Metrics] = {}

    def _loader(self, folder: Path, transform, count: int | None, shuffle_seed: int):
        from torchvision.datasets import ImageFolder

        dataset = ImageFolder(str(folder), transform=transform)
        if count is not None and count < len(dataset):
            rng = np.random.default_rng(shuffle_seed)
            indices = sorted(rng.choice(len(dataset), size=count, replace=False).tolist())
            dataset = torch.utils.data.Subset(dataset, indices)
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers,
            pin_memory=self.device.startswith("cuda"),
            generator=torch.Generator().manual_seed(shuffle_seed),
        )

    def subnet(self, arch: BaseModel) -> nn.Module:
        """The architecture's subnet with inherited weights (before BN recalibration)."""
        return extract_subnet(self.supernet, self.space.parse(arch))

    def calibrated_subnet(self, arch: BaseModel) -> nn.Module:
        """The subnet on the evaluator's device with BN statistics recalibrated (eval mode)."""
        arch = self.space.parse(arch)
        model = self.subnet(arch).to(self.device)
        calibration = self._loader(
            self.calib_dir, _calibration_transform(arch.r), self.calib_images, self.seed
        )
        # Fixed augmentation randomness per run, without disturbing the caller's RNG.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            recalibrate_batchnorm(model, calibration, self.device)
        return model

    def evaluate(self, arch: BaseModel) -> Metrics:
        arch = self.space.parse(arch)
        key = self.space.key(arch)
        if key not in self._cache:
            model = self.calibrated_subnet(arch)
            validation = self._loader(
                self.val_dir, _eval_transform(arch.r), self.val_images, self.seed + 1
            )
            top1 = top1_accuracy(model, validation, self.device)
            self._cache[key] = Metrics(valid_acc=top1, test_acc=top1)
        return self._cache[key]


def load_supernet_evaluator(data_path: str | None = None, **settings: Any) -> OFASupernetEvaluator:
    """The supernet evaluator from settings: the checkpoint is found like other data files
    (explicit `checkpoint` -> `data_path` -> $COLLM_NAS_DATA -> user cache dir), the validation
    folder is `val_dir` or $COLLM_NAS_IMAGENET_VAL."""
    if settings.get("supernet") is None:
        settings["checkpoint"] = find_data_file(
            CHECKPOINT_FILE, settings.get("checkpoint") or data_path, HOW_TO_GET_CHECKPOINT
        )
    val_dir = settings.pop("val_dir", None) or os.environ.get(VAL_DIR_ENV)
    if not val_dir:
        raise DataFileError(
            "the supernet evaluator needs an ImageNet validation folder (ImageFolder layout: "
            f"val/<wnid>/<image>.JPEG): pass val_dir or set {VAL_DIR_ENV}"
        )
    return OFASupernetEvaluator(val_dir, **settings)
