"""What evaluating an architecture returns, and the records the search keeps.

This is the neutral contract between evaluators (tools), the agents that read results, the graph
and the reports: `Metrics` from `Evaluator.evaluate`, JSON-able `Record`s in the archive, and
`score(record, objective)` as the one way to read the accuracy a search maximises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypedDict

from pydantic import BaseModel

Objective = Literal["valid", "test"]
OBJECTIVES: tuple[str, ...] = ("valid", "test")


@dataclass(frozen=True)
class Metrics:
    """Accuracies in percent. The search reads `valid_acc` (or `test_acc` under objective=test),
    unless a zero-cost evaluator set `proxy`: then it reads the proxy score under either
    objective, and the accuracies (true ones where the space knows them, else NaN) are only
    reported."""

    valid_acc: float
    test_acc: float
    predicted: bool = False  # from an accuracy predictor, not a measurement
    proxy: float | None = None  # a zero-cost proxy score (higher is better), when that is what ranks

    def score(self, objective: str) -> float:
        if self.proxy is not None:
            return self.proxy
        return self.valid_acc if objective == "valid" else self.test_acc


class Evaluator(Protocol):
    """Scores architectures of one space on one dataset: `evaluate(arch) -> Metrics`.

    Subclass it (for the defaults below) or provide the same members. `kind` names the evaluator
    (`benchmark`, `predictor`, `supernet`, ...). `thread_safe` says whether `evaluate` may run
    from several threads at once; the factory serialises evaluators that are not. `cheap` says
    whether scoring extra candidates on the side costs next to nothing (a table, a predictor):
    only then does the search measure the LLM against the rule on the same state. Evaluators
    that know the whole space also give its `optimum` and the score of its top share.
    """

    kind: str
    thread_safe: bool = True
    cheap: bool = False

    def evaluate(self, arch: BaseModel) -> Metrics: ...

    def optimum(self, objective: str) -> float | None:
        """The best score any architecture reaches, where known (else None)."""
        return None

    def top_threshold(self, objective: str, share: float) -> float | None:
        """The score that puts an architecture in the space's top `share`, where known."""
        return None


class Record(TypedDict, total=False):
    """One evaluated architecture in the archive (JSON-able)."""

    key: str
    arch: Any
    valid_acc: float
    test_acc: float
    predicted: bool
    proxy: float | None  # absent in records of accuracy evaluators
    flops_m: float | None
    params_m: float | None
    latency_ms: float | None
    iteration: int
    source: str
    evaluation: int


class RoundResult(Record, total=False):
    """What happened to one candidate of a round: a record plus its verdict (and reason)."""

    verdict: str
    reason: str
    raw: str | None


def score(record: Record | dict[str, Any], objective: str) -> float:
    """What a search with this objective maximises, read from a record: the accuracy, or the
    proxy score where a zero-cost evaluator gave one."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if record.get("proxy") is not None:
        return record["proxy"]
    return record["valid_acc" if objective == "valid" else "test_acc"]
