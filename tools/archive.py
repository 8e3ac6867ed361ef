"""Statistics of the evaluated archive per design dimension, for any space (through its contract).

For each dimension and value: how often it was evaluated, how often it sits in the archive's top
fraction, its mean and best score and mean FLOPs (the facts the Navigator reads), and an additive
model of each value's effect (the rule the code sources rank candidates by). Values are keyed by
`str(value)` so the results are JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from collm_nas.spaces import SearchSpace
from collm_nas.spaces.evaluation import score

# The share of the archive counted as "top" in the statistics.
TOP_FRACTION = 0.3


def ranked(records: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """Records best first (ties: earlier evaluation first, so the order is stable)."""
    return sorted(records, key=lambda r: (-score(r, objective), r.get("evaluation", 0)))


def dimension_stats(
    space: SearchSpace, records: list[dict[str, Any]], objective: str,
    top_fraction: float = TOP_FRACTION,
) -> dict[str, dict[str, dict[str, float]]]:
    """dimension -> value -> {n, n_top, mean, best, flops_m}; only genes that shape the network."""
    order = ranked(records, objective)
    n_top = max(1, round(top_fraction * len(order))) if order else 0
    sums: dict[str, dict[str, dict[str, float]]] = {
        dim: {str(v): {"n": 0, "n_top": 0, "sum": 0.0, "best": float("-inf"), "flops": 0.0,
                       "n_flops": 0} for v in values}
        for dim, values in space.dimensions.items()
    }
    for rank, record in enumerate(order):
        arch = space.parse(record["arch"])
        value_score = score(record, objective)
        for dim, value, active in zip(space.dimensions, space.genes(arch), space.active_genes(arch),
                                      strict=True):
            if not active:
                continue
            cell = sums[dim][str(value)]
            cell["n"] += 1
            cell["n_top"] += rank < n_top
            cell["sum"] += value_score
            cell["best"] = max(cell["best"], value_score)
            if record.get("flops_m") is not None:
                cell["flops"] += record["flops_m"]
                cell["n_flops"] += 1
    return {
        dim: {
            value: {
                "n": c["n"], "n_top": c["n_top"],
                "mean": round(c["sum"] / c["n"], 3) if c["n"] else None,
                "best": round(c["best"], 3) if c["n"] else None,
                "flops_m": round(c["flops"] / c["n_flops"], 2) if c["n_flops"] else None,
            }
            for value, c in per_value.items()
        }
        for dim, per_value in sums.items()
    }


def group_stats(
    space: SearchSpace, stats: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, dict[str, dict[str, Any]]]:
    """`dimension_stats` pooled over each of the space's dimension groups."""
    pooled: dict[str, dict[str, dict[str, Any]]] = {}
    for group, dims in space.dimension_groups().items():
        pooled[group] = {}
        for value in stats[dims[0]]:
            cells = [stats[dim][value] for dim in dims]
            n = sum(c["n"] for c in cells)
            means = [(c["mean"], c["n"]) for c in cells if c["n"]]
            pooled[group][value] = {
                "n": n,
                "n_top": sum(c["n_top"] for c in cells),
                "mean": round(sum(m * k for m, k in means) / n, 3) if n else None,
                "best": max((c["best"] for c in cells if c["n"]), default=None),
            }
    return pooled


def stats_text(space: SearchSpace, stats: dict[str, dict[str, dict[str, Any]]]) -> str:
    """The statistics as compact prompt lines, one per (grouped) dimension."""
    lines = []
    for group, per_value in group_stats(space, stats).items():
        parts = [
            f"{value} {c['n_top']}/{c['n']} {c['mean']:.1f}" if c["n"] else f"{value} untested"
            for value, c in per_value.items()
        ]
        lines.append(f"{group}: " + " | ".join(parts))
    return "\n".join(lines)


def ridge_weights(
    space: SearchSpace, records: list[dict[str, Any]], objective: str, penalty: float = 1.0
) -> dict[str, dict[str, float]]:
    """An additive model fitted to the archive: each value's effect on the score (ridge
    regression on one-hot genes, scores below the median raised to it so broken networks do
    not dominate). Unseen values get 0."""
    if not records:
        return {dim: {str(v): 0.0 for v in values} for dim, values in space.dimensions.items()}
    columns = [(dim, str(v)) for dim, values in space.dimensions.items() for v in values]
    x = np.array([space.encode(space.parse(r["arch"])) for r in records], dtype=float)
    y = np.array([score(r, objective) for r in records])
    y = np.maximum(y, np.median(y))
    y = y - y.mean()
    coef = np.linalg.solve(x.T @ x + penalty * np.eye(x.shape[1]), x.T @ y)
    weights: dict[str, dict[str, float]] = {dim: {} for dim in space.dimensions}
    for (dim, value), c in zip(columns, coef, strict=True):
        weights[dim][value] = float(c)
    return weights
