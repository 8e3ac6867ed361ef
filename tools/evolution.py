"""RZ-NAS's evolution in plain code: its population, the parents of a generation and random
mutation (the parts of the `rznas` modes that are not the LLM).

As in RZ-NAS (and Zen-NAS, whose search it extends), a child joins the population and the
worst member leaves, so the population is always the archive's best `size` records by score:
it is read off the archive, never kept in state.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from collm_nas.spaces import SearchSpace
from collm_nas.spaces.evaluation import score
from pydantic import BaseModel

# Random mutation re-draws a child this many times when it repeats a known architecture.
MUTATION_TRIES = 20


def population(records: list[dict[str, Any]], objective: str, size: int) -> list[dict[str, Any]]:
    """The best `size` records, best first (ties: the earlier evaluation first)."""
    return sorted(records, key=lambda r: -score(r, objective))[:size]


def pick_parents(
    records: list[dict[str, Any]], objective: str, size: int, count: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """`count` parents drawn uniformly from the population (distinct while it has enough)."""
    members = population(records, objective, size)
    if not members:
        return []
    picks = rng.choice(len(members), size=count, replace=len(members) < count)
    return [members[i] for i in sorted(picks)]


def random_children(
    space: SearchSpace, parents: list[dict[str, Any]], seen: set[str], rng: np.random.Generator
) -> list[tuple[BaseModel, str]]:
    """One random one-dimension mutant per parent, (child, parent key), avoiding architectures
    in `seen` and each other where `MUTATION_TRIES` draws allow."""
    taken = set(seen)
    children = []
    for parent in parents:
        arch = space.parse(parent["arch"])
        for _ in range(MUTATION_TRIES):
            child = space.mutate(arch, rng)
            if space.key(child) not in taken:
                break
        taken.add(space.key(child))
        children.append((child, parent["key"]))
    return children


def random_newcomers(space: SearchSpace, seen: set[str], count: int, rng: np.random.Generator) -> list[BaseModel]:
    """`count` uniform samples, new to `seen` and to each other where `MUTATION_TRIES` draws
    allow (the first population)."""
    taken = set(seen)
    archs = []
    for _ in range(count):
        for _ in range(MUTATION_TRIES):
            arch = space.sample(rng)
            if space.key(arch) not in taken:
                break
        taken.add(space.key(arch))
        archs.append(arch)
    return archs


def change_text(space: SearchSpace, parent: BaseModel, child: BaseModel) -> str:
    """What a child changed of its parent, e.g. 'edge_2_1: none -> nor_conv_3x3'."""
    return "; ".join(
        f"{name}: {old} -> {new}"
        for name, old, new in zip(space.dimensions, space.genes(parent), space.genes(child), strict=True)
        if old != new
    ) or "nothing"
