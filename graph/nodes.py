"""Graph nodes (one function each) and routers. Heavy objects come from cached factories."""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.messages import HumanMessage, RemoveMessage, SystemMessage
from langgraph.graph import END
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.runtime import Runtime
from langgraph.types import Send

from agents.generator import ask_structured, batch_schema, generator_messages, single_llm_schema
from agents.llm import make_chat_model
from agents.navigator import (
    best_text,
    call_navigator,
    mission_variables,
    navigator_request,
    results_table,
)
from graph.context import SearchSettings
from graph.state import EvaluationTask, SearchState
from prompts import render
from spaces import get_space
from tools.benchmark import Metrics
from tools.coordinator import make_record, screen
from tools.cost import Cost, shared_cost_counter
from tools.evaluators import make_evaluator

# How many already-evaluated architectures the Generator is shown (the best ones), to keep
# prompts short for small models; the Coordinator rejects repeats anyway.
SHOWN_EVALUATED = 10


def _evaluator(settings: SearchSettings):
    return make_evaluator(settings.space, settings.dataset, settings.evaluator, settings.data_path)


def _score(record: dict[str, Any], objective: str) -> float:
    return record[f"{objective}_acc"]


def _round_results(state: SearchState, iteration: int) -> list[dict[str, Any]]:
    return [r for r in state.get("round_results", []) if r["iteration"] == iteration]


def _top_keys(state: SearchState, objective: str) -> list[str]:
    ranked = sorted(state.get("archive", []), key=lambda r: _score(r, objective), reverse=True)
    return [r["key"] for r in ranked[:SHOWN_EVALUATED]]


def _progress_variables(state: SearchState, settings: SearchSettings) -> dict[str, Any]:
    iteration = state.get("iteration", 0)
    results = _round_results(state, iteration)
    return {
        "iteration": iteration,
        "results_table": results_table(results, settings.objective) if iteration else "",
        "n_evaluated": sum(r["verdict"] == "evaluated" for r in results),
        "n_rejected": sum(r["verdict"] != "evaluated" for r in results),
        "best_text": best_text(state.get("best"), settings.objective),
        "used": len(state.get("archive", [])),
    }


# --- nodes ---------------------------------------------------------------------------------


def navigate(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """The Navigator reads the last round's results and writes the next strategy."""
    settings = runtime.context
    space = get_space(settings.space)
    variables = {**mission_variables(settings, space), **_progress_variables(state, settings)}
    first = state.get("iteration", 0) == 0
    user_text = render("navigator_first" if first else "navigator_next", **variables)
    memory = settings.navigator_memory
    messages = navigator_request(
        settings, space, state.get("navigator_messages", []), user_text, memory
    )
    model = make_chat_model(settings.navigator_llm, settings.seed)
    strategy, answer, usage, reasoning = call_navigator(model, messages, variables["iteration"] + 1)
    if reasoning:
        usage["reasoning"] = reasoning[:4000]
    kept = [messages[0], HumanMessage(content=user_text), answer]
    if memory and not first:
        kept = kept[1:]  # the system prompt is already in the history
    if not memory:
        kept = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *kept]
    return {"strategy": strategy, "navigator_messages": kept, "llm_calls": [usage]}


def generate(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """The Generator turns the strategy into a batch of candidates (structured output)."""
    settings = runtime.context
    space = get_space(settings.space)
    history = state.get("generator_messages", []) if settings.generator_memory else []
    messages = generator_messages(
        space, state.get("strategy", ""), settings.candidates,
        _top_keys(state, settings.objective), history,
    )
    reply = ask_structured(
        make_chat_model(settings.generator_llm, settings.seed), settings.generator_llm,
        batch_schema(space, settings.candidates), messages, role="generator",
        retries=settings.generator_retries, size=settings.candidates,
        iteration=state.get("iteration", 0) + 1,
    )
    update: dict[str, Any] = {
        "candidates": [{"arch": _plain(item), "source": "generator"} for item in reply.items],
        "llm_calls": reply.calls,
    }
    if settings.generator_memory:
        update["generator_messages"] = [*messages[len(history):], *reply.transcript]
    return update


def reflect_and_generate(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """SiLLM-NAS: one model reads the results, states its strategy and proposes the batch."""
    settings = runtime.context
    space = get_space(settings.space)
    variables = {**mission_variables(settings, space), **_progress_variables(state, settings)}
    memory = settings.navigator_memory
    history = state.get("navigator_messages", []) if memory else []
    system = [] if history else [SystemMessage(content=render("single_system", **variables))]
    request = HumanMessage(
        content=render("single_user", evaluated=_top_keys(state, settings.objective), **variables)
    )
    messages = [*system, *history, request]
    reply = ask_structured(
        make_chat_model(settings.navigator_llm, settings.seed), settings.navigator_llm,
        single_llm_schema(space, settings.candidates), messages, role="single",
        retries=settings.generator_retries, size=settings.candidates,
        iteration=variables["iteration"] + 1,
    )
    strategy = reply.parsed.strategy if reply.parsed is not None else ""
    kept = [*messages[len(history):], *reply.transcript]
    if not memory:
        kept = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *kept]
    return {
        "strategy": strategy,
        "navigator_messages": kept,
        "candidates": [{"arch": _plain(item), "source": "single_llm"} for item in reply.items],
        "llm_calls": reply.calls,
    }


def screen_candidates(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """Coordinator: legality, dedupe (archive and batch), cost limit, remaining budget."""
    settings = runtime.context
    space = get_space(settings.space)
    limit = settings.cost_limit()
    counter = shared_cost_counter(settings.space, settings.dataset)
    iteration = state.get("iteration", 0) + 1
    seen = {record["key"] for record in state.get("archive", [])}
    remaining = settings.budget - len(seen)
    passing, rejected = [], []
    for candidate in state.get("candidates", []):
        checked = screen(candidate["arch"], space, seen, counter, limit)
        result = {
            "iteration": iteration, "source": candidate["source"], "key": checked.key,
            "raw": None if checked.arch else _short(candidate["arch"]),
            "flops_m": checked.cost.flops_m if checked.cost else None,
            "params_m": checked.cost.params_m if checked.cost else None,
        }
        if checked.verdict is None and len(passing) >= remaining:
            checked.verdict, checked.reason = "budget_spent", "the evaluation budget is spent"
        if checked.verdict is not None:
            rejected.append({**result, "verdict": checked.verdict, "reason": checked.reason})
            continue
        seen.add(checked.key)  # a repeat later in this batch is a duplicate
        passing.append({
            **result, "arch": checked.arch.model_dump(),
            "evaluation": len(state.get("archive", [])) + len(passing) + 1,
        })
    return {"screened": passing, "round_results": rejected}


def evaluate(task: EvaluationTask, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """Evaluate one screened candidate (runs in parallel with the rest of the batch)."""
    settings = runtime.context
    space = get_space(settings.space)
    candidate = task["candidate"]
    metrics: Metrics = _evaluator(settings).evaluate(space.parse(candidate["arch"]))
    cost = Cost(candidate["flops_m"], candidate["params_m"]) if candidate["flops_m"] is not None else None
    record = make_record(
        candidate["key"], candidate["arch"], metrics, cost, iteration=candidate["iteration"],
        source=candidate["source"], evaluation=candidate["evaluation"],
    )
    return {"archive": [record], "round_results": [{**record, "verdict": "evaluated"}]}


def record_round(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """Coordinator: update the best (eligible records only), count the round, decide to stop."""
    settings = runtime.context
    iteration = state.get("iteration", 0) + 1
    best = state.get("best")
    for record in state.get("archive", []):
        if record["iteration"] == iteration and (
            best is None or _score(record, settings.objective) > _score(best, settings.objective)
        ):
            best = record
    used = len(state.get("archive", []))
    stop_reason = None
    if best is not None and settings.target is not None and _score(best, settings.objective) >= settings.target:
        stop_reason = f"target reached ({_score(best, settings.objective):.2f} >= {settings.target:g})"
    elif used >= settings.budget:
        stop_reason = f"evaluation budget spent ({used}/{settings.budget})"
    elif iteration >= settings.iterations:
        stop_reason = f"iteration limit reached ({iteration})"
    return {"iteration": iteration, "best": best, "stop_reason": stop_reason, "candidates": [],
            "screened": []}


# --- routers -------------------------------------------------------------------------------


def route_start(state: SearchState, runtime: Runtime[SearchSettings]) -> Literal["navigate", "reflect_and_generate"]:
    return "reflect_and_generate" if runtime.context.single_llm else "navigate"


def route_to_evaluation(state: SearchState) -> list[Send] | Literal["record_round"]:
    """Fan the screened candidates out to `evaluate`, or go straight on if none passed."""
    sends = [Send("evaluate", {"candidate": c}) for c in state.get("screened", [])]
    return sends or "record_round"


def route_after_round(
    state: SearchState, runtime: Runtime[SearchSettings]
) -> Literal["navigate", "reflect_and_generate", "__end__"]:
    if state.get("stop_reason"):
        return END
    return route_start(state, runtime)


# --- helpers -------------------------------------------------------------------------------


def _plain(item: Any) -> Any:
    return item.model_dump() if hasattr(item, "model_dump") else item


def _short(raw: Any) -> str:
    text = str(raw)
    return text if len(text) <= 200 else text[:200] + "..."
