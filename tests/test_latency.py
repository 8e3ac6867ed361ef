"""Note10 latency from OFA's lookup tables, and latency limits through the Coordinator, the graph
and the CLI (the real tables under $COLLM_NAS_DATA/ofa)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from collm_nas.spaces import get_space
from collm_nas.spaces.mobilenet import RESOLUTIONS, MobileNetArch
from collm_nas.tools.data import DataFileError

needs_ofa = pytest.mark.skipif(importlib.util.find_spec("ofa") is None, reason="needs the ofa extra")

LARGEST = MobileNetArch(r=224, d=[4] * 5, ks=[7] * 20, e=[6] * 20)
SMALLEST = MobileNetArch(r=160, d=[2] * 5, ks=[3] * 20, e=[3] * 20)


@pytest.fixture(scope="module")
def latency():
    from collm_nas.tools.latency import Note10Latency

    return Note10Latency()


@pytest.fixture(scope="module")
def space():
    return get_space("mobilenet")


def test_pinned_latencies_of_the_extremes(latency):
    assert latency(LARGEST) == pytest.approx(92.398, abs=1e-3)
    assert latency(SMALLEST) == pytest.approx(9.890, abs=1e-3)


@needs_ofa
def test_latency_equals_ofas_own_estimator(latency, space, data_dir):
    import ofa
    import yaml

    # The tutorial package's __init__ imports extras (gdown), and its loader calls yaml.load
    # without a Loader: load the one module directly and give it the parsed tables.
    path = Path(ofa.__file__).parent / "tutorial" / "latency_table.py"
    spec = importlib.util.spec_from_file_location("_ofa_latency_table", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    theirs = {}
    for r in RESOLUTIONS:
        estimator = object.__new__(module.LatencyEstimator)
        estimator.lut = yaml.safe_load((data_dir / "ofa" / f"note10_{r}_lookup_table.yaml").read_text())
        theirs[r] = estimator
    rng = np.random.default_rng(5)
    for _ in range(60):
        arch = space.sample(rng)
        expected = theirs[arch.r].predict_network_latency_given_spec(
            {"r": [arch.r], "d": arch.d, "ks": arch.ks, "e": arch.e}
        )
        assert latency(arch) == pytest.approx(expected, rel=1e-12)


def test_inactive_blocks_do_not_change_latency(latency):
    d = [2, 3, 4, 2, 3]
    ks, e = [3] * 20, [4] * 20
    other_ks, other_e = list(ks), list(e)
    other_ks[2], other_e[3], other_ks[19] = 7, 6, 5  # blocks 2, 3 of stage 0 and 3 of stage 4
    assert latency(MobileNetArch(r=192, d=d, ks=ks, e=e)) == latency(
        MobileNetArch(r=192, d=d, ks=other_ks, e=other_e)
    )
    active = list(ks)
    active[1] = 7
    assert latency(MobileNetArch(r=192, d=d, ks=active, e=e)) > latency(
        MobileNetArch(r=192, d=d, ks=ks, e=e)
    )


def test_missing_or_wrong_tables_give_one_clear_error(tmp_path, monkeypatch, data_dir):
    from collm_nas.tools import data
    from collm_nas.tools.latency import Note10Latency

    monkeypatch.delenv("COLLM_NAS_DATA")
    monkeypatch.setattr(data, "user_data_dir", lambda: tmp_path / "cache")
    with pytest.raises(DataFileError, match=r"ofa/note10_160_lookup_table.yaml not found"):
        Note10Latency(tmp_path)
    folder = tmp_path / "ofa"
    folder.mkdir()
    for r in RESOLUTIONS:
        (folder / f"note10_{r}_lookup_table.yaml").write_text("Conv-input:1x1x1-output:1x1x1: {mean: 1}\n")
    with pytest.raises(DataFileError, match="not OFA's Note10 table for resolution 224"):
        Note10Latency(tmp_path)(LARGEST)


def test_latency_limit_needs_a_space_with_tables():
    from collm_nas.graph.context import SearchSettings

    with pytest.raises(ValueError, match="'nb201' has none: limit FLOPs or params"):
        SearchSettings(space="nb201", cost_kind="latency", max_cost=20)


def test_cost_counter_adds_latency_only_when_asked(space):
    from collm_nas.tools.cost import CostLimit, shared_cost_counter

    plain = shared_cost_counter("mobilenet", "imagenet")(LARGEST)
    timed = shared_cost_counter("mobilenet", "imagenet", True)(LARGEST)
    assert plain.latency_ms is None and timed.latency_ms == pytest.approx(92.398, abs=1e-3)
    assert timed.flops_m == plain.flops_m
    limit = CostLimit("latency", 90)
    assert not limit.allows(timed)
    assert limit.describe(timed.latency_ms) == "latency 92.40 ms exceeds the limit of 90 ms"
    with pytest.raises(ValueError, match="no latency"):
        limit.allows(plain)


def test_llm_free_search_keeps_every_evaluation_under_the_latency_limit(tmp_path):
    from collm_nas.graph.context import SearchSettings
    from collm_nas.graph.run import run_search

    settings = SearchSettings(
        space="mobilenet", dataset="imagenet", evaluator="predictor", mode="collm-nollm",
        budget=40, cost_kind="latency", max_cost=20, seed=0,
    )
    result = run_search(settings, run_dir=tmp_path / "run")
    assert len(result.archive) == 40
    latencies = [r["latency_ms"] for r in result.archive]
    assert all(value is not None and value <= 20 for value in latencies)
    assert max(latencies) > 18  # the prior starts just under the limit, not at tiny networks
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best"]["latency_ms"] <= 20


def test_cli_rejects_two_limits_and_runs_a_latency_bench(tmp_path):
    from collm_nas.cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    both = runner.invoke(app, ["search", "--space", "mobilenet", "--dataset", "imagenet",
                               "--max-flops", "300", "--max-latency", "20", "--llm", "none"])
    assert both.exit_code == 2 and "not several" in both.output
    wrong_space = runner.invoke(app, ["bench", "--methods", "rs", "--datasets", "cifar10",
                                      "--runs", "1", "--max-latency", "20",
                                      "--out", str(tmp_path / "x.md")])
    assert wrong_space.exit_code == 2 and "'nb201' has none" in wrong_space.output
    out = tmp_path / "lat.md"
    ok = runner.invoke(app, ["bench", "--space", "mobilenet", "--datasets", "imagenet",
                             "--methods", "rs,ea", "--runs", "1", "--budget", "30",
                             "--max-latency", "25", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    runs = json.loads(out.with_suffix(".json").read_text())["runs"]
    assert all(run["latency_ms"] <= 25 for run in runs)
    assert " ms · " in out.read_text()
