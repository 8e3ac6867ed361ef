"""The search state: plain JSON-able values only (records are dicts, messages LangChain's)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages


class SearchState(TypedDict, total=False):
    iteration: int  # rounds completed
    strategy: str  # the Navigator's latest strategy (or steering summary)
    steering: dict[str, Any] | None  # the Navigator's latest preferences (collm mode)
    navigator_messages: Annotated[list[AnyMessage], add_messages]
    generator_messages: Annotated[list[AnyMessage], add_messages]  # only with generator memory
    candidates: list[dict[str, Any]]  # this round's proposals: {"arch": raw, "source": ...}
    screened: list[dict[str, Any]]  # this round's passing candidates, before evaluation
    novel: list[dict[str, Any]]  # this round's legal, new, allowed archs (the budget may cut some)
    archive: Annotated[list[dict[str, Any]], operator.add]  # every evaluated record
    round_results: Annotated[list[dict[str, Any]], operator.add]  # every verdict, every round
    best: dict[str, Any] | None
    llm_calls: Annotated[list[dict[str, Any]], operator.add]
    source_stats: dict[str, dict[str, int]]  # per candidate source: evaluated, hits, new_best
    counterfactuals: Annotated[list[dict[str, Any]], operator.add]  # LLM vs rule, same state
    stop_reason: str | None


class EvaluationTask(TypedDict):
    """What one `evaluate` branch (sent with `Send`) receives."""

    candidate: dict[str, Any]
