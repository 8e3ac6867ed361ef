"""Stage one on tiny synthetic images: supernet training, its checkpoints and resume, the supernet
evaluator (deterministic, cached on disk, serialised) and the verify statistics."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from collm_nas.evals.supernet import rank_agreement, sample_paths, verify, write_verify
from collm_nas.spaces.shufflenet import ShuffleNetSpace, ShuffleNetSupernet
from collm_nas.tools.evaluators.weight_sharing import WeightSharingEvaluator
from collm_nas.tools.image_data import ImageSplits, loader
from collm_nas.tools.supernet_eval import top1_accuracy
from collm_nas.tools.supernet_train import (
    CheckpointError,
    Recipe,
    SupernetRun,
    load_checkpoint,
    train_standalone,
    train_supernet,
)
from torch.utils.data import TensorDataset

SPACE = ShuffleNetSpace()
PRESET = SPACE.preset("fashion-mnist", 0.25)


def _images(count: int, seed: int) -> TensorDataset:
    """Two classes a network can tell apart: bright or dark images with noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    brightness = (labels.float() * 2 - 1)[:, None, None, None]
    images = torch.randn(count, 1, 28, 28, generator=generator) * 0.5 + brightness
    return TensorDataset(images, labels)


@pytest.fixture(scope="module")
def splits() -> ImageSplits:
    return ImageSplits("fashion-mnist", "synthetic", _images(96, 0), _images(40, 1), _images(40, 2),
                       channels=1, resolution=28, classes=10)


def _run(epochs: int) -> SupernetRun:
    torch.manual_seed(0)
    run = SupernetRun("shufflenet", "fashion-mnist", PRESET, Recipe(epochs=epochs, batch_size=32, optimizer="sgd", lr=0.05))
    run.model = ShuffleNetSupernet(PRESET)
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, splits):
    out = tmp_path_factory.mktemp("supernet") / "net.pt"
    train_supernet(_run(3), splits, out)
    return out


def test_training_writes_a_checkpoint_each_epoch(tmp_path, splits, trained):
    epochs = []
    train_supernet(_run(2), splits, tmp_path / "a.pt", on_epoch=epochs.append)
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert not (tmp_path / "a.pt.partial").exists()
    run, _ = load_checkpoint(trained)
    assert run.epoch == 3 and run.preset == PRESET and len(run.history) == 3
    assert all(h["loss"] > 0 and h["images_per_s"] > 0 for h in run.history)


def test_one_path_trained_alone_learns_and_is_deterministic(splits):
    recipe = Recipe(epochs=8, batch_size=16, optimizer="sgd", lr=0.05)
    model = train_standalone("shufflenet", (0, 1, 2, 3) * 5, PRESET, splits, recipe)
    assert top1_accuracy(model, loader(splits.valid, 40, False, 0)) >= 95  # bright vs dark
    again = train_standalone("shufflenet", (0, 1, 2, 3) * 5, PRESET, splits, recipe)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values(), strict=True))


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, splits, trained):
    def kill(row):
        raise KeyboardInterrupt  # after the checkpoint of epoch 1 is written

    with pytest.raises(KeyboardInterrupt):
        train_supernet(_run(3), splits, tmp_path / "part.pt", on_epoch=kill)
    run, state = load_checkpoint(tmp_path / "part.pt")
    assert run.epoch == 1
    train_supernet(run, splits, tmp_path / "part.pt", state=state)
    resumed, whole = load_checkpoint(tmp_path / "part.pt")[0], load_checkpoint(trained)[0]
    for (name, a), b in zip(resumed.model.state_dict().items(), whole.model.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_not_a_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no supernet checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a collm-nas supernet checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_the_evaluator_is_deterministic_and_cached_on_disk(splits, trained):
    arch = SPACE.parse("0123" * 5)
    first = WeightSharingEvaluator(trained, splits, calib_batches=2, batch_size=16)
    metrics = first.evaluate(arch)
    assert 0 <= metrics.valid_acc <= 100 and metrics == first.evaluate(arch)
    cache = trained.with_name(trained.name + ".evals.jsonl")
    assert len(cache.read_text().splitlines()) == 1
    again = WeightSharingEvaluator(trained, splits, calib_batches=2, batch_size=16)
    assert again._memory[SPACE.key(arch)] == metrics  # read from the file, not recomputed
    fresh = WeightSharingEvaluator(trained, splits, calib_batches=2, batch_size=16, cache=False)
    assert fresh.evaluate(arch) == metrics
    other = WeightSharingEvaluator(trained, splits, calib_batches=3, batch_size=16)
    assert SPACE.key(arch) not in other._memory  # other settings: other numbers


def test_parallel_evaluations_through_the_factory_lock_give_the_serial_numbers(splits, trained):
    from collm_nas.tools.evaluators import Serialised

    evaluator = WeightSharingEvaluator(trained, splits, calib_batches=2, batch_size=16, cache=False)
    archs = [SPACE.parse(str(i) * 20) for i in range(4)]
    serial = [evaluator.evaluate(a) for a in archs]
    shared = Serialised(WeightSharingEvaluator(trained, splits, calib_batches=2, batch_size=16,
                                              cache=False))
    results = [None] * 4
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, shared.evaluate(archs[i])))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == serial


def test_rank_agreement_reads_perfect_and_reversed_rankings():
    same = rank_agreement([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60], top_k=2)
    assert same["kendall"] == pytest.approx(1) and same["top_k_overlap"] == 1
    flipped = rank_agreement([6, 5, 4, 3, 2, 1], [10, 20, 30, 40, 50, 60], top_k=2)
    assert flipped["spearman"] == pytest.approx(-1) and flipped["top_k_overlap"] == 0
    assert sample_paths("shufflenet", PRESET, 5, 3) == sample_paths("shufflenet", PRESET, 5, 3)
    assert len(set(sample_paths("shufflenet", PRESET, 5, 3))) == 5


def test_verify_trains_each_path_once_and_writes_its_table(tmp_path, splits, trained):
    evaluator = WeightSharingEvaluator(trained, splits, calib_batches=2, batch_size=16, cache=False)
    recipe = Recipe(epochs=1, batch_size=32, optimizer="sgd", lr=0.05)
    cache = tmp_path / "standalone.jsonl"
    result = verify(evaluator, 3, recipe, 0, cache)
    assert len(result["paths"]) == 3 and len(cache.read_text().splitlines()) == 3
    again = verify(evaluator, 4, recipe, 0, cache)  # three cached, one new
    assert len(cache.read_text().splitlines()) == 4
    kept = ("key", "standalone_valid", "standalone_test", "inherited_valid")
    assert [{k: r[k] for k in kept} for r in again["paths"][:3]] == [
        {k: r[k] for k in kept} for r in result["paths"]]
    chosen = [r["key"] for r in again["paths"][1:4]]
    given = verify(evaluator, 0, recipe, 0, cache, keys=chosen)
    assert [r["key"] for r in given["paths"]] == chosen and given["given"]
    assert len(cache.read_text().splitlines()) == 4  # all three were trained already
    out = write_verify(again, tmp_path / "verify.md", "collm-nas supernet verify ...")
    assert "Kendall tau" in out.read_text() and out.with_suffix(".png").is_file()
    assert json.loads(out.with_suffix(".json").read_text())["agreement"]["top_k"] == 1


def test_verify_with_two_training_seeds_ranks_against_their_mean_and_measures_the_seeds(
        tmp_path, splits, trained):
    evaluator = WeightSharingEvaluator(trained, splits, calib_batches=2, batch_size=16, cache=False)
    recipe = Recipe(epochs=1, batch_size=32, optimizer="sgd", lr=0.05)
    cache = tmp_path / "standalone.jsonl"
    result = verify(evaluator, 4, recipe, 0, cache, train_seeds=[0, 1])
    assert len(cache.read_text().splitlines()) == 8  # each path once per seed
    for row in result["paths"]:
        by_seed = row["standalone_by_seed"]
        assert [s["seed"] for s in by_seed] == [0, 1]
        assert row["standalone_valid"] == pytest.approx(np.mean([s["valid_acc"] for s in by_seed]))
    first, second = ([r["standalone_by_seed"][i]["valid_acc"] for r in result["paths"]] for i in (0, 1))
    assert result["seed_agreement"]["kendall"] == pytest.approx(
        rank_agreement(first, second, 1)["kendall"], nan_ok=True)  # tiny data may tie every path
    inherited = [r["inherited_valid"] for r in result["paths"]]
    assert [a["seed"] for a in result["agreement_by_seed"]] == [0, 1]
    assert result["agreement_by_seed"][1]["spearman"] == pytest.approx(
        rank_agreement(inherited, second, 1)["spearman"], nan_ok=True)
    single = verify(evaluator, 4, recipe, 0, cache)  # seed 0 alone: all cached
    assert len(cache.read_text().splitlines()) == 8 and "seed_agreement" not in single
    assert [r["standalone_valid"] for r in single["paths"]] == first
    text = write_verify(result, tmp_path / "verify.md", "collm-nas supernet verify ...").read_text()
    assert "between training seeds 0 and 1" in text and "inherited vs training seed 1 alone" in text


@pytest.fixture(scope="module")
def first_use(tmp_path_factory):
    """A search's first use of the supernet evaluator with no checkpoint anywhere: it trains the
    default one (full width, the first-use recipe) on synthetic Fashion-MNIST files."""
    from collm_nas.tools.evaluators.weight_sharing import weight_sharing_evaluator
    from test_image_data import write_fashion_mnist

    home = tmp_path_factory.mktemp("first_use")
    root = write_fashion_mnist(home / "fashion", train=10_100, test=40)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(home / "cache"))
        patch.setenv("COLLM_NAS_DATA", str(home / "empty"))
        evaluator = weight_sharing_evaluator(SPACE, "fashion-mnist", data_root=str(root),
                                            calib_batches=2, batch_size=16, valid_images=60)
    return evaluator, root, home


def test_first_use_trains_the_default_supernet_once_into_the_user_cache(first_use, tmp_path):
    from collm_nas.tools.evaluators.weight_sharing import weight_sharing_evaluator
    from collm_nas.tools.supernet_train import FIRST_USE_RECIPE

    evaluator, root, home = first_use
    out = evaluator.checkpoint
    assert out.name == "shufflenet-fashion-mnist.pt" and out.parent.name == "supernets"
    assert evaluator.run.epoch == FIRST_USE_RECIPE.epochs and evaluator.run.preset == SPACE.preset("fashion-mnist")
    assert not out.with_name(out.name + ".training").exists()
    written = out.stat().st_mtime_ns
    with pytest.MonkeyPatch.context() as patch:  # a later search finds it and trains nothing
        patch.setenv("XDG_CACHE_HOME", str(home / "cache"))
        patch.setenv("COLLM_NAS_DATA", str(home / "empty"))
        again = weight_sharing_evaluator(SPACE, "fashion-mnist", data_root=str(root), calib_batches=2,
                                        batch_size=16, valid_images=60)
    assert again.checkpoint == out and out.stat().st_mtime_ns == written


def test_a_search_runs_on_the_trained_supernet_under_a_flops_limit(tmp_path, first_use):
    from collm_nas.graph.context import SearchSettings
    from collm_nas.graph.run import run_search

    evaluator, root, _ = first_use
    options = {"checkpoint": str(evaluator.checkpoint), "data_root": str(root), "calib_batches": 2,
               "batch_size": 16, "valid_images": 60}
    limit = 4.5  # MFLOPs of the fashion-mnist preset: about 90 % of the space is over it
    settings = SearchSettings(space="shufflenet", mode="collm-nollm", budget=10, candidates=5,
                              iterations=4, evaluator="supernet", evaluator_options=options,
                              cost_kind="flops", max_cost=limit, seed=0)
    result = run_search(settings, tmp_path / "run")
    assert result.evaluations == 10
    assert all(r["flops_m"] <= limit and 0 <= r["valid_acc"] <= 100 for r in result.archive)
    assert len({r["key"] for r in result.archive}) == 10


def test_a_supernet_of_another_width_is_refused_for_search(trained, first_use):
    from collm_nas.tools.evaluators.weight_sharing import weight_sharing_evaluator

    _, root, _ = first_use
    with pytest.raises(CheckpointError, match="width 0.25.*without --width"):
        weight_sharing_evaluator(SPACE, "fashion-mnist", checkpoint=str(trained), data_root=str(root),
                                calib_batches=2, batch_size=16)


def test_a_missing_supernet_names_the_command_that_trains_one(tmp_path, monkeypatch):
    from collm_nas.tools.data import DataFileError
    from collm_nas.tools.evaluators.weight_sharing import weight_sharing_evaluator

    with pytest.raises(CheckpointError, match="collm-nas supernet train"):
        weight_sharing_evaluator(SPACE, "fashion-mnist", checkpoint=str(tmp_path / "none.pt"))
    monkeypatch.setenv("COLLM_NAS_DATA", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(DataFileError, match="collm-nas supernet train --space shufflenet"):
        weight_sharing_evaluator(SPACE, "imagenet")  # no first-use training without the images


def test_flops_bins_spread_the_sampled_paths_over_the_cost_range():
    from collm_nas.spaces.shufflenet import cost_of_path, flops_range
    from collm_nas.tools.supernet_train import PathSampler

    low, high = flops_range(PRESET)
    edges = np.linspace(low, high, 5)

    def shares(bins: int) -> np.ndarray:
        sample = PathSampler("shufflenet", PRESET, bins, np.random.default_rng(0))
        flops = [cost_of_path(sample(), PRESET)[0] for _ in range(400)]
        return np.histogram(flops, edges)[0] / 400

    uniform, binned = shares(0), shares(4)
    assert uniform[0] + uniform[3] < 0.05  # uniform paths crowd the middle of the range
    assert binned[0] + binned[3] > 0.3
