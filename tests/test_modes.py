"""The search modes through the real graph: statistics-steered CoLLM (scripted Navigator), the
LLM-free loop, and the measurement of the LLM against the rule on the same state."""

from __future__ import annotations

import json

import numpy as np
import pytest
from collm_nas.agents.llm import LLMSettings, _cached_model, make_chat_model
from collm_nas.graph.context import SearchSettings
from collm_nas.graph.run import run_search
from collm_nas.spaces import get_space
from collm_nas.tools.evaluators import make_evaluator
from langgraph.checkpoint.memory import InMemorySaver

SPACE = get_space("nb201")


def steering(op: str = "nor_conv_3x3", summary: str = "3x3 convolutions lead") -> str:
    return json.dumps({"summary": summary, "prefer": {edge: [op] for edge in SPACE.dimensions}})


@pytest.fixture(autouse=True)
def fresh_models():
    _cached_model.cache_clear()
    yield
    _cached_model.cache_clear()


def settings(navigator_script=(), **overrides) -> SearchSettings:
    values = {
        "evaluator": "synthetic", "iterations": 20, "budget": 40, "candidates": 10, "generator_retries": 1,
        "navigator_llm": LLMSettings(backend="fake", script=list(navigator_script)),
        "generator_llm": LLMSettings(backend="fake", script=["unused"]),
        **overrides,
    }
    return SearchSettings(**values)


def test_llm_free_loop_spends_the_budget_on_distinct_cells_without_any_llm_call():
    result = run_search(settings(mode="collm-nollm", budget=100))
    keys = [r["key"] for r in result.archive]
    assert len(keys) == len(set(keys)) == 100 and result.iterations == 10
    assert result.llm["calls"] == 0 and not result.rejections
    assert {r["source"] for r in result.archive} <= {"prior", "neighbours", "preference"}
    assert {r["source"] for r in result.archive if r["iteration"] == 1} == {"prior"}
    # It climbs: the best of rounds 2-10 beats the best of the first round.
    first = max(r["valid_acc"] for r in result.archive if r["iteration"] == 1)
    assert result.best["valid_acc"] > first


def test_llm_free_loop_is_reproducible_for_a_seed():
    a = run_search(settings(mode="collm-nollm", seed=3))
    b = run_search(settings(mode="collm-nollm", seed=3))
    assert [r["key"] for r in a.archive] == [r["key"] for r in b.archive]


def test_steering_navigator_gets_slots_and_is_measured_each_round():
    s = settings([steering()] * 4)
    result = run_search(s)
    assert result.evaluations == 40 and result.llm["calls"] == 4
    sources = [r["source"] for r in result.archive]
    assert "navigator" in sources and "neighbours" in sources
    assert len(result.counterfactuals) == 4
    for measured in result.counterfactuals:
        assert measured["proposer"] == "steering"
        assert measured["llm"]["n"] == measured["rule"]["n"] == 10
        assert 0 <= measured["llm"]["top_rate"] <= 1 and measured["rule"]["mean"] > 0


def _count(records: list[dict], op: str) -> float:
    return float(np.mean([SPACE.genes(SPACE.parse(r["arch"])).count(op) for r in records]))


def test_the_measurement_scores_the_table_and_can_tell_a_bad_navigator():
    good = run_search(settings([steering("nor_conv_3x3")] * 4, seed=1))
    bad = run_search(settings([steering("none")] * 4, seed=1))
    # Round 1: the Navigator re-ranks the prior's short list (large cells); asking for "none"
    # puts more "none" edges into its picks than the prior's own picks hold, and they score lower.
    first = [r for r in bad.archive if r["iteration"] == 1]
    picked = [r for r in first if r["source"] == "navigator"]
    assert picked and _count(picked, "none") > _count([r for r in first if r not in picked], "none")
    assert good.counterfactuals[0]["llm"]["mean"] > bad.counterfactuals[0]["llm"]["mean"]
    # Every round, its picks score below the rule's from the same state: the measurement sees it.
    assert all(m["llm"]["mean"] < m["rule"]["mean"] for m in bad.counterfactuals)
    # A navigator that only asks for "none" never earns more than its prior share (3 of 10).
    for iteration in range(2, 5):
        shown = [r for r in bad.archive if r["iteration"] == iteration]
        assert 1 <= sum(r["source"] == "navigator" for r in shown) <= 3


def test_a_bad_steering_reply_is_retried_then_the_round_goes_on_with_the_rule():
    script = ["not json", "still not json"] * 4
    result = run_search(settings(script, budget=20, generator_retries=1))
    assert result.evaluations == 20
    assert result.llm["calls"] == 4
    assert "navigator" not in {r["source"] for r in result.archive}
    calls = make_chat_model(settings(script).navigator_llm, 0).calls
    assert "could not be used" in str(calls[1][-1].content)


def test_navigator_memory_keeps_decisions_not_statistics():
    s = settings([steering()] * 3, budget=30)
    run_search(s, thread_id="m", checkpointer=(saver := InMemorySaver()))
    calls = make_chat_model(s.navigator_llm, 0).calls
    third = calls[2]
    assert sum(m.type == "system" for m in third) == 1
    assert sum("Statistics" in str(m.content) for m in third) == 1  # only the latest round's
    assert sum(m.type == "ai" for m in third) == 2  # the earlier two decisions are kept
    _cached_model.cache_clear()
    off = settings([steering()] * 3, budget=30, navigator_memory=False)
    run_search(off, thread_id="n", checkpointer=saver)
    assert [len(c) for c in make_chat_model(off.navigator_llm, 0).calls] == [2, 2, 2]


def test_paper_mode_is_measured_against_the_rule_too():
    cells = [SPACE.sample(np.random.default_rng(i)).model_dump() for i in range(5)]
    s = settings(["SUMMARY: s"] * 2, mode="paper", candidates=5, iterations=2, budget=10,
                 generator_llm=LLMSettings(backend="fake", script=[json.dumps({"architectures": cells})] * 2))
    result = run_search(s)
    assert [m["proposer"] for m in result.counterfactuals] == ["generator", "generator"]
    assert result.counterfactuals[1]["llm"]["n"] == 0  # the repeated batch brought nothing new
    assert result.counterfactuals[0]["rule"]["n"] == 5


def test_bad_mode_settings_fail_clearly():
    with pytest.raises(ValueError, match="sources must be"):
        SearchSettings(sources=["crystal_ball"])
    with pytest.raises(ValueError, match="collm-nollm"):
        SearchSettings(mode="nollm")


def test_optimum_threshold_matches_the_table():
    evaluator = make_evaluator("nb201", "cifar10")
    top = evaluator.top_threshold("valid", 0.01)
    above = sum(v >= top for v, _ in evaluator._acc.values())
    assert 150 <= above <= 160  # 1 % of 15,625 cells (ties aside)


def test_cli_search_without_llm_writes_sources_into_the_report(tmp_path):
    import subprocess
    import sys

    run_dir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "collm_nas.cli", "search", "--llm", "none", "--dataset", "cifar100",
         "--budget", "30", "--run-dir", str(run_dir)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = (run_dir / "summary.md").read_text()
    assert "LLMs: none" in summary and "## Sources" in summary and "neighbours" in summary
    assert json.loads((run_dir / "config.json").read_text())["settings"]["mode"] == "collm-nollm"
    bad = subprocess.run([sys.executable, "-m", "collm_nas.cli", "search", "--llm", "none", "--mode", "paper"],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "needs the LLM" in bad.stderr


def test_steering_works_on_the_mobilenet_space_under_a_flops_limit():
    mobilenet = get_space("mobilenet")
    groups = mobilenet.dimension_groups()
    assert set(groups) == {"r", "d", "ks", "e"}  # 46 genes folded for the prompt
    answer = json.dumps({"summary": "large kernels", "prefer": {"r": [160], "d": [2], "ks": [7],
                                                                  "e": [3]}})
    s = settings([answer] * 3, space="mobilenet", dataset="imagenet", evaluator="predictor",
                 budget=30, cost_kind="flops", max_cost=300)
    result = run_search(s)
    assert result.evaluations == 30 and result.llm["calls"] == 3
    assert all(r["flops_m"] <= 300 for r in result.archive)
    assert {r["source"] for r in result.archive if r["iteration"] == 1} == {"prior", "navigator"}
    # Round 1: of the prior's short list, the Navigator picks the subnets with more 7x7 kernels.
    def sevens(source: str) -> float:
        first = [mobilenet.parse(r["arch"]) for r in result.archive
                 if r["source"] == source and r["iteration"] == 1]
        return float(np.mean([k == 7 for a in first for k in a.ks]))
    assert sevens("navigator") > sevens("prior")
    assert len(result.counterfactuals) == 3 and result.counterfactuals[0]["rule"]["n"] == 10


def test_navigator_memory_keeps_accepted_answers_only():
    from collm_nas.graph.builder import compile_graph

    saver = InMemorySaver()
    script = ["this is not JSON", steering(summary="first accepted"), steering(summary="second")]
    result = run_search(settings(script, budget=20), thread_id="memory", checkpointer=saver)
    assert result.iterations == 2
    values = compile_graph(saver).get_state({"configurable": {"thread_id": "memory"}}).values
    assert [c["ok"] for c in values["llm_calls"]] == [False, True, True]
    answers = [m.content for m in values["navigator_messages"] if m.type == "ai"]
    assert len(answers) == 2 and "first accepted" in answers[0] and "second" in answers[1]
    assert not any("not JSON" in m.content or "could not be used" in m.content
                   for m in values["navigator_messages"])
