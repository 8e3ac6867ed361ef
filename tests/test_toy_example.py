"""The worked example of docs/extending.md: a toy space and two evaluators from a package of
their own (examples/toy_space), installed for real and found through its entry points only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from collm_nas.cli import app
from collm_nas.spaces import get_space
from collm_nas.tools.cost import CostCounter
from collm_nas.tools.evaluators import make_evaluator
from typer.testing import CliRunner

TOY_SOURCE = Path(__file__).resolve().parents[1] / "examples" / "toy_space"


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory) -> Path:
    """A folder holding the installed toy package and its dist-info (with the entry points),
    built from a copy so the source tree gets no build files."""
    root = tmp_path_factory.mktemp("toy")
    source = shutil.copytree(TOY_SOURCE, root / "source")
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(site), str(source)],
        check=True,
    )
    return site


@pytest.fixture
def toy_installed(toy_site, monkeypatch):
    monkeypatch.syspath_prepend(str(toy_site))
    yield
    get_space.cache_clear()  # forget the toy once its folder leaves sys.path


def test_spaces_command_lists_the_toy_with_its_defaults(toy_installed):
    listing = CliRunner().invoke(app, ["spaces", "--json"])
    assert listing.exit_code == 0, listing.output
    toy = next(fact for fact in json.loads(listing.output) if fact["space"] == "toy")
    assert toy["default_dataset"] == "blobs" and toy["evaluators"] == ["formula", "toy_supernet"]
    text = CliRunner().invoke(app, ["spaces"]).output
    assert "toy: 4 dimensions" in text and "formula (default), toy_supernet" in text


def test_toy_evaluators_and_cost_work_through_the_registries(toy_installed):
    space = get_space("toy")
    arch = space.parse({"depth": 1, "width": 8, "kernel": 3, "act": "relu"})
    formula = make_evaluator("toy", None)
    assert formula.kind == "formula" and formula.evaluate(arch).valid_acc == 60
    assert formula.optimum("valid") == 88
    supernet = make_evaluator("toy", None, "toy_supernet")
    top1 = supernet.evaluate(arch).valid_acc
    assert 0 <= top1 <= 100 and supernet.evaluate(arch).valid_acc == top1  # fixed batches
    cost = CostCounter(space, "blobs")(arch)
    assert cost.params_m * 1e6 == 8 * 9 + 8 * 8 * 9 + 2 * (2 * 8) + (8 * 4 + 4)  # convs, BNs, classifier


@pytest.mark.slow
def test_toy_space_is_searched_end_to_end_from_the_command_line(toy_site, tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(toy_site), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-m", "collm_nas.cli", "search", "--space", "toy", "--dataset", "blobs",
         "--llm", "none", "--budget", "20", "--run-dir", str(run_dir)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["evaluations"] == 20
    assert summary["stop_reason"] == "evaluation budget spent (20/20)"
    assert summary["best"]["valid_acc"] >= 80  # the formula gives 60..88; the search climbs


def test_toy_space_is_steered_by_a_scripted_navigator(toy_installed):
    from collm_nas.agents.llm import LLMSettings
    from collm_nas.graph.context import SearchSettings
    from collm_nas.graph.run import run_search

    steering = json.dumps({"summary": "wider and deeper score higher",
                           "prefer": {"depth": [3], "width": [32], "kernel": [3], "act": ["gelu"]}})
    navigator = LLMSettings(backend="fake", script=[steering] * 3)
    settings = SearchSettings(space="toy", dataset="blobs", candidates=4, iterations=3, budget=12,
                              navigator_llm=navigator, generator_llm=navigator)
    result = run_search(settings)
    assert result.evaluations == 12 and result.llm["calls"] == 3
    assert result.best["valid_acc"] == 88  # the preferred values are the formula's optimum
    assert {c["proposer"] for c in result.counterfactuals} == {"steering"}  # formula is cheap
