"""Evaluator options (e.g. a supernet's device) reach the evaluator from the settings, the CLI
and the bench, here and on every executor's workers."""

from __future__ import annotations

import pytest
from collm_nas import cli
from collm_nas.evals.bench import RunSpec, make_ledger
from collm_nas.graph.context import SearchSettings
from collm_nas.graph.run import run_search
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.tools.evaluators import register_evaluator
from nb201_synthetic import synthetic_evaluator

BUILT: list[dict] = []


class Scaled(Evaluator):
    """The synthetic table with every accuracy times `factor` (an option)."""

    kind = "scaled"
    cheap = True

    def __init__(self, inner, factor: float):
        self.inner, self.factor = inner, factor

    def evaluate(self, arch) -> Metrics:
        metrics = self.inner.evaluate(arch)
        return Metrics(metrics.valid_acc * self.factor, metrics.test_acc * self.factor)


def scaled(space, dataset, data_path=None, factor: float = 1.0, **options) -> Scaled:
    BUILT.append({"factor": factor, **options})
    return Scaled(synthetic_evaluator(space, dataset), factor)


register_evaluator("scaled", scaled)


def test_settings_pass_evaluator_options_to_the_factory():
    settings = SearchSettings(mode="collm-nollm", evaluator="scaled", evaluator_options={"factor": 0.5},
                              budget=10, iterations=1)
    result = run_search(settings)
    plain = run_search(settings.model_copy(update={"evaluator": "synthetic", "evaluator_options": {}}))
    assert [r["valid_acc"] for r in result.archive] == pytest.approx(
        [r["valid_acc"] * 0.5 for r in plain.archive])


def test_cli_reads_repeated_key_value_options_as_json_values():
    assert cli.key_values(["factor=0.25", "device=cuda", "flag=true"]) == {
        "factor": 0.25, "device": "cuda", "flag": True}
    with pytest.raises(cli.UserError, match="KEY=VALUE"):
        cli.key_values(["factor"])


def test_bench_baselines_use_the_evaluator_and_its_options():
    spec = RunSpec("rs", "nb201", "cifar10", "valid", 0, 5,
                   options={"evaluator": "scaled", "evaluator_options": {"factor": 2.0, "tag": "b"}})
    ledger = make_ledger(spec)
    assert ledger.evaluator.factor == 2.0 and BUILT[-1] == {"factor": 2.0, "tag": "b"}
