"""Run settings: the graph's `context_schema`. Serializable, no secrets, never in state.

Every field can also come from the environment: `COLLM_NAS_<FIELD>` (e.g. `COLLM_NAS_BUDGET=50`),
`COLLM_NAS_<ROLE>_LLM__<FIELD>` for the two LLM settings (e.g.
`COLLM_NAS_NAVIGATOR_LLM__BACKEND=vllm`), lists as JSON. Explicit values (the CLI's options, a
caller's arguments) win over the environment, which wins over the defaults.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from collm_nas.agents.llm import LLMSettings
from collm_nas.spaces import resolve_dataset
from collm_nas.tools.cost import CostCounter, CostLimit, shared_cost_counter
from collm_nas.tools.executors import EvaluatorSpec, Executor, RayOptions, make_executor
from collm_nas.tools.latency import check_latency_space
from collm_nas.tools.proxies import check_proxy
from collm_nas.tools.sources import DEFAULT_SOURCES, RULE_SOURCES
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "COLLM_NAS_"
DATA_VARIABLE = "COLLM_NAS_DATA"  # the data folder, read by tools/data.py as well

Mode = Literal["collm", "collm-nollm", "paper", "sillm", "rznas", "rznas-nollm"]
MODES: dict[str, str] = {
    "collm": "the Navigator steers code-built candidates with the archive statistics",
    "collm-nollm": "the same loop with the LLM removed (code sources only)",
    "paper": "the paper's Algorithm 1 (free-text strategy, LLM Generator)",
    "sillm": "SiLLM-NAS: one model reflects and generates",
    "rznas": "RZ-NAS: evolution on a zero-cost proxy, the LLM mutates and reflects",
    "rznas-nollm": "the same evolution with random mutation",
}
# Each mode that runs without an LLM, by the mode it is the LLM-free form of.
LLM_FREE_MODES = {"collm": "collm-nollm", "rznas": "rznas-nollm"}
RZNAS_MODES = ("rznas", "rznas-nollm")
DEFAULT_RZNAS_EVALUATOR = "zero_cost:synflow"
# The flags that, with a two-valued `mode`, chose the mode before it was one setting.
OLD_MODE_FLAGS = {"use_llm", "single_llm"}


def uses_llm(mode: str) -> bool:
    return mode not in LLM_FREE_MODES.values()


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


class _DataFolderVariable(PydanticBaseSettingsSource):
    """$COLLM_NAS_DATA as `data_path`, so that a run's config.json names the data it read."""

    def get_field_value(self, field, field_name):
        return None, field_name, False

    def __call__(self) -> dict[str, str]:
        folder = os.environ.get(DATA_VARIABLE)
        return {"data_path": folder} if folder else {}


class SearchSettings(BaseSettings):
    """Everything that defines one search run."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", populate_by_name=True,
    )

    space: str = Field("nb201", description="search space")
    dataset: str | None = Field(None, description="dataset of the evaluator (the space's default if none)")
    objective: Literal["valid", "test"] = Field("valid", description="accuracy the search maximises")
    evaluator: str | None = Field(None, description="benchmark | predictor | supernet (space default)")
    evaluator_options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="keyword settings for the evaluator, e.g. {'device': 'cuda'} for a supernet on a GPU",
    )
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
    llm_give_up_rounds: int = Field(
        3, ge=0, description="stop with an error after this many rounds in a row in which a structured "
        "LLM role gave no usable reply (0: never; the run stays resumable)",
    )
    navigator_llm: LLMSettings = Field(default_factory=LLMSettings)
    generator_llm: LLMSettings = Field(default_factory=LLMSettings)
    navigator_memory: bool = Field(True, description="the Navigator keeps its conversation")
    generator_memory: bool = Field(False, description="the Generator keeps its conversation")
    mode: Mode = Field(
        "collm", description="; ".join(f"{name}: {text}" for name, text in MODES.items())
    )
    population: int = Field(20, ge=2, description="rznas modes: the population (the archive's best)")
    prescreen: str | None = Field(
        None, description="collm modes: rank a larger pool of code candidates by this zero-cost "
        "proxy and evaluate only the best (e.g. synflow)",
    )
    prescreen_pool: int = Field(5, ge=2, le=50, description="with prescreen: pool size per evaluated candidate")
    sources: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SOURCES),
        description=f"code candidate sources, from: {', '.join(RULE_SOURCES)}",
    )
    measure_llm: bool = Field(
        True, description="score the LLM's candidates against the rule's on the same state "
        "(only with a benchmark or predictor evaluator)",
    )
    executor: Literal["local", "ray"] = Field(
        "local", description="where candidates are evaluated: local threads or a Ray cluster"
    )
    ray_address: str = Field("", description="Ray cluster: '' starts a local one; auto; ray://host:port")
    eval_workers: int = Field(2, ge=1, description="Ray workers, each with its own evaluator")
    gpus_per_eval: float = Field(0.0, ge=0, description="GPUs each Ray worker holds")
    cpus_per_eval: float = Field(1.0, gt=0, description="CPUs each Ray worker holds")
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _mode_from_old_flags(cls, data: Any) -> Any:
        """Settings written before `mode` took four values (old run folders' config.json)."""
        if isinstance(data, dict) and OLD_MODE_FLAGS & data.keys():
            data = {k: v for k, v in data.items() if k not in OLD_MODE_FLAGS} | {"mode": mode_of(data)}
        return data

    @model_validator(mode="after")
    def _known_space_and_dataset(self) -> SearchSettings:
        self.dataset = resolve_dataset(self.space, self.dataset)
        return self

    @model_validator(mode="after")
    def _rznas_scores_by_proxy(self) -> SearchSettings:
        if self.mode in RZNAS_MODES:
            self.evaluator = self.evaluator or DEFAULT_RZNAS_EVALUATOR
            if not self.evaluator.partition(":")[2]:
                raise ValueError(f"mode {self.mode} scores by a zero-cost proxy: use an evaluator "
                                 f"zero_cost:<proxy> (default {DEFAULT_RZNAS_EVALUATOR}), not {self.evaluator!r}")
        return self

    @model_validator(mode="after")
    def _prescreen_by_known_proxy(self) -> SearchSettings:
        if self.prescreen is not None:
            check_proxy(self.prescreen)
            if self.mode not in ("collm", "collm-nollm"):
                raise ValueError(f"prescreen ranks the code sources' candidates: modes collm and "
                                 f"collm-nollm only, not {self.mode}")
        return self

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

    @classmethod
    def settings_customise_sources(
        cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # explicit values > $COLLM_NAS_<FIELD> > $COLLM_NAS_DATA (data_path only) > defaults
        return init_settings, env_settings, _DataFolderVariable(settings_cls), dotenv_settings, file_secret_settings

    def cost_limit(self) -> CostLimit | None:
        return CostLimit(self.cost_kind, self.max_cost) if self.cost_kind else None

    def cost_counter(self) -> CostCounter:
        """The process-wide cost counter for this run (with table latency under a latency limit)."""
        return shared_cost_counter(self.space, self.dataset, self.cost_kind == "latency", self.data_path)

    def evaluator_spec(self) -> EvaluatorSpec:
        """What builds this run's evaluator, here or on a Ray worker."""
        return EvaluatorSpec(self.space, self.dataset, self.evaluator, self.data_path,
                             tuple(sorted(self.evaluator_options.items())))

    def candidate_executor(self) -> Executor:
        """The process-wide executor for this run's evaluator and executor settings."""
        return make_executor(self.executor, self.evaluator_spec(), RayOptions(
            self.ray_address, self.eval_workers, self.gpus_per_eval, self.cpus_per_eval,
        ))

    def proxy_name(self) -> str:
        """The zero-cost proxy the rznas modes score by (the evaluator kind's variant)."""
        return (self.evaluator or DEFAULT_RZNAS_EVALUATOR).partition(":")[2]

    def recursion_limit(self) -> int:
        """Enough graph steps for every round (navigate, generate, screen, evaluate, record)."""
        return 10 * self.iterations + 20
