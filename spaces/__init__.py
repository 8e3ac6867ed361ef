"""Search spaces behind one contract (`SearchSpace`), found by name.

Spaces are registered under the entry-point group `collm_nas.spaces` (name -> a `SearchSpace`
subclass or a zero-argument factory); ours are registered the same way in pyproject.toml, and
`register_space` adds one for this process only (tests, notebooks).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from collm_nas.spaces.base import IllegalArchitecture, SearchSpace, UnknownDataset
from collm_nas.spaces.registry import PluginLoadError, Registry, UnknownName

__all__ = [
    "IllegalArchitecture", "PluginLoadError", "SearchSpace", "UnknownDataset", "UnknownSpace",
    "get_space", "register_space", "resolve_dataset", "space_facts", "space_names",
]

SPACE_GROUP = "collm_nas.spaces"
SPACES = Registry(SPACE_GROUP, "search space")
UnknownSpace = UnknownName


def space_names() -> list[str]:
    """Every installed space, sorted."""
    return SPACES.names()


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    """Add a space for this process (a `SearchSpace` subclass or a zero-argument factory)."""
    SPACES.register(name, factory)
    get_space.cache_clear()


@cache
def get_space(name: str) -> SearchSpace:
    """The space called `name` (one shared instance per name); `UnknownSpace` lists the
    installed ones, `PluginLoadError` names a registered space that fails to load."""
    factory = SPACES.load(name)
    try:
        space = factory()
    except Exception as err:
        raise SPACES.broken(name, err) from err
    if not isinstance(space, SearchSpace):
        raise SPACES.broken(name, TypeError(f"it made a {type(space).__name__}, not a SearchSpace"))
    for fact in ("datasets", "evaluators"):
        if not getattr(space, fact, None):
            raise SPACES.broken(name, TypeError(f"the space declares no {fact}"))
    return space


def resolve_dataset(space: str, dataset: str | None) -> str:
    """The dataset a run uses: `dataset` if the space declares it, the space's default if None."""
    search_space = get_space(space)
    if dataset is None:
        return search_space.datasets[0]
    search_space.check_dataset(dataset)
    return dataset


def space_facts(name: str) -> dict[str, Any]:
    """What `collm-nas spaces` shows about one installed space (an `error` if it fails to load)."""
    try:
        space = get_space(name)
    except PluginLoadError as err:
        return {"space": name, "error": str(err)}
    return {
        "space": name,
        "datasets": list(space.datasets),
        "evaluators": list(space.evaluators),
        "cost_kinds": list(space.cost_kinds),
        "default_dataset": space.datasets[0],
        "default_evaluator": space.evaluators[0],
        "dimensions": len(space.dimensions),
    }
