"""The Generator of the paper's loop: the Navigator's strategy in, a batch of architectures out,
as structured output.

Stateless by default (a fresh conversation each call). A reply that fails validation is re-asked
with the error text a bounded number of times; after that the round goes on with the items that
could be read, which the Coordinator judges one by one (`agents.calls.ask_structured`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from collm_nas.agents.briefing import top_keys
from collm_nas.agents.calls import ask_structured, fit_conversation
from collm_nas.agents.llm import make_chat_model
from collm_nas.prompts import render
from collm_nas.spaces import SearchSpace, get_space
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field, create_model

SOURCE = "generator"


@cache
def batch_schema(space: SearchSpace, size: int) -> type[BaseModel]:
    """`{"architectures": [Arch x size]}`: list length in the schema so small models fill it."""
    return create_model(
        "CandidateBatch",
        architectures=(
            list[space.Arch],
            Field(min_length=size, max_length=size, description="distinct architectures"),
        ),
    )


def generate(state: dict[str, Any], settings) -> dict[str, Any]:
    """One Generator call on the latest strategy: the batch as candidates and the calls' records
    (and, with generator memory, the conversation update)."""
    space = get_space(settings.space)
    memory = settings.generator_memory
    history = state.get("generator_messages", []) if memory else []
    system = [] if history else [
        SystemMessage(content=render("generator_system", space_description=space.describe()))
    ]
    request = HumanMessage(content=render(
        "generator_user", strategy=state.get("strategy", ""), candidates=settings.candidates,
        evaluated=top_keys(state, settings.objective),
    ))
    messages, removals = fit_conversation([*system, *history, request], settings.generator_llm, "generator")
    reply = ask_structured(
        make_chat_model(settings.generator_llm, settings.seed), settings.generator_llm,
        batch_schema(space, settings.candidates), messages, role="generator",
        retries=settings.generator_retries, size=settings.candidates,
        iteration=state.get("iteration", 0) + 1,
        earlier_calls=state.get("llm_calls", []), give_up_rounds=settings.llm_give_up_rounds,
    )
    update: dict[str, Any] = {"candidates": reply.candidates(SOURCE), "llm_calls": reply.calls}
    if memory:
        update["generator_messages"] = [*removals, *system, request, *reply.remembered()]
    return update
