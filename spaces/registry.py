"""Plugins found by name: entry points of one group, plus names registered in this process.

Spaces (group `collm_nas.spaces`) and evaluators (`collm_nas.evaluators`) are looked up here, so a
user's own package adds one with an entry-point line and never edits this project. Ours are
registered the same way, in pyproject.toml.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from collm_nas.errors import CollmNasError


class UnknownName(CollmNasError, ValueError):
    """No plugin of that name is installed; the message lists the installed ones."""


class PluginLoadError(CollmNasError, ImportError):
    """A registered plugin could not be imported or built; the message names its entry point."""


class Registry:
    """Name -> object for one entry-point group; `register` adds names without a package."""

    def __init__(self, group: str, what: str):
        self.group = group
        self.what = what  # "search space", "evaluator": for messages
        self._registered: dict[str, Any] = {}

    def _entry_points(self) -> dict[str, EntryPoint]:
        found: dict[str, EntryPoint] = {}
        for point in entry_points(group=self.group):
            found.setdefault(point.name, point)  # the first on sys.path wins, like imports
        return found

    def names(self) -> list[str]:
        return sorted({*self._entry_points(), *self._registered})

    def register(self, name: str, obj: Any) -> None:
        self._registered[name] = obj

    def unregister(self, name: str) -> None:
        self._registered.pop(name, None)

    def load(self, name: str) -> Any:
        """The object registered as `name` (imported on first use)."""
        if name in self._registered:
            return self._registered[name]
        point = self._entry_points().get(name)
        if point is None:
            raise UnknownName(
                f"unknown {self.what} {name!r}; installed: {', '.join(self.names()) or 'none'}"
            )
        try:
            return point.load()
        except Exception as err:  # a plugin can fail in any way; name it and keep the cause
            raise self.broken(name, err) from err

    def broken(self, name: str, err: BaseException) -> PluginLoadError:
        """The error for a plugin that is registered but fails to load or build."""
        point = self._entry_points().get(name)
        where = f"entry point {name} = {point.value} (group {self.group})" if point else "registered"
        return PluginLoadError(
            f"the {self.what} {name!r} ({where}) failed to load: {type(err).__name__}: {err}"
        )
