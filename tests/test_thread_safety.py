"""An evaluator that is not thread-safe is serialised: the graph's `evaluate` branches run on a
thread pool (LangGraph runs a step's `Send` tasks in parallel)."""

from __future__ import annotations

import threading
import time

import pytest
from collm_nas.graph.context import SearchSettings
from collm_nas.graph.run import run_search
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.tools.evaluators import EVALUATORS, make_evaluator, register_evaluator
from collm_nas.tools.evaluators.benchmark import benchmark_evaluator

PROBE = "non_reentrant_probe"


class NonReentrant(Evaluator):
    """Scores like the NB201 table, but fails if a second thread enters `evaluate` while one
    is inside (like copying a subnet out of one shared supernet)."""

    kind = PROBE
    thread_safe = False

    def __init__(self, table: Evaluator):
        self.table = table
        self.inside = 0
        self.most_inside = 0
        self.calls = 0
        self._count = threading.Lock()

    def evaluate(self, arch) -> Metrics:
        with self._count:
            self.inside += 1
            self.calls += 1
            self.most_inside = max(self.most_inside, self.inside)
        try:
            time.sleep(0.05)  # long enough for a parallel branch to come in
            if self.most_inside > 1:
                raise RuntimeError("evaluate was entered by two threads at once")
            return self.table.evaluate(arch)
        finally:
            with self._count:
                self.inside -= 1

    def optimum(self, objective: str) -> float | None:
        return self.table.optimum(objective)


@pytest.fixture
def probe_kind():
    made: list[NonReentrant] = []

    def factory(space, dataset, data_path=None):
        made.append(NonReentrant(benchmark_evaluator(space, dataset, data_path)))
        return made[-1]

    register_evaluator(PROBE, factory)
    yield made
    EVALUATORS.unregister(PROBE)


def test_parallel_evaluate_branches_never_enter_a_non_thread_safe_evaluator_together(probe_kind):
    settings = SearchSettings(
        space="nb201", dataset="cifar10", evaluator=PROBE, mode="collm-nollm",
        candidates=8, budget=8, iterations=1,
    )
    result = run_search(settings)
    [probe] = probe_kind  # one shared evaluator, though the branches asked for it at once
    assert result.evaluations == 8 and probe.calls == 8
    assert probe.most_inside == 1


def test_serialised_evaluator_keeps_the_members_the_search_reads(probe_kind):
    evaluator = make_evaluator("nb201", "cifar10", PROBE)
    [probe] = probe_kind
    assert evaluator is not probe  # wrapped, because the probe says it is not thread-safe
    assert evaluator.thread_safe
    assert evaluator.kind == PROBE and evaluator.cheap is False
    assert evaluator.optimum("valid") == pytest.approx(91.6067, abs=1e-3)
    assert evaluator.top_threshold("valid", 0.01) is None  # the probe's default
    assert evaluator.table is probe.table  # any other member is the evaluator's own


def test_thread_safe_evaluators_are_not_wrapped():
    from collm_nas.tools.evaluators.benchmark import NB201Benchmark

    assert type(make_evaluator("nb201", "cifar10")) is NB201Benchmark
