"""Two evaluators for the toy space: a formula (like a benchmark table: instant, the optimum
known) and a weight-sharing supernet (like OFA's: subnets inherit sliced weights, BatchNorm is
recalibrated, top-1 is measured), built on collm-nas's generic supernet helpers.

An evaluator kind is a factory `(space, dataset, data_path, **options) -> Evaluator`, registered
under the entry-point group `collm_nas.evaluators` (see this package's pyproject.toml).
"""

from __future__ import annotations

import itertools
import math

import torch
from collm_nas.spaces import SearchSpace
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.tools.evaluators import require_space
from collm_nas.tools.supernet_eval import recalibrate_batchnorm, top1_accuracy

from collm_toy.space import CLASSES, IMAGE_SIZE, KERNELS, ToyArch, ToyNet, ToySpace


class FormulaEvaluator(Evaluator):
    """A made-up accuracy: wider and deeper is better, 5x5 kernels slightly worse."""

    kind = "formula"
    cheap = True  # nothing to compute: the search may score extra candidates on the side
    # thread_safe stays True (the default): `evaluate` reads nothing shared.

    def __init__(self, space: ToySpace):
        self.space = space

    def evaluate(self, arch: ToyArch) -> Metrics:
        valid = (60 + 8 * math.log2(arch.width / 8) + 5 * (arch.depth - 1)
                 - 3 * (arch.kernel == 5) + 2 * (arch.act == "gelu"))
        return Metrics(valid_acc=valid, test_acc=valid - 0.5)

    def optimum(self, objective: str) -> float:
        """Known because the space is small enough to score whole."""
        archs = (self.space.from_genes(g) for g in itertools.product(*self.space.dimensions.values()))
        return max(self.evaluate(a).score(objective) for a in archs)


def formula_evaluator(space: SearchSpace, dataset: str, data_path: str | None = None) -> FormulaEvaluator:
    require_space(space, ToySpace, "formula")
    space.check_dataset(dataset)
    return FormulaEvaluator(space)


# --- the supernet ----------------------------------------------------------------------------

LARGEST = ToyArch(depth=3, width=32, kernel=5, act="relu")


def blobs(count: int, seed: int, batch_size: int = 64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed batches of noisy stripes; the class is the stripes' direction (4 of them)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (count,), generator=generator)
    y, x = torch.meshgrid(torch.arange(IMAGE_SIZE, dtype=torch.float32),
                          torch.arange(IMAGE_SIZE, dtype=torch.float32), indexing="ij")
    stripes = torch.stack([x.sin(), y.sin(), ((x + y) / 1.4).sin(), ((x - y) / 1.4).sin()])
    images = stripes[labels].unsqueeze(1) + torch.randn(count, 1, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    return list(zip(images.split(batch_size), labels.split(batch_size), strict=True))


class ToySupernetEvaluator(Evaluator):
    """Top-1 of toy subnets that inherit the largest network's weights (sliced channels, centre
    of the 5x5 kernels), after BatchNorm recalibration on fixed calibration batches."""

    kind = "toy_supernet"
    # thread_safe stays True: each call copies its own subnet and never changes the supernet.

    def __init__(self, supernet: ToyNet, calibration: list, validation: list):
        self.supernet = supernet.eval()
        self.calibration = calibration
        self.validation = validation

    @torch.no_grad()
    def subnet(self, arch: ToyArch) -> ToyNet:
        net = ToyNet(arch)
        crop = (max(KERNELS) - arch.kernel) // 2
        for small, large in zip(net.convs, self.supernet.convs, strict=False):
            out_channels, in_channels = small.weight.shape[:2]
            small.weight.copy_(large.weight[:out_channels, :in_channels, crop:crop + arch.kernel,
                                            crop:crop + arch.kernel])
        for small, large in zip(net.norms, self.supernet.norms, strict=False):
            small.weight.copy_(large.weight[:arch.width])
            small.bias.copy_(large.bias[:arch.width])
        net.classifier.weight.copy_(self.supernet.classifier.weight[:, :arch.width])
        net.classifier.bias.copy_(self.supernet.classifier.bias)
        return net

    def evaluate(self, arch: ToyArch) -> Metrics:
        net = self.subnet(arch)
        recalibrate_batchnorm(net, self.calibration)
        top1 = top1_accuracy(net, self.validation)
        return Metrics(valid_acc=top1, test_acc=top1)


def supernet_evaluator(
    space: SearchSpace, dataset: str, data_path: str | None = None, *, seed: int = 0,
    checkpoint: str | None = None,
) -> ToySupernetEvaluator:
    """The supernet's weights come from `checkpoint` (a state dict of the largest ToyNet, e.g.
    from your stage-one training) or, for the example, from a fixed random initialisation (then
    every subnet scores near chance: the plumbing is real, the weights are not trained)."""
    require_space(space, ToySpace, "toy_supernet")
    space.check_dataset(dataset)
    with torch.random.fork_rng(devices=[]):  # a fixed initialisation, the caller's RNG untouched
        torch.manual_seed(seed)
        supernet = ToyNet(LARGEST)
    if checkpoint:
        supernet.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return ToySupernetEvaluator(supernet, blobs(256, seed), blobs(512, seed + 1))
