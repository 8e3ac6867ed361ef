"""Evaluators by kind: (space, dataset, kind) -> an `Evaluator` with `evaluate(arch) -> Metrics`.

Kinds are registered under the entry-point group `collm_nas.evaluators` (kind -> a factory
`(space, dataset, data_path, **options) -> Evaluator`); ours (`benchmark`, `predictor`,
`supernet`, `zero_cost`) the same way in pyproject.toml. A kind `name:variant` (e.g.
`zero_cost:synflow`) loads the entry point `name` and passes `variant="..."` to a factory that
takes one. Each factory checks that it knows the space and the dataset. An evaluator that is not
thread-safe comes back serialised, because the graph's `evaluate` branches run on a thread pool.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from functools import cache
from typing import Any

from collm_nas.errors import CollmNasError
from collm_nas.spaces import SearchSpace, get_space, resolve_dataset
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.spaces.registry import Registry, UnknownName
from pydantic import BaseModel

EVALUATOR_GROUP = "collm_nas.evaluators"
EVALUATORS = Registry(EVALUATOR_GROUP, "evaluator")
EvaluatorFactory = Callable[..., Evaluator]
# Parallel `evaluate` branches ask for the evaluator at the same moment; one of them builds it.
_building = threading.RLock()  # re-entrant: a factory may build another evaluator


class UnknownOption(CollmNasError, ValueError):
    """An evaluator option the evaluator kind does not take."""


def _check_options(kind: str, factory: EvaluatorFactory, options: dict[str, Any]) -> None:
    """Raise `UnknownOption` for options a factory without `**options` does not name."""
    parameters = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    takes = [name for name in parameters if name not in ("space", "dataset", "data_path", "variant")]
    unknown = sorted(set(options) - set(parameters))
    if unknown:
        raise UnknownOption(f"evaluator {kind!r} takes no option {', '.join(unknown)}; it takes "
                            f"{', '.join(takes) or 'none'}")


class WrongSpace(CollmNasError, ValueError):
    """An evaluator kind asked for a space it does not know; the message lists the space's own."""


def evaluator_kinds() -> list[str]:
    """Every installed evaluator kind, sorted."""
    return EVALUATORS.names()


def register_evaluator(kind: str, factory: EvaluatorFactory) -> None:
    """Add an evaluator kind for this process (tests, notebooks)."""
    EVALUATORS.register(kind, factory)
    _shared_evaluator.cache_clear()


def require_space(space: SearchSpace, expected: type[SearchSpace], kind: str) -> None:
    """For factories: raise `WrongSpace` unless `space` is the kind of space they evaluate."""
    if not isinstance(space, expected):
        raise WrongSpace(
            f"evaluator {kind!r} is not available for {space.name}; choose one of "
            f"{', '.join(space.evaluators)}"
        )


def make_evaluator(
    space: str,
    dataset: str | None,
    kind: str | None = None,
    data_path: str | None = None,
    options: tuple[tuple[str, Any], ...] = (),
) -> Evaluator:
    """One shared evaluator per settings: the space's default kind and dataset where None.

    `options` are extra keyword settings for the factory (e.g. the supernet's validation
    folder), as pairs so the call stays cacheable. Safe to call from several threads.
    """
    with _building:
        return _shared_evaluator(space, dataset, kind, data_path, options)


@cache
def _shared_evaluator(
    space: str, dataset: str | None, kind: str | None, data_path: str | None,
    options: tuple[tuple[str, Any], ...],
) -> Evaluator:
    search_space = get_space(space)
    dataset = resolve_dataset(space, dataset)
    kind = kind or search_space.evaluators[0]
    name, _, variant = kind.partition(":")
    try:
        factory = EVALUATORS.load(name)
    except UnknownName:
        raise UnknownName(
            f"unknown evaluator {kind!r}; {space} has {', '.join(search_space.evaluators)}, "
            f"installed: {', '.join(evaluator_kinds())}"
        ) from None
    settings = dict(options)
    if variant:
        if "variant" not in inspect.signature(factory).parameters:
            raise UnknownName(f"evaluator {name!r} has no variants; use {name!r} without ':{variant}'")
        settings["variant"] = variant
    _check_options(kind, factory, settings)
    try:
        evaluator = factory(search_space, dataset, data_path, **settings)
    except TypeError as err:  # an option a factory passes on to code that does not take it
        if "unexpected keyword argument" not in str(err):
            raise
        raise UnknownOption(f"evaluator {kind!r}: {err}; check --evaluator-option") from None
    return evaluator if evaluator.thread_safe else Serialised(evaluator)


class Serialised:
    """An evaluator that lets one thread at a time into `evaluate`; every other member is the
    wrapped evaluator's own."""

    thread_safe = True

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator
        self._lock = threading.Lock()

    def evaluate(self, arch: BaseModel) -> Metrics:
        with self._lock:
            return self.evaluator.evaluate(arch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.evaluator, name)
