"""Comparing a checkpoint's tensors with a network's, for errors that say what does not fit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def state_mismatch(own: Mapping[str, Any], state: Mapping[str, Any],
                   optional: tuple[str, ...] = ()) -> str:
    """'' when `state` has exactly the tensors of `own` in their shapes (names ending in one of
    `optional` may be missing); else how many are missing, unknown or of the wrong shape, with
    examples."""
    missing = [k for k in own if k not in state and not k.endswith(optional)]
    unknown = [k for k in state if k not in own]
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if not (missing or unknown or wrong):
        return ""
    return (f"{len(missing)} tensors missing (e.g. {missing[:2]}), {len(unknown)} unknown "
            f"(e.g. {unknown[:2]}), {len(wrong)} of the wrong shape (e.g. {wrong[:2]})")
