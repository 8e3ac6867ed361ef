"""Graph nodes (one function each, short adapters to the agents and tools) and routers.

Heavy objects (space, evaluator, chat models) come from cached factories, never from state.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from collm_nas.agents import generator, navigator, rznas, single_llm, steering
from collm_nas.graph.context import Mode, SearchSettings, uses_llm
from collm_nas.graph.state import EvaluationTask, SearchState
from collm_nas.spaces import get_space
from collm_nas.spaces.evaluation import Metrics, score
from collm_nas.tools.archive import TOP_FRACTION, dimension_stats, ranked, stats_text
from collm_nas.tools.coordinator import make_record, screen
from collm_nas.tools.cost import Cost
from collm_nas.tools.evaluators import make_evaluator
from collm_nas.tools.evolution import change_text, pick_parents, random_children, random_newcomers
from collm_nas.tools.executors import EvaluationFailed
from collm_nas.tools.sources import (
    RoundInputs,
    best_by_score,
    compare_with_rule,
    hit_threshold,
    next_batch,
    rule_batch,
    steering_against_rule,
)
from langgraph.graph import END
from langgraph.runtime import Runtime
from langgraph.types import Send

Start = Literal["steer", "propose", "navigate", "reflect_and_generate", "reflect", "mutate"]
# The step each round starts with, per mode: all the graph needs to know of a mode (besides
# `uses_llm`, which skips `measure_llm`).
FIRST_NODE: dict[Mode, Start] = {
    "collm": "steer",
    "collm-nollm": "propose",
    "paper": "navigate",
    "sillm": "reflect_and_generate",
    "rznas": "reflect",
    "rznas-nollm": "mutate",
}
# Candidate sources that are an LLM writing architectures (measured after screening).
LLM_PROPOSERS = (generator.SOURCE, single_llm.SOURCE, rznas.SOURCE)


def _evaluator(settings: SearchSettings):
    return settings.evaluator_spec().build()


def _round_inputs(state: SearchState, settings: SearchSettings) -> RoundInputs:
    """What the code sources read this round (the round being built is the next one)."""
    return RoundInputs(
        get_space(settings.space), state.get("archive", []), settings.objective,
        settings.cost_counter(), settings.cost_limit(), settings.seed, state.get("iteration", 0) + 1,
    )


# --- nodes ---------------------------------------------------------------------------------


def navigate(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """The Navigator reads the last round's results and writes the next strategy."""
    return navigator.navigate(state, runtime.context)


def generate(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """The Generator turns the strategy into a batch of candidates (structured output)."""
    return generator.generate(state, runtime.context)


def reflect_and_generate(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """SiLLM-NAS: one model reads the results, states its strategy and proposes the batch."""
    return single_llm.reflect_and_generate(state, runtime.context)


def steer(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """The Navigator reads the archive statistics and says which values each dimension should
    move towards (structured); code turns that into candidates in `propose`."""
    settings = runtime.context
    space = get_space(settings.space)
    records = state.get("archive", [])
    statistics = stats_text(space, dimension_stats(space, records, settings.objective))
    return steering.steer(state, settings, statistics=statistics,
                          top_percent=round(100 * TOP_FRACTION), ranked=ranked(records, settings.objective))


def propose(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """Coordinator: the batch from the code sources (and the Navigator's steering), each
    source's share set by its hit rate so far. With a pre-screen, a pool `prescreen_pool` times
    larger, of which the best by the zero-cost proxy go on."""
    settings = runtime.context
    steered = state.get("steering")
    pool = settings.prescreen_pool if settings.prescreen else 1
    batch = next_batch(
        _round_inputs(state, settings), settings.sources, state.get("source_stats", {}),
        settings.candidates * pool, steered["prefer"] if steered else None,
    )
    if settings.prescreen:
        proxy = make_evaluator(settings.space, settings.dataset, f"zero_cost:{settings.prescreen}",
                               settings.data_path)
        batch = best_by_score(proxy, settings.objective, batch, settings.candidates)
    return {"candidates": [{"arch": arch.model_dump(), "source": source} for arch, source in batch]}


def reflect(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """RZ-NAS: the LLM reads how the last generation's children scored against their parents
    and writes one lesson for the next prompts."""
    return rznas.reflect(state, runtime.context, runtime.context.proxy_name())


def mutate(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """RZ-NAS's generation: random newcomers until the population is full, then one child per
    parent drawn from the population, written by the LLM (rznas) or by random mutation
    (rznas-nollm)."""
    settings = runtime.context
    space = get_space(settings.space)
    records = state.get("archive", [])
    seen = {r["key"] for r in records}
    rng = np.random.default_rng([settings.seed, state.get("iteration", 0) + 1])
    if len(records) < settings.population:
        newcomers = random_newcomers(space, seen, settings.population - len(records), rng)
        return {"candidates": [{"arch": a.model_dump(), "source": "random"} for a in newcomers],
                "generation": {"parents": [], "children": []}}
    parents = pick_parents(records, settings.objective, settings.population, settings.candidates, rng)
    if uses_llm(settings.mode):
        candidates, calls = rznas.llm_children(state, settings, parents, settings.proxy_name())
        candidates = [{**c, "source": rznas.SOURCE} for c in candidates]
    else:
        candidates = [{"arch": a.model_dump(), "parent": key, "source": "mutation"}
                      for a, key in random_children(space, parents, seen, rng)]
        calls = []
    by_key = {p["key"]: space.parse(p["arch"]) for p in parents}
    children = []
    for c in candidates:
        if "parent" in c:
            child = space.parse(c["arch"])
            children.append({"source": c["source"], "parent": c["parent"], "key": space.key(child),
                             "change": change_text(space, by_key[c["parent"]], child)})
    update = {"candidates": candidates,
              "generation": {"parents": [p["key"] for p in parents], "children": children}}
    return update | ({"llm_calls": calls} if calls else {})


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
    novel = []  # legal, new and within the limit (also those the budget cuts off): for measure_llm
    for candidate in state.get("candidates", []):
        if candidate.get("unreadable"):  # an LLM item that could not be made an architecture
            rejected.append({"iteration": iteration, "source": candidate["source"], "key": None,
                             "raw": _short(candidate["arch"]), "flops_m": None, "params_m": None,
                             "latency_ms": None, "verdict": "illegal", "reason": candidate["unreadable"]})
            continue
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
    return {"screened": passing, "round_results": rejected,
            "novel": [arch.model_dump() for arch in novel]}


def measure_llm(state: SearchState, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """The LLM's candidates against the rule's from the same state, scored on a cheap evaluator
    (a measurement only: nothing of it enters the archive)."""
    settings = runtime.context
    inputs = _round_inputs(state, settings)
    candidates = state.get("candidates", [])
    proposers = {c["source"] for c in candidates} & set(LLM_PROPOSERS)
    if state.get("steering"):
        proposer, extra = "steering", {}
        llm_archs, rule_archs = steering_against_rule(inputs, state["steering"]["prefer"])
    elif proposers:
        proposer, extra = proposers.pop(), {"proposed": len(candidates)}
        llm_archs = [inputs.space.parse(arch) for arch in state.get("novel", [])]
        if proposer == rznas.SOURCE:  # random children of the same parents
            known = {r["key"]: r for r in inputs.records}
            parents = [known[key] for key in state["generation"]["parents"]]
            rule_archs = [arch for arch, _ in random_children(inputs.space, parents, set(known), inputs.rng(1))]
        else:
            rule_archs = rule_batch(inputs, settings.sources, settings.candidates)
    else:
        return {}  # the LLM's reply could not be used: nothing to measure
    scores = compare_with_rule(_evaluator(settings), settings.objective, llm_archs, rule_archs)
    return {"counterfactuals": [
        {"iteration": inputs.iteration, "proposer": proposer, **scores, **extra}
    ]}


def evaluate(task: EvaluationTask, runtime: Runtime[SearchSettings]) -> dict[str, Any]:
    """Evaluate one screened candidate (runs in parallel with the rest of the batch), here or on
    a Ray worker (the run's executor). A candidate whose workers all died is recorded as
    `evaluation_failed`: it enters no archive and spends no budget."""
    candidate = task["candidate"]
    try:
        metrics: Metrics = runtime.context.candidate_executor().evaluate(candidate["arch"])
    except EvaluationFailed as err:
        failed = {k: v for k, v in candidate.items() if k not in ("arch", "evaluation")}
        return {"round_results": [{**failed, "verdict": "evaluation_failed", "reason": str(err)}]}
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
            "screened": [], "novel": [], "source_stats": source_stats}


# --- routers -------------------------------------------------------------------------------


def route_start(state: SearchState, runtime: Runtime[SearchSettings]) -> Start:
    """Each round begins with the mode's first step (the same every round)."""
    return FIRST_NODE[runtime.context.mode]


def route_after_screening(
    state: SearchState, runtime: Runtime[SearchSettings]
) -> list[Send] | Literal["measure_llm", "record_round"]:
    """Measure the LLM against the rule where it acted and a cheap evaluator allows; else on
    to the evaluations."""
    settings = runtime.context
    if uses_llm(settings.mode) and settings.measure_llm and _evaluator(settings).cheap:
        return "measure_llm"
    return route_to_evaluation(state, runtime)


def route_to_evaluation(
    state: SearchState, runtime: Runtime[SearchSettings]
) -> list[Send] | Literal["record_round"]:
    """Fan the screened candidates out to `evaluate`, or go straight on if none passed. The
    executor starts the whole batch here (a Ray pool then runs it on every worker however many
    branches LangGraph runs at once); each branch collects its own result."""
    screened = state.get("screened", [])
    runtime.context.candidate_executor().start([c["arch"] for c in screened])
    return [Send("evaluate", {"candidate": c}) for c in screened] or "record_round"


def route_after_round(
    state: SearchState, runtime: Runtime[SearchSettings]
) -> Start | Literal["__end__"]:
    if state.get("stop_reason"):
        return END
    return route_start(state, runtime)


# --- helpers -------------------------------------------------------------------------------


def _short(raw: Any) -> str:
    text = str(raw)
    return text if len(text) <= 200 else text[:200] + "..."
