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
The generic parts (image folders, loaders, BN recalibration, top-1) are `tools/supernet_eval.py`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from collm_nas.errors import CollmNasError
from collm_nas.spaces import SearchSpace, get_space
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.spaces.mobilenet import NUM_CLASSES, MobileNetSpace, extract_subnet, new_ofa_supernet
from collm_nas.tools.data import DataFileError, find_data_file
from collm_nas.tools.evaluators import require_space
from collm_nas.tools.supernet_eval import (
    calibration_transform,
    check_image_folder,
    eval_transform,
    image_loader,
    recalibrate_batchnorm,
    top1_accuracy,
)
from pydantic import BaseModel
from torch import nn

CHECKPOINT_FILE = "ofa/ofa_mbv3_d234_e346_k357_w1.2"
VAL_DIR_ENV = "COLLM_NAS_IMAGENET_VAL"
HOW_TO_GET_CHECKPOINT = (
    "Get the official supernet weights ofa_mbv3_d234_e346_k357_w1.2 (github han-cai/files, "
    "ofa/ofa_nets/, also fetched by `ofa.model_zoo.ofa_net`) and save the file as "
    f"<data dir>/{CHECKPOINT_FILE}, or pass its path."
)


class SupernetSettingError(CollmNasError, ValueError):
    """An evaluator option that cannot work (no checkpoint given, a count below one)."""


class SupernetCheckpointError(CollmNasError, ValueError):
    """The checkpoint is unreadable or belongs to another network."""


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
            raise SupernetSettingError("calib_images must be at least 1")
        if batch_size < 1:
            raise SupernetSettingError("batch_size must be at least 1")
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
                raise SupernetSettingError(
                    "the supernet evaluator needs the supernet checkpoint path. "
                    + HOW_TO_GET_CHECKPOINT
                )
            supernet = new_ofa_supernet()
            load_supernet_checkpoint(supernet, checkpoint)
        self.supernet = supernet.eval()
        self._cache: dict[str, Metrics] = {}

    def subnet(self, arch: BaseModel) -> nn.Module:
        """The architecture's subnet with inherited weights (before BN recalibration)."""
        return extract_subnet(self.supernet, self.space.parse(arch))

    def calibrated_subnet(self, arch: BaseModel) -> nn.Module:
        """The subnet on the evaluator's device with BN statistics recalibrated (eval mode)."""
        arch = self.space.parse(arch)
        model = self.subnet(arch).to(self.device)
        calibration = image_loader(
            self.calib_dir, calibration_transform(arch.r), self.calib_images, self.seed,
            self.batch_size, self.num_workers, self.device,
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
            validation = image_loader(
                self.val_dir, eval_transform(arch.r), self.val_images, self.seed + 1,
                self.batch_size, self.num_workers, self.device,
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


def supernet_evaluator(
    space: SearchSpace, dataset: str, data_path: str | None = None, **settings: Any
) -> Evaluator:
    """The `supernet` evaluator kind (entry point in pyproject.toml): SPOS ShuffleNet, AutoFormer
    or NAS-Bench-201 paths from a supernet trained here (`tools/evaluators/weight_sharing.py`), or
    OFA MobileNetV3 subnets with `settings` as for `load_supernet_evaluator`."""
    from collm_nas.tools.supernets import FAMILIES

    if space.name in FAMILIES:
        from collm_nas.tools.evaluators.weight_sharing import weight_sharing_evaluator

        return weight_sharing_evaluator(space, dataset, data_path, **settings)
    require_space(space, MobileNetSpace, "supernet")
    space.check_dataset(dataset)
    return load_supernet_evaluator(data_path, **settings)
