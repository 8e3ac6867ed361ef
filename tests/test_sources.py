"""Archive statistics, code candidate sources and the batch allocation (no LLM involved)."""

from __future__ import annotations

import numpy as np
import pytest
from collm_nas.spaces import get_space
from collm_nas.tools.archive import dimension_stats, ridge_weights, stats_text
from collm_nas.tools.coordinator import make_record
from collm_nas.tools.cost import CostCounter, CostLimit
from collm_nas.tools.evaluators import make_evaluator
from collm_nas.tools.sources import (
    DEFAULT_SOURCES,
    LLM_SOURCE,
    PRIOR_POOL,
    RULE_SOURCES,
    Picker,
    RoundInputs,
    allocate,
    hit_threshold,
    neighbours,
    next_batch,
    propose_batch,
    score_candidates,
    share_ring,
    steering_against_rule,
    swaps,
)

NB201 = get_space("nb201")


def archive(n: int, seed: int = 0, dataset: str = "cifar10") -> list[dict]:
    evaluator = make_evaluator("nb201", dataset)
    rng = np.random.default_rng(seed)
    records, keys = [], set()
    while len(records) < n:
        arch = NB201.sample(rng)
        if NB201.key(arch) in keys:
            continue
        keys.add(NB201.key(arch))
        records.append(make_record(NB201.key(arch), arch.model_dump(), evaluator.evaluate(arch),
                                   None, evaluation=len(records) + 1, source="random"))
    return records


def test_dimension_stats_count_every_gene_and_the_top_share():
    records = archive(40)
    stats = dimension_stats(NB201, records, "valid", top_fraction=0.25)
    for dim in NB201.dimensions:
        assert sum(c["n"] for c in stats[dim].values()) == 40
        assert sum(c["n_top"] for c in stats[dim].values()) == 10
    best = max(records, key=lambda r: r["valid_acc"])
    for dim, value in zip(NB201.dimensions, NB201.genes(NB201.parse(best["arch"])), strict=True):
        assert stats[dim][value]["best"] == pytest.approx(best["valid_acc"], abs=1e-3)
    text = stats_text(NB201, stats)
    assert text.count("\n") == 5 and "edge_3_2:" in text


def test_mobilenet_statistics_ignore_genes_of_unused_blocks():
    space = get_space("mobilenet")
    genes = [224] + [2] * 5 + [3] * 20 + [6] * 20
    arch = space.from_genes(genes)
    genes[1 + 5 + 2] = 7  # kernel of block 2: unused when stage 0 has depth 2
    other = space.from_genes(genes)
    assert space.key(arch) == space.key(other)
    record = {"arch": other.model_dump(), "valid_acc": 70.0, "evaluation": 1}
    stats = dimension_stats(space, [record], "valid")
    assert stats["ks_2"]["7"]["n"] == 0 and stats["ks_0"]["3"]["n"] == 1
    assert all(space.key(child) != space.key(arch) for child, *_ in neighbours(space, arch))


def test_ridge_weights_prefer_the_value_that_raises_accuracy():
    records = archive(80)
    weights = ridge_weights(NB201, records, "valid")
    # On NB201 3x3 convolutions raise accuracy and "none" edges lower it.
    gaps = [weights[d]["nor_conv_3x3"] - weights[d]["none"] for d in NB201.dimensions]
    assert sum(gap > 0 for gap in gaps) >= 5 and sum(gaps) > 1.0


def test_sources_never_propose_a_visited_or_repeated_architecture():
    records = archive(30)
    seen = {r["key"] for r in records}
    rng = np.random.default_rng(1)
    picker = Picker(NB201, set(seen))
    slots = {source: 3 for source in RULE_SOURCES}
    batch = propose_batch(NB201, records, "valid", 12, rng, picker,
                          ridge_weights(NB201, records, "valid"), slots)
    keys = [NB201.key(arch) for arch, _ in batch]
    assert len(batch) == 12 and len(set(keys)) == 12 and not set(keys) & seen
    assert {source for _, source in batch} <= set(RULE_SOURCES) | {"random"}


def _gain(weights, parent, genes) -> float:
    dims = list(NB201.dimensions)
    return sum(weights[dims[i]][genes[i]] - weights[dims[i]][parent[i]]
               for i in range(6) if genes[i] != parent[i])


def test_neighbours_come_from_the_ring_of_the_best_ordered_by_the_rule():
    records = archive(30)
    weights = ridge_weights(NB201, records, "valid")
    best = max(records, key=lambda r: r["valid_acc"])
    picker = Picker(NB201, {r["key"] for r in records})
    batch = propose_batch(NB201, records, "valid", 20, np.random.default_rng(0), picker, weights,
                          {"neighbours": 20})
    parent = NB201.genes(NB201.parse(best["arch"]))
    gains, kinds = [], set()
    for arch, source in batch:
        genes = NB201.genes(arch)
        changed = [i for i in range(6) if genes[i] != parent[i]]
        swapped = (len(changed) == 2 and genes[changed[0]] == parent[changed[1]]
                   and genes[changed[1]] == parent[changed[0]])
        assert source == "neighbours" and (len(changed) == 1 or swapped)
        kinds.add(len(changed))
        gains.append(_gain(weights, parent, genes))
    ring = [c for c, *_ in neighbours(NB201, NB201.parse(best["arch"]))]
    ring += [c for c, _ in swaps(NB201, NB201.parse(best["arch"]))]
    unvisited = [_gain(weights, parent, NB201.genes(c)) for c in ring
                 if NB201.key(c) not in {r["key"] for r in records}]
    assert gains == pytest.approx(sorted(gains, reverse=True))
    assert gains[0] == pytest.approx(max(unvisited))
    assert kinds == {1, 2}  # this archive's best gets both kinds of edit


def test_swaps_exchange_values_of_genes_with_the_same_choices():
    cell = NB201.parse("|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    children = [NB201.genes(c) for c, _ in swaps(NB201, cell)]
    # three edges hold 3x3 and one each 1x1, skip, none: 15 pairs of edges, 3 of them equal
    assert len(children) == 12 and len(set(children)) == 12
    assert all(sorted(c) == sorted(NB201.genes(cell)) for c in children)
    mobilenet = get_space("mobilenet")
    arch = mobilenet.parse({"r": [176], "d": [2, 2, 2, 2, 2], "ks": [3, 5] + [7] * 18,
                            "e": [4, 3] + [6] * 18})
    names = list(mobilenet.dimensions)
    active = mobilenet.active_genes(arch)
    pairs = [(step_a[0], step_b[0]) for _, (step_a, step_b) in swaps(mobilenet, arch)]
    assert pairs
    for a, b in pairs:
        assert mobilenet.dimensions[a] == mobilenet.dimensions[b]  # never depth with expand ratio
        assert active[names.index(a)] and active[names.index(b)]


def test_a_spent_local_optimum_is_left_by_its_two_gene_edits():
    records = archive(30)
    best = max(records, key=lambda r: r["valid_acc"])
    parent = NB201.parse(best["arch"])
    ring = [c for c, *_ in neighbours(NB201, parent)] + [c for c, _ in swaps(NB201, parent)]
    picker = Picker(NB201, {r["key"] for r in records} | {NB201.key(c) for c in ring})
    batch = propose_batch(NB201, records, "valid", 10, np.random.default_rng(0), picker,
                          ridge_weights(NB201, records, "valid"), {"neighbours": 10})
    distances = [sum(a != b for a, b in zip(NB201.genes(arch), NB201.genes(parent), strict=True))
                 for arch, _ in batch]
    assert len(batch) == 10 and distances == [2] * 10
    assert not {NB201.key(arch) for arch, _ in batch} & {NB201.key(c) for c in ring}


def test_an_empty_archive_starts_from_the_largest_sampled_networks():
    counter = CostCounter(NB201, "cifar10")
    size = lambda arch: counter(arch).params_m  # noqa: E731
    batch = propose_batch(NB201, [], "valid", 10, np.random.default_rng(0), Picker(NB201, set()),
                          ridge_weights(NB201, [], "valid"), {"neighbours": 5, "preference": 5},
                          size_of=size)
    pool = [NB201.sample(np.random.default_rng(0)) for _ in range(PRIOR_POOL)]
    assert {source for _, source in batch} == {"prior"}
    assert min(size(a) for a, _ in batch) >= sorted(map(size, pool), reverse=True)[9]
    # Without a size, the first batch is uniform.
    plain = propose_batch(NB201, [], "valid", 10, np.random.default_rng(0), Picker(NB201, set()),
                          ridge_weights(NB201, [], "valid"), {"neighbours": 10})
    assert {source for _, source in plain} == {"random"}
    assert np.mean([size(a) for a, _ in plain]) < np.mean([size(a) for a, _ in batch])


def _navigator_batch(records: list[dict], llm_weights: dict, n: int) -> list:
    picker = Picker(NB201, {r["key"] for r in records})
    return propose_batch(NB201, records, "valid", n, np.random.default_rng(0), picker,
                         ridge_weights(NB201, records, "valid"), {LLM_SOURCE: n}, llm_weights)


def test_the_navigator_reranks_the_rules_short_list():
    records = archive(30)
    picker = Picker(NB201, {r["key"] for r in records})
    rule_next = [a for a, _ in propose_batch(
        NB201, records, "valid", 6, np.random.default_rng(0), picker,
        ridge_weights(NB201, records, "valid"), {"neighbours": 6})]
    # Preferring exactly the values of the rule's third pick puts it first.
    third = dict(zip(NB201.dimensions, map(str, NB201.genes(rule_next[2])), strict=True))
    llm_weights = {d: {str(v): float(str(v) == third[d]) for v in NB201.dimensions[d]}
                   for d in NB201.dimensions}
    (arch, source), = _navigator_batch(records, llm_weights, 1)
    assert source == LLM_SOURCE and NB201.key(arch) == NB201.key(rule_next[2])
    # However it ranks, the Navigator only picks among the rule's next 3n.
    allowed = {NB201.key(a) for a in rule_next}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        noise = {d: {str(v): float(rng.random()) for v in NB201.dimensions[d]} for d in NB201.dimensions}
        batch = _navigator_batch(records, noise, 2)
        assert len(batch) == 2 and {NB201.key(a) for a, _ in batch} <= allowed


def test_over_limit_candidates_are_never_proposed():
    records = archive(20)
    counter = CostCounter(NB201, "cifar10")
    limit = 60.0  # MFLOPs: rules out cells with many 3x3 convolutions
    picker = Picker(NB201, {r["key"] for r in records}, lambda a: counter(a).flops_m <= limit)
    batch = propose_batch(NB201, records, "valid", 10, np.random.default_rng(0), picker,
                          ridge_weights(NB201, records, "valid"), {"neighbours": 5, "preference": 5})
    assert len(batch) == 10 and all(counter(a).flops_m <= limit for a, _ in batch)


def test_allocation_fills_the_batch_and_rewards_hits():
    slots = allocate({}, list(DEFAULT_SOURCES), 10)
    assert sum(slots.values()) == 10 and slots["neighbours"] > slots["preference"] >= 1
    shown = allocate({"preference": {"evaluated": 40, "hits": 30}}, list(DEFAULT_SOURCES), 10)
    assert shown["preference"] > slots["preference"] and sum(shown.values()) == 10


def test_the_navigator_shares_only_the_rings_slots():
    stats: dict = {}
    code = allocate(stats, list(DEFAULT_SOURCES), 10)
    shared = share_ring(stats, code)
    assert list(shared) == ["neighbours", LLM_SOURCE, "preference"]  # right after the ring
    assert shared["preference"] == code["preference"] and sum(shared.values()) == 10
    assert shared["neighbours"] + shared[LLM_SOURCE] == code["neighbours"] and shared[LLM_SOURCE] >= 1
    poor = share_ring({LLM_SOURCE: {"evaluated": 40, "hits": 0}}, code)
    good = share_ring({LLM_SOURCE: {"evaluated": 40, "hits": 30}}, code)
    assert poor[LLM_SOURCE] == 1 and good[LLM_SOURCE] > shared[LLM_SOURCE]
    assert poor["preference"] == good["preference"] == code["preference"]
    # Without a ring among the sources, the Navigator competes for the whole batch.
    alone = share_ring(stats, {"preference": 10})
    assert sum(alone.values()) == 10 and alone[LLM_SOURCE] >= 1


def test_hit_threshold_is_the_top_decile():
    records = [{"valid_acc": float(i)} for i in range(101)]
    assert hit_threshold(records, "valid") == pytest.approx(90.0)
    assert hit_threshold([], "valid") is None


def test_counterfactual_scores_carry_mean_best_and_top_rate():
    evaluator = make_evaluator("nb201", "cifar10")
    archs = [NB201.sample(np.random.default_rng(i)) for i in range(5)]
    scores = [evaluator.evaluate(a).score("valid") for a in archs]
    scored = score_candidates(evaluator, archs, "valid", top_threshold=sorted(scores)[-2])
    assert scored["n"] == 5 and scored["best"] == pytest.approx(max(scores), abs=1e-3)
    assert scored["mean"] == pytest.approx(np.mean(scores), abs=1e-3) and scored["top_rate"] == 0.4
    assert score_candidates(evaluator, [], "valid", None) == {
        "n": 0, "mean": None, "best": None, "top_rate": None}


def test_additive_cost_equals_a_full_count():
    rng = np.random.default_rng(7)
    for dataset in ("cifar10", "imagenet16"):
        counter = CostCounter(NB201, dataset)
        for _ in range(6):
            arch = NB201.sample(rng)
            fast, full = counter(arch), counter.count(arch)
            assert fast.flops_m == pytest.approx(full.flops_m, abs=1e-6)
            assert fast.params_m == pytest.approx(full.params_m, abs=1e-6)


def _round_inputs(records: list[dict], limit=None) -> RoundInputs:
    return RoundInputs(NB201, records, "valid", CostCounter(NB201, "cifar10"), limit, seed=0,
                       iteration=4)


def test_next_batch_gives_the_navigator_part_of_the_ring_only_when_it_steers():
    records = archive(30)
    inputs = _round_inputs(records)
    plain = next_batch(inputs, DEFAULT_SOURCES, {}, 10)
    assert len(plain) == 10 and LLM_SOURCE not in {source for _, source in plain}
    assert [NB201.key(a) for a, _ in next_batch(inputs, DEFAULT_SOURCES, {}, 10)] == \
        [NB201.key(a) for a, _ in plain]  # the same round proposes the same batch
    prefer = {edge: ["nor_conv_3x3"] for edge in NB201.dimensions}
    steered = next_batch(inputs, DEFAULT_SOURCES, {}, 10, prefer)
    sources = [source for _, source in steered]
    assert len(steered) == 10 and LLM_SOURCE in sources and "preference" in sources
    assert not {NB201.key(a) for a, _ in steered} & {r["key"] for r in records}


def test_next_batch_respects_the_cost_limit():
    limit = CostLimit("flops", 60.0)
    batch = next_batch(_round_inputs(archive(20), limit), DEFAULT_SOURCES, {}, 10)
    counter = CostCounter(NB201, "cifar10")
    assert len(batch) == 10 and all(limit.allows(counter(a)) for a, _ in batch)


def test_a_steering_measurement_compares_the_navigators_picks_with_the_rings_next():
    records = archive(30)
    inputs = _round_inputs(records)
    prefer = {edge: ["none"] for edge in NB201.dimensions}
    llm_side, rule_side = steering_against_rule(inputs, prefer, size=5)

    def ring(n: int) -> list[str]:
        picker = Picker(NB201, {r["key"] for r in records})
        return [NB201.key(a) for a, _ in propose_batch(
            NB201, records, "valid", n, inputs.rng(1), picker, inputs.rule, {"neighbours": n})]

    assert [NB201.key(a) for a in rule_side] == ring(5)
    # The Navigator picks 5 of the ring's next 15, those holding most of its preferred values.
    assert len(llm_side) == 5 and {NB201.key(a) for a in llm_side} <= set(ring(15))
