"""The weight-sharing NAS-Bench-201 supernet (RSPS / SPOS on NAS-Bench-201) on the stage-one
machinery, with tiny synthetic images: a user with CIFAR-10 trains it the same way."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from collm_nas.evals.supernet import verify
from collm_nas.spaces import get_space
from collm_nas.spaces.nb201 import EDGES, OPS, NB201Supernet, Preset, standalone
from collm_nas.tools.evaluators.weight_sharing import WeightSharingEvaluator
from collm_nas.tools.image_data import ImageSplits
from collm_nas.tools.supernet_train import Recipe, SupernetRun, train_supernet
from collm_nas.tools.supernets import FAMILIES, NoSupernet, default_preset, path_key
from torch.utils.data import TensorDataset

SPACE = get_space("nb201")
PRESET = Preset("cifar10", 10, 32, channels=4, cells=1)  # narrow and shallow: seconds on a CPU
CELL = ("nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1", "nor_conv_3x3")


def _images(count: int, seed: int) -> TensorDataset:
    """Bright or dark noisy images: two classes a network can tell apart."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    images = torch.randn(count, 3, 32, 32, generator=generator) * 0.5 + (labels.float() * 2 - 1)[:, None, None, None]
    return TensorDataset(images, labels)


@pytest.fixture(scope="module")
def splits() -> ImageSplits:
    return ImageSplits("cifar10", "synthetic", _images(96, 0), _images(40, 1), _images(40, 2),
                       channels=3, resolution=32, classes=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, splits):
    torch.manual_seed(0)
    run = SupernetRun("nb201", "cifar10", PRESET, Recipe(epochs=2, batch_size=32, optimizer="sgd", lr=0.05))
    run.model = FAMILIES["nb201"].supernet(PRESET, True)
    out = tmp_path_factory.mktemp("nb201") / "supernet.pt"
    train_supernet(run, splits, out)
    return out


def test_a_path_trains_only_its_own_operations():
    torch.manual_seed(0)
    supernet = NB201Supernet(PRESET)
    supernet(torch.randn(2, 3, 32, 32), CELL).sum().backward()
    for name, parameter in supernet.named_parameters():
        if ".edges." in name:
            edge, op = name.split(".edges.")[1].split(".")[:2]
            used = CELL[int(edge)] == op
            assert (parameter.grad is not None) == used, name
    # Each edge holds every parametrised operation once per cell; the rest is the stand-alone net.
    shared = {n for n, _ in supernet.named_parameters() if ".edges." in n}
    own = {n for n, _ in standalone(CELL, PRESET).named_parameters() if ".edges." in n}
    assert len(shared) == 2 * 3 * len(EDGES) * 3 and len(own) == 3 * 3 * 3  # convs: weight + 2 BN


def test_the_family_samples_counts_and_keys_cells_like_the_space():
    family = FAMILIES["nb201"]
    rng = np.random.default_rng(0)
    paths = [family.sample(PRESET, rng) for _ in range(50)]
    assert {op for path in paths for op in path} == set(OPS)
    low, high = family.flops_range(PRESET)
    assert all(low <= family.cost(p, PRESET)[0] <= high for p in paths) and low < high
    arch = SPACE.from_genes(CELL)
    assert family.path_of(arch) == CELL and path_key("nb201", CELL) == SPACE.key(arch)
    assert default_preset("nb201", "cifar10") == Preset("cifar10", 10, 32)
    with pytest.raises(NoSupernet, match="cifar10"):
        default_preset("nb201", "imagenet16")


def test_the_supernet_trains_and_its_paths_are_evaluated_and_verified(tmp_path, trained, splits):
    evaluator = WeightSharingEvaluator(trained, splits, calib_batches=2, batch_size=16, cache=False)
    metrics = evaluator.evaluate(SPACE.from_genes(CELL))
    assert 0 <= metrics.valid_acc <= 100 and metrics == evaluator.evaluate(SPACE.from_genes(CELL))
    result = verify(evaluator, 3, Recipe(epochs=1, batch_size=32, optimizer="sgd", lr=0.05), 0,
                    tmp_path / "standalone.jsonl")
    assert len(result["paths"]) == 3 and all(0 <= p["standalone_valid"] <= 100 for p in result["paths"])


def test_verify_can_take_the_truth_from_the_table_instead_of_training(tmp_path, trained, splits):
    from collm_nas.tools.evaluators import make_evaluator

    evaluator = WeightSharingEvaluator(trained, splits, calib_batches=2, batch_size=16, cache=False)
    table = make_evaluator("nb201", "cifar10", "synthetic")
    cache = tmp_path / "standalone.jsonl"
    result = verify(evaluator, 4, Recipe(epochs=1), 0, cache, truth=table)
    for row in result["paths"]:
        assert row["standalone_valid"] == table.evaluate(SPACE.parse(row["key"])).valid_acc
    assert not cache.exists() and result["standalone_recipe"] == {"truth": table.kind}
