"""Experiment runner: methods x datasets x seeds, with tables, a JSON of every run and a plot.

A method is a function `RunSpec -> RunResult`; `METHODS` maps names to them. Baselines are
registered here; the LLM methods register the same way, so every method shares the budget
accounting of `tools.coordinator.Ledger`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from collm_nas.errors import CollmNasError
from collm_nas.evals.baselines import BASELINES
from collm_nas.graph.provenance import inputs_markdown, provenance, summary_line
from collm_nas.spaces import get_space
from collm_nas.spaces.evaluation import score
from collm_nas.tools.coordinator import Ledger
from collm_nas.tools.cost import CostLimit, shared_cost_counter
from collm_nas.tools.evaluators import make_evaluator
from collm_nas.tools.proxies import PROXIES


@dataclass(frozen=True)
class RunSpec:
    method: str
    space: str
    dataset: str
    objective: str
    seed: int
    budget: int
    cost_limit: CostLimit | None = None
    data_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """One finished run; `curve[i]` is the accuracy of the best-scored architecture after i+1
    evaluations (the best accuracy, unless a zero-cost proxy does the scoring)."""

    method: str
    space: str
    dataset: str
    objective: str
    seed: int
    budget: int
    evaluations: int
    arch: str | None
    valid_acc: float | None
    test_acc: float | None
    flops_m: float | None
    params_m: float | None
    optimum_found: bool | None  # None where the space's optimum is unknown
    predicted: bool  # accuracies come from an accuracy predictor, not a measurement
    stop_reason: str
    wall_seconds: float
    curve: list[float]
    extra: dict[str, Any] = field(default_factory=dict)
    latency_ms: float | None = None  # only under a latency limit


def run_result(
    spec: RunSpec, records: list[dict[str, Any]], evaluator, stop_reason: str, wall_seconds: float,
    **extra: Any,
) -> RunResult:
    """A RunResult from the evaluated records in evaluation order."""
    best: dict[str, Any] = {}
    curve: list[float] = []  # the accuracy of the best-scored so far (under a proxy, its truth)
    accuracy = "valid_acc" if spec.objective == "valid" else "test_acc"
    for record in records:
        if not best or score(record, spec.objective) > score(best, spec.objective):
            best = record
        curve.append(best[accuracy])
    optimum = evaluator.optimum(spec.objective)
    found = None if optimum is None else bool(best) and score(best, spec.objective) >= optimum - 1e-9
    return RunResult(
        method=spec.method, space=spec.space, dataset=spec.dataset, objective=spec.objective,
        seed=spec.seed, budget=spec.budget, evaluations=len(records),
        arch=best.get("key"), valid_acc=best.get("valid_acc"), test_acc=best.get("test_acc"),
        flops_m=best.get("flops_m"), params_m=best.get("params_m"),
        latency_ms=best.get("latency_ms"), optimum_found=found,
        predicted=bool(best.get("predicted")), stop_reason=stop_reason,
        wall_seconds=round(wall_seconds, 4), curve=curve, extra=extra,
    )


def spec_evaluator(spec: RunSpec):
    """The shared evaluator a run's settings name (kind and options; the space's default kind)."""
    return make_evaluator(spec.space, spec.dataset, spec.options.get("evaluator"), spec.data_path,
                          tuple(sorted(spec.options.get("evaluator_options", {}).items())))


def make_ledger(spec: RunSpec) -> Ledger:
    space = get_space(spec.space)
    evaluator = spec_evaluator(spec)
    limit = spec.cost_limit
    counter = (shared_cost_counter(spec.space, spec.dataset, limit.kind == "latency", spec.data_path)
               if limit else None)
    return Ledger(space, evaluator, spec.objective, spec.budget, counter, spec.cost_limit)


def _baseline_method(search: Callable) -> Callable[[RunSpec], RunResult]:
    def run(spec: RunSpec) -> RunResult:
        ledger = make_ledger(spec)
        stop_reason = search(ledger, np.random.default_rng(spec.seed))
        return run_result(spec, ledger.records, ledger.evaluator, stop_reason, ledger.wall_seconds(),
                          rejected=dict(ledger.rejected))

    return run


def _llm_method(**variant: Any) -> Callable[[RunSpec], RunResult]:
    """A search-graph mode (CoLLM-NAS, its ablations, SiLLM-NAS) with the baselines' accounting."""

    def run(spec: RunSpec) -> RunResult:
        from collm_nas.graph.context import SearchSettings
        from collm_nas.graph.run import run_search

        limit = spec.cost_limit
        options = {
            "iterations": max(20, 2 * -(-spec.budget // spec.options.get("candidates", 10))),
            **spec.options, **variant,
        }
        settings = SearchSettings(
            space=spec.space, dataset=spec.dataset, objective=spec.objective,
            data_path=spec.data_path, budget=spec.budget, seed=spec.seed,
            cost_kind=limit.kind if limit else None, max_cost=limit.bound if limit else None,
            **options,
        )
        result = run_search(settings)
        records = sorted(result.archive, key=lambda r: r["evaluation"])
        evaluator = settings.evaluator_spec().build()
        sources: dict[str, int] = {}
        for record in records:
            sources[record["source"]] = sources.get(record["source"], 0) + 1
        return run_result(spec, records, evaluator, result.stop_reason or "", result.wall_seconds,
                          llm=result.llm, sources=sources, counterfactuals=result.counterfactuals,
                          **({"lessons": result.lessons} if result.lessons else {}))

    return run


METHODS: dict[str, Callable[[RunSpec], RunResult]] = {
    **{name: _baseline_method(search) for name, search in BASELINES.items()},
    "collm": _llm_method(mode="collm"),
    "collm-paper": _llm_method(mode="paper"),
    "collm-nollm": _llm_method(mode="collm-nollm"),
    "collm-navmem-off": _llm_method(mode="collm", navigator_memory=False),
    "collm-paper-genmem": _llm_method(mode="paper", generator_memory=True),
    "sillm": _llm_method(mode="sillm"),
}
LLM_FREE = {*BASELINES, "collm-nollm"}
# Methods named with a zero-cost proxy: `rznas:<proxy>` scores by it (RZ-NAS);
# `collm+<proxy>` pre-screens the code candidates by it.
PROXY_METHODS = ("rznas", "rznas-nollm")
PRESCREEN_METHODS = ("collm", "collm-nollm")
METHOD_FORMS = "rznas:<proxy>, rznas-nollm:<proxy>, collm+<proxy>, collm-nollm+<proxy>"


class UnknownMethod(CollmNasError, ValueError):
    """A bench method name that is not in `METHODS` nor of a form with a proxy."""


def method(name: str) -> Callable[[RunSpec], RunResult]:
    """The method a bench name stands for (the proxy forms are made on demand)."""
    if name in METHODS:
        return METHODS[name]
    base, colon, proxy = name.partition(":")
    if colon and base in PROXY_METHODS and proxy in PROXIES:
        return _llm_method(mode=base, evaluator=f"zero_cost:{proxy}")
    base, plus, proxy = name.partition("+")
    if plus and base in PRESCREEN_METHODS and proxy in PROXIES:
        return _llm_method(mode=base, prescreen=proxy)
    raise UnknownMethod(f"unknown method {name!r}; available: {', '.join(METHODS)}, and {METHOD_FORMS} "
                        f"with a proxy from {', '.join(PROXIES)}")


def is_llm_free(name: str) -> bool:
    return name in LLM_FREE or name.partition(":")[0] == "rznas-nollm" or name.partition("+")[0] == "collm-nollm"


def run_bench(
    specs: Iterable[RunSpec], on_result: Callable[[RunResult], None] | None = None
) -> list[RunResult]:
    results = []
    for spec in specs:
        result = method(spec.method)(spec)
        results.append(result)
        if on_result:
            on_result(result)
    return results


def mean_std(values: list[float]) -> str:
    """'mean±std' over seeds, two decimals ('—' for none; std 0 for one value)."""
    if not values:
        return "—"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f}±{std:.2f}"


def markdown_table(results: list[RunResult]) -> str:
    """Mean ± std of the chosen architecture's test (valid) accuracy per method and dataset."""
    methods = list(dict.fromkeys(r.method for r in results))
    datasets = list(dict.fromkeys(r.dataset for r in results))
    lines = [
        "| method | " + " | ".join(datasets) + " |",
        "|---|" + "---|" * len(datasets),
    ]
    for method in methods:
        cells = []
        for dataset in datasets:
            runs = [r for r in results if r.method == method and r.dataset == dataset]
            if not runs:
                cells.append("—")
                continue
            test = mean_std([r.test_acc for r in runs if r.test_acc is not None])
            valid = mean_std([r.valid_acc for r in runs if r.valid_acc is not None])
            found = [r.optimum_found for r in runs if r.optimum_found is not None]
            opt = f" · opt {sum(found)}/{len(runs)}" if found else ""
            evals = statistics.mean(r.evaluations for r in runs)
            secs = statistics.mean(r.wall_seconds for r in runs)
            latencies = [r.latency_ms for r in runs if r.latency_ms is not None]
            latency = f" · {statistics.mean(latencies):.2f} ms" if latencies else ""
            cells.append(f"{test} ({valid}){opt} · {evals:.0f} ev{latency} · {secs:.2f} s")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(results: list[RunResult], path: Path) -> None:
    """Mean best-so-far score vs evaluations, one panel per dataset, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r.dataset for r in results))
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets, strict=True):
        for method in dict.fromkeys(r.method for r in results):
            curves = [r.curve for r in results if r.method == method and r.dataset == dataset]
            curves = [c for c in curves if c]
            if not curves:
                continue
            length = max(len(c) for c in curves)
            padded = np.array([c + [c[-1]] * (length - len(c)) for c in curves])
            ax.plot(np.arange(1, length + 1), padded.mean(axis=0), label=method)
        ax.set_title(dataset)
        ax.set_xlabel("evaluations")
        ax.set_ylabel(f"best {results[0].objective} accuracy so far (mean)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


PREDICTED_NOTE = (
    "**All accuracies here are predicted** by an accuracy predictor (valid = test = the "
    "prediction), not measured."
)


def write_outputs(
    results: list[RunResult], out: Path, command: str, note: str = "", *,
    llms: dict[str, Any] | None = None, inputs: Sequence[Path] = (), made_by: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """`out` (.md table), the same name with .json (provenance and every run) and .png (curves).

    `llms`: the LLM settings by role, when LLM methods ran; `inputs`: the bench files merged;
    `made_by`: provenance taken when the runs started (the code that ran, not the code at the
    end of a long bench), else taken now.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out.with_suffix(".json"), out.with_suffix(".png")
    objective = results[0].objective if results else "valid"
    made_by = made_by or provenance(command, llms, inputs)
    header = (
        f"# Bench: {results[0].space if results else ''}, objective = {objective} accuracy\n\n"
        f"Command: `{command}`\n\n"
        f"Provenance: {summary_line(made_by)} (the .json's `provenance` has the rest)\n\n"
        + (f"{inputs_markdown(inputs)}\n" if inputs else "")
        + (f"{note}\n\n" if note else "")
        + f"Date: {time.strftime('%Y-%m-%d')}. Each cell: test accuracy mean±std (valid accuracy "
        "mean±std) of the architecture each run chose, how many runs found the best "
        f"{objective} cell of the space, mean distinct evaluations, (under a latency limit) the "
        "mean latency of the chosen architectures, mean wall seconds per run.\n\n"
    )
    if any(r.predicted for r in results):
        header += PREDICTED_NOTE + "\n\n"
    out.write_text(header + markdown_table(results) + "\n")
    json_path.write_text(json.dumps({"provenance": made_by, "runs": [asdict(r) for r in results]},
                                    indent=1))
    if results:
        plot_curves(results, png_path)
    return {"table": out, "runs": json_path, "plot": png_path}
