"""The fast, per-part MobileNetV3 cost count equals OFA's whole-network count exactly.

`MobileNetSpace.count_cost` adds up cached per-part OFA counts; `count_cost_whole` runs
`ofa.utils.count_net_flops` on the whole weightless subnet (the reference, ~0.5 s each)."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest
from collm_nas.spaces import get_space
from collm_nas.spaces.mobilenet import DEPTHS, EXPAND_RATIOS, KERNEL_SIZES, RESOLUTIONS

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("ofa") is None, reason="needs the `ofa` extra"
)


def _uniform(r: int, d: int, ks: int, e: int) -> dict:
    return {"r": r, "d": [d] * 5, "ks": [ks] * 20, "e": [e] * 20}


def _archs(space) -> list:
    """The smallest and the largest network at every resolution, and 20 random ones."""
    archs = []
    for r in RESOLUTIONS:
        archs.append(_uniform(r, min(DEPTHS), min(KERNEL_SIZES), min(EXPAND_RATIOS)))
        archs.append(_uniform(r, max(DEPTHS), max(KERNEL_SIZES), max(EXPAND_RATIOS)))
    archs = [space.parse(a) for a in archs]
    rng = np.random.default_rng(2024)
    archs += [space.sample(rng) for _ in range(20)]
    return archs


def test_fast_count_equals_whole_network_count():
    space = get_space("mobilenet")
    archs = _archs(space)
    for arch in archs:
        fast = space.count_cost(arch, "imagenet")
        whole = space.count_cost_whole(arch)
        # Same layer counts, same float32 summation order: equal bit for bit.
        assert fast[0] == pytest.approx(whole[0], rel=1e-9, abs=0), space.key(arch)
        assert fast[1] == whole[1], space.key(arch)
    # The pinned extremes (also in test_mobilenet.py).
    assert space.count_cost(space.parse(_uniform(224, 4, 7, 6))) == pytest.approx(
        (843.101056, 10.701632), abs=1e-6
    )
    assert space.count_cost(space.parse(_uniform(160, 2, 3, 3))) == pytest.approx(
        (100.320888, 4.602456), abs=1e-6
    )


def test_fast_count_at_another_resolution_and_speed():
    space = get_space("mobilenet")
    arch = space.parse(_uniform(192, 3, 5, 4))
    # Resolutions outside the space (e.g. OFA's 236 px specialised nets) go through the same
    # per-part path, keyed by input shape.
    assert space.cost_at_resolution(arch, 236) == space.count_cost_whole(arch, 236)
    # Once the parts are cached, an architecture costs only lookups and a float32 sum.
    rng = np.random.default_rng(7)
    archs = [
        space.parse({"r": 192, "d": [int(v) for v in rng.choice(DEPTHS, 5)],
                     "ks": [int(v) for v in rng.choice((5, 7), 20)], "e": [4] * 20})
        for _ in range(200)
    ]
    for a in archs:
        space.cost_at_resolution(a, a.r)  # builds and counts the (few) parts these share
    start = time.perf_counter()
    for a in archs:
        space.cost_at_resolution(a, a.r)
    assert (time.perf_counter() - start) / len(archs) < 5e-3
