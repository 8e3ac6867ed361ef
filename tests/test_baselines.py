import numpy as np
import pytest
from collm_nas.evals.baselines import BASELINES
from collm_nas.evals.bench import RunSpec, make_ledger
from collm_nas.spaces import get_space
from collm_nas.tools.cost import CostLimit


@pytest.mark.parametrize("method", sorted(BASELINES))
@pytest.mark.parametrize("budget", [1, 37, 100])
def test_baselines_spend_exactly_the_budget_on_distinct_cells(method, budget):
    ledger = make_ledger(RunSpec(method, "nb201", "cifar100", "valid", 3, budget))
    reason = BASELINES[method](ledger, np.random.default_rng(3))
    keys = [r["key"] for r in ledger.records]
    assert reason == "budget spent"
    assert len(keys) == len(set(keys)) == budget
    assert ledger.curve == sorted(ledger.curve) and len(ledger.curve) == budget


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_over_limit_cells_are_never_evaluated_nor_counted(method):
    limit = CostLimit("params", 0.2)
    ledger = make_ledger(RunSpec(method, "nb201", "cifar10", "valid", 5, 20, limit))
    BASELINES[method](ledger, np.random.default_rng(5))
    assert len(ledger.records) == 20
    assert all(r["params_m"] <= 0.2 for r in ledger.records)
    assert ledger.rejected.get("over_limit", 0) > 0


def test_evolution_keeps_going_when_every_elite_neighbour_is_used_up():
    # Budget far above what one-edit neighbourhoods of a tight-limit population can give.
    limit = CostLimit("params", 0.11)
    ledger = make_ledger(RunSpec("ea", "nb201", "cifar10", "valid", 0, 150, limit))
    reason = BASELINES["ea"](ledger, np.random.default_rng(0))
    assert reason == "budget spent" and len(ledger.records) == 150
    assert any(r["source"] == "random" for r in ledger.records[10:])


def test_the_space_knows_nothing_of_the_baselines():
    import inspect

    import collm_nas.evals.baselines as module
    assert "nb201" not in inspect.getsource(module)
    assert get_space("nb201").name == "nb201"
