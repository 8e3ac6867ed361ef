"""The search-space contract every space implements.

Search methods (baselines, the Coordinator, the LLM agents) see a space only through this
interface, so every method runs on every space.

A space is a list of categorical *dimensions* (name -> allowed values). An architecture is a
pydantic `Arch` whose fields are those dimensions; its JSON schema is what the Generator LLM fills.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from collm_nas.errors import CollmNasError
from pydantic import BaseModel


class IllegalArchitecture(CollmNasError, ValueError):
    """Raised by `parse` with a reason a person (or the Navigator) can act on."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class SearchSpace(ABC):
    """One search space: choices, canonical keys, parsing, sampling, encoding, real networks."""

    name: ClassVar[str]
    Arch: ClassVar[type[BaseModel]]

    @property
    @abstractmethod
    def dimensions(self) -> dict[str, tuple[Any, ...]]:
        """Ordered design dimensions and the values each may take."""

    @abstractmethod
    def genes(self, arch: BaseModel) -> tuple[Any, ...]:
        """The value of every dimension, in `dimensions` order."""

    @abstractmethod
    def from_genes(self, genes: tuple[Any, ...] | list[Any]) -> BaseModel:
        """Inverse of `genes`; raises `IllegalArchitecture` on bad values."""

    @abstractmethod
    def key(self, arch: BaseModel) -> str:
        """Canonical string: two encodings of the same network give the same key."""

    @abstractmethod
    def parse(self, obj: Any) -> BaseModel:
        """Architecture from LLM output or user input; raises `IllegalArchitecture(reason)`."""

    @abstractmethod
    def build(self, arch: BaseModel, dataset: str) -> Any:
        """The real torch network for `arch` on `dataset`."""

    @abstractmethod
    def input_shape(self, arch: BaseModel, dataset: str) -> tuple[int, ...]:
        """Input tensor shape (batch 1) that `build(arch, dataset)` expects."""

    @abstractmethod
    def describe(self) -> str:
        """Space knowledge for prompts: choices, representation, structure."""

    # Generic operations derived from the dimensions; spaces may override them.

    def dimension_groups(self, max_groups: int = 12) -> dict[str, list[str]]:
        """Dimensions as an LLM is asked about them: each on its own, or folded by name when
        there are many (`ks_0`..`ks_19` -> `ks`)."""
        dims = list(self.dimensions)
        if len(dims) <= max_groups:
            return {dim: [dim] for dim in dims}
        groups: dict[str, list[str]] = {}
        for dim in dims:
            groups.setdefault(re.sub(r"_\d+$", "", dim), []).append(dim)
        return groups

    def active_genes(self, arch: BaseModel) -> tuple[bool, ...]:
        """Which genes shape the network (False: ignored by `key`, e.g. unused blocks)."""
        return (True,) * len(self.dimensions)

    def sample(self, rng: np.random.Generator) -> BaseModel:
        """A uniformly random architecture."""
        return self.from_genes(
            [values[rng.integers(len(values))] for values in self.dimensions.values()]
        )

    def mutate(self, arch: BaseModel, rng: np.random.Generator) -> BaseModel:
        """Change one dimension to a different value, keeping the network different."""
        genes = list(self.genes(arch))
        dims = list(self.dimensions.values())
        for _ in range(100):
            i = int(rng.integers(len(dims)))
            others = [v for v in dims[i] if v != genes[i]]
            genes_new = list(genes)
            genes_new[i] = others[rng.integers(len(others))]
            child = self.from_genes(genes_new)
            if self.key(child) != self.key(arch):
                return child
        raise RuntimeError(f"{self.name}: could not find a mutation that changes the network")

    def encode(self, arch: BaseModel) -> np.ndarray:
        """One-hot vector over all dimensions (used by RL policies and 2-D plots)."""
        parts = []
        for value, values in zip(self.genes(arch), self.dimensions.values(), strict=True):
            one_hot = np.zeros(len(values), dtype=np.float32)
            one_hot[values.index(value)] = 1.0
            parts.append(one_hot)
        return np.concatenate(parts)
