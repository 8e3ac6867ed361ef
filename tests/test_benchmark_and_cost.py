import csv
import random

import pytest
from collm_nas.spaces import get_space
from collm_nas.tools.cost import CostCounter
from collm_nas.tools.data import DataFileError
from collm_nas.tools.evaluators.benchmark import NB201_ROWS, load_nb201, read_nb201_table


@pytest.fixture(scope="module")
def rows(data_dir):
    with open(data_dir / "nb201.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_lookup_matches_table_rows(rows):
    space = get_space("nb201")
    for dataset in ("cifar10", "cifar100", "imagenet16"):
        bench = load_nb201(dataset)
        for row in random.Random(1).sample(rows, 200):
            metrics = bench.evaluate(space.parse(row["arch_str"]))
            assert metrics.valid_acc == pytest.approx(float(row[f"{dataset}_valid_acc"]))
            assert metrics.test_acc == pytest.approx(float(row[f"{dataset}_test_acc"]))


def test_published_optima():
    assert load_nb201("cifar10").optimum("valid") == pytest.approx(91.6067, abs=1e-3)
    assert load_nb201("cifar10").optimum("test") == pytest.approx(94.3733, abs=1e-3)
    assert load_nb201("imagenet16").optimum("valid") == pytest.approx(46.7333, abs=1e-3)


def test_unknown_dataset_is_one_clear_error():
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'.*cifar10, cifar100, imagenet16"):
        load_nb201("cifar11")


def test_missing_table_names_every_path_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("COLLM_NAS_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataFileError) as err:
        read_nb201_table(str(tmp_path / "explicit"))
    text = str(err.value)
    assert str(tmp_path / "explicit") in text and str(tmp_path / "nowhere") in text
    assert "collm-nas data nb201 --from" in text


def test_truncated_table_is_rejected(tmp_path, data_dir):
    lines = (data_dir / "nb201.csv").read_text().splitlines()
    short = tmp_path / "nb201.csv"
    short.write_text("\n".join(lines[:5000]) + "\n")
    with pytest.raises(DataFileError, match="4999 distinct cells, expected 15625"):
        read_nb201_table(str(short))
    cut = tmp_path / "cut" / "nb201.csv"
    cut.parent.mkdir()
    cut.write_text("\n".join(lines[:100]) + "\n" + lines[100][:40] + "\n")
    with pytest.raises(DataFileError, match="line 101"):
        read_nb201_table(str(cut))
    assert NB201_ROWS == 15625


def test_params_equal_the_table_for_200_random_cells(rows):
    """About 1 % of the table's params rows are off (a mapping slip in the source data, see
    test_params_equal_naslib_where_the_table_disagrees); everything else must match exactly."""
    import torch

    space = get_space("nb201")
    matches = 0
    for row in random.Random(2).sample(rows, 200):
        with torch.device("meta"):  # parameter shapes only
            model = space.build(space.parse(row["arch_str"]), "cifar10")
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
        matches += params_m == pytest.approx(float(row["params_cifar10_M"]), abs=2e-6)
    assert matches >= 196


def test_params_equal_naslib_where_the_table_disagrees(data_dir):
    space = get_space("nb201")
    names = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "imagenet16"}
    with open(data_dir / "nb201_flops_naslib_subset.csv", newline="") as fh:
        ref = [r for r in csv.DictReader(fh) if r["params_match_nats"] == "False"]
    assert len(ref) > 20
    for row in ref[:40]:
        model = space.build(space.parse(row["arch_str"]), names[row["dataset"]])
        params_m = sum(p.numel() for p in model.parameters()) / 1e6
        assert params_m == pytest.approx(float(row["params_M_naslib"]), abs=2e-6)


def test_flops_within_one_percent_of_reference(data_dir):
    space = get_space("nb201")
    with open(data_dir / "nb201_flops_naslib_subset.csv", newline="") as fh:
        ref = [r for r in csv.DictReader(fh) if r["params_match_nats"] == "True"]
    counters = {}
    worst = 0.0
    names = {"cifar10": "cifar10", "cifar100": "cifar100", "ImageNet16-120": "imagenet16"}
    for row in random.Random(3).sample(ref, 60):
        dataset = names[row["dataset"]]
        counter = counters.setdefault(dataset, CostCounter(space, dataset))
        flops = counter(space.parse(row["arch_str"])).flops_m
        worst = max(worst, abs(flops - float(row["flops_M"])) / float(row["flops_M"]))
    assert worst < 0.001  # measured: 0.017 % (a constant ~1,088 FLOPs the reference adds)


def test_cost_is_cached_by_key():
    space = get_space("nb201")
    counter = CostCounter(space, "cifar10")
    arch = space.parse(["nor_conv_3x3"] * 6)
    first = counter(arch)
    assert counter(space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")) is first
