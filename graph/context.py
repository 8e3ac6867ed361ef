"""Run settings: the graph's `context_schema`. Serializable, no secrets, never in state."""

from __future__ import annotations

from typing import Any, Literal

from collm_nas.agents.llm import LLMSettings
from collm_nas.tools.cost import CostCounter, CostLimit, shared_cost_counter
from collm_nas.tools.latency import check_latency_space
from collm_nas.tools.sources import DEFAULT_SOURCES, RULE_SOURCES
from pydantic import BaseModel, Field, model_validator

Mode = Literal["collm", "collm-nollm", "paper", "sillm"]
MODES: dict[str, str] = {
    "collm": "the Navigator steers code-built candidates with the archive statistics",
    "collm-nollm": "the same loop with the LLM removed (code sources only)",
    "paper": "the paper's Algorithm 1 (free-text strategy, LLM Generator)",
    "sillm": "SiLLM-NAS: one model reflects and generates",
}
# The flags that, with a two-valued `mode`, chose the mode before it was one setting.
OLD_MODE_FLAGS = {"use_llm", "single_llm"}


def uses_llm(mode: str) -> bool:
    return mode != "collm-nollm"


def mode_of(settings: dict[str, Any]) -> str:
    """The mode of a settings dict, also of one written with the old `use_llm`/`single_llm`
    flags (a run folder's config.json). Settings from before `mode` existed were the paper's loop."""
    if not OLD_MODE_FLAGS & settings.keys():
        return settings.get("mode", "collm")
    if not settings.get("use_llm", True):
        if settings.get("mode") == "paper":
            raise ValueError("mode 'paper' needs the LLM: the LLM-free loop is mode 'collm-nollm'")
        return "collm-nollm"
    if settings.get("single_llm"):
        return "sillm"
    return settings.get("mode", "paper")


class SearchSettings(BaseModel):
    """Everything that defines one search run."""

    space: str = Field("nb201", description="search space")
    dataset: str = Field("cifar10", description="dataset of the evaluator")
    objective: Literal["valid", "test"] = Field("valid", description="accuracy the search maximises")
    evaluator: str | None = Field(None, description="benchmark | predictor | supernet (space default)")
    data_path: str | None = Field(None, description="data file or folder; else $COLLM_NAS_DATA")
    target: float | None = Field(None, description="stop when the best accuracy reaches this")
    cost_kind: Literal["flops", "params", "latency"] | None = Field(
        None, description="what the limit bounds (latency: Note10 tables, mobilenet only)"
    )
    max_cost: float | None = Field(
        None, gt=0, description="cost limit: millions of FLOPs or params, or milliseconds"
    )
    iterations: int = Field(20, ge=1, description="Navigator-Generator rounds at most")
    budget: int = Field(100, ge=1, description="distinct architectures evaluated at most")
    candidates: int = Field(10, ge=1, le=50, description="architectures per Generator call")
    generator_retries: int = Field(2, ge=0, le=10, description="re-asks after a bad reply")
    navigator_llm: LLMSettings = Field(default_factory=LLMSettings)
    generator_llm: LLMSettings = Field(default_factory=LLMSettings)
    navigator_memory: bool = Field(True, description="the Navigator keeps its conversation")
    generator_memory: bool = Field(False, description="the Generator keeps its conversation")
    mode: Mode = Field(
        "collm", description="; ".join(f"{name}: {text}" for name, text in MODES.items())
    )
    sources: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SOURCES),
        description=f"code candidate sources, from: {', '.join(RULE_SOURCES)}",
    )
    measure_llm: bool = Field(
        True, description="score the LLM's candidates against the rule's on the same state "
        "(only with a benchmark or predictor evaluator)",
    )
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _mode_from_old_flags(cls, data: Any) -> Any:
        """Settings written before `mode` took four values (old run folders' config.json)."""
        if isinstance(data, dict) and OLD_MODE_FLAGS & data.keys():
            data = {k: v for k, v in data.items() if k not in OLD_MODE_FLAGS} | {"mode": mode_of(data)}
        return data

    @model_validator(mode="after")
    def _limit_needs_kind(self) -> SearchSettings:
        if (self.cost_kind is None) != (self.max_cost is None):
            raise ValueError("a cost limit needs both cost_kind (flops|params|latency) and max_cost")
        if self.cost_kind == "latency":
            check_latency_space(self.space)
        return self

    @model_validator(mode="after")
    def _known_sources(self) -> SearchSettings:
        unknown = [s for s in self.sources if s not in RULE_SOURCES]
        if unknown or not self.sources:
            raise ValueError(
                f"sources must be a non-empty list from {', '.join(RULE_SOURCES)}; got {self.sources}"
            )
        return self

    def cost_limit(self) -> CostLimit | None:
        return CostLimit(self.cost_kind, self.max_cost) if self.cost_kind else None

    def cost_counter(self) -> CostCounter:
        """The process-wide cost counter for this run (with table latency under a latency limit)."""
        return shared_cost_counter(self.space, self.dataset, self.cost_kind == "latency", self.data_path)

    def recursion_limit(self) -> int:
        """Enough graph steps for every round (navigate, generate, screen, evaluate, record)."""
        return 10 * self.iterations + 20
