"""Control flow of the search graph, driven by scripted fake LLMs (no real model here)."""

from __future__ import annotations

import json

import pytest
from collm_nas.agents.calls import LLMUnavailable, LLMUnusable
from collm_nas.agents.llm import LLMSettings, _cached_model, make_chat_model
from collm_nas.graph.context import SearchSettings
from collm_nas.graph.run import run_search
from collm_nas.spaces import get_space
from collm_nas.tools.evaluators import make_evaluator
from langchain_core.messages import SystemMessage
from langgraph.checkpoint.memory import InMemorySaver
from nb201_synthetic import synthetic_table

SPACE = get_space("nb201")
STRATEGY = "SUMMARY: s\nKEY PATTERNS: p\nNAVIGATION DIRECTIONS: d"

# A few distinct cells (strings) to script batches with.
CELLS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|skip_connect~2|",
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|",
    "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_1x1~0|+|nor_conv_1x1~0|nor_conv_1x1~1|+|nor_conv_1x1~0|nor_conv_1x1~1|nor_conv_1x1~2|",
    "|avg_pool_3x3~0|+|avg_pool_3x3~0|avg_pool_3x3~1|+|avg_pool_3x3~0|avg_pool_3x3~1|avg_pool_3x3~2|",
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
]


def batch(*cells: str) -> str:
    return json.dumps({"architectures": [SPACE.parse(c).model_dump() for c in cells]})


@pytest.fixture(autouse=True)
def fresh_models():
    _cached_model.cache_clear()
    yield
    _cached_model.cache_clear()


def settings(generator_script, navigator_script=(STRATEGY,), **overrides) -> SearchSettings:
    values = {
        "mode": "paper", "evaluator": "synthetic", "measure_llm": False, "candidates": 3, "iterations": 5, "budget": 100, "generator_retries": 2,
        "navigator_llm": LLMSettings(backend="fake", script=list(navigator_script)),
        "generator_llm": LLMSettings(backend="fake", script=list(generator_script), temperature=0.5),
        **overrides,
    }
    return SearchSettings(**values)


def calls_of(llm: LLMSettings, seed: int = 0):
    return make_chat_model(llm, seed).calls


def valid_acc(cell: str) -> float:
    return make_evaluator("nb201", "cifar10", "synthetic").evaluate(SPACE.parse(cell)).valid_acc


def test_stops_when_the_iteration_limit_is_reached():
    s = settings([batch(*CELLS[i:i + 3]) for i in (0, 3, 6)], iterations=2)
    result = run_search(s)
    assert result.iterations == 2 and result.evaluations == 6
    assert result.stop_reason.startswith("iteration limit")


def test_stops_when_the_target_is_reached():
    worst_first = sorted(CELLS, key=valid_acc)  # each round beats the one before
    best_second = worst_first[5]
    s = settings([batch(*worst_first[i:i + 3]) for i in (0, 3, 6)], target=valid_acc(best_second))
    result = run_search(s)
    assert result.iterations == 2
    assert result.stop_reason.startswith("target reached")
    assert result.best["key"] == SPACE.key(SPACE.parse(best_second))


def test_budget_is_never_exceeded_and_stops_the_search():
    s = settings([batch(*CELLS[0:3]), batch(*CELLS[3:6]), batch(*CELLS[6:9])], budget=4)
    result = run_search(s)
    assert result.evaluations == 4
    assert result.stop_reason.startswith("evaluation budget spent")
    assert result.rejections.get("budget_spent") == 2


def test_duplicates_are_not_evaluated_or_counted():
    s = settings([batch(CELLS[0], CELLS[1], CELLS[0]), batch(CELLS[1], CELLS[2], CELLS[3])],
                 iterations=2)
    result = run_search(s)
    keys = [r["key"] for r in result.archive]
    assert len(keys) == len(set(keys)) == 4
    assert result.rejections["duplicate"] == 2


def test_over_limit_candidates_are_not_evaluated_never_best_and_reported_to_the_navigator():
    big = CELLS[8]  # all 3x3 convolutions: the largest cell
    s = settings([batch(big, CELLS[2], CELLS[3]), batch(CELLS[4], CELLS[5], CELLS[6])],
                 iterations=2, cost_kind="params", max_cost=0.6)
    result = run_search(s)
    assert SPACE.key(SPACE.parse(big)) not in {r["key"] for r in result.archive}
    assert result.best["params_m"] <= 0.6
    assert result.rejections["over_limit"] == 1
    second_prompt = calls_of(s.navigator_llm)[1][-1].content
    assert "over_limit" in second_prompt and "exceeds the limit of 0.6 M" in second_prompt


def test_a_bad_reply_is_retried_with_the_error_text_and_the_rest_is_judged_one_by_one():
    bad = json.loads(batch(*CELLS[0:3]))
    bad["architectures"][1]["edge_2_1"] = "conv_5x5"
    s = settings([json.dumps(bad)], iterations=1, generator_retries=2)
    result = run_search(s)
    calls = calls_of(s.generator_llm)
    assert len(calls) == 3  # first try + 2 retries, then it stops asking
    assert "conv_5x5" in calls[1][-1].content or "Input should be" in calls[1][-1].content
    assert result.evaluations == 2 and result.rejections == {"illegal": 1}


def test_a_model_that_never_answers_json_is_bounded_and_the_search_ends_cleanly():
    s = settings(["I think the best cell is a ResNet."], iterations=2, generator_retries=1)
    result = run_search(s)
    assert len(calls_of(s.generator_llm)) == 2 * 2
    assert result.evaluations == 0 and result.best is None
    assert result.stop_reason.startswith("iteration limit")


def test_rounds_of_unusable_replies_stop_with_one_error_and_resume_once_the_model_answers():
    prose = "I think the best cell is a ResNet."
    s = settings([prose], iterations=4, generator_retries=1, llm_give_up_rounds=3)
    saver = InMemorySaver()
    with pytest.raises(LLMUnusable, match="no usable reply in 3 rounds in a row"):
        run_search(s, thread_id="prose", checkpointer=saver)
    assert len(calls_of(s.generator_llm)) == 3 * 2
    fixed = s.model_copy(update={"generator_llm": LLMSettings(backend="fake", script=[batch(*CELLS[:3]), batch(*CELLS[3:6])])})
    result = run_search(fixed, thread_id="prose", checkpointer=saver, resume=True)
    assert result.evaluations == 6 and result.iterations == 4  # round 3 asked again, then round 4


def _history_lengths(llm: LLMSettings) -> list[int]:
    return [len(call) for call in calls_of(llm)]


def test_navigator_memory_on_keeps_the_conversation():
    s = settings([batch(*CELLS[i:i + 3]) for i in (0, 3, 6)], ["strategy one", "strategy two", "three"],
                 iterations=3)
    run_search(s)
    lengths = _history_lengths(s.navigator_llm)
    assert lengths == [2, 4, 6]
    third = calls_of(s.navigator_llm)[2]
    assert any(m.content == "strategy one" for m in third)
    assert sum(isinstance(m, SystemMessage) for m in third) == 1


def test_navigator_memory_off_sees_only_the_latest_results():
    s = settings([batch(*CELLS[i:i + 3]) for i in (0, 3, 6)], ["strategy one", "strategy two", "three"],
                 iterations=3, navigator_memory=False)
    run_search(s)
    assert _history_lengths(s.navigator_llm) == [2, 2, 2]


def test_generator_is_stateless_by_default_and_keeps_memory_when_asked():
    script = [batch(*CELLS[i:i + 3]) for i in (0, 3, 6)]
    stateless = settings(script, iterations=3)
    run_search(stateless)
    assert _history_lengths(stateless.generator_llm) == [2, 2, 2]
    _cached_model.cache_clear()
    remembering = settings(script, iterations=3, generator_memory=True)
    run_search(remembering)
    assert _history_lengths(remembering.generator_llm) == [2, 4, 6]


def test_single_llm_variant_reflects_and_generates_in_one_call():
    replies = [json.dumps({"strategy": f"plan {i}", **json.loads(batch(*CELLS[3 * i:3 * i + 3]))})
               for i in range(3)]
    s = settings([], iterations=3, mode="sillm",
                 navigator_llm=LLMSettings(backend="fake", script=replies))
    result = run_search(s)
    assert result.evaluations == 9 and result.llm["calls"] == 3
    assert {r["source"] for r in result.archive} == {"single_llm"}


def test_resume_after_a_crash_neither_repeats_nor_loses_evaluations(monkeypatch):
    evaluator = make_evaluator("nb201", "cifar10", "synthetic")
    original = type(evaluator).evaluate
    evaluated: list[str] = []
    crashed: list[str] = []

    def crashing(self, arch):
        evaluated.append(SPACE.key(arch))
        if len(evaluated) == 5:
            crashed.append(SPACE.key(arch))
            raise RuntimeError("simulated crash during an evaluation")
        return original(self, arch)

    monkeypatch.setattr(type(evaluator), "evaluate", crashing)
    s = settings([batch(*CELLS[i:i + 3]) for i in (0, 3, 6)], iterations=3)
    saver = InMemorySaver()
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_search(s, thread_id="t1", checkpointer=saver)
    before = list(evaluated)
    monkeypatch.setattr(type(evaluator), "evaluate", lambda self, arch: (evaluated.append(SPACE.key(arch)), original(self, arch))[1])
    result = run_search(s, thread_id="t1", checkpointer=saver, resume=True)
    keys = [r["key"] for r in result.archive]
    assert len(keys) == len(set(keys)) == 9
    # Round 1 was checkpointed: none of it ran again. Of round 2, only the crashed evaluation and
    # any branch still in flight when it crashed may run again (their results were never saved).
    assert all(evaluated.count(key) == 1 for key in before[:3])
    assert evaluated.count(crashed[0]) == 2
    assert len(evaluated) <= 9 + 3
    with pytest.raises(ValueError, match="already exists"):
        run_search(s, thread_id="t1", checkpointer=saver)


def test_unreachable_server_is_one_clear_error_naming_the_url():
    llm = LLMSettings(backend="openai", model="m", base_url="http://127.0.0.1:9/v1", max_retries=1, timeout=5)
    s = settings([], navigator_llm=llm)
    with pytest.raises(LLMUnavailable, match="127.0.0.1:9"):
        run_search(s)


@pytest.mark.parametrize(
    "values, words",
    [
        ({"budget": 0}, "greater than or equal to 1"),
        ({"cost_kind": "flops"}, "needs both"),
        ({"objective": "train"}, "'valid' or 'test'"),
    ],
)
def test_bad_settings_are_rejected(values, words):
    with pytest.raises(ValueError, match=words):
        SearchSettings(**values)


def test_control_flow_tests_need_no_data_file(tmp_path):
    s = settings([], mode="collm-nollm", budget=30, iterations=10, data_path=str(tmp_path))  # empty folder
    result = run_search(s)
    assert result.evaluations == 30 and len(synthetic_table()) == 15625
