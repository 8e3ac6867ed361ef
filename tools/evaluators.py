"""Evaluator factory: (space, dataset, kind) -> an object with `evaluate(arch) -> Metrics`."""

from __future__ import annotations

from functools import cache
from typing import Any

from collm_nas.tools.benchmark import load_nb201

EVALUATOR_KINDS = {"nb201": ("benchmark",), "mobilenet": ("predictor", "supernet")}


@cache
def make_evaluator(
    space: str,
    dataset: str,
    kind: str | None = None,
    data_path: str | None = None,
    options: tuple[tuple[str, Any], ...] = (),
):
    """One shared evaluator per settings (the space's first kind by default).

    `options` are extra keyword settings (e.g. the supernet's validation folder), as pairs so the
    factory stays cacheable. Raises ValueError naming the valid choices.
    """
    kinds = EVALUATOR_KINDS.get(space)
    if kinds is None:
        raise ValueError(f"no evaluator for space {space!r}; spaces with one: {list(EVALUATOR_KINDS)}")
    kind = kind or kinds[0]
    if kind not in kinds:
        raise ValueError(f"evaluator {kind!r} is not available for {space}; choose one of {kinds}")
    if space == "mobilenet":
        if dataset != "imagenet":
            raise ValueError(f"unknown dataset {dataset!r} for mobilenet; choose 'imagenet'")
        if kind == "predictor":
            from collm_nas.tools.predictor import OFAPredictorEvaluator

            return OFAPredictorEvaluator(data_path)
        from collm_nas.tools.supernet import load_supernet_evaluator

        return load_supernet_evaluator(data_path, **dict(options))
    return load_nb201(dataset, data_path)
