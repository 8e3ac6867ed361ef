"""Accuracy of paths with weights inherited from a supernet trained here (SPOS ShuffleNet,
AutoFormer).

Per path: where the network has BatchNorm (ShuffleNet), reset its statistics and recalibrate
them on a fixed set of training batches (the same batches for every path); AutoFormer has only
LayerNorm, which needs none. Then top-1 on the held-out validation split (what the search reads)
and on the official test split (reported). Deterministic: a path always gets the
same numbers from the same checkpoint and settings. Results are cached in memory and in a JSON
lines file beside the checkpoint, keyed by the path and everything that changes its numbers, so
a resumed or repeated search does not pay twice.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from collm_nas.spaces import SearchSpace
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.tools.data import DataFileError, find_data_file, user_data_dir
from collm_nas.tools.image_data import ImageSplits, fixed_batches, load_splits, loader
from collm_nas.tools.supernet_eval import recalibrate_batchnorm, top1_accuracy
from collm_nas.tools.supernet_train import (
    FIRST_USE_RECIPE,
    CheckpointError,
    load_checkpoint,
    train_first_supernet,
    training_bar,
)
from collm_nas.tools.supernets import default_preset, family, path_key
from pydantic import BaseModel
from rich.console import Console
from torch import nn
from torch.utils.data import Subset

HOW_TO_TRAIN = ("train one with `collm-nas supernet train --space {space} --data {dataset} "
                "--out FILE` and pass `--evaluator-option checkpoint=FILE`")


class OnePath(nn.Module):
    """The supernet seen as the network of one path (for BN recalibration and top-1)."""

    def __init__(self, supernet: nn.Module, path: Any):
        super().__init__()
        self.supernet, self.path = supernet, path

    def forward(self, x):
        return self.supernet(x, self.path)


class WeightSharingEvaluator(Evaluator):
    """Top-1 of paths with inherited weights (and recalibrated BatchNorm, where there is any)."""

    kind = "supernet"
    thread_safe = False  # recalibration rewrites the one supernet's BatchNorm statistics

    def __init__(self, checkpoint: str | Path, splits: ImageSplits | None = None, *,
                 calib_batches: int = 20, batch_size: int = 200, valid_images: int | None = None,
                 test_images: int | None = None, seed: int = 0, cache: bool = True,
                 data_root: str | None = None):
        """`calib_batches` of `batch_size` training images recalibrate BN; `valid_images` and
        `test_images`: the first N of those splits (None: all of it); without `splits`, the
        checkpoint's dataset is read (from `data_root` where given)."""
        if calib_batches < 1 or batch_size < 1:
            raise CheckpointError("calib_batches and batch_size must be at least 1")
        self.checkpoint = Path(checkpoint)
        run, _ = load_checkpoint(self.checkpoint)
        self.run, self.supernet, self.family = run, run.model.eval(), family(run.space)
        self.splits = splits or load_splits(run.dataset, root=data_root)
        calibrate = any(isinstance(m, nn.modules.batchnorm._BatchNorm)  # AutoFormer: LayerNorm only
                        for m in self.supernet.modules())
        self.calibration = (fixed_batches(self.splits.train, batch_size, calib_batches, seed)
                            if calibrate else [])
        self.settings = {"checkpoint_epoch": run.epoch, "calib_batches": calib_batches if calibrate else 0,
                         "batch_size": batch_size, "valid_images": valid_images,
                         "test_images": test_images, "seed": seed}
        self._memory: dict[str, Metrics] = {}
        self._file = (self.checkpoint.with_name(self.checkpoint.name + ".evals.jsonl")
                      if cache else None)
        self._tag = _digest(self.checkpoint, self.settings) if cache else ""
        self._load_cache()

    def evaluate(self, arch: BaseModel) -> Metrics:
        path = self.family.path_of(arch)
        key = path_key(self.run.space, path)
        if key not in self._memory:
            model = OnePath(self.supernet, path)
            if self.calibration:
                recalibrate_batchnorm(model, self.calibration)
            valid = _first(self.splits.valid, self.settings["valid_images"])
            test = _first(self.splits.test, self.settings["test_images"])
            metrics = Metrics(valid_acc=top1_accuracy(model, loader(valid, 500, False, 0)),
                              test_acc=top1_accuracy(model, loader(test, 500, False, 0)))
            self._memory[key] = metrics
            self._append(key, metrics)
        return self._memory[key]

    def _load_cache(self) -> None:
        if self._file is None or not self._file.is_file():
            return
        for line in self._file.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            if row.get("tag") == self._tag:
                self._memory[row["key"]] = Metrics(row["valid_acc"], row["test_acc"])

    def _append(self, key: str, metrics: Metrics) -> None:
        if self._file is None:
            return
        row = {"tag": self._tag, "key": key, "valid_acc": metrics.valid_acc,
               "test_acc": metrics.test_acc, **self.settings}
        with _file_lock, self._file.open("a") as f:
            f.write(json.dumps(row) + "\n")


_file_lock = threading.Lock()


def _first(dataset, count: int | None):
    """The first `count` items of `dataset` (all of them for None)."""
    return dataset if count is None else Subset(dataset, range(min(count, len(dataset))))


def _digest(checkpoint: Path, settings: dict[str, Any]) -> str:
    """Names one checkpoint file's content and the settings that change the numbers."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    with checkpoint.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def weight_sharing_evaluator(space: SearchSpace, dataset: str, data_path: str | None = None,
                            checkpoint: str | None = None, data_root: str | None = None,
                            **settings: Any) -> WeightSharingEvaluator:
    """The `supernet` kind for the shufflenet and autoformer spaces: the checkpoint is
    `checkpoint` (which must exist), else `supernets/<space>-<dataset>.pt` found like other data
    files, else (Fashion-MNIST, CIFAR-10) one trained now into the user data dir with a progress
    bar, once. `data_root` is where the images are when not in their default place."""
    space.check_dataset(dataset)
    preset = default_preset(space.name, dataset)
    splits = load_splits(dataset, root=data_root) if data_root else None
    if checkpoint:
        path = Path(checkpoint).expanduser()
    else:
        filename = f"supernets/{space.name}-{dataset}.pt"
        try:
            path = find_data_file(filename, data_path,
                                  HOW_TO_TRAIN.format(space=space.name, dataset=dataset))
        except DataFileError:
            if dataset == "imagenet":
                raise
            splits = splits or load_splits(dataset)
            path = _train_first_use(space.name, dataset, user_data_dir() / filename, splits)
    evaluator = WeightSharingEvaluator(path, splits, **settings)
    if evaluator.run.space != space.name or evaluator.run.dataset != dataset:
        raise CheckpointError(f"{path} is a {evaluator.run.space} supernet trained on "
                              f"{evaluator.run.dataset}, not a {space.name} one on {dataset}")
    if evaluator.run.preset != preset:
        width = getattr(evaluator.run.preset, "width", 1.0)
        raise CheckpointError(
            f"{path} was trained at width {width}; a search counts FLOPs and "
            f"params of the {dataset} preset at width 1, so it needs a supernet of that preset "
            "(train one without --width)")
    return evaluator


def _train_first_use(space: str, dataset: str, out: Path, splits: ImageSplits) -> Path:
    """The default supernet of `space` on `dataset`, trained into `out` the first time a search
    needs it."""
    if out.is_file():  # another process finished it since we looked
        return out
    recipe = FIRST_USE_RECIPE
    console = Console(stderr=True)
    console.print(f"No {space} supernet for {dataset} yet: training one into {out} ({recipe.epochs} "
                  f"epochs of {recipe.train_images} images: minutes on a CPU, see docs/stage_one.md; "
                  "later runs reuse it, a killed one resumes).")
    with training_bar(console, 0, recipe.epochs) as (on_batch, on_epoch):
        train_first_supernet(space, dataset, out, splits, on_batch, on_epoch)
    return out
