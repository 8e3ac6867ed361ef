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


def _rea_ledger(seed: int, budget: int):
    return make_ledger(RunSpec("rea", "nb201", "cifar10", "valid", seed, budget))


def test_regularized_evolution_removes_the_oldest_member_not_the_worst(monkeypatch):
    import collm_nas.evals.baselines as baselines

    populations = []
    real_deque = baselines.deque

    class Watched(real_deque):  # records the population after each change
        def popleft(self):
            member = super().popleft()
            populations.append((member, list(self)))
            return member

    monkeypatch.setattr(baselines, "deque", Watched)
    ledger = _rea_ledger(1, 40)
    assert baselines.regularized_evolution(ledger, np.random.default_rng(1)) == "budget spent"
    first_removed, _ = populations[0]
    assert first_removed["key"] == ledger.records[0]["key"]  # the first random member ages out first
    better_than_worst = [
        member for member, rest in populations if ledger.score(member) > min(map(ledger.score, rest))
    ]
    assert better_than_worst, "aging must sometimes remove a member better than the worst"
    assert all(len(rest) == 10 for _, rest in populations)  # the child joined, the oldest left


def test_regularized_evolution_mutates_tournament_winners_after_a_random_start():
    ledger = _rea_ledger(2, 60)
    BASELINES["rea"](ledger, np.random.default_rng(2))
    sources = [r["source"] for r in ledger.records]
    assert sources[:10] == ["random"] * 10
    assert set(sources[10:]) == {"mutation"}
    space = ledger.space
    seen = {r["key"]: r for r in ledger.records}
    for child in ledger.records[10:]:  # every child is one edit away from an earlier cell
        genes = space.genes(space.parse(child["arch"]))
        assert any(sum(a != b for a, b in zip(genes, space.genes(space.parse(p["arch"])))) == 1
                   for p in seen.values() if p["evaluation"] < child["evaluation"])


def test_regularized_evolution_is_deterministic_per_seed():
    runs = [[r["key"] for r in _ledger_after_rea(seed).records] for seed in (4, 4, 5)]
    assert runs[0] == runs[1] and runs[0] != runs[2]


def _ledger_after_rea(seed: int):
    ledger = _rea_ledger(seed, 50)
    BASELINES["rea"](ledger, np.random.default_rng(seed))
    return ledger


def test_spos_evolution_breeds_its_top_ten_by_mutation_and_crossover():
    ledger = make_ledger(RunSpec("spos-ea", "nb201", "cifar10", "valid", 1, 100))
    BASELINES["spos-ea"](ledger, np.random.default_rng(1))
    sources = [r["source"] for r in ledger.records]
    assert sources == ["random"] * 50 + ["mutation"] * 25 + ["crossover"] * 25
    top = sorted(ledger.records[:50], key=ledger.score, reverse=True)[:10]
    space = ledger.space
    top_genes = [space.genes(space.parse(r["arch"])) for r in top]
    for child in ledger.records[75:]:  # every gene from one of the top ten
        genes = space.genes(space.parse(child["arch"]))
        assert all(any(g == parent[i] for parent in top_genes) for i, g in enumerate(genes))
