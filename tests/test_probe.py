"""The ranking probe's scoring and its handling of replies (scripted model: control flow only)."""

from __future__ import annotations

import json

import pytest
from collm_nas.agents.llm import LLMSettings, _cached_model
from collm_nas.evals.probe import _tau_and_top, probe_table, ranking_schema, reference_rankings, run_probe
from pydantic import ValidationError
from scipy.stats import kendalltau


@pytest.fixture(autouse=True)
def fresh_models():
    _cached_model.cache_clear()
    yield
    _cached_model.cache_clear()


def test_tau_and_best_first():
    scores = [70.0, 90.0, 80.0]
    assert _tau_and_top([1, 2, 0], scores) == (pytest.approx(1.0), True)
    assert _tau_and_top([0, 2, 1], scores) == (pytest.approx(-1.0), False)


def test_ranking_must_be_a_permutation():
    schema = ranking_schema(3)
    assert schema(ranking=[3, 1, 2]).ranking == [3, 1, 2]
    with pytest.raises(ValidationError, match="exactly once"):
        schema(ranking=[1, 1, 2])
    with pytest.raises(ValidationError):
        schema(ranking=[1, 2])


def test_probe_scores_each_answer_against_the_table():
    identity = json.dumps({"ranking": list(range(1, 11))})
    predictions = json.dumps({"accuracies": [float(i) for i in range(10)]})  # last cell best
    llm = LLMSettings(backend="fake", script=[identity, predictions] * 3)
    trials = run_probe("cifar10", 3, llm, seed=5)
    assert [t.variant for t in trials] == ["rank", "predict"] * 3
    for t in trials:
        order = list(range(10)) if t.variant == "rank" else list(range(9, -1, -1))
        assert t.order == order
        expected = kendalltau([-order.index(i) for i in range(10)], t.true_scores).statistic
        assert t.tau == pytest.approx(expected)
        assert len(set(t.cells)) == 10
    table = probe_table("cifar10", trials, "fake")
    assert "more parameters first" in table and "fake, rank | 3/3" in table
    # The scripted ranking echoes the listing in every trial; the predictions reverse it.
    rows = {line.split(" | ")[0]: line.split(" | ") for line in table.splitlines()}
    assert rows["| fake, rank"][4] == "3/3" and rows["| fake, predict"][4] == "0/3"


def test_reference_rankings_are_the_listing_order_and_the_expectation_of_chance():
    identity = json.dumps({"ranking": list(range(1, 11))})
    llm = LLMSettings(backend="fake", script=[identity] * 4)
    trials = run_probe("cifar100", 4, llm, seed=1, variants=("rank",))
    references = reference_rankings("cifar100", trials)
    listing = references["order shown"]
    assert listing["tau"] == pytest.approx(sum(t.tau for t in trials) / len(trials))
    chance = references["random order"]  # many permutations per trial: close to its expectation
    assert abs(chance["tau"]) < 0.05 and chance["best_first"] == pytest.approx(0.1, abs=0.03)


def test_an_unusable_ranking_is_retried_then_counted_as_unanswered():
    bad = json.dumps({"ranking": [1] * 10})
    llm = LLMSettings(backend="fake", script=[bad, bad])
    (trial,) = run_probe("cifar10", 1, llm, variants=("rank",))
    assert trial.order is None and trial.tau is None
    assert "0/1" in probe_table("cifar10", [trial], "fake")
