"""Stage one: train a weight-sharing supernet (SPOS ShuffleNet, AutoFormer), and train single
paths from scratch.

Supernet training samples one path uniformly per batch (optionally only paths inside a randomly
drawn FLOPs bin, as the official SPOS trainer does) and updates that path's weights with Adam or
SGD and a cosine schedule. A checkpoint is written after every epoch (atomically: a kill
loses at most the epoch in progress) and `resume` continues from it with the same result as an
uninterrupted run: the data order, the paths and dropout are seeded per epoch.

The same recipe trains one path as a stand-alone network (`train_standalone`), the truth that
`collm-nas supernet verify` judges the supernet by.
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from collm_nas.errors import CollmNasError
from collm_nas.spaces.checkpoints import state_mismatch
from collm_nas.tools.image_data import ImageSplits, loader
from collm_nas.tools.supernets import default_preset, family
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn
from torch.utils.data import Subset

CHECKPOINT_FORMAT = "collm-nas-supernet/1"
# Called after each batch: (batches done this epoch, batches per epoch, running loss).
BatchCallback = Callable[[int, int, float], None]


class CheckpointError(CollmNasError, ValueError):
    """A supernet checkpoint that cannot be read or does not match what is asked of it."""


@dataclass(frozen=True)
class Recipe:
    """How a network is trained: the same for the supernet and the stand-alone paths."""

    epochs: int = 5
    batch_size: int = 128
    optimizer: str = "adam"  # "adam" or "sgd" (momentum, Nesterov)
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 4e-5
    train_images: int | None = None  # the first N of the training split (None: all of it)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError("epochs and batch size must be at least 1 and lr positive")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer must be adam or sgd, got {self.optimizer!r}")


# The supernet a search trains when it finds none: the recipe of results/shufflenet_supernet.md
# and results/autoformer_supernet.md (Adam, 10 epochs of the first 20,000 images): 582 s and
# 401 s on 2 CPU cores.
FIRST_USE_RECIPE = Recipe(epochs=10, train_images=20_000)


@dataclass
class SupernetRun:
    """A supernet in training or trained: what the checkpoint holds."""

    space: str
    dataset: str
    preset: Any  # the space's preset (shapes and choices)
    recipe: Recipe
    flops_bins: int = 0  # 0: uniform paths; N: uniform over N FLOPs bins, then a path inside
    same_start: bool = True  # ShuffleNet: every path starts as nearly the same network
    epoch: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)
    model: nn.Module | None = None


def _optimizer(model: nn.Module, recipe: Recipe, steps: int):
    """Adam or SGD, without weight decay on BatchNorm and biases, cosine decay per step to zero."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}]
    if rest:
        groups.append({"params": rest, "weight_decay": 0.0})
    if recipe.optimizer == "adam":
        optimizer = torch.optim.Adam(groups, lr=recipe.lr)
    else:
        optimizer = torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    return optimizer, schedule


def training_subset(splits: ImageSplits, recipe: Recipe):
    if recipe.train_images is None or recipe.train_images >= len(splits.train):
        return splits.train
    return Subset(splits.train, range(recipe.train_images))


class PathSampler:
    """Uniform paths, or (with `bins`) a uniformly drawn FLOPs bin and a uniform path in it."""

    def __init__(self, space: str, preset: Any, bins: int, rng: np.random.Generator):
        self.family, self.preset, self.bins, self.rng = family(space), preset, bins, rng
        if bins:
            self.low, self.high = self.family.flops_range(preset)

    def __call__(self) -> Any:
        path = self.family.sample(self.preset, self.rng)
        if not self.bins:
            return path
        width = (self.high - self.low) / self.bins
        target = int(self.rng.integers(self.bins))
        for _ in range(1000):
            flops = self.family.cost(path, self.preset)[0]
            if min(int((flops - self.low) / width), self.bins - 1) == target:
                return path
            path = self.family.sample(self.preset, self.rng)
        return path  # a bin uniform paths almost never reach: keep the last path


def train_supernet(run: SupernetRun, splits: ImageSplits, out: Path,
                   on_batch: BatchCallback | None = None,
                   on_epoch: Callable[[dict[str, float]], None] | None = None,
                   state: dict[str, Any] | None = None) -> SupernetRun:
    """Train `run.model` from epoch `run.epoch` to `run.recipe.epochs`, writing `out` after each
    epoch. `state`: the optimiser and schedule of a resumed checkpoint."""
    recipe, model = run.recipe, run.model
    data = training_subset(splits, recipe)
    steps_per_epoch = math.ceil(len(data) / recipe.batch_size)
    optimizer, schedule = _optimizer(model, recipe, steps_per_epoch * recipe.epochs)
    if state:
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
    for epoch in range(run.epoch, recipe.epochs):
        sample = PathSampler(run.space, run.preset, run.flops_bins,
                             np.random.default_rng([recipe.seed, epoch]))
        torch.manual_seed(recipe.seed * 1000 + epoch)  # dropout (after the sampler, which may
        # build networks to count their cost the first time a preset is seen)
        stats = _train_epoch(model, loader(data, recipe.batch_size, True, recipe.seed * 1000 + epoch),
                             optimizer, schedule, sample, on_batch, steps_per_epoch)
        run.epoch = epoch + 1
        run.history.append({"epoch": run.epoch, **stats})
        save_checkpoint(run, out, optimizer, schedule)
        if on_epoch:
            on_epoch(run.history[-1])
    return run


def _train_epoch(model, batches, optimizer, schedule, sample, on_batch, total) -> dict[str, float]:
    model.train()
    started, seen, loss_sum, correct = time.monotonic(), 0, 0.0, 0
    for i, (images, labels) in enumerate(batches):
        logits = model(images, sample()) if sample else model(images)
        loss = nn.functional.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        seen += len(labels)
        loss_sum += loss.item() * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        if on_batch:
            on_batch(i + 1, total, loss_sum / seen)
    if not math.isfinite(loss_sum):
        raise CollmNasError("training diverged (the loss is not finite); lower --lr")
    seconds = time.monotonic() - started
    return {"loss": loss_sum / seen, "train_acc": 100.0 * correct / seen,
            "seconds": round(seconds, 1), "images_per_s": round(seen / seconds, 1)}


def train_standalone(space: str, path: Any, preset: Any, splits: ImageSplits, recipe: Recipe,
                     on_batch: BatchCallback | None = None) -> nn.Module:
    """One path trained from scratch with `recipe` (deterministic for its seed)."""
    torch.manual_seed(recipe.seed)
    model = family(space).standalone(path, preset)
    data = training_subset(splits, recipe)
    steps_per_epoch = math.ceil(len(data) / recipe.batch_size)
    optimizer, schedule = _optimizer(model, recipe, steps_per_epoch * recipe.epochs)
    for epoch in range(recipe.epochs):
        torch.manual_seed(recipe.seed * 1000 + epoch)
        _train_epoch(model, loader(data, recipe.batch_size, True, recipe.seed * 1000 + epoch),
                     optimizer, schedule, None, on_batch, steps_per_epoch)
    return model.eval()


@contextmanager
def training_bar(console: Console, first_epoch: int, epochs: int
                 ) -> Iterator[tuple[BatchCallback, Callable[[dict[str, float]], None]]]:
    """A progress bar (loss, time left) for training from `first_epoch` to `epochs`, and a line
    per finished epoch: yields the `on_batch` and `on_epoch` callbacks of `train_supernet`."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("loss {task.fields[loss]:.3f}"), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task(f"epoch {first_epoch + 1}", total=None, loss=float("nan"))

        def on_batch(done: int, total: int, loss: float) -> None:
            bar.update(task, completed=done, total=total, loss=loss)

        def on_epoch(row: dict[str, float]) -> None:
            console.print(f"epoch {row['epoch']}: loss {row['loss']:.3f}, train top-1 "
                          f"{row['train_acc']:.2f} %, {row['images_per_s']:.0f} images/s")
            if row["epoch"] < epochs:
                bar.reset(task, description=f"epoch {int(row['epoch']) + 1}")

        yield on_batch, on_epoch


def train_first_supernet(space: str, dataset: str, out: Path, splits: ImageSplits,
                         on_batch: BatchCallback | None = None,
                         on_epoch: Callable[[dict[str, float]], None] | None = None,
                         recipe: Recipe | None = None) -> Path:
    """Train the default supernet of a space on a built-in dataset into `out`, once: `out`
    appears only when training is done; a killed run resumes from `<out>.training`; a second
    process waits for the first and reuses its file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.is_file():
            return out
        partial = out.with_name(out.name + ".training")
        if partial.is_file():
            run, state = load_checkpoint(partial)
        else:
            recipe = recipe or FIRST_USE_RECIPE
            torch.manual_seed(recipe.seed)  # the supernet's initial weights
            run = SupernetRun(space, dataset, default_preset(space, dataset), recipe)
            run.model, state = family(space).supernet(run.preset, True), None
        train_supernet(run, splits, partial, on_batch, on_epoch, state)
        os.replace(partial, out)
    return out


# --- checkpoints -----------------------------------------------------------------------------


def save_checkpoint(run: SupernetRun, out: Path, optimizer=None, schedule=None) -> None:
    """Write `run` to `out` atomically (a temporary file, then a rename)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT, "space": run.space, "dataset": run.dataset,
        "preset": run.preset.as_dict(), "recipe": asdict(run.recipe),
        "flops_bins": run.flops_bins, "same_start": run.same_start, "epoch": run.epoch, "history": run.history,
        "state_dict": run.model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer else None,
        "schedule": schedule.state_dict() if schedule else None,
    }
    partial = out.with_name(out.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, out)


def load_checkpoint(path: str | Path) -> tuple[SupernetRun, dict[str, Any]]:
    """(the run, with its model loaded; the optimiser and schedule state) from a checkpoint of
    ours, or one `CheckpointError` saying what is wrong."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(
            f"no supernet checkpoint at {path}; train one with `collm-nas supernet train`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise CheckpointError(f"{path} could not be read as a torch checkpoint ({err})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a collm-nas supernet checkpoint (format {CHECKPOINT_FORMAT}); an "
            "official SPOS checkpoint loads with `load_official_state`")
    kind = family(payload["space"])
    run = SupernetRun(space=payload["space"], dataset=payload["dataset"],
                      preset=kind.preset_from_dict(payload["preset"]), recipe=Recipe(**payload["recipe"]),
                      flops_bins=payload["flops_bins"], same_start=payload["same_start"],
                      epoch=payload["epoch"],
                      history=list(payload["history"]))
    run.model = kind.supernet(run.preset, run.same_start)
    run.model.load_state_dict(payload["state_dict"])
    return run, {"optimizer": payload["optimizer"], "schedule": payload["schedule"]}


def load_official_state(model: nn.Module, path: str | Path) -> None:
    """Load the official SPOS supernet checkpoint (`{'state_dict': ...}` with DataParallel's
    `module.` prefix, BatchNorm without affine parameters: they are set to 1 and 0) into a
    supernet of the `imagenet` preset, or say what does not fit."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path} could not be read as a torch checkpoint ({err})") from None
    state = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds no state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    own = model.state_dict()
    for name, module in model.named_modules():  # official BatchNorm has no affine parameters
        if isinstance(module, nn.BatchNorm2d) and f"{name}.running_mean" in state:
            state.setdefault(f"{name}.weight", torch.ones_like(own[f"{name}.weight"]))
            state.setdefault(f"{name}.bias", torch.zeros_like(own[f"{name}.bias"]))
    mismatch = state_mismatch(own, state, optional=("num_batches_tracked",))
    if mismatch:
        raise CheckpointError(f"{path} does not fit the SPOS ShuffleNet supernet: {mismatch}")
    model.load_state_dict({**own, **state})
