"""SiLLM-NAS (`mode="sillm"`): one model reads the results, states its strategy and proposes the
batch in one structured reply. Its conversation is kept like the Navigator's."""

from __future__ import annotations

from functools import cache
from typing import Any

from collm_nas.agents.briefing import mission_variables, progress_variables, top_keys
from collm_nas.agents.calls import ask_structured, fit_conversation
from collm_nas.agents.llm import make_chat_model
from collm_nas.prompts import render
from collm_nas.spaces import SearchSpace, get_space
from langchain_core.messages import HumanMessage, RemoveMessage, SystemMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from pydantic import BaseModel, Field, create_model

SOURCE = "single_llm"


@cache
def single_llm_schema(space: SearchSpace, size: int) -> type[BaseModel]:
    """SiLLM-NAS reply: the model's strategy and its batch in one object."""
    return create_model(
        "StrategyAndBatch",
        strategy=(str, Field(description="what the results show and where to look next")),
        architectures=(
            list[space.Arch],
            Field(min_length=size, max_length=size, description="distinct architectures"),
        ),
    )


def reflect_and_generate(state: dict[str, Any], settings) -> dict[str, Any]:
    """One call: the strategy, the batch as candidates, the conversation update, the records."""
    space = get_space(settings.space)
    variables = {**mission_variables(settings, space), **progress_variables(state, settings)}
    memory = settings.navigator_memory
    history = state.get("navigator_messages", []) if memory else []
    system = [] if history else [SystemMessage(content=render("single_system", **variables))]
    request = HumanMessage(
        content=render("single_user", evaluated=top_keys(state, settings.objective), **variables)
    )
    messages, removals = fit_conversation([*system, *history, request], settings.navigator_llm, "single")
    reply = ask_structured(
        make_chat_model(settings.navigator_llm, settings.seed), settings.navigator_llm,
        single_llm_schema(space, settings.candidates), messages, role="single",
        retries=settings.generator_retries, size=settings.candidates,
        iteration=variables["iteration"] + 1,
        earlier_calls=state.get("llm_calls", []), give_up_rounds=settings.llm_give_up_rounds,
    )
    kept = [*removals, *system, request, *reply.remembered()]
    if not memory:
        kept = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *kept]
    return {
        "strategy": reply.parsed.strategy if reply.parsed is not None else "",
        "navigator_messages": kept,
        "candidates": reply.candidates(SOURCE),
        "llm_calls": reply.calls,
    }
