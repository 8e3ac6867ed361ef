"""The search state: plain JSON-able values only (records are dicts, messages LangChain's).

The lists that grow with the run (the archive, every verdict, LLM calls, measurements, the
conversations) are `DeltaChannel`s: a checkpoint stores only what each step added, and the full
value every `SNAPSHOT_EVERY` updates, so the SQLite checkpoint grows linearly with the
evaluations instead of holding a copy of the whole archive per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import reduce
from typing import Annotated, Any, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.channels import DeltaChannel
from langgraph.graph.message import add_messages

# Updates of one channel between two full copies of it: resuming replays at most this many
# steps' writes, and each full copy costs one archive's size (about 100 rounds per copy).
SNAPSHOT_EVERY = 100


def concatenated(current: list[Any], writes: Sequence[list[Any]]) -> list[Any]:
    """Append every write's items, in order (a batch of writes or one at a time: the same)."""
    return [*current, *(item for write in writes for item in write)]


def merged_messages(current: list[AnyMessage], writes: Sequence[Any]) -> list[AnyMessage]:
    """`add_messages` over a batch of writes, one after the other."""
    return reduce(add_messages, writes, current)


Appended = DeltaChannel(concatenated, snapshot_frequency=SNAPSHOT_EVERY)
Messages = DeltaChannel(merged_messages, snapshot_frequency=SNAPSHOT_EVERY)


class SearchState(TypedDict, total=False):
    iteration: int  # rounds completed
    strategy: str  # the Navigator's latest strategy (or steering summary)
    steering: dict[str, Any] | None  # the Navigator's latest preferences (collm mode)
    navigator_messages: Annotated[list[AnyMessage], Messages]
    generator_messages: Annotated[list[AnyMessage], Messages]  # only with generator memory
    candidates: list[dict[str, Any]]  # this round's proposals: {"arch": raw, "source": ...}
    screened: list[dict[str, Any]]  # this round's passing candidates, before evaluation
    novel: list[dict[str, Any]]  # this round's legal, new, allowed archs (the budget may cut some)
    archive: Annotated[list[dict[str, Any]], Appended]  # every evaluated record
    round_results: Annotated[list[dict[str, Any]], Appended]  # every verdict, every round
    best: dict[str, Any] | None
    llm_calls: Annotated[list[dict[str, Any]], Appended]
    source_stats: dict[str, dict[str, int]]  # per candidate source: evaluated, hits, new_best
    generation: dict[str, Any]  # rznas: this round's parents (keys) and children (parent, change)
    lessons: list[str]  # rznas: the reflection's latest lessons, newest last
    counterfactuals: Annotated[list[dict[str, Any]], Appended]  # LLM vs rule, same state
    stop_reason: str | None


class EvaluationTask(TypedDict):
    """What one `evaluate` branch (sent with `Send`) receives."""

    candidate: dict[str, Any]
