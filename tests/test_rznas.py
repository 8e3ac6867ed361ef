"""RZ-NAS through the real graph: the evolution with random mutation, the LLM as the mutation
operator (scripted replies: control flow only), the reflection's lessons, the pre-screen of the
code candidates by a proxy, and the bench's proxy method names."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from collm_nas.agents import rznas
from collm_nas.agents.llm import LLMSettings, _cached_model, make_chat_model
from collm_nas.evals.bench import RunSpec, UnknownMethod, is_llm_free, method
from collm_nas.graph.context import SearchSettings
from collm_nas.graph.run import run_search
from collm_nas.spaces import get_space
from collm_nas.tools.evaluators import register_evaluator
from collm_nas.tools.evaluators.zero_cost import zero_cost_evaluator
from collm_nas.tools.evolution import change_text
from pydantic import ValidationError

NB201 = get_space("nb201")
DATASET = "imagenet16"
# The proxy counts parameters (no network runs); the synthetic table is the truth beside it.
register_evaluator("zc_table", functools.partial(zero_cost_evaluator, truth="synthetic", batch=4))
EVALUATOR = "zc_table:params"


@pytest.fixture(autouse=True)
def fresh_models():
    _cached_model.cache_clear()
    yield
    _cached_model.cache_clear()


def settings(mutations=("unused",), lessons=("unused",), **overrides) -> SearchSettings:
    values = {
        "mode": "rznas", "dataset": DATASET, "evaluator": EVALUATOR, "budget": 24, "population": 8,
        "candidates": 4, "iterations": 30, "generator_retries": 1,
        "generator_llm": LLMSettings(backend="fake", script=list(mutations)),
        "navigator_llm": LLMSettings(backend="fake", script=list(lessons)),
        **overrides,
    }
    return SearchSettings(**values)


def generation(*children: tuple[int, dict]) -> str:
    return json.dumps({"children": [
        {"parent": parent, "changes": [{name: value} for name, value in changes.items()]}
        for parent, changes in children
    ]})


def test_random_mutation_fills_the_population_then_mutates_one_dimension_of_its_members():
    result = run_search(settings(mode="rznas-nollm", budget=40))
    assert result.evaluations == 40 and result.llm["calls"] == 0
    first = [r for r in result.archive if r["iteration"] == 1]
    assert len(first) == 8 and {r["source"] for r in first} == {"random"}
    later = [r for r in result.archive if r["iteration"] > 1]
    assert {r["source"] for r in later} == {"mutation"}
    for record in later:  # one edge away from some architecture evaluated before it
        genes = NB201.genes(NB201.parse(record["arch"]))
        earlier = [NB201.genes(NB201.parse(r["arch"])) for r in result.archive if r["iteration"] < record["iteration"]]
        assert min(sum(a != b for a, b in zip(genes, e, strict=True)) for e in earlier) == 1
    # Chosen by the proxy (params here), with the table's accuracy beside it.
    assert result.best["proxy"] == max(r["proxy"] for r in result.archive)
    assert result.best["valid_acc"] > 0


def test_random_mutation_is_reproducible_for_a_seed():
    a = run_search(settings(mode="rznas-nollm", seed=5))
    b = run_search(settings(mode="rznas-nollm", seed=5))
    assert [r["key"] for r in a.archive] == [r["key"] for r in b.archive]


CHILDREN = ((1, {"edge_1_0": "nor_conv_3x3"}), (2, {"edge_3_2": "none", "edge_2_1": "skip_connect"}),
            (3, {"edge_2_0": "avg_pool_3x3"}), (4, {"edge_3_0": "nor_conv_1x1"}))


def test_the_llm_children_are_its_parents_with_its_changes_and_are_measured_against_random_ones():
    s = settings([generation(*CHILDREN)], ["Convolutions on the input edges raise the score."], budget=12)
    result = run_search(s)
    # What the model was shown: four parents, numbered, each with its genes and score.
    prompt = make_chat_model(s.generator_llm, s.seed).calls[0][-1].content
    lines = [line for line in prompt.splitlines() if line[:2] in ("1.", "2.", "3.", "4.")]
    shown = [json.loads(line.split(". ", 1)[1].rsplit(" score", 1)[0]) for line in lines]
    assert len(shown) == 4
    expected = []
    for parent, changes in CHILDREN:
        genes = {**shown[parent - 1], **changes}
        expected.append(NB201.key(NB201.from_genes([genes[e] for e in NB201.dimensions])))
    first = {r["key"] for r in result.archive if r["iteration"] == 1}
    children = [r["key"] for r in result.archive if r["source"] == rznas.SOURCE]
    assert children and children == [k for k in dict.fromkeys(expected) if k not in first]
    (measured,) = result.counterfactuals
    assert measured["proposer"] == rznas.SOURCE and measured["rule"]["n"] == 4
    assert measured["llm"]["n"] == len(children)


def test_the_reflection_writes_a_bounded_lesson_that_the_next_prompt_carries():
    s = settings([generation(*CHILDREN)], ["Wider convolutions help. " * 40], budget=24)
    result = run_search(s)
    prompts = [call[-1].content for call in make_chat_model(s.generator_llm, s.seed).calls]
    assert len(prompts) >= 2 and "Lessons from earlier generations" not in prompts[0]
    carried = prompts[1].split("Lessons from earlier generations:")[1].split("Parents")[0]
    assert "Wider convolutions help." in carried and len(carried.strip()) <= rznas.LESSON_CHARS + 10
    roles = [c["role"] for c in result_calls(s)]
    assert "reflection" in roles and "rznas" in roles
    assert result.llm["calls"] == len(roles)


def result_calls(s: SearchSettings) -> list[dict]:
    from collm_nas.graph.builder import compile_graph
    from langgraph.checkpoint.memory import InMemorySaver

    graph = compile_graph(InMemorySaver())
    config = {"configurable": {"thread_id": "t"}, "recursion_limit": s.recursion_limit()}
    graph.invoke({}, config, context=s)
    return graph.get_state(config).values["llm_calls"]


def test_an_unusable_mutation_reply_is_recorded_as_illegal_and_the_search_goes_on():
    bad = json.dumps({"children": [{"parent": 9, "changes": [{"edge_1_0": "conv_9x9"}]}] * 4})
    result = run_search(settings([bad], ["lesson"], budget=16, iterations=4, llm_give_up_rounds=0))
    illegal = result.rejections.get("illegal", 0)
    assert illegal >= 4 and result.evaluations == 8
    assert {r["source"] for r in result.archive} == {"random"}


def test_the_schema_allows_only_legal_values_and_parents():
    schema = rznas.children_schema(NB201, 3, 2)
    good = {"children": [{"parent": 1, "changes": [{"edge_1_0": "none"}]},
                         {"parent": 3, "changes": [{"edge_3_2": "skip_connect"}, {"edge_2_1": "nor_conv_1x1"}]}]}
    schema.model_validate(good)
    for bad in ({"parent": 4, "changes": [{"edge_1_0": "none"}]},
                {"parent": 1, "changes": [{"edge_1_0": "conv_9x9"}]},
                {"parent": 1, "changes": []},
                {"parent": 1, "changes": [{"edge_9_9": "none"}]}):
        with pytest.raises(ValidationError):
            schema.model_validate({"children": [good["children"][0], bad]})


def test_change_text_names_each_changed_dimension():
    parent = NB201.from_genes(["none"] * 6)
    child = NB201.from_genes(["nor_conv_3x3", "none", "none", "none", "none", "skip_connect"])
    assert change_text(NB201, parent, child) == "edge_1_0: none -> nor_conv_3x3; edge_3_2: none -> skip_connect"


def test_rznas_needs_a_proxy_evaluator_and_defaults_to_synflow():
    assert SearchSettings(mode="rznas").evaluator == "zero_cost:synflow"
    with pytest.raises(ValidationError, match="zero-cost proxy"):
        SearchSettings(mode="rznas", evaluator="benchmark")


def test_the_prescreen_evaluates_the_pool_members_the_proxy_ranks_highest():
    common = {"mode": "collm-nollm", "evaluator": "synthetic", "dataset": DATASET, "budget": 30,
              "candidates": 10}
    plain = run_search(SearchSettings(**common, seed=2))
    screened = run_search(SearchSettings(**common, seed=2, prescreen="params"))
    assert screened.evaluations == plain.evaluations == 30

    def mean_params(result) -> float:
        return float(np.mean([r["params_m"] for r in result.archive]))

    # The proxy counts parameters: what it lets through is larger than the code sources' own picks.
    assert mean_params(screened) > mean_params(plain)
    with pytest.raises(ValidationError, match="collm"):
        SearchSettings(mode="paper", prescreen="params")
    with pytest.raises(ValidationError, match="unknown proxy"):
        SearchSettings(mode="collm", prescreen="bogus")


def test_the_bench_names_methods_by_their_proxy():
    spec = RunSpec("rznas-nollm:params", "nb201", DATASET, "valid", 0, 20,
                   options={"evaluator_options": {"truth": "synthetic", "batch": 4}, "population": 8})
    result = method(spec.method)(spec)
    assert result.method == "rznas-nollm:params" and result.evaluations == 20
    assert result.optimum_found is None  # the chosen cell is the proxy's best, not the table's
    assert is_llm_free("rznas-nollm:synflow") and is_llm_free("collm-nollm+synflow")
    assert not is_llm_free("rznas:synflow") and not is_llm_free("collm+synflow")
    with pytest.raises(UnknownMethod, match="rznas:<proxy>"):
        method("rznas:bogus")
