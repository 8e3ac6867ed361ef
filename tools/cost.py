"""FLOPs and parameter counts measured on the real network built by the space.

Counted with torch's own `torch.utils.flop_counter` on one forward pass of batch 1 on the meta
device (shapes only, no arithmetic). Convention (the one of the NAS-Bench-201 reference FLOPs):
one FLOP per multiply-accumulate of convolutions and linear layers, one per window element of
average pooling, two per element of batch norm, one per element of ReLU and of global-average
pooling. torch counts a multiply-accumulate as 2 FLOPs, so every formula here is doubled and the
total halved. A space with its own published convention (OFA) overrides `SearchSpace.count_cost`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Literal

import torch
from collm_nas.spaces import SearchSpace
from collm_nas.tools.latency import latency_model
from pydantic import BaseModel
from torch.utils.flop_counter import FlopCounterMode

CostKind = Literal["flops", "params", "latency"]
COST_UNITS = {"flops": "M", "params": "M", "latency": "ms"}

_aten = torch.ops.aten


@dataclass(frozen=True)
class Cost:
    flops_m: float
    params_m: float
    latency_ms: float | None = None  # only where the space has latency tables and they are asked for

    def value(self, kind: CostKind) -> float:
        value = {"flops": self.flops_m, "params": self.params_m, "latency": self.latency_ms}[kind]
        if value is None:
            raise ValueError(f"this cost has no {kind} (the counter was built without a latency model)")
        return value


@dataclass(frozen=True)
class CostLimit:
    """An upper bound on FLOPs or params (millions) or latency (milliseconds)."""

    kind: CostKind
    bound: float

    def allows(self, cost: Cost) -> bool:
        return cost.value(self.kind) <= self.bound

    @property
    def unit(self) -> str:
        return COST_UNITS[self.kind]

    def describe(self, value: float | None = None) -> str:
        unit = self.unit
        if value is None:
            return f"{self.kind} <= {self.bound:g} {unit}"
        return f"{self.kind} {value:.2f} {unit} exceeds the limit of {self.bound:g} {unit}"


def _numel(shape) -> int:
    n = 1
    for dim in shape:
        n *= dim
    return n


def _avg_pool2d_flops(input_shape, kernel_size, *args, out_shape=None, **kwargs) -> int:
    kernel = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
    return 2 * _numel(out_shape) * kernel[0] * kernel[-1]


def _batch_norm_flops(input_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * 2 * _numel(input_shape)


def _per_input_element_flops(input_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * _numel(input_shape)


_EXTRA_FORMULAS = {
    _aten.avg_pool2d: _avg_pool2d_flops,
    _aten._native_batch_norm_legit_no_training: _batch_norm_flops,
    _aten.native_batch_norm: _batch_norm_flops,
    _aten.relu: _per_input_element_flops,
    _aten.mean: _per_input_element_flops,
}


def count_flops_and_params(model: torch.nn.Module, input_shape: tuple[int, ...]) -> Cost:
    model.eval()
    params = sum(p.numel() for p in model.parameters())
    mode = FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS)
    device = next(model.parameters()).device
    with torch.no_grad(), mode:
        model(torch.zeros(input_shape, device=device))
    return Cost(flops_m=mode.get_total_flops() / 2 / 1e6, params_m=params / 1e6)


@cache
def shared_cost_counter(
    space_name: str, dataset: str, latency: bool = False, data_path: str | None = None
) -> CostCounter:
    """One counter (and so one cache) per space, dataset and latency setting for the process;
    `latency` adds the space's table latency, read through the data settings."""
    from collm_nas.spaces import get_space

    latency_of = latency_model(space_name, data_path) if latency else None
    return CostCounter(get_space(space_name), dataset, latency_of)


class CostCounter:
    """Counts (and caches by architecture key) the cost of architectures on one dataset."""

    def __init__(self, space: SearchSpace, dataset: str,
                 latency_of: Callable[[BaseModel], float] | None = None):
        self.space = space
        self.dataset = dataset
        self.latency_of = latency_of
        self._cache: dict[str, Cost] = {}
        self._parts: tuple[Cost, dict] | None = None

    def __call__(self, arch: BaseModel) -> Cost:
        key = self.space.key(arch)
        if key not in self._cache:
            own_count = self.space.count_cost(arch, self.dataset)
            if own_count is not None:  # a space with its own published counting convention
                flops_m, params_m = own_count
                self._cache[key] = Cost(flops_m=flops_m, params_m=params_m)
            elif self.space.cost_is_additive():
                self._cache[key] = self._additive(arch)
            else:
                self._cache[key] = self.count(arch)
            if self.latency_of is not None:
                self._cache[key] = replace(self._cache[key], latency_ms=round(self.latency_of(arch), 4))
        return self._cache[key]

    def count(self, arch: BaseModel) -> Cost:
        """A full count on the real network (no shortcut)."""
        with torch.device("meta"):  # shapes are all the count needs: no arithmetic is done
            model = self.space.build(arch, self.dataset)
        return count_flops_and_params(model, self.space.input_shape(arch, self.dataset))

    def _additive(self, arch: BaseModel) -> Cost:
        """For spaces whose cost is a sum over genes (`cost_is_additive`): the cost of a base
        architecture plus each gene's counted change, from 1 + sum(choices - 1) full counts."""
        if self._parts is None:
            dims = list(self.space.dimensions.values())
            base_genes = [values[0] for values in dims]
            base = self.count(self.space.from_genes(base_genes))
            deltas = {}
            for i, values in enumerate(dims):
                for value in values[1:]:
                    genes = list(base_genes)
                    genes[i] = value
                    cost = self.count(self.space.from_genes(genes))
                    deltas[i, value] = (cost.flops_m - base.flops_m, cost.params_m - base.params_m)
            self._parts = (base, deltas)
        base, deltas = self._parts
        flops, params = base.flops_m, base.params_m
        for i, value in enumerate(self.space.genes(arch)):
            d_flops, d_params = deltas.get((i, value), (0.0, 0.0))
            flops, params = flops + d_flops, params + d_params
        return Cost(flops_m=round(flops, 6), params_m=round(params, 6))
