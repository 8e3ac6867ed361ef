"""The search-space contract every space implements.

Search methods (baselines, the Coordinator, the LLM agents) see a space only through this
interface, so every method runs on every space.

A space is a list of categorical *dimensions* (name -> allowed values). An architecture is a
pydantic `Arch` whose fields are those dimensions; its JSON schema is what the Generator LLM fills.
A space also declares, as class attributes, the facts the rest of the program reads: its
`datasets` and evaluator kinds (`evaluators`; the first of each is the default) and the cost
limits it supports (`cost_kinds`). Cost counting has hooks with defaults (`count_cost`,
`cost_is_additive`). Where every dimension is one field of `Arch`, the generic `genes`,
`from_genes`, `key` and `parse` below are all a space needs.
"""

from __future__ import annotations

import json
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


# Bounds on what `parse` reads: far above any architecture's size, far below what makes
# recursive code (json, repr, pydantic) fail or slow.
MAX_INPUT_CHARS = 20_000
MAX_INPUT_DEPTH = 8


def check_input_size(obj: Any, space_name: str) -> None:
    """Raise `IllegalArchitecture` for input too large or nested too deeply to be an
    architecture. Iterative, so it is safe on input that would break recursive code."""
    stack, size = [(obj, 1)], 0
    while stack:
        value, depth = stack.pop()
        if depth > MAX_INPUT_DEPTH:
            raise IllegalArchitecture(
                f"nested more than {MAX_INPUT_DEPTH} levels deep: not a {space_name} architecture"
            )
        size += len(value) if isinstance(value, str) else 1
        if size > MAX_INPUT_CHARS:
            raise IllegalArchitecture(
                f"over {MAX_INPUT_CHARS:,} characters: too large to be a {space_name} architecture"
            )
        if isinstance(value, dict):
            stack.extend((part, depth + 1) for pair in value.items() for part in pair)
        elif isinstance(value, (list, tuple)):
            stack.extend((part, depth + 1) for part in value)


def short_repr(value: Any, chars: int = 80) -> str:
    """`repr(value)` cut to `chars`, for error messages about input of any size."""
    text = repr(value)
    return text if len(text) <= chars else text[: chars - 3] + "..."


class UnknownDataset(CollmNasError, ValueError):
    """A dataset the space does not declare; the message lists the ones it does."""


class SearchSpace(ABC):
    """One search space: choices, canonical keys, parsing, sampling, encoding, real networks."""

    name: ClassVar[str]
    Arch: ClassVar[type[BaseModel]]
    datasets: ClassVar[tuple[str, ...]]  # the first is the default
    evaluators: ClassVar[tuple[str, ...]]  # evaluator kinds made for this space; the first is the default
    cost_kinds: ClassVar[tuple[str, ...]] = ("flops", "params")  # what a cost limit may bound

    @property
    @abstractmethod
    def dimensions(self) -> dict[str, tuple[Any, ...]]:
        """Ordered design dimensions and the values each may take."""

    @abstractmethod
    def build(self, arch: BaseModel, dataset: str) -> Any:
        """The real torch network for `arch` on `dataset`."""

    @abstractmethod
    def input_shape(self, arch: BaseModel, dataset: str) -> tuple[int, ...]:
        """Input tensor shape (batch 1) that `build(arch, dataset)` expects."""

    @abstractmethod
    def describe(self) -> str:
        """Space knowledge for prompts: choices, representation, structure."""

    # Facts and cost hooks with defaults.

    def check_dataset(self, dataset: str) -> None:
        """Raise `UnknownDataset` unless the space declares `dataset`."""
        if dataset not in self.datasets:
            raise UnknownDataset(
                f"unknown dataset {dataset!r} for {self.name}; choose one of {', '.join(self.datasets)}"
            )

    def count_cost(self, arch: BaseModel, dataset: str) -> tuple[float, float] | None:
        """(MFLOPs, M params) by the space's own published convention; None (the default):
        count the network that `build` returns."""
        return None

    def cost_is_additive(self) -> bool:
        """True when the cost is a base plus one term per gene, so a few full counts give every
        architecture's cost (checked against full counts in the space's tests)."""
        return False

    # Generic operations derived from the dimensions; spaces may override them.

    def genes(self, arch: BaseModel) -> tuple[Any, ...]:
        """The value of every dimension, in `dimensions` order (default: the `Arch` field of
        the same name)."""
        return tuple(getattr(arch, dim) for dim in self.dimensions)

    def from_genes(self, genes: tuple[Any, ...] | list[Any]) -> BaseModel:
        """Inverse of `genes`; raises `IllegalArchitecture` on bad values."""
        genes = list(genes)
        dims = self.dimensions
        if len(genes) != len(dims):
            raise IllegalArchitecture(
                f"a {self.name} architecture has {len(dims)} values ({', '.join(dims)}), got {len(genes)}"
            )
        for (dim, values), value in zip(dims.items(), genes, strict=True):
            if value not in values:
                raise IllegalArchitecture(
                    f"{dim} = {short_repr(value)} is not allowed; choose one of {', '.join(map(str, values))}"
                )
        return self.Arch(**dict(zip(dims, genes, strict=True)))

    def key(self, arch: BaseModel) -> str:
        """Canonical string: two encodings of the same network give the same key (default:
        `dim=value` of the active genes, comma-separated)."""
        return ",".join(
            f"{dim}={value}"
            for dim, value, active in zip(self.dimensions, self.genes(arch), self.active_genes(arch), strict=True)
            if active
        )

    def parse(self, obj: Any) -> BaseModel:
        """Architecture from LLM output or user input; raises `IllegalArchitecture(reason)`.

        Default: an `Arch`, a dict by dimension name, a list of genes, a key, or JSON text."""
        if isinstance(obj, self.Arch):
            return obj
        check_input_size(obj, self.name)
        if isinstance(obj, (list, tuple)):
            return self.from_genes(obj)
        if isinstance(obj, dict):
            missing = [dim for dim in self.dimensions if dim not in obj]
            unknown = [str(name) for name in obj if name not in self.dimensions]
            if missing or unknown:
                raise IllegalArchitecture(
                    f"missing {missing}, unknown {short_repr(unknown)}; a {self.name} architecture names "
                    f"exactly {list(self.dimensions)}"
                )
            return self.from_genes([self._choice(dim, obj[dim]) for dim in self.dimensions])
        if isinstance(obj, str):
            text = obj.strip()
            try:
                return self.parse(json.loads(text))
            except (json.JSONDecodeError, RecursionError):
                return self.parse(self._key_fields(text))
        raise IllegalArchitecture(f"cannot read a {self.name} architecture from a {type(obj).__name__}")

    def _key_fields(self, text: str) -> dict[str, Any]:
        """The dimensions written in a default key (`dim=value,...`)."""
        pairs = (part.partition("=") for part in text.split(",") if part)
        return {dim.strip(): written.strip() for dim, _, written in pairs}

    def _choice(self, dim: str, value: Any) -> Any:
        """The allowed value written as `value` (`"16"` for 16), else `value` itself."""
        if value in self.dimensions[dim]:
            return value
        return next((v for v in self.dimensions[dim] if str(v) == str(value).strip()), value)

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
