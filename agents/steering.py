"""The steering Navigator of the default mode (`collm`): reads the archive statistics and answers,
structured, which values each design dimension should move towards. Code turns the answer into
candidates (`tools.sources`); this module only holds the conversation.

Its memory keeps each round's decision with a one-line digest, not the (stale) statistics.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from collm_nas.agents.briefing import best_table, mission_variables, progress_variables
from collm_nas.agents.calls import ask_structured, fit_conversation
from collm_nas.agents.llm import make_chat_model
from collm_nas.prompts import render
from collm_nas.spaces import SearchSpace, get_space
from langchain_core.messages import HumanMessage, RemoveMessage, SystemMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from pydantic import BaseModel, Field, create_model

SUMMARY_CHARS = 120


@cache
def steering_schema(space: SearchSpace) -> type[BaseModel]:
    """`{"summary": str, "prefer": {group: [1-2 values]}}` over the space's dimension groups."""
    fields = {
        group: (
            list[Literal[space.dimensions[dims[0]]]],  # type: ignore[valid-type]
            Field(min_length=1, max_length=2, description=f"values to move {group} towards"),
        )
        for group, dims in space.dimension_groups().items()
    }
    preferences = create_model("Preferences", **fields)
    return create_model(
        "Steering",
        summary=(str, Field(max_length=SUMMARY_CHARS, description="what the statistics show")),
        prefer=(preferences, Field(description="preferred values per dimension")),
    )


def steer(
    state: dict[str, Any], settings, statistics: str, top_percent: int, ranked: list[dict[str, Any]]
) -> dict[str, Any]:
    """One steering call on the Coordinator's `statistics` (computed over the archive's top
    `top_percent` %) and its `ranked` records: the preferences (None if no reply could be
    used), the conversation update and the calls' records."""
    space = get_space(settings.space)
    variables = {
        **mission_variables(settings, space), **progress_variables(state, settings),
        "top_percent": top_percent, "stats_text": statistics,
        "top_table": best_table(ranked, settings.objective),
    }
    memory = settings.navigator_memory
    history = state.get("navigator_messages", []) if memory else []
    system = [] if history else [SystemMessage(content=render("steer_system", **variables))]
    messages, removals = fit_conversation(
        [*system, *history, HumanMessage(content=render("steer_user", **variables))],
        settings.navigator_llm, "navigator",
    )
    digest = HumanMessage(content=render("steer_digest", **variables))
    iteration = variables["iteration"] + 1
    reply = ask_structured(
        make_chat_model(settings.navigator_llm, settings.seed), settings.navigator_llm,
        steering_schema(space), messages, role="navigator", retries=settings.generator_retries,
        size=settings.candidates, iteration=iteration, retry_prompt="steer_retry", items_field=None,
        earlier_calls=state.get("llm_calls", []), give_up_rounds=settings.llm_give_up_rounds,
    )
    steering = None
    if reply.parsed is not None:
        steering = {"summary": reply.parsed.summary, "prefer": reply.parsed.prefer.model_dump(),
                    "iteration": iteration}
    kept = [*removals, *system, digest, *reply.remembered()]
    if not memory:
        kept = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *kept]
    return {
        "steering": steering,
        "strategy": reply.parsed.model_dump_json(indent=1) if reply.parsed is not None else "",
        "navigator_messages": kept,
        "llm_calls": reply.calls,
    }
