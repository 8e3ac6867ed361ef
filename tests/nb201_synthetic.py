"""A made-up NAS-Bench-201 table, built in memory, for tests of control flow.

Every one of the 15,625 cells gets accuracies from a small additive model of its operations (a
convolution on the last edges helps most, `none` hurts), so searches have a real landscape with
one optimum, and unit tests run without the 15,625-row data file. Registered as the evaluator
kind `synthetic` for `nb201` by `tests/conftest.py`.
"""

from __future__ import annotations

import itertools
from functools import cache

from collm_nas.spaces import SearchSpace
from collm_nas.spaces.nb201 import NB201Space
from collm_nas.tools.evaluators import require_space
from collm_nas.tools.evaluators.benchmark import NB201Benchmark

KIND = "synthetic"
OP_GAIN = {"none": 0.0, "avg_pool_3x3": 1.0, "skip_connect": 1.5, "nor_conv_1x1": 2.5, "nor_conv_3x3": 3.5}
# Per dataset: (valid base, test - valid); the test column sits a little above the valid one.
DATASETS = {"cifar10": (60.0, 2.5), "cifar100": (40.0, 0.3), "imagenet16": (20.0, 0.4)}


@cache
def synthetic_table() -> dict[str, tuple[float, ...]]:
    """Cell key -> (c10 valid, c10 test, c100 valid, c100 test, in16 valid, in16 test)."""
    space = NB201Space()
    ops = list(OP_GAIN)
    table = {}
    for genes in itertools.product(ops, repeat=6):
        # Later edges weigh more, so cells with the same operations still differ.
        gain = sum(OP_GAIN[op] * (1 + 0.1 * edge) for edge, op in enumerate(genes))
        key = space.key(space.from_genes(genes))
        table[key] = tuple(
            round(base + gain + offset * split, 4)
            for base, offset in DATASETS.values() for split in (0, 1)
        )
    return table


def synthetic_evaluator(space: SearchSpace, dataset: str, data_path: str | None = None) -> NB201Benchmark:
    """The `synthetic` kind: an NB201 benchmark over `synthetic_table()` (no data file read)."""
    require_space(space, NB201Space, KIND)
    return NB201Benchmark(space, dataset, synthetic_table())
