"""Graph nodes (one function each) and routers. Heavy objects come from cached factories."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from collm_nas.agents.generator import ask_structured, batch_schema, generator_messages, single_llm_schema
from collm_nas.agents.llm import make_chat_model
from collm_nas.agents.navigator import (
    best_text,
    call_navigator,
    mission_variables,
    navigator_request,
    record_cost,
    results_table,
    steering_schema,
    steering_weights,
)
from collm_nas.graph.context import SearchSettings
from collm_nas.graph.state import EvaluationTask, SearchState
from collm_nas.prompts import render
from collm_nas.spaces import get_space
from collm_nas.spaces.evaluation import Metrics, score
from collm_nas.tools.archive import TOP_FRACTION, dimension_stats, ranked, ridge_weights, stats_text
from collm_nas.tools.coordinator import make_record, screen
from collm_nas.tools.cost import Cost
from collm_nas.tools.evaluators import make_evaluator
from collm_nas.tools.sources import (
    LLM_SOURCE,
    Picker,
    allocate,
    hit_threshold,
    propose_batch,
    score_candidates,
    share_ring,
)
from langchain_core.messages import HumanMessage, RemoveMessage, SystemMessage
from langgraph.graph import END
from langgraph.graph.message import REMOVE_ALL_MESSAGES
from langgraph.runtime import Runtime
from langgraph.types import Send

# How many already-evaluated architectures the Generator is shown (the best ones), to keep
# prompts short for small models; the Coordinator rejects repeats anyway.
SHOWN_EVALUATED = 10
# How many of the best architectures the steering Navigator sees beside the statistics.
SHOWN_BEST = 3
# Candidates scored per side when the LLM's choice is compared with the rule's (same state).
COUNTERFACTUAL_SIZE = 10
# The counterfactual's "hit": a candidate in the space's top 1 % (where the evaluator knows it).
TOP_SHARE = 0.01
LLM_PROPOSERS = ("generator", "single_llm")


def _evaluator(settings: SearchSettings):
    return make_evaluator(settings.space, settings.dataset, settings.evaluator, settings.data_path)


def _round_results(state: SearchState, iteration: int) -> list[dict[str, Any]]:
    return [r for r in state.get("round_results", []) if r["iteration"] == iteration]


def _top_keys(state: SearchState, objective: str) -> list[str]:
    ranked = sorted(state.get("archive", []), key=lambda r: score(r, objective), reverse=True)
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
        update["generator_messages"] = [*messages[len(history):], *reply.remembered()]
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
    kept = [*messages[len(history):], *reply.remembered()]
    if not memory:
        kept = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *kept]
    return {
        "strategy": strategy,
        "navigator_messages": kept,
        "candidates": [{"arch": _plain(item), "source": "single_llm"} for item in reply.items],
        "llm_calls": reply.calls,
    }


def steer(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """The Navigator reads the archive statistics and says which values each dimension should
    move towards (structured); code turns that into candidates in `propose`."""
    settings = runtime.context
    space = get_space(settings.space)
    records = state.get("archive", [])
    variables = {
        **mission_variables(settings, space), **_progress_variables(state, settings),
        "top_percent": round(100 * TOP_FRACTION),
        "stats_text": stats_text(space, dimension_stats(space, records, settings.objective)),
        "top_table": _best_table(records, settings.objective),
    }
    memory = settings.navigator_memory
    history = state.get("navigator_messages", []) if memory else []
    system = [] if history else [SystemMessage(content=render("steer_system", **variables))]
    messages = [*system, *history, HumanMessage(content=render("steer_user", **variables))]
    # Memory keeps each round's decision with a one-line digest, not its (stale) statistics.
    digest = HumanMessage(content=render("steer_digest", **variables))
    reply = ask_structured(
        make_chat_model(settings.navigator_llm, settings.seed), settings.navigator_llm,
        steering_schema(space), messages, role="navigator", retries=settings.generator_retries,
        size=settings.candidates, iteration=variables["iteration"] + 1,
        retry_prompt="steer_retry", items_field=None,
    )
    steering = None
    if reply.parsed is not None:
        steering = {"summary": reply.parsed.summary,
                    "prefer": reply.parsed.prefer.model_dump(), "iteration": variables["iteration"] + 1}
    kept = [*system, digest, *reply.remembered()]
    if not memory:
        kept = [RemoveMessage(id=REMOVE_ALL_MESSAGES), *kept]
    return {
        "steering": steering,
        "strategy": reply.parsed.model_dump_json(indent=1) if reply.parsed is not None else "",
        "navigator_messages": kept,
        "llm_calls": reply.calls,
    }


def propose(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """Coordinator: build the batch from the code sources (and the Navigator's steering), each
    source's share set by its hit rate so far; measure the steering against the rule."""
    settings = runtime.context
    space = get_space(settings.space)
    iteration = state.get("iteration", 0) + 1
    steering = state.get("steering") if settings.use_llm else None
    llm_weights = steering_weights(space, steering["prefer"]) if steering else None
    slots = allocate(state.get("source_stats", {}), list(settings.sources), settings.candidates)
    if llm_weights:
        slots = share_ring(state.get("source_stats", {}), slots)
    rule = ridge_weights(space, state.get("archive", []), settings.objective)
    batch = _code_batch(state, settings, slots, llm_weights, rule)
    update: dict[str, Any] = {
        "candidates": [{"arch": arch.model_dump(), "source": source} for arch, source in batch],
    }
    if llm_weights is not None:
        llm_side = _code_batch(state, settings, {LLM_SOURCE: COUNTERFACTUAL_SIZE}, llm_weights, rule,
                               size=COUNTERFACTUAL_SIZE, stream=1)
        rule_side = _code_batch(state, settings, {"neighbours": COUNTERFACTUAL_SIZE}, None, rule,
                                size=COUNTERFACTUAL_SIZE, stream=1)
        measured = _measure(settings, iteration, "steering",
                            [a for a, source in llm_side if source == LLM_SOURCE],
                            [a for a, _ in rule_side])
        if measured:
            update["counterfactuals"] = [measured]
    return update


def screen_candidates(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """Coordinator: legality, dedupe (archive and batch), cost limit, remaining budget."""
    settings = runtime.context
    space = get_space(settings.space)
    limit = settings.cost_limit()
    counter = settings.cost_counter()
    iteration = state.get("iteration", 0) + 1
    seen = {record["key"] for record in state.get("archive", [])}
    remaining = settings.budget - len(seen)
    passing, rejected = [], []
    novel = []  # legal, new and within the limit (also those the budget cuts off)
    for candidate in state.get("candidates", []):
        checked = screen(candidate["arch"], space, seen, counter, limit)
        result = {
            "iteration": iteration, "source": candidate["source"], "key": checked.key,
            "raw": None if checked.arch else _short(candidate["arch"]),
            "flops_m": checked.cost.flops_m if checked.cost else None,
            "params_m": checked.cost.params_m if checked.cost else None,
            "latency_ms": checked.cost.latency_ms if checked.cost else None,
        }
        if checked.verdict is None and len(passing) >= remaining:
            checked.verdict, checked.reason = "budget_spent", "the evaluation budget is spent"
        if checked.verdict == "budget_spent":
            novel.append(checked.arch)
        if checked.verdict is not None:
            rejected.append({**result, "verdict": checked.verdict, "reason": checked.reason})
            continue
        seen.add(checked.key)  # a repeat later in this batch is a duplicate
        passing.append({
            **result, "arch": checked.arch.model_dump(),
            "evaluation": len(state.get("archive", [])) + len(passing) + 1,
        })
        novel.append(checked.arch)
    update: dict[str, Any] = {"screened": passing, "round_results": rejected}
    proposers = {c["source"] for c in state.get("candidates", [])} & set(LLM_PROPOSERS)
    if proposers and settings.use_llm:
        rule_side = _code_batch(state, settings, allocate({}, settings.sources, settings.candidates),
                                None, stream=1)
        measured = _measure(settings, iteration, proposers.pop(), novel, [a for a, _ in rule_side])
        if measured:
            measured["proposed"] = len(state.get("candidates", []))
            update["counterfactuals"] = [measured]
    return update


def evaluate(task: EvaluationTask, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """Evaluate one screened candidate (runs in parallel with the rest of the batch)."""
    settings = runtime.context
    space = get_space(settings.space)
    candidate = task["candidate"]
    metrics: Metrics = _evaluator(settings).evaluate(space.parse(candidate["arch"]))
    cost = (Cost(candidate["flops_m"], candidate["params_m"], candidate.get("latency_ms"))
            if candidate["flops_m"] is not None else None)
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
    earlier = [r for r in state.get("archive", []) if r["iteration"] < iteration]
    threshold = hit_threshold(earlier, settings.objective)
    source_stats = {k: dict(v) for k, v in state.get("source_stats", {}).items()}
    for record in state.get("archive", []):
        if record["iteration"] != iteration:
            continue
        value = score(record, settings.objective)
        counts = source_stats.setdefault(record["source"], {"evaluated": 0, "hits": 0, "new_best": 0})
        counts["evaluated"] += 1
        counts["hits"] += threshold is not None and value > threshold
        counts["new_best"] += state.get("best") is not None and value > score(state["best"], settings.objective)
        if best is None or value > score(best, settings.objective):
            best = record
    used = len(state.get("archive", []))
    stop_reason = None
    if best is not None and settings.target is not None and score(best, settings.objective) >= settings.target:
        stop_reason = f"target reached ({score(best, settings.objective):.2f} >= {settings.target:g})"
    elif used >= settings.budget:
        stop_reason = f"evaluation budget spent ({used}/{settings.budget})"
    elif iteration >= settings.iterations:
        stop_reason = f"iteration limit reached ({iteration})"
    return {"iteration": iteration, "best": best, "stop_reason": stop_reason, "candidates": [],
            "screened": [], "source_stats": source_stats}


# --- routers -------------------------------------------------------------------------------


Start = Literal["steer", "propose", "navigate", "reflect_and_generate"]


def route_start(state: SearchState, runtime: Runtime[SearchSettings]) -> Start:
    """Each round begins with the mode's first step (the same every round)."""
    settings = runtime.context
    if not settings.use_llm:
        return "propose"
    if settings.single_llm:
        return "reflect_and_generate"
    return "navigate" if settings.mode == "paper" else "steer"


def route_to_evaluation(state: SearchState) -> list[Send] | Literal["record_round"]:
    """Fan the screened candidates out to `evaluate`, or go straight on if none passed."""
    sends = [Send("evaluate", {"candidate": c}) for c in state.get("screened", [])]
    return sends or "record_round"


def route_after_round(
    state: SearchState, runtime: Runtime[SearchSettings]
) -> Start | Literal["__end__"]:
    if state.get("stop_reason"):
        return END
    return route_start(state, runtime)


# --- helpers -------------------------------------------------------------------------------


def _rng(settings: SearchSettings, iteration: int, stream: int) -> np.random.Generator:
    """Reproducible per (seed, round, stream), so a resumed round proposes the same batch."""
    return np.random.default_rng([settings.seed, iteration, stream])


def _code_batch(
    state: SearchState, settings: SearchSettings, slots: dict[str, int],
    llm_weights: dict[str, dict[str, float]] | None, rule: dict[str, dict[str, float]] | None = None,
    size: int | None = None, stream: int = 0,
) -> list[tuple[Any, str]]:
    """Candidates from the code sources for the current archive (nothing evaluated here);
    `rule` is the archive's additive model when the caller already fitted it."""
    space = get_space(settings.space)
    records = state.get("archive", [])
    limit = settings.cost_limit()
    counter = settings.cost_counter()
    allowed = None
    if limit is not None:
        allowed = lambda arch: limit.allows(counter(arch))  # noqa: E731
    kind = limit.kind if limit is not None else "params"
    picker = Picker(space, {r["key"] for r in records}, allowed)
    return propose_batch(
        space, records, settings.objective, size or settings.candidates,
        _rng(settings, state.get("iteration", 0) + 1, stream), picker,
        rule if rule is not None else ridge_weights(space, records, settings.objective), slots,
        llm_weights,
        size_of=lambda arch: counter(arch).value(kind),
    )


def _measure(
    settings: SearchSettings, iteration: int, proposer: str, llm_archs: list, rule_archs: list
) -> dict[str, Any] | None:
    """The LLM's candidates vs the rule's from the same state, scored by a cheap evaluator."""
    evaluator = _evaluator(settings)
    if not settings.measure_llm or not evaluator.cheap:
        return None
    threshold = evaluator.top_threshold(settings.objective, TOP_SHARE)
    return {
        "iteration": iteration, "proposer": proposer,
        "llm": score_candidates(evaluator, llm_archs, settings.objective, threshold),
        "rule": score_candidates(evaluator, rule_archs, settings.objective, threshold),
    }


def _best_table(records: list[dict[str, Any]], objective: str) -> str:
    lines = []
    for record in ranked(records, objective)[:SHOWN_BEST]:
        cost = f", {text}" if (text := record_cost(record)) else ""
        lines.append(f"- {record['key']} {score(record, objective):.2f}{cost}")
    return "\n".join(lines) or "- (none yet)"


def _plain(item: Any) -> Any:
    return item.model_dump() if hasattr(item, "model_dump") else item


def _short(raw: Any) -> str:
    text = str(raw)
    return text if len(text) <= 200 else text[:200] + "..."
