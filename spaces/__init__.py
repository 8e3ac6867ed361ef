"""Search spaces behind one contract (`SearchSpace`), looked up by name."""

from __future__ import annotations

from functools import cache

from collm_nas.spaces.base import IllegalArchitecture, SearchSpace

__all__ = ["IllegalArchitecture", "SearchSpace", "SPACE_NAMES", "get_space"]

SPACE_NAMES = ("nb201", "mobilenet")


@cache
def get_space(name: str) -> SearchSpace:
    """The space called `name` (one shared instance per name)."""
    if name == "nb201":
        from collm_nas.spaces.nb201 import NB201Space

        return NB201Space()
    if name == "mobilenet":
        from collm_nas.spaces.mobilenet import MobileNetSpace

        return MobileNetSpace()
    raise ValueError(f"unknown search space {name!r}; available: {', '.join(SPACE_NAMES)}")
