"""The Navigator of the paper's loop (`mode="paper"`): reads the results, writes the search
strategy as sectioned plain text for the LLM Generator.

Stateful by default: its conversation is kept in the checkpointed graph state, so each call sees
every earlier round. With memory off it sees only the system prompt and the latest results.
(The statistics-steered Navigator of the default mode is `agents.steering`.)
"""

from __future__ import annotations

from typing import Any

from collm_nas.agents.briefing import mission_variables, progress_variables
from collm_nas.agents.calls import fit_conversation, server_url, split_reasoning, timed_invoke, usage_record
from collm_nas.agents.llm import make_chat_model
from collm_nas.prompts import render
from collm_nas.spaces import get_space
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, SystemMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES

# Reasoning text kept in the call record (the rest is dropped: records go into every event).
REASONING_CHARS = 4000


def navigate(state: dict[str, Any], settings) -> dict[str, Any]:
    """One Navigator call: the next strategy, its conversation update and the call's record."""
    space = get_space(settings.space)
    variables = {**mission_variables(settings, space), **progress_variables(state, settings)}
    first = variables["iteration"] == 0
    user_text = render("navigator_first" if first else "navigator_next", **variables)
    memory = settings.navigator_memory
    system = SystemMessage(content=render("navigator_system", **mission_variables(settings, space)))
    history = state.get("navigator_messages", []) if memory else []
    earlier = [m for m in history if not isinstance(m, SystemMessage)]
    messages, removals = fit_conversation(
        [system, *earlier, HumanMessage(content=user_text)], settings.navigator_llm, "navigator"
    )

    reply, seconds = timed_invoke(make_chat_model(settings.navigator_llm, settings.seed), messages,
                                  server=server_url(settings.navigator_llm))
    strategy, reasoning = split_reasoning(reply)
    usage = usage_record("navigator", reply, seconds, iteration=variables["iteration"] + 1,
                         ok=bool(strategy))
    if reasoning:
        usage["reasoning"] = reasoning[:REASONING_CHARS]

    kept = [system, HumanMessage(content=user_text), AIMessage(content=strategy)]
    if memory and not first:
        kept = [*removals, *kept[1:]]  # the system prompt is already in the history
    if not memory:
        kept = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *kept]
    return {"strategy": strategy, "navigator_messages": kept, "llm_calls": [usage]}
