"""`convert_nb201` on tiny benchmark files written here in the official layouts.

The files hold plain dicts exactly as the official APIs store them (`meta_archs`, `arch2infos`
with `ArchResults` state dicts whose `all_results` are `ResultsCount` state dicts,
`evaluated_indexes`), and they are read back through the official packages, so a change of
layout in either package shows up here.
"""

from __future__ import annotations

import bz2
import csv
import itertools
import pickle
import statistics
import sys

import numpy as np
import pytest
import torch
from collm_nas.tools.data import DataFileError
from collm_nas.tools.nb201_convert import (
    COLUMNS,
    REQUIRED,
    MissingConverterPackage,
    convert_nb201,
    unique_str,
)

pytest.importorskip("nas_201_api")
pytest.importorskip("nats_bench")

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|nor_conv_3x3~1|avg_pool_3x3~2|",
    "|nor_conv_1x1~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|none~1|avg_pool_3x3~2|",
]
SEEDS = {0: [777, 888, 999], 1: [777, 888], 2: [777, 888, 999], 3: [888, 999]}
# the sets each training set is evaluated on (as in NAS-Bench-201 v1_1 / NATS-Bench)
EVAL_SETS = {
    "cifar10-valid": ("x-valid", "ori-test"),
    "cifar10": ("ori-test",),
    "cifar100": ("x-valid", "x-test", "ori-test"),
    "ImageNet16-120": ("x-valid", "x-test", "ori-test"),
}
CLASSES = {"cifar10-valid": 10, "cifar10": 10, "cifar100": 100, "ImageNet16-120": 120}
EPOCHS = {"200": 200, "12": 12}


def final_acc(index: int, dataset: str, eval_set: str, seed: int, hp: str = "200") -> float:
    """The accuracy after the last epoch; distinct for every (arch, set, seed, hp)."""
    base = {"cifar10-valid": 80.0, "cifar10": 85.0, "cifar100": 60.0, "ImageNet16-120": 30.0}
    shift = {"train": 9.0, "x-valid": 0.0, "x-test": 0.5, "ori-test": 0.25}[eval_set]
    value = base[dataset] + shift + 1.7 * index + 0.113 * (seed - 777) / 111
    return value - (20.0 if hp == "12" else 0.0)


def params(index: int, dataset: str) -> float:
    return 0.1 + 0.2 * index + CLASSES[dataset] * 0.000065


def epoch_time(index: int, dataset: str, seed: int) -> float:
    return (
        7.0
        + index
        + {"cifar10-valid": 0.0, "cifar10": 2.0, "cifar100": 0.5}.get(dataset, 3.0)
        + seed / 1000
    )


def results_count(index, dataset, seed, hp, with_times, numpy_floats) -> dict:
    """A `ResultsCount.state_dict()`: its attributes, plain values only."""
    epochs = EPOCHS[hp]
    arch = ARCHS[index]

    def curve(final):  # lower before the last epoch, so reading any other epoch is caught
        return {
            e: final - (epochs - 1 - e) * 0.01 - (5.0 if e < epochs - 1 else 0.0)
            for e in range(epochs)
        }

    acc1es, losses, times = {}, {}, {}
    for eval_set in EVAL_SETS[dataset]:
        for epoch, value in curve(final_acc(index, dataset, eval_set, seed, hp)).items():
            acc1es[f"{eval_set}@{epoch}"] = value
            losses[f"{eval_set}@{epoch}"] = 1.0 / (1 + epoch)
            times[f"{eval_set}@{epoch}"] = 0.5
    size = params(index, dataset)
    return {
        "name": dataset,
        "net_state_dict": None,
        "train_acc1es": curve(final_acc(index, dataset, "train", seed, hp)),
        "train_acc5es": None,
        "train_losses": {e: 1.0 / (1 + e) for e in range(epochs)},
        "train_times": {e: epoch_time(index, dataset, seed) for e in range(epochs)}
        if with_times
        else None,
        "arch_config": {
            "name": "infer.tiny",
            "channel": 16,
            "num_cells": 5,
            "arch_str": arch,
            "class_num": CLASSES[dataset],
        },
        "params": np.float64(size) if numpy_floats else size,
        "flop": 10.0 + index,
        "seed": seed,
        "epochs": epochs,
        "latency": [0.01 + index / 1000],
        "eval_names": list(EVAL_SETS[dataset]),
        "eval_acc1es": acc1es,
        "eval_times": times if with_times else {},
        "eval_losses": losses,
    }


def arch_results(index, hp, with_times=True, numpy_floats=False, datasets=tuple(EVAL_SETS)) -> dict:
    """An `ArchResults.state_dict()`."""
    seeds = SEEDS[index] if hp == "200" else [777]
    return {
        "arch_index": index,
        "arch_str": ARCHS[index],
        "all_results": {
            (ds, seed): results_count(index, ds, seed, hp, with_times, numpy_floats)
            for ds in datasets
            for seed in seeds
        },
        "dataset_seed": {ds: list(seeds) for ds in datasets},
        "clear_net_done": False,
    }


def write_nb201_pth(path, n=len(ARCHS), with_times=True, legacy=False):
    """`.pth`: torch.save({meta_archs, arch2infos{i: {less, full}}, evaluated_indexes})."""
    data = {
        "meta_archs": ARCHS[:n],
        "arch2infos": {
            i: {
                "less": arch_results(i, "12"),
                "full": arch_results(i, "200", with_times, numpy_floats=True),
            }
            for i in range(n)
        },
        "evaluated_indexes": set(range(n)),
    }
    torch.save(data, path, _use_new_zipfile_serialization=not legacy)
    return path


def pbz2(obj, path):
    with bz2.BZ2File(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=4)
    return path


def nats_arch(i):
    return {"12": arch_results(i, "12"), "200": arch_results(i, "200")}


def write_nats_folder(folder, n=len(ARCHS)):
    """`NATS-tss-v1_0-3ffb9-simple`: meta.pickle.pbz2 + one {hp: ArchResults} pickle per arch."""
    folder.mkdir()
    pbz2({"meta_archs": ARCHS[:n]}, folder / "meta.pickle.pbz2")
    for i in range(n):
        pbz2(nats_arch(i), folder / f"{i:06d}.pickle.pbz2")
    return folder


def write_nats_file(path, n=len(ARCHS)):
    """`NATS-tss-v1_0-3ffb9.pickle.pbz2`: the whole benchmark in one bz2 pickle."""
    data = {
        "meta_archs": ARCHS[:n],
        "arch2infos": {i: nats_arch(i) for i in range(n)},
        "evaluated_indexes": set(range(n)),
    }
    return pbz2(data, path)


def read_table(path):
    """The loader's checks (header; the six required columns are numbers), not its 15,625 rule."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    for row in rows:
        for column in REQUIRED:
            float(row[column])
    return rows


def mean_acc(index, dataset, eval_set):
    return statistics.fmean(final_acc(index, dataset, eval_set, s) for s in SEEDS[index])


def check_rows(rows, with_times=True):
    assert [row["arch_str"] for row in rows] == ARCHS[: len(rows)]
    for i, row in enumerate(rows):
        assert int(row["arch_index"]) == i
        expected = {
            "cifar10_valid_acc": mean_acc(i, "cifar10-valid", "x-valid"),
            "cifar10_test_acc": mean_acc(i, "cifar10", "ori-test"),
            "cifar100_valid_acc": mean_acc(i, "cifar100", "x-valid"),
            "cifar100_test_acc": mean_acc(i, "cifar100", "x-test"),
            "cifar100_valtest_acc": mean_acc(i, "cifar100", "ori-test"),
            "imagenet16_valid_acc": mean_acc(i, "ImageNet16-120", "x-valid"),
            "imagenet16_test_acc": mean_acc(i, "ImageNet16-120", "x-test"),
            "imagenet16_valtest_acc": mean_acc(i, "ImageNet16-120", "ori-test"),
            "params_cifar10_M": params(i, "cifar10-valid"),
            "params_cifar100_M": params(i, "cifar100"),
            "params_imagenet16_M": params(i, "ImageNet16-120"),
        }
        if with_times:
            for column, ds in (
                ("train_time_cifar10valid_s", "cifar10-valid"),
                ("train_time_cifar100_s", "cifar100"),
                ("train_time_imagenet16_s", "ImageNet16-120"),
            ):
                expected[column] = statistics.fmean(200 * epoch_time(i, ds, s) for s in SEEDS[i])
        else:
            for column in (
                "train_time_cifar10valid_s",
                "train_time_cifar100_s",
                "train_time_imagenet16_s",
            ):
                assert row[column] == ""
        for column, value in expected.items():
            assert float(row[column]) == pytest.approx(value, abs=1e-6), (i, column)
        assert int(row["n_seeds_200ep"]) == len(SEEDS[i])
        assert row["unique_str"] == unique_str(ARCHS[i])
    # a spot check written out by hand, so the helpers above cannot hide a shared mistake
    assert float(rows[0]["cifar10_valid_acc"]) == pytest.approx(
        (80.0 + 80.113 + 80.226) / 3, abs=1e-6
    )


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_nb201_pth(tmp_path, legacy):
    source = write_nb201_pth(tmp_path / "NAS-Bench-201-v1_1-096897.pth", legacy=legacy)
    target = tmp_path / "out" / "nb201.csv"
    assert convert_nb201(source, target, expected_cells=len(ARCHS)) == len(ARCHS)
    check_rows(read_table(target))
    assert sorted(p.name for p in target.parent.iterdir()) == ["nb201.csv"]  # no temp file left


def test_nb201_pth_without_times(tmp_path):
    source = write_nb201_pth(tmp_path / "NAS-Bench-201-v1_0-e61699.pth", n=2, with_times=False)
    target = tmp_path / "nb201.csv"
    assert convert_nb201(source, target, expected_cells=None) == 2
    check_rows(read_table(target), with_times=False)


def test_nats_simple_folder(tmp_path):
    source = write_nats_folder(tmp_path / "NATS-tss-v1_0-3ffb9-simple")
    target = tmp_path / "nb201.csv"
    assert convert_nb201(source, target, expected_cells=len(ARCHS)) == len(ARCHS)
    check_rows(read_table(target))
    # the meta file itself stands for its folder
    again = tmp_path / "again.csv"
    convert_nb201(source / "meta.pickle.pbz2", again, expected_cells=len(ARCHS))
    assert again.read_text() == target.read_text()


def test_nats_single_file(tmp_path):
    source = write_nats_file(tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2")
    target = tmp_path / "nb201.csv"
    assert convert_nb201(source, target, expected_cells=len(ARCHS)) == len(ARCHS)
    check_rows(read_table(target))


def test_missing_source_is_one_clear_error(tmp_path):
    with pytest.raises(DataFileError, match=r"does not exist.*NAS-Bench-201-v1_1-096897\.pth"):
        convert_nb201(tmp_path / "nowhere.pth", tmp_path / "nb201.csv")
    assert not (tmp_path / "nb201.csv").exists()


def test_unrecognised_file_is_one_clear_error(tmp_path):
    source = tmp_path / "notes.txt"
    source.write_text("arch_index,arch_str\n")
    with pytest.raises(ValueError, match="not a file format this converter knows"):
        convert_nb201(source, tmp_path / "nb201.csv")
    folder = tmp_path / "some-folder"
    folder.mkdir()
    with pytest.raises(ValueError, match="without meta.pickle.pbz2"):
        convert_nb201(folder, tmp_path / "nb201.csv")
    other = tmp_path / "model.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, other)
    with pytest.raises(ValueError, match="not a NAS-Bench-201 benchmark"):
        convert_nb201(other, tmp_path / "nb201.csv")
    sizes = tmp_path / "NATS-sss.pickle.pbz2"  # the size search space, not the topology one
    pbz2({"meta_archs": ["8:16:24:32:40"], "arch2infos": {}, "evaluated_indexes": set()}, sizes)
    with pytest.raises(ValueError, match="not a NAS-Bench-201 cell.*topology"):
        convert_nb201(sizes, tmp_path / "nb201.csv", expected_cells=None)


def test_wrong_number_of_cells_keeps_the_old_table(tmp_path):
    source = write_nats_file(tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2", n=3)
    target = tmp_path / "nb201.csv"
    target.write_text("old table\n")
    with pytest.raises(ValueError, match="holds 3 architectures, expected 15625"):
        convert_nb201(source, target)
    assert target.read_text() == "old table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "NATS-tss-v1_0-3ffb9.pickle.pbz2",
        "nb201.csv",
    ]


def test_missing_results_name_the_architecture(tmp_path):
    data = {
        "meta_archs": ARCHS[:2],
        "evaluated_indexes": {0, 1},
        "arch2infos": {
            0: nats_arch(0),
            1: {
                "12": arch_results(1, "12"),
                "200": arch_results(1, "200", datasets=("cifar10-valid", "cifar10")),
            },
        },
    }
    source = pbz2(data, tmp_path / "NATS-tss-v1_0-3ffb9.pickle.pbz2")
    with pytest.raises(
        DataFileError, match=r"architecture 1 \(\|avg_pool_3x3~0\|.*lacks its 200-epoch"
    ):
        convert_nb201(source, tmp_path / "nb201.csv", expected_cells=None)


@pytest.mark.parametrize(
    ("module", "make", "hint"),
    [
        ("nas_201_api", write_nb201_pth, "pip install nas-bench-201"),
        ("nats_bench", write_nats_file, "pip install nats_bench"),
    ],
)
def test_missing_api_package_says_what_to_install(tmp_path, monkeypatch, module, make, hint):
    source = make(tmp_path / ("a.pth" if module == "nas_201_api" else "a.pickle.pbz2"))
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingConverterPackage, match=hint) as info:
        convert_nb201(source, tmp_path / "nb201.csv", expected_cells=None)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ImportError)


def test_unique_str_matches_nats():
    from nats_bench.genotype_utils import topology_str2structure

    for a, b, c, d, e, f in itertools.islice(itertools.product(OPS, repeat=6), 0, None, 7):
        arch = f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"
        assert unique_str(arch) == topology_str2structure(arch).to_unique_str(consider_zero=True)


def test_cli_reports_a_missing_source(tmp_path):
    import collm_nas.cli as cli
    from typer.testing import CliRunner
    result = CliRunner().invoke(
        cli.app,
        ["data", "nb201", "--from", str(tmp_path / "x.pth"), "--out", str(tmp_path / "o.csv")],
    )
    assert result.exit_code == 2
    assert "does not exist" in " ".join(result.output.split())


def test_output_reads_through_the_project_loader(tmp_path, monkeypatch):
    import collm_nas.tools.evaluators.benchmark as benchmark
    from collm_nas.spaces import get_space

    target = tmp_path / "nb201.csv"
    convert_nb201(write_nats_file(tmp_path / "n.pickle.pbz2"), target, expected_cells=len(ARCHS))
    monkeypatch.setattr(benchmark, "NB201_ROWS", len(ARCHS))  # the real loader wants 15,625
    benchmark.read_nb201_table.cache_clear()
    try:
        bench = benchmark.load_nb201("cifar100", target)
        metrics = bench.evaluate(get_space("nb201").parse(ARCHS[2]))
    finally:
        benchmark.read_nb201_table.cache_clear()
    assert metrics.valid_acc == pytest.approx(mean_acc(2, "cifar100", "x-valid"), abs=1e-6)
    assert metrics.test_acc == pytest.approx(mean_acc(2, "cifar100", "x-test"), abs=1e-6)


class NotData:
    """Any class in a .pth is refused: unpickling it could run code."""


def test_pth_with_code_objects_is_refused_unless_trusted(tmp_path, monkeypatch):
    source = write_nb201_pth(tmp_path / "a.pth", n=2)
    data = torch.load(source, weights_only=False)
    data["extra"] = NotData()
    torch.save(data, source)
    with pytest.raises(DataFileError, match=r"refused global .*NotData.*COLLM_NAS_TRUST_PICKLE=1"):
        convert_nb201(source, tmp_path / "nb201.csv", expected_cells=None)
    monkeypatch.setenv("COLLM_NAS_TRUST_PICKLE", "1")
    assert convert_nb201(source, tmp_path / "nb201.csv", expected_cells=None) == 2
