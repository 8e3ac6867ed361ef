"""Candidate sources the Coordinator can build in code, and how a batch is shared among them.

Every source proposes only architectures that are legal, new (no visited or already-picked key)
and allowed by the cost limit, so novelty holds by construction. Sources:

- `neighbours`: the ring around each elite (best first): its one-gene edits and its swaps (two
  genes with the same choices exchange values), ordered by how much they raise the rule's
  additive score (`tools.archive.ridge_weights`); two-gene edits of the best once its ring is
  spent. Swaps reach the cells that place the same operations differently: on NAS-Bench-201's
  ImageNet16-120 the valid optimum and the loop's usual end point are such a pair (two swaps
  apart), and adding them lifted the optimum rate there from 34 % to 61 % (seeds 160-239);
- `second_region`: the same around the best record at least `REGION_DISTANCE` genes from the best;
- `mutation`: a random one-gene edit of a random elite;
- `preference`: the rule's favourite unvisited architectures among weighted samples of the whole
  space (a jump to another basin);
- `navigator`: the Navigator re-ranks a short list, the next 3n architectures `neighbours` would
  take (with no archive yet, the next 3n of `prior`), by how many of its preferred values each
  holds. A Navigator that ranks at random can only trade the rule's next picks for slightly later
  ones;
- `prior` (only while nothing is evaluated): the largest networks among uniform samples, by the
  cost the search is limited on (params without a limit). A zero-cost prior: on NAS-Bench-201
  "more parameters first" ranks random cells at Kendall tau ~0.5 (`results/probe_ranking_*`).

`allocate` shares a batch among the sources by their observed hit rate (a hit: an evaluated
candidate that beats the archive's top decile as it was before its round); `share_ring` then
gives the Navigator part of the `neighbours` share. `next_batch` is the round's one call (what
the graph's `propose` asks for); `steering_against_rule`, `rule_batch` and `compare_with_rule`
measure an LLM's candidates against the rule's from the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
from collm_nas.spaces import SearchSpace
from collm_nas.spaces.evaluation import Evaluator, score
from collm_nas.tools.archive import ranked, ridge_weights
from pydantic import BaseModel

if TYPE_CHECKING:
    from collm_nas.tools.cost import Cost, CostLimit

Weights = dict[str, dict[str, float]]  # dimension -> str(value) -> weight

RULE_SOURCES = ("neighbours", "second_region", "mutation", "preference")
DEFAULT_SOURCES = ("neighbours", "preference")  # the best mix measured on seeds 100-129
LLM_SOURCE = "navigator"
# Prior belief in each source, as (hits, trials) pseudo-counts (tuned on seeds 100-129).
SOURCE_PRIORS = {
    "neighbours": (3.0, 6.0),
    "second_region": (1.0, 4.0),
    "mutation": (1.0, 6.0),
    "preference": (1.0, 6.0),
    "navigator": (2.0, 6.0),
}
MIN_SLOTS = {"navigator": 1}  # the LLM always keeps one slot to show what it is worth
REGION_DISTANCE = 3
SHORTLIST_FACTOR = 3  # the Navigator picks n of the code's next 3n candidates
ELITES = 5
HIT_QUANTILE = 0.9
PREFERENCE_POOL = 500
PRIOR_POOL = 200  # samples the first batch's largest networks are chosen from (seeds 100-129)
SAMPLING_TEMPERATURE = 0.5  # accuracy points
# Weight of a value the Navigator did not name: low, so samples from its preferences still vary.
UNNAMED_WEIGHT = 0.1
# Candidates scored per side when the LLM's choice is compared with the rule's (same state).
COUNTERFACTUAL_SIZE = 10
# The comparison's "hit": a candidate in the space's top 1 % (where the evaluator knows it).
TOP_SHARE = 0.01


@dataclass
class Picker:
    """Accepts each new, allowed architecture once; remembers every key it has handed out."""

    space: SearchSpace
    exclude: set[str]
    allowed: Callable[[BaseModel], bool] | None = None
    picked: list[tuple[BaseModel, str]] = field(default_factory=list)

    def fits(self, arch: BaseModel) -> bool:
        """New, not handed out yet, and allowed (without taking it)."""
        key = self.space.key(arch)
        if key in self.exclude:
            return False
        if self.allowed is not None and not self.allowed(arch):
            self.exclude.add(key)  # never test it again in this round
            return False
        return True

    def take(self, arch: BaseModel, source: str) -> bool:
        if not self.fits(arch):
            return False
        self.exclude.add(self.space.key(arch))
        self.picked.append((arch, source))
        return True


def neighbours(space: SearchSpace, arch: BaseModel) -> list[tuple[BaseModel, str, Any, Any]]:
    """Every one-gene edit of an active gene: (child, dimension, old value, new value)."""
    genes = list(space.genes(arch))
    active = space.active_genes(arch)
    out = []
    for i, (dim, values) in enumerate(space.dimensions.items()):
        if not active[i]:
            continue
        for value in values:
            if value != genes[i]:
                child = list(genes)
                child[i] = value
                out.append((space.from_genes(child), dim, genes[i], value))
    return out


def _gain(weights: Weights, dim: str, old: Any, new: Any) -> float:
    return weights[dim][str(new)] - weights[dim][str(old)]


def _ordered(edits: list[tuple[BaseModel, float]], rng: np.random.Generator) -> list[BaseModel]:
    """Children by gain, highest first; ties in random order."""
    edits = [edits[i] for i in rng.permutation(len(edits))]
    return [child for child, _ in sorted(edits, key=lambda e: -e[1])]


def swaps(space: SearchSpace, arch: BaseModel) -> list[tuple[BaseModel, list[tuple[str, Any, Any]]]]:
    """Every exchange of the values of two active genes with the same choices (two NB201 edges'
    operations, two blocks' kernel sizes): the same choices placed differently."""
    genes = list(space.genes(arch))
    active = space.active_genes(arch)
    dims = list(space.dimensions.items())
    out = []
    for i, (dim_i, values_i) in enumerate(dims):
        for j in range(i + 1, len(dims)):
            dim_j, values_j = dims[j]
            if active[i] and active[j] and genes[i] != genes[j] and values_i == values_j:
                child = list(genes)
                child[i], child[j] = genes[j], genes[i]
                out.append((space.from_genes(child),
                            [(dim_i, genes[i], genes[j]), (dim_j, genes[j], genes[i])]))
    return out


def _edits(
    space: SearchSpace, arch: BaseModel, weights: Weights, genes: int
) -> list[tuple[BaseModel, float]]:
    """The ring around `arch`: every one-gene edit and every swap (`genes=1`), or every edit of
    two different active genes (`genes=2`), as (child, gain by `weights`)."""
    def scored(child: BaseModel, steps: list[tuple[str, Any, Any]]) -> tuple[BaseModel, float]:
        return child, sum(_gain(weights, *step) for step in steps) if weights else 0.0

    if genes == 1:
        return ([scored(child, [(dim, old, new)]) for child, dim, old, new in neighbours(space, arch)]
                + [scored(child, steps) for child, steps in swaps(space, arch)])
    position = {dim: i for i, dim in enumerate(space.dimensions)}
    out = []
    for child, dim, old, new in neighbours(space, arch):
        for grandchild, dim2, old2, new2 in neighbours(space, child):
            if position[dim2] > position[dim]:  # each pair of genes once
                out.append(scored(grandchild, [(dim, old, new), (dim2, old2, new2)]))
    return out


def ring_order(
    space: SearchSpace, elites: list[dict[str, Any]], weights: Weights, exclude: set[str],
    rng: np.random.Generator,
) -> Iterator[BaseModel]:
    """The elites' rings (one-gene edits and swaps), best elite first, each by its edits'
    gains. Once the best's whole ring is in `exclude` (a local optimum), its two-gene edits come
    first: a step over the ridge around it."""
    for rank, record in enumerate(elites):
        arch = space.parse(record["arch"])
        children = _ordered(_edits(space, arch, weights, genes=1), rng)
        if rank == 0 and all(space.key(child) in exclude for child in children):
            children = _ordered(_edits(space, arch, weights, genes=2), rng)
        yield from children


def elite_neighbours(
    space: SearchSpace, elites: list[dict[str, Any]], weights: Weights, n: int, picker: Picker,
    source: str, rng: np.random.Generator,
) -> int:
    """Fill up to `n` slots with the first unvisited architectures of `ring_order`. (Edits that
    are only over the cost limit do not count as spent.)"""
    taken = 0
    for child in ring_order(space, elites, weights, picker.exclude, rng):
        if taken >= n:
            break
        taken += picker.take(child, source)
    return taken


def navigator_picks(
    space: SearchSpace, ordered: Iterable[BaseModel], llm_weights: Weights, n: int, picker: Picker,
    factor: int = SHORTLIST_FACTOR,
) -> int:
    """The Navigator re-ranks a short list: of the next `factor * n` architectures a code source
    would take (`ordered`), the `n` holding most of the values it prefers (ties keep the code's
    order). A Navigator that ranks at random can then only swap the code's next picks for
    slightly later ones."""
    shortlist: dict[str, BaseModel] = {}
    for arch in ordered:
        if len(shortlist) >= factor * n:
            break
        if picker.fits(arch):
            shortlist.setdefault(space.key(arch), arch)
    ranked_short = sorted(shortlist.values(), key=lambda a: -preference_score(space, llm_weights, a))
    return sum(picker.take(arch, LLM_SOURCE) for arch in ranked_short[:n])


def preference_score(space: SearchSpace, weights: Weights, arch: BaseModel) -> float:
    """Sum over dimensions of the weight of the architecture's value."""
    return sum(weights[dim][str(value)]
               for dim, value in zip(space.dimensions, space.genes(arch), strict=True))


def steering_weights(space: SearchSpace, prefer: dict[str, list[Any]]) -> Weights:
    """The Navigator's preferences (values per dimension group) as weights on every dimension:
    1 if named, else UNNAMED_WEIGHT."""
    weights = {}
    for group, dims in space.dimension_groups().items():
        chosen = {str(v) for v in prefer.get(group, [])}
        for dim in dims:
            weights[dim] = {str(v): 1.0 if str(v) in chosen else UNNAMED_WEIGHT
                            for v in space.dimensions[dim]}
    return weights


def far_elites(space: SearchSpace, elites: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Elites at least REGION_DISTANCE genes from the best one (a second region)."""
    if not elites:
        return []
    best = space.genes(space.parse(elites[0]["arch"]))
    return [
        r for r in elites
        if sum(a != b for a, b in zip(space.genes(space.parse(r["arch"])), best, strict=True))
        >= REGION_DISTANCE
    ]


def elite_mutations(
    space: SearchSpace, elites: list[dict[str, Any]], rng: np.random.Generator, n: int,
    picker: Picker, tries: int = 50,
) -> int:
    taken = 0
    top = elites[:ELITES]
    for _ in range(tries * n):
        if taken >= n or not top:
            break
        parent = space.parse(top[int(rng.integers(len(top)))]["arch"])
        taken += picker.take(space.mutate(parent, rng), "mutation")
    return taken


def weighted_samples(
    space: SearchSpace, weights: Weights | None, rng: np.random.Generator, n: int, picker: Picker,
    source: str, tries: int = 50,
) -> int:
    """Genes drawn independently, each value in proportion to its weight (uniform if None)."""
    taken = 0
    dims = space.dimensions
    for _ in range(tries * n):
        if taken >= n:
            break
        genes = []
        for dim, values in dims.items():
            p = np.array([weights[dim][str(v)] for v in values] if weights else [1.0] * len(values))
            genes.append(values[int(rng.choice(len(values), p=p / p.sum()))])
        taken += picker.take(space.from_genes(genes), source)
    return taken


def positive(weights: Weights, temperature: float = SAMPLING_TEMPERATURE) -> Weights:
    """Additive effects (any sign) as sampling weights: exp(effect / temperature)."""
    return {d: {v: float(np.exp(w / temperature)) for v, w in ws.items()} for d, ws in weights.items()}


def best_of_samples(
    space: SearchSpace, weights: Weights, rng: np.random.Generator, n: int, picker: Picker,
    source: str, pool: int = PREFERENCE_POOL,
) -> int:
    """The `n` highest-scoring (sum of weights) of `pool` weighted samples: the additive rule's
    favourite unvisited architectures anywhere in the space."""
    dims = list(space.dimensions.items())
    columns = []
    for dim, values in dims:
        p = np.array([weights[dim][str(v)] for v in values])
        columns.append(rng.choice(len(values), size=pool, p=p / p.sum()))
    genes = np.stack(columns, axis=1)
    table = [np.array([weights[dim][str(v)] for v in values]) for dim, values in dims]
    totals = sum(table[j][genes[:, j]] for j in range(len(dims)))
    taken = 0
    for row in genes[np.argsort(-totals, kind="stable")]:
        if taken >= n:
            break
        taken += picker.take(space.from_genes([dims[j][1][i] for j, i in enumerate(row)]), source)
    return taken


def largest_first(
    space: SearchSpace, size_of: Callable[[BaseModel], float], rng: np.random.Generator,
    pool: int = PRIOR_POOL,
) -> list[BaseModel]:
    """`pool` uniform samples, largest (by `size_of`) first."""
    return sorted((space.sample(rng) for _ in range(pool)), key=size_of, reverse=True)


def largest_of_samples(
    space: SearchSpace, size_of: Callable[[BaseModel], float], rng: np.random.Generator, n: int,
    picker: Picker, pool: int = PRIOR_POOL,
) -> int:
    """The `n` largest allowed networks (by `size_of`) among `pool` uniform samples."""
    taken = 0
    for arch in largest_first(space, size_of, rng, pool):
        if taken >= n:
            break
        taken += picker.take(arch, "prior")
    return taken


def allocate(
    source_stats: dict[str, dict[str, int]], sources: list[str], size: int
) -> dict[str, int]:
    """Slots per source in proportion to each one's posterior hit rate (largest remainder)."""
    rates = {}
    for source in sources:
        hits0, n0 = SOURCE_PRIORS.get(source, (1.0, 6.0))
        seen = source_stats.get(source, {})
        rates[source] = (seen.get("hits", 0) + hits0) / (seen.get("evaluated", 0) + n0)
    total = sum(rates.values())
    exact = {s: size * rates[s] / total for s in sources}
    slots = {s: max(int(exact[s]), MIN_SLOTS.get(s, 0)) for s in sources}
    while sum(slots.values()) < size:  # largest remainder first
        slots[max(sources, key=lambda s: exact[s] - slots[s])] += 1
    while sum(slots.values()) > size:  # minimums overfilled the batch: trim the most over-served
        spare = [s for s in sources if slots[s] > MIN_SLOTS.get(s, 0)]
        slots[max(spare, key=lambda s: slots[s] - exact[s])] -= 1
    return slots


def share_ring(source_stats: dict[str, dict[str, int]], slots: dict[str, int]) -> dict[str, int]:
    """Give the Navigator part of the `neighbours` slots (the ring it re-ranks), split by the
    two sources' posterior hit rates, at least one slot; the other sources keep theirs. The
    Navigator goes right after `neighbours`, so one that copied the rule would change nothing."""
    ring = slots.get("neighbours", 0)
    if ring == 0:  # no ring among the sources: the Navigator competes for the whole batch
        return allocate(source_stats, [*slots, LLM_SOURCE], sum(slots.values()))
    shared = allocate(source_stats, ["neighbours", LLM_SOURCE], ring)
    out: dict[str, int] = {}
    for source, n in slots.items():
        out.update(shared if source == "neighbours" else {source: n})
    return out


def propose_batch(
    space: SearchSpace, records: list[dict[str, Any]], objective: str, size: int,
    rng: np.random.Generator, picker: Picker, rule_weights: Weights,
    slots: dict[str, int], llm_weights: Weights | None = None,
    size_of: Callable[[BaseModel], float] | None = None,
) -> list[tuple[BaseModel, str]]:
    """Fill each source's slots; slots a source cannot fill go to `neighbours`, then random.
    With nothing evaluated yet, the Navigator samples from its preferences and the code sources
    take the largest networks (`prior`, when `size_of` is given)."""
    elites = ranked(records, objective)
    for source, n in slots.items():
        if n <= 0:
            continue
        if source == LLM_SOURCE and llm_weights is not None:
            if elites:
                ordered = ring_order(space, elites, rule_weights, picker.exclude, rng)
            elif size_of is not None:
                ordered = largest_first(space, size_of, rng)
            else:
                ordered = (space.sample(rng) for _ in range(PRIOR_POOL))
            navigator_picks(space, ordered, llm_weights, n, picker)
        elif not elites and size_of is not None:
            largest_of_samples(space, size_of, rng, n, picker)
        elif not elites:
            weighted_samples(space, None, rng, n, picker, "random")
        elif source == "neighbours":
            elite_neighbours(space, elites, rule_weights, n, picker, source, rng)
        elif source == "second_region":
            elite_neighbours(space, far_elites(space, elites[: 4 * ELITES]), rule_weights, n,
                             picker, source, rng)
        elif source == "mutation":
            elite_mutations(space, elites, rng, n, picker)
        elif source == "preference":
            best_of_samples(space, positive(rule_weights), rng, n, picker, source)
        else:
            raise ValueError(f"unknown candidate source {source!r}")
    missing = size - len(picker.picked)
    if missing > 0 and elites:
        elite_neighbours(space, elites, rule_weights, missing, picker, "neighbours", rng)
    missing = size - len(picker.picked)
    if missing > 0:
        weighted_samples(space, None, rng, missing, picker, "random")
    return picker.picked[:size]


@dataclass(frozen=True)
class RoundInputs:
    """What the code sources read to build one round's candidates: the archive so far, the
    objective, the cost counter and limit, and the seed (each use draws its own RNG stream)."""

    space: SearchSpace
    records: list[dict[str, Any]]
    objective: str
    counter: Callable[[BaseModel], Cost]
    limit: CostLimit | None
    seed: int
    iteration: int  # the round being built, from 1

    def rng(self, stream: int) -> np.random.Generator:
        """Reproducible per (seed, round, stream), so a resumed round proposes the same batch."""
        return np.random.default_rng([self.seed, self.iteration, stream])

    @cached_property
    def rule(self) -> Weights:
        """The archive's additive model (`tools.archive.ridge_weights`)."""
        return ridge_weights(self.space, self.records, self.objective)

    def batch(
        self, slots: dict[str, int], size: int, stream: int = 0, llm_weights: Weights | None = None
    ) -> list[tuple[BaseModel, str]]:
        """`size` candidates from the code sources' `slots` (nothing is evaluated here)."""
        limit, counter = self.limit, self.counter
        allowed = None if limit is None else (lambda arch: limit.allows(counter(arch)))
        kind = limit.kind if limit is not None else "params"
        picker = Picker(self.space, {r["key"] for r in self.records}, allowed)
        return propose_batch(
            self.space, self.records, self.objective, size, self.rng(stream), picker, self.rule,
            slots, llm_weights, size_of=lambda arch: counter(arch).value(kind),
        )


def next_batch(
    inputs: RoundInputs, sources: Iterable[str], source_stats: dict[str, dict[str, int]],
    size: int, prefer: dict[str, list[Any]] | None = None,
) -> list[tuple[BaseModel, str]]:
    """The round's batch: each source's share set by its hit rate so far; with the Navigator's
    preferences (`prefer`), part of the `neighbours` share is its re-ranking of the ring."""
    llm_weights = steering_weights(inputs.space, prefer) if prefer else None
    slots = allocate(source_stats, list(sources), size)
    if llm_weights:
        slots = share_ring(source_stats, slots)
    return inputs.batch(slots, size, llm_weights=llm_weights)


def steering_against_rule(
    inputs: RoundInputs, prefer: dict[str, list[Any]], size: int = COUNTERFACTUAL_SIZE
) -> tuple[list[BaseModel], list[BaseModel]]:
    """From the same state (RNG stream 1, apart from the batch's): the Navigator's `size` picks
    of the ring and the `size` that `neighbours` takes instead."""
    llm_side = inputs.batch({LLM_SOURCE: size}, size, stream=1,
                            llm_weights=steering_weights(inputs.space, prefer))
    rule_side = inputs.batch({"neighbours": size}, size, stream=1)
    return [arch for arch, source in llm_side if source == LLM_SOURCE], [arch for arch, _ in rule_side]


def rule_batch(inputs: RoundInputs, sources: Iterable[str], size: int) -> list[BaseModel]:
    """What the code sources would have proposed instead of an LLM from the same state (their
    prior shares, RNG stream 1)."""
    return [arch for arch, _ in inputs.batch(allocate({}, list(sources), size), size, stream=1)]


def compare_with_rule(
    evaluator: Evaluator, objective: str, llm_archs: list[BaseModel], rule_archs: list[BaseModel]
) -> dict[str, Any]:
    """Both sides scored on a cheap evaluator, a hit being the space's top TOP_SHARE."""
    threshold = evaluator.top_threshold(objective, TOP_SHARE)
    return {"llm": score_candidates(evaluator, llm_archs, objective, threshold),
            "rule": score_candidates(evaluator, rule_archs, objective, threshold)}


def hit_threshold(records: list[dict[str, Any]], objective: str) -> float | None:
    """The score a candidate must beat to count as a hit: the archive's top decile."""
    if not records:
        return None
    return float(np.quantile([score(r, objective) for r in records], HIT_QUANTILE))


def score_candidates(
    evaluator, archs: list[BaseModel], objective: str, top_threshold: float | None
) -> dict[str, Any]:
    """Counterfactual scoring on the table (not an evaluation of the search): mean and best
    score, and the share above `top_threshold` (e.g. the space's top 1 %)."""
    if not archs:
        return {"n": 0, "mean": None, "best": None, "top_rate": None}
    scores = [evaluator.evaluate(a).score(objective) for a in archs]
    top = None if top_threshold is None else sum(s >= top_threshold for s in scores) / len(scores)
    return {"n": len(scores), "mean": round(float(np.mean(scores)), 3),
            "best": round(float(max(scores)), 3), "top_rate": top}


def best_by_score(
    evaluator: Evaluator, objective: str, batch: list[tuple[BaseModel, str]], size: int
) -> list[tuple[BaseModel, str]]:
    """The pre-screen: the `size` candidates of `batch` that `evaluator` (a zero-cost proxy)
    scores highest, in the batch's order."""
    scores = [evaluator.evaluate(arch).score(objective) for arch, _ in batch]
    keep = set(sorted(range(len(batch)), key=lambda i: -scores[i])[:size])
    return [item for i, item in enumerate(batch) if i in keep]
