"""Accuracy of SPOS ShuffleNet paths with weights inherited from a supernet trained here.

Per path: reset every BatchNorm's statistics and recalibrate them on a fixed set of training
batches (the same batches for every path), then top-1 on the held-out validation split (what the
search reads) and on the official test split (reported). Deterministic: a path always gets the
same numbers from the same checkpoint and settings. Results are cached in memory and in a JSON
lines file beside the checkpoint, keyed by the path and everything that changes its numbers, so
a resumed or repeated search does not pay twice.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collm_nas.spaces import SearchSpace
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.spaces.shufflenet import ShuffleNetSupernet, path_of
from collm_nas.tools.data import DataFileError, find_data_file, user_data_dir
from collm_nas.tools.image_data import ImageSplits, fixed_batches, load_splits, loader
from collm_nas.tools.supernet_eval import recalibrate_batchnorm, top1_accuracy
from collm_nas.tools.supernet_train import (
    FIRST_USE_RECIPE,
    CheckpointError,
    load_checkpoint,
    train_first_supernet,
)
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import Subset

HOW_TO_TRAIN = ("train one with `collm-nas supernet train --space shufflenet --data fashion-mnist "
                "--out FILE` and pass `--evaluator-option checkpoint=FILE`")


class OnePath(nn.Module):
    """The supernet seen as the network of one path (for BN recalibration and top-1)."""

    def __init__(self, supernet: ShuffleNetSupernet, path: Sequence[int]):
        super().__init__()
        self.supernet, self.path = supernet, tuple(path)

    def forward(self, x):
        return self.supernet(x, self.path)


class SPOSSupernetEvaluator(Evaluator):
    """Top-1 of SPOS paths with inherited weights and recalibrated BatchNorm."""

    kind = "supernet"
    thread_safe = False  # recalibration rewrites the one supernet's BatchNorm statistics

    def __init__(self, checkpoint: str | Path, splits: ImageSplits | None = None, *,
                 calib_batches: int = 20, batch_size: int = 200, valid_images: int | None = None,
                 test_images: int | None = None, seed: int = 0, cache: bool = True):
        """`calib_batches` of `batch_size` training images recalibrate BN; `valid_images` and
        `test_images`: the first N of those splits (None: all of it)."""
        if calib_batches < 1 or batch_size < 1:
            raise CheckpointError("calib_batches and batch_size must be at least 1")
        self.checkpoint = Path(checkpoint)
        run, _ = load_checkpoint(self.checkpoint)
        if run.space != "shufflenet":
            raise CheckpointError(f"{checkpoint} is a {run.space} supernet, not a shufflenet one")
        self.run, self.supernet = run, run.model.eval()
        self.splits = splits or load_splits(run.dataset)
        self.calibration = fixed_batches(self.splits.train, batch_size, calib_batches, seed)
        self.settings = {"checkpoint_epoch": run.epoch, "calib_batches": calib_batches,
                         "batch_size": batch_size, "valid_images": valid_images,
                         "test_images": test_images, "seed": seed}
        self._memory: dict[str, Metrics] = {}
        self._file = (self.checkpoint.with_name(self.checkpoint.name + ".evals.jsonl")
                      if cache else None)
        self._tag = _digest(self.checkpoint, self.settings) if cache else ""
        self._load_cache()

    def evaluate(self, arch: BaseModel) -> Metrics:
        path = path_of(arch)
        key = "".join(map(str, path))
        if key not in self._memory:
            model = OnePath(self.supernet, path)
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


def spos_supernet_evaluator(space: SearchSpace, dataset: str, data_path: str | None = None,
                            checkpoint: str | None = None, data_root: str | None = None,
                            **settings: Any) -> SPOSSupernetEvaluator:
    """The `supernet` kind for the shufflenet space: the checkpoint is `checkpoint` (which must
    exist), else `supernets/shufflenet-<dataset>.pt` found like other data files, else (Fashion-MNIST,
    CIFAR-10) one trained now into the user data dir with a progress bar, once. `data_root` is
    where the images are when not in their default place."""
    space.check_dataset(dataset)
    splits = load_splits(dataset, root=data_root) if data_root else None
    if checkpoint:
        path = Path(checkpoint).expanduser()
    else:
        filename = f"supernets/shufflenet-{dataset}.pt"
        try:
            path = find_data_file(filename, data_path, HOW_TO_TRAIN)
        except DataFileError:
            if dataset == "imagenet":
                raise
            splits = splits or load_splits(dataset)
            path = _train_first_use(dataset, user_data_dir() / filename, splits)
    evaluator = SPOSSupernetEvaluator(path, splits, **settings)
    if evaluator.run.dataset != dataset:
        raise CheckpointError(f"{path} was trained on {evaluator.run.dataset}, not {dataset}")
    if evaluator.run.preset != space.preset(dataset):
        raise CheckpointError(
            f"{path} was trained at width {evaluator.run.preset.width}; a search counts FLOPs and "
            f"params of the {dataset} preset at width 1, so it needs a supernet of that preset "
            "(train one without --width)")
    return evaluator


def _train_first_use(dataset: str, out: Path, splits: ImageSplits) -> Path:
    """The default supernet of `dataset`, trained into `out` the first time a search needs it."""
    if out.is_file():  # another process finished it since we looked
        return out
    recipe = FIRST_USE_RECIPE
    console = Console(stderr=True)
    console.print(f"No SPOS supernet for {dataset} yet: training one into {out} ({recipe.epochs} "
                  f"epochs of {recipe.train_images} images, about 10 minutes on 2 CPU cores; "
                  "later runs reuse it, a killed one resumes).")
    with Progress(TextColumn("supernet {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.3f}"), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task("epoch 1", total=None, loss=float("nan"))

        def on_epoch(row: dict[str, float]) -> None:
            bar.reset(task, description=f"epoch {int(row['epoch']) + 1}")

        train_first_supernet(dataset, out, splits,
                             lambda done, total, loss: bar.update(task, completed=done, total=total, loss=loss),
                             on_epoch)
    return out
