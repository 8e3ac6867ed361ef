"""The Coordinator's checks, in plain code: legality, dedupe, cost limit, evaluation, budget, best.

`screen` decides what happens to one candidate without evaluating it; `Ledger` applies the
whole pipeline for the baselines and keeps the archive. The search graph uses the same
`screen` and `make_record` on its JSON state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from collm_nas.spaces import IllegalArchitecture, SearchSpace
from collm_nas.spaces.evaluation import Metrics, score
from collm_nas.tools.cost import Cost, CostLimit
from pydantic import BaseModel

Verdict = Literal["evaluated", "duplicate", "illegal", "over_limit", "budget_spent", "evaluation_failed"]


@dataclass
class Screening:
    """Outcome of checking one candidate before evaluation."""

    verdict: Verdict | None  # None: passes every check and may be evaluated
    arch: BaseModel | None = None
    key: str | None = None
    cost: Cost | None = None
    reason: str = ""


def screen(
    candidate: Any,
    space: SearchSpace,
    seen: set[str] | dict[str, Any],
    count_cost: Callable[[BaseModel], Cost] | None,
    limit: CostLimit | None,
) -> Screening:
    """Parse and check a candidate: illegal -> duplicate -> over the cost limit."""
    try:
        arch = space.parse(candidate)
    except IllegalArchitecture as err:
        return Screening("illegal", reason=err.reason)
    key = space.key(arch)
    if key in seen:
        return Screening("duplicate", arch, key, reason="already evaluated")
    cost = count_cost(arch) if count_cost else None
    if limit is not None and cost is not None and not limit.allows(cost):
        return Screening("over_limit", arch, key, cost, reason=limit.describe(cost.value(limit.kind)))
    return Screening(None, arch, key, cost)


def make_record(
    key: str, arch: dict[str, Any], metrics: Metrics, cost: Cost | None, **extra: Any
) -> dict[str, Any]:
    """A JSON-able archive record for an evaluated candidate."""
    return {
        "key": key,
        "arch": arch,
        "valid_acc": metrics.valid_acc,
        "test_acc": metrics.test_acc,
        "predicted": metrics.predicted,
        **({"proxy": metrics.proxy} if metrics.proxy is not None else {}),
        "flops_m": cost.flops_m if cost else None,
        "params_m": cost.params_m if cost else None,
        "latency_ms": cost.latency_ms if cost else None,
        **extra,
    }


@dataclass
class Ledger:
    """Evaluates distinct, legal, within-limit candidates until the budget is spent.

    A duplicate replays the archived result without spending budget; an over-limit candidate is
    rejected before evaluation and does not count either.
    """

    space: SearchSpace
    evaluator: Any
    objective: str
    budget: int
    count_cost: Callable[[BaseModel], Cost] | None = None
    limit: CostLimit | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)
    best: dict[str, Any] | None = None
    curve: list[float] = field(default_factory=list)
    _by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    _started: float = field(default_factory=time.perf_counter)

    @property
    def remaining(self) -> int:
        return self.budget - len(self.records)

    @property
    def spent(self) -> bool:
        return self.remaining <= 0

    def score(self, record: dict[str, Any]) -> float:
        return score(record, self.objective)

    def submit(self, candidate: Any, source: str = "") -> tuple[Verdict, dict[str, Any] | None]:
        """Check and (if new and allowed) evaluate a candidate; returns verdict and record."""
        if self.spent:
            return "budget_spent", None
        checked = screen(candidate, self.space, self._by_key, self.count_cost, self.limit)
        if checked.verdict == "duplicate":
            return "duplicate", self._by_key[checked.key]
        if checked.verdict is not None:
            self.rejected[checked.verdict] = self.rejected.get(checked.verdict, 0) + 1
            return checked.verdict, None
        metrics = self.evaluator.evaluate(checked.arch)
        record = make_record(checked.key, checked.arch.model_dump(), metrics, checked.cost,
                             source=source, evaluation=len(self.records) + 1)
        self.records.append(record)
        self._by_key[checked.key] = record
        if self.best is None or self.score(record) > self.score(self.best):
            self.best = record
        self.curve.append(self.score(self.best))
        return "evaluated", record

    def wall_seconds(self) -> float:
        return time.perf_counter() - self._started
