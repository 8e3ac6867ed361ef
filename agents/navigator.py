"""The Navigator: reads results, writes the search strategy (plain text, sectioned).

Stateful by default: its conversation is kept in the checkpointed graph state, so each call sees
every earlier round. With memory off it sees only the system prompt and the latest results.

Two forms: the paper's free-text strategy for an LLM Generator (`--mode paper`), and the default
steering reply, structured, that orders the Coordinator's code-built candidates.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from collm_nas.agents.calls import split_reasoning, timed_invoke, usage_record
from collm_nas.prompts import render
from collm_nas.spaces import SearchSpace
from collm_nas.spaces.evaluation import score
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, create_model


def mission_variables(settings, space: SearchSpace) -> dict[str, Any]:
    """Prompt variables shared by every role: dataset, target, cost range, space, budget."""
    return {
        "dataset": settings.dataset,
        "objective": settings.objective,
        "target_text": f"{settings.target:.2f}%" if settings.target else "as high as possible",
        "cost_text": cost_text(settings),
        "space_description": space.describe(),
        "candidates": settings.candidates,
        "budget": settings.budget,
        "dimension_names": ", ".join(design_dimensions(space)),
    }


def design_dimensions(space: SearchSpace) -> list[str]:
    """Dimension names with trailing indices folded (ks_0..ks_19 -> ks)."""
    names = [name.rstrip("0123456789").rstrip("_") for name in space.dimensions]
    return list(dict.fromkeys(names))


def cost_text(settings) -> str:
    if not settings.cost_kind:
        return "There is no cost limit."
    limit = settings.cost_limit()
    return (
        f"Cost limit: {limit.describe()}. Architectures over it are not evaluated and can never "
        "be the result. The ideal range is just under the limit "
        f"({limit.bound * 0.93:.4g}-{limit.bound:g} {limit.unit}): much cheaper networks usually lose "
        "accuracy."
    )


def record_cost(record: dict[str, Any]) -> str:
    """'299.81 MFLOPs, 7.412 M params[, 24.10 ms]' for a record or result; '' when not counted."""
    if record.get("flops_m") is None:
        return ""
    text = f"{record['flops_m']:.2f} MFLOPs, {record['params_m']:.3f} M params"
    if record.get("latency_ms") is not None:
        text += f", {record['latency_ms']:.2f} ms"
    return text


def results_table(results: list[dict[str, Any]], objective: str) -> str:
    """One line per candidate of a round: architecture, verdict, accuracy, cost, reason."""
    lines = []
    for result in results:
        parts = [str(result.get("key") or result.get("raw")), result["verdict"]]
        if result.get("valid_acc") is not None:
            parts.append(f"{objective} acc {score(result, objective):.2f}")
        if cost := record_cost(result):
            parts.append(cost)
        if result.get("reason"):
            parts.append(result["reason"])
        lines.append("- " + " | ".join(parts))
    return "\n".join(lines) if lines else "- (no candidates)"


def best_text(best: dict[str, Any] | None, objective: str) -> str:
    if not best:
        return "none yet"
    cost = f", {text}" if (text := record_cost(best)) else ""
    return f"{best['key']} with {objective} acc {score(best, objective):.2f}{cost}"


def navigator_request(
    settings, space: SearchSpace, history: list[BaseMessage], user_text: str, memory: bool
) -> list[BaseMessage]:
    """The messages for one Navigator call; `history` is ignored when memory is off."""
    system = SystemMessage(content=render("navigator_system", **mission_variables(settings, space)))
    earlier = [m for m in history if not isinstance(m, SystemMessage)] if memory else []
    return [system, *earlier, HumanMessage(content=user_text)]


def call_navigator(model, messages: list[BaseMessage], iteration: int):
    """(strategy text, the assistant message to keep, usage record, reasoning text)."""
    reply, seconds = timed_invoke(model, messages)
    strategy, reasoning = split_reasoning(reply)
    usage = usage_record("navigator", reply, seconds, iteration=iteration, ok=bool(strategy))
    return strategy, AIMessage(content=strategy), usage, reasoning


# --- statistics-guided steering (the default `collm` mode) ---------------------------------

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


# Weight of a value the Navigator did not name: low, so samples from its preferences still vary.
UNNAMED_WEIGHT = 0.1


def steering_weights(space: SearchSpace, prefer: dict[str, list[Any]]) -> dict[str, dict[str, float]]:
    """The Navigator's preferences as weights on every dimension: 1 if named, else 0.1."""
    weights = {}
    for group, dims in space.dimension_groups().items():
        chosen = {str(v) for v in prefer.get(group, [])}
        for dim in dims:
            weights[dim] = {str(v): 1.0 if str(v) in chosen else UNNAMED_WEIGHT
                            for v in space.dimensions[dim]}
    return weights
