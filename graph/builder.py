"""The CoLLM-NAS graph, top to bottom like its picture.

Each round starts with the mode's first step (`nodes.FIRST_NODE`) and ends in `record_round`:
- collm (default):  steer (Navigator, statistics) -> propose (code sources) -> screen ...
- collm-nollm:      propose -> screen ...
- paper:            navigate (free-text strategy) -> generate (LLM Generator) -> screen ...
- sillm:            reflect_and_generate -> screen ...
- rznas:            reflect (lesson from the last generation) -> mutate (LLM children) -> screen ...
- rznas-nollm:      mutate (random children) -> screen ...
screen_candidates -> measure_llm (where an LLM acted and the evaluator is cheap: its candidates
against the rule's, same state) -(Send per candidate)-> evaluate -> record_round -> next round | END.
"""

from __future__ import annotations

from collm_nas.graph.context import SearchSettings
from collm_nas.graph.nodes import (
    FIRST_NODE,
    evaluate,
    generate,
    measure_llm,
    mutate,
    navigate,
    propose,
    record_round,
    reflect,
    reflect_and_generate,
    route_after_round,
    route_after_screening,
    route_start,
    route_to_evaluation,
    screen_candidates,
    steer,
)
from collm_nas.graph.state import SearchState
from langgraph.graph import END, START, StateGraph


def build_graph() -> StateGraph:
    builder = StateGraph(SearchState, context_schema=SearchSettings)
    builder.add_node(steer)
    builder.add_node(propose)
    builder.add_node(navigate)
    builder.add_node(generate)
    builder.add_node(reflect_and_generate)
    builder.add_node(reflect)
    builder.add_node(mutate)
    builder.add_node(screen_candidates)
    builder.add_node(measure_llm)
    builder.add_node(evaluate)
    builder.add_node(record_round)

    starts = list(FIRST_NODE.values())
    builder.add_conditional_edges(START, route_start, starts)
    builder.add_edge("steer", "propose")
    builder.add_edge("propose", "screen_candidates")
    builder.add_edge("navigate", "generate")
    builder.add_edge("generate", "screen_candidates")
    builder.add_edge("reflect_and_generate", "screen_candidates")
    builder.add_edge("reflect", "mutate")
    builder.add_edge("mutate", "screen_candidates")
    builder.add_conditional_edges(
        "screen_candidates", route_after_screening, ["measure_llm", "evaluate", "record_round"]
    )
    builder.add_conditional_edges("measure_llm", route_to_evaluation, ["evaluate", "record_round"])
    builder.add_edge("evaluate", "record_round")
    builder.add_conditional_edges("record_round", route_after_round, [*starts, END])
    return builder


def compile_graph(checkpointer=None):
    return build_graph().compile(checkpointer=checkpointer, name="collm-nas")


# Served by `langgraph dev` / LangGraph Studio (the server supplies its own checkpointer).
graph = compile_graph()
