"""What every role is told: the mission and the search's progress, as prompt variables.

`settings` is the run's settings object (the graph's context), read by attribute; `state` the
search state dict. Neither type is imported: agents do not depend on the graph.
"""

from __future__ import annotations

from typing import Any

from collm_nas.spaces import SearchSpace
from collm_nas.spaces.evaluation import score

# How many already-evaluated architectures a proposing role is shown (the best ones), to keep
# prompts short for small models; the Coordinator rejects repeats anyway.
SHOWN_EVALUATED = 10
# How many of the best architectures the steering Navigator sees beside the statistics.
SHOWN_BEST = 3


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


def progress_variables(state: dict[str, Any], settings) -> dict[str, Any]:
    """Prompt variables on the search so far: the last round's results, the best, the budget used."""
    iteration = state.get("iteration", 0)
    results = [r for r in state.get("round_results", []) if r["iteration"] == iteration]
    return {
        "iteration": iteration,
        "results_table": results_table(results, settings.objective) if iteration else "",
        "n_evaluated": sum(r["verdict"] == "evaluated" for r in results),
        "n_rejected": sum(r["verdict"] != "evaluated" for r in results),
        "best_text": best_text(state.get("best"), settings.objective),
        "used": len(state.get("archive", [])),
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


def top_keys(state: dict[str, Any], objective: str) -> list[str]:
    """The keys of the best evaluated architectures (at most SHOWN_EVALUATED), best first."""
    ranked = sorted(state.get("archive", []), key=lambda r: score(r, objective), reverse=True)
    return [r["key"] for r in ranked[:SHOWN_EVALUATED]]


def best_table(ranked: list[dict[str, Any]], objective: str) -> str:
    """The best records (`ranked`: best first) as lines of key, score and cost."""
    lines = []
    for record in ranked[:SHOWN_BEST]:
        cost = f", {text}" if (text := record_cost(record)) else ""
        lines.append(f"- {record['key']} {score(record, objective):.2f}{cost}")
    return "\n".join(lines) or "- (none yet)"
