"""Baseline search methods on the space contract only: random search, REINFORCE, elitist and
regularized (aging) evolution, and the evolution SPOS runs on its supernet.

Each takes a `Ledger` (budget in distinct evaluated architectures, cost limit, dedupe) and an
rng, and proposes candidates until the ledger's budget is spent or it gives up.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
from collm_nas.tools.coordinator import Ledger

# A search stops proposing after this many candidates per unit of budget (e.g. when a cost limit
# rejects nearly everything or the policy keeps proposing cells it has already seen).
MAX_PROPOSALS_PER_EVALUATION = 200
# Evolution switches from mutating elites to random immigrants after this many misses in a row.
STALL_PROPOSALS = 100


def _proposal_cap(ledger: Ledger) -> int:
    return MAX_PROPOSALS_PER_EVALUATION * ledger.budget


def random_search(ledger: Ledger, rng: np.random.Generator) -> str:
    """Uniform samples until the budget is spent."""
    for _ in range(_proposal_cap(ledger)):
        if ledger.spent:
            return "budget spent"
        ledger.submit(ledger.space.sample(rng), source="random")
    return "gave up: too many rejected proposals"


def reinforce(
    ledger: Ledger, rng: np.random.Generator, lr: float = 0.01, momentum: float = 0.9
) -> str:
    """REINFORCE with one categorical policy per design dimension and an EMA reward baseline.

    A duplicate proposal is not re-evaluated: its archived reward updates the policy for free.
    """
    dims = list(ledger.space.dimensions.values())
    logits = [torch.zeros(len(values), requires_grad=True) for values in dims]
    optimizer = torch.optim.Adam(logits, lr=lr)
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    numerator = denominator = 0.0
    for _ in range(_proposal_cap(ledger)):
        if ledger.spent:
            return "budget spent"
        choices = [int(torch.multinomial(torch.softmax(z, 0), 1, generator=generator)) for z in logits]
        verdict, record = ledger.submit(
            ledger.space.from_genes([values[i] for values, i in zip(dims, choices, strict=True)]),
            source="reinforce",
        )
        if record is None:
            continue  # illegal or over the limit: no reward to learn from
        reward = ledger.score(record)
        numerator = momentum * numerator + (1 - momentum) * reward
        denominator = momentum * denominator + (1 - momentum)
        advantage = reward - numerator / denominator
        log_prob = sum(torch.log_softmax(z, 0)[i] for z, i in zip(logits, choices, strict=True))
        optimizer.zero_grad()
        (-log_prob * advantage).backward()
        optimizer.step()
    return "gave up: too many rejected or repeated proposals"


def _random_population(ledger: Ledger, rng: np.random.Generator, size: int) -> tuple[list[dict], int]:
    """Up to `size` evaluated random samples (fewer once the budget or the proposal cap runs
    out), and how many proposals that took."""
    population: list[dict] = []
    proposals = 0
    while len(population) < size and not ledger.spent:
        proposals += 1
        if proposals > _proposal_cap(ledger):
            break
        verdict, record = ledger.submit(ledger.space.sample(rng), source="random")
        if verdict == "evaluated":
            population.append(record)
    return population, proposals


def evolution(
    ledger: Ledger, rng: np.random.Generator, population_size: int = 10, elite_fraction: float = 0.5
) -> str:
    """Elitist evolution: keep the best half of the population, refill it with mutated elites.

    Each generation mutates one dimension of a uniformly chosen elite to make `population_size`
    new, unseen children; the next population is the elites plus the best children.
    """
    population, proposals = _random_population(ledger, rng, population_size)
    if proposals > _proposal_cap(ledger):
        return "gave up: too many rejected proposals"
    n_elite = max(1, int(round(elite_fraction * population_size)))
    while not ledger.spent:
        elites = sorted(population, key=ledger.score, reverse=True)[:n_elite]
        children: list[dict] = []
        misses = 0  # proposals in a row that were not evaluated
        while len(children) < population_size and not ledger.spent:
            proposals += 1
            if proposals > _proposal_cap(ledger):
                return "gave up: too many rejected proposals"
            if misses < STALL_PROPOSALS:
                parent = elites[rng.integers(len(elites))]
                child, source = ledger.space.mutate(ledger.space.parse(parent["arch"]), rng), "mutation"
            else:  # every near neighbour of the elites is seen or over the limit: bring in new blood
                child, source = ledger.space.sample(rng), "random"
            verdict, record = ledger.submit(child, source=source)
            misses = 0 if verdict == "evaluated" else misses + 1
            if verdict == "evaluated":
                children.append(record)
        population = elites + sorted(children, key=ledger.score, reverse=True)[
            : population_size - n_elite
        ]
    return "budget spent"


def regularized_evolution(
    ledger: Ledger, rng: np.random.Generator, population_size: int = 10, sample_size: int = 3
) -> str:
    """Regularized (aging) evolution, Real et al. 2019, as NAS-Bench-201 runs it.

    Start from `population_size` random cells; then repeatedly draw `sample_size` members
    uniformly (with replacement), mutate one dimension of the best of them, add the child and
    remove the oldest member, whatever its accuracy. A child already evaluated joins with its
    archived result without spending budget (the benchmark would return the same numbers).
    """
    first, proposals = _random_population(ledger, rng, population_size)
    if proposals > _proposal_cap(ledger):
        return "gave up: too many rejected proposals"
    population = deque(first)
    misses = 0  # proposals in a row that were not evaluated
    while not ledger.spent:
        proposals += 1
        if proposals > _proposal_cap(ledger):
            return "gave up: too many rejected proposals"
        if misses < STALL_PROPOSALS:
            contenders = [population[i] for i in rng.integers(len(population), size=sample_size)]
            parent = max(contenders, key=ledger.score)
            child, source = ledger.space.mutate(ledger.space.parse(parent["arch"]), rng), "mutation"
        else:  # every near neighbour of the population is seen or over the limit: new blood
            child, source = ledger.space.sample(rng), "random"
        verdict, record = ledger.submit(child, source=source)
        misses = 0 if verdict == "evaluated" else misses + 1
        if record is not None:
            population.append(record)
            population.popleft()
    return "budget spent"


def spos_evolution(
    ledger: Ledger, rng: np.random.Generator, population_size: int = 50, top_k: int = 10,
    mutations: int = 25, crossovers: int = 25, mutation_prob: float = 0.1,
) -> str:
    """Evolution as SPOS searches its supernet (Guo et al. 2020; 20 generations of 50 = 1,000
    evaluations there, here as many as the budget allows): every gene of a mutant resampled with
    probability `mutation_prob`. See `_top_k_evolution`."""
    dims = list(ledger.space.dimensions.values())

    def mutant(parent: list) -> list:
        return [values[rng.integers(len(values))] if rng.random() < mutation_prob else gene
                for gene, values in zip(parent, dims, strict=True)]

    return _top_k_evolution(ledger, rng, mutant, population_size, top_k, mutations, crossovers)


def autoformer_evolution(
    ledger: Ledger, rng: np.random.Generator, population_size: int = 50, top_k: int = 10,
    mutations: int = 25, crossovers: int = 25, m_prob: float = 0.2, s_prob: float = 0.4,
) -> str:
    """Evolution as AutoFormer searches its supernet (Chen et al. 2021; 20 generations of 50):
    a mutant resamples the depth and the embedding dim each with probability `s_prob`, and each
    layer's MLP ratio and heads with probability `m_prob` (layers a deeper child gains are
    random, as unused genes are). See `_top_k_evolution`."""
    dims = list(ledger.space.dimensions.items())

    def mutant(parent: list) -> list:
        return [values[rng.integers(len(values))]
                if rng.random() < (s_prob if name in ("depth", "embed_dim") else m_prob) else gene
                for gene, (name, values) in zip(parent, dims, strict=True)]

    return _top_k_evolution(ledger, rng, mutant, population_size, top_k, mutations, crossovers)


def _top_k_evolution(ledger: Ledger, rng: np.random.Generator, mutant, population_size: int,
                     top_k: int, mutations: int, crossovers: int) -> str:
    """A random first population; then each generation makes `mutations` children of the best
    `top_k` evaluated so far (`mutant(genes)`) and `crossovers` children of two of them (every
    gene from either parent), and fills the generation up to `population_size` with random
    samples. Only new, legal, within-limit children count."""
    _, proposals = _random_population(ledger, rng, population_size)

    def cross(a: list, b: list) -> list:
        return [x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True)]

    while not ledger.spent:
        top = [list(ledger.space.genes(ledger.space.parse(r["arch"])))
               for r in sorted(ledger.records, key=ledger.score, reverse=True)[:top_k]]
        if not top:
            return "gave up: too many rejected proposals"
        for make, wanted, source in ((mutant, mutations, "mutation"), (cross, crossovers, "crossover"),
                                     (None, population_size - mutations - crossovers, "random")):
            made = 0
            while made < wanted and not ledger.spent:
                proposals += 1
                if proposals > _proposal_cap(ledger):
                    return "gave up: too many rejected proposals"
                if make is mutant:
                    child = ledger.space.from_genes(mutant(top[rng.integers(len(top))]))
                elif make is cross:
                    i, j = rng.integers(len(top), size=2)
                    child = ledger.space.from_genes(cross(top[i], top[j]))
                else:
                    child = ledger.space.sample(rng)
                made += ledger.submit(child, source=source)[0] == "evaluated"
    return "budget spent"


BASELINES = {"rs": random_search, "rl": reinforce, "ea": evolution, "rea": regularized_evolution,
             "spos-ea": spos_evolution, "autoformer-ea": autoformer_evolution}
