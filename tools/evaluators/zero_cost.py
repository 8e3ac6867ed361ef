"""The `zero_cost:<proxy>` evaluator: ranks architectures by a training-free proxy score.

The search sees only the proxy (`Metrics.proxy`, which `score()` reads under either objective).
Beside it, the record carries the true accuracy where the space knows it (the `truth` evaluator:
NAS-Bench-201's table by default), reported and never used to choose; elsewhere NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from collm_nas.spaces import SearchSpace
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.tools.evaluators import make_evaluator
from collm_nas.tools.proxies import INPUTS, PROXIES, ProxyError, check_proxy, proxy_batch, proxy_score
from pydantic import BaseModel

TRUTH_KINDS = ("benchmark",)  # evaluators that give true accuracies, where a space has one
# A network whose signal dies scores -inf; the search reads this floor instead, so the rule's
# additive fits stay finite.
DEAD_NETWORK = -1e3


def searched_value(proxy: str, raw: float) -> float:
    """The number the search compares: synflow (products over ~20 layers, up to ~1e50) in
    log10(1 + S) units, the others as they are; the same order either way."""
    if raw == -math.inf:
        return DEAD_NETWORK
    return math.log10(1 + raw) if proxy == "synflow" else raw


class ZeroCostEvaluator(Evaluator):
    """Scores an architecture by one proxy on a fixed batch and initialisation (by seed), caching
    score, truth and seconds by key."""

    thread_safe = False  # torch's global seed is set before each build
    cheap = True  # training-free: scoring a few extra candidates on the side costs seconds

    def __init__(self, space: SearchSpace, dataset: str, proxy: str, seed: int, input: str,
                 batch: int, truth: Evaluator | None):
        self.kind = f"zero_cost:{proxy}"
        self.space, self.dataset, self.proxy, self.seed = space, dataset, proxy, seed
        self.truth = truth
        probe = space.sample(np.random.default_rng(seed))
        shape = space.input_shape(probe, dataset)[1:]
        with torch.no_grad():  # the number of classes, read off a network's output
            classes = space.build(probe, dataset)(torch.zeros(1, *shape)).shape[-1]
        self.batch = proxy_batch(input, shape, classes, batch, seed)
        self.seconds: dict[str, float] = {}  # key -> seconds the proxy took on that network
        self._cache: dict[str, Metrics] = {}

    def evaluate(self, arch: BaseModel) -> Metrics:
        key = self.space.key(arch)
        if key not in self._cache:
            result = proxy_score(self.space, arch, self.dataset, self.proxy, self.seed, self.batch)
            known = self.truth.evaluate(arch) if self.truth else Metrics(math.nan, math.nan)
            self.seconds[key] = result.seconds
            self._cache[key] = Metrics(known.valid_acc, known.test_acc, known.predicted,
                                       proxy=searched_value(self.proxy, result.score))
        return self._cache[key]


def zero_cost_evaluator(
    space: SearchSpace, dataset: str, data_path: str | None = None, variant: str | None = None,
    seed: int = 0, input: str = "gaussian", batch: int = 64, truth: str | None = None,
) -> ZeroCostEvaluator:
    """The `zero_cost:<proxy>` kind (entry point in pyproject.toml). `truth` names the evaluator
    whose accuracies are reported beside the proxy (default: the space's benchmark table, if it
    has one); `input` and `batch` set what the data-dependent proxies see."""
    if variant is None:
        raise ProxyError(f"name the proxy: zero_cost:<proxy>, one of {', '.join(PROXIES)}")
    check_proxy(variant)
    if input not in INPUTS:
        raise ProxyError(f"unknown proxy input {input!r}; choose one of {', '.join(INPUTS)}")
    space.check_dataset(dataset)
    truth = truth or next((k for k in TRUTH_KINDS if k in space.evaluators), None)
    known = make_evaluator(space.name, dataset, truth, data_path) if truth else None
    return ZeroCostEvaluator(space, dataset, variant, seed, input, batch, known)
