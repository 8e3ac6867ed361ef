"""Tables over bench runs (their JSON files): the Table-3 comparison, the LLM's measured
contribution (same-state counterfactuals) and the share of evaluations each source earned."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

from collm_nas.errors import CollmNasError
from collm_nas.evals.bench import PREDICTED_NOTE, RunResult, mean_std, plot_curves
from collm_nas.graph.provenance import inputs_markdown, provenance, summary_line
from scipy.stats import t as t_dist

SPACE_TITLES = {"nb201": "NAS-Bench-201", "mobilenet": "OFA MobileNetV3"}
CHECKPOINTS = (0.25, 0.5, 0.75, 1.0)  # best-so-far is shown at these shares of the budget


def bench_rows(path: Path) -> list[dict]:
    """The runs of a bench JSON file: `{"provenance": ..., "runs": [...]}`, or a bare list of runs
    (files written before provenance was recorded, and a bench's .partial.json)."""
    data = json.loads(Path(path).read_text())
    return data["runs"] if isinstance(data, dict) else data


class DuplicateRunError(CollmNasError):
    """Two bench files hold the same run (method, space, dataset, objective, seed, budget) with
    different outcomes."""


def load_runs(paths: list[Path]) -> list[RunResult]:
    """The runs of the bench files in order. A run given again (e.g. the `rs` rows that two benches
    both ran) is kept once, so no seed counts twice; the same run with another outcome is an error
    that names both files."""
    kept: dict[tuple, tuple[RunResult, Path]] = {}
    for path in paths:
        for row in bench_rows(path):
            run = RunResult(**row)
            identity = (run.method, run.space, run.dataset, run.objective, run.seed, run.budget)
            if identity not in kept:
                kept[identity] = (run, Path(path))
                continue
            seen, where = kept[identity]
            if _outcome(seen) != _outcome(run):
                raise DuplicateRunError(
                    f"{run.method} on {run.space} {run.dataset}, seed {run.seed}, budget {run.budget} "
                    f"is in {where} and in {path} with different results; merge only one of them")
    return [run for run, _ in kept.values()]


def _outcome(run: RunResult) -> tuple:
    return run.arch, run.valid_acc, run.test_acc, run.evaluations


def ci_text(values: list[float], digits: int = 2) -> str:
    """Mean ± 95 % confidence half-width, Student's t over independent units (seeds, calls);
    with 3–10 seeds the normal 1.96 would make the interval too narrow."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:+.{digits}f} (one unit, no CI)"
    half = t_dist.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
    return f"{statistics.mean(values):+.{digits}f} ± {half:.{digits}f}"


def _groups(runs: list[RunResult]) -> list[tuple[str, str, list[RunResult]]]:
    methods = list(dict.fromkeys(r.method for r in runs))
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    return [(m, d, [r for r in runs if r.method == m and r.dataset == d])
            for d in datasets for m in methods if any(r.method == m and r.dataset == d for r in runs)]


def comparison_table(runs: list[RunResult]) -> str:
    """One row per method and dataset: final accuracies, optimum found, best-so-far, cost."""
    points = [max(1, round(share * (runs[0].budget if runs else 100))) for share in CHECKPOINTS]
    lines = [
        "| dataset | method | seeds | evaluations | test acc | valid acc | optimum found | best-so-far @"
        + "/".join(map(str, points)) + " | wall s/run | LLM tokens/run (prompt+completion) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, dataset, group in _groups(runs):
        found = [r.optimum_found for r in group if r.optimum_found is not None]
        at = []
        for n in points:
            values = [r.curve[min(n, len(r.curve)) - 1] for r in group if r.curve]
            at.append(f"{statistics.mean(values):.2f}" if values else "—")
        tokens = [r.extra.get("llm", {}).get("prompt_tokens", 0)
                  + r.extra.get("llm", {}).get("completion_tokens", 0) for r in group]
        seeds = sorted(r.seed for r in group)
        lines.append(
            f"| {dataset} | {method} | {seeds[0]}–{seeds[-1]} ({len(group)}) "
            f"| {statistics.mean(r.evaluations for r in group):.0f} "
            f"| {mean_std([r.test_acc for r in group])} | {mean_std([r.valid_acc for r in group])} "
            f"| {f'{sum(found)}/{len(found)}' if found else '—'} | {' / '.join(at)} "
            f"| {statistics.mean(r.wall_seconds for r in group):.1f} "
            f"| {statistics.mean(tokens):.0f} |"
        )
    return "\n".join(lines)


def scored_calls(extras: list[dict]) -> list[dict]:
    """The same-state counterfactual calls of these runs (their `extra`) where both sides scored."""
    return [c for extra in extras for c in extra.get("counterfactuals", [])
            if c["llm"]["n"] and c["rule"]["n"]]


def llm_minus_rule(calls: list[dict], field: str) -> list[float]:
    """LLM − rule of `field` ("mean", "best", "top_rate") per call, over the calls that have it
    (calls recorded before 2026-11-28 carry no "best"; only a table evaluator gives "top_rate")."""
    return [c["llm"][field] - c["rule"][field] for c in calls
            if c["llm"].get(field) is not None and c["rule"].get(field) is not None]


def counterfactual_table(runs: list[RunResult]) -> str:
    """Per LLM method and dataset: the LLM's candidates vs the rule's, from the same states."""
    lines = [
        "| dataset | method | calls | LLM mean score | rule mean score | LLM − rule (mean ± 95% CI) "
        "| LLM top-1% rate | rule top-1% rate | LLM − rule top-1% (± 95% CI) "
        "| LLM − rule best candidate (± 95% CI) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, dataset, group in _groups(runs):
        calls = scored_calls([r.extra for r in group])
        if not calls:
            continue
        tops = [c for c in calls
                if c["llm"]["top_rate"] is not None and c["rule"]["top_rate"] is not None]
        rates = [f"{statistics.mean(c[side]['top_rate'] for c in tops):.3f}" if tops else "—"
                 for side in ("llm", "rule")]
        lines.append(
            f"| {dataset} | {method} | {len(calls)} "
            f"| {statistics.mean(c['llm']['mean'] for c in calls):.2f} "
            f"| {statistics.mean(c['rule']['mean'] for c in calls):.2f} "
            f"| {ci_text(llm_minus_rule(calls, 'mean'))} | {rates[0]} | {rates[1]} "
            f"| {ci_text(llm_minus_rule(calls, 'top_rate'), 3)} "
            f"| {ci_text(llm_minus_rule(calls, 'best'))} |"
        )
    return "\n".join(lines)


def llm_free_counterpart(method: str) -> str:
    """The bench method that runs `method`'s loop without its LLM, with the same proxy."""
    if method.startswith("rznas"):
        return method.replace("rznas", "rznas-nollm", 1)
    if "+" in method:  # a pre-screened collm method
        return "collm-nollm+" + method.partition("+")[2]
    return "collm-nollm"


def paired_table(runs: list[RunResult]) -> str:
    """Each LLM method against the same loop without the LLM, seed by seed (same seeds only)."""
    lines = [
        "| dataset | method | without the LLM | seeds | optimum found (with / without) "
        "| valid: with − without (± 95% CI) | test: with − without (± 95% CI) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, dataset, group in _groups(runs):
        reference = llm_free_counterpart(method)
        if method == reference or not any(r.extra.get("llm", {}).get("calls") for r in group):
            continue
        base = {r.seed: r for r in runs if r.method == reference and r.dataset == dataset}
        pairs = [(r, base[r.seed]) for r in group if r.seed in base]
        if not pairs:
            continue
        known = all(a.optimum_found is not None and b.optimum_found is not None for a, b in pairs)
        found = (f"{sum(bool(a.optimum_found) for a, _ in pairs)} / "
                 f"{sum(bool(b.optimum_found) for _, b in pairs)}" if known else "—")
        lines.append(
            f"| {dataset} | {method} | {reference} | {len(pairs)} | {found} "
            f"| {ci_text([a.valid_acc - b.valid_acc for a, b in pairs])} "
            f"| {ci_text([a.test_acc - b.test_acc for a, b in pairs])} |"
        )
    return "\n".join(lines)


def source_table(runs: list[RunResult]) -> str:
    """Share of the evaluated architectures each candidate source earned."""
    groups = [(m, d, g) for m, d, g in _groups(runs) if any(r.extra.get("sources") for r in g)]
    names = list(dict.fromkeys(s for _, _, g in groups for r in g for s in r.extra["sources"]))
    lines = ["| dataset | method | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for method, dataset, group in groups:
        total = sum(sum(r.extra["sources"].values()) for r in group)
        shares = [sum(r.extra["sources"].get(n, 0) for r in group) / total for n in names]
        lines.append(f"| {dataset} | {method} | " + " | ".join(f"{s:.0%}" for s in shares) + " |")
    return "\n".join(lines)


def write_tables(
    runs: list[RunResult], out: Path, command: str, note: str = "", inputs: Sequence[Path] = ()
) -> dict[str, Path]:
    """The markdown tables (and a plot) over `runs`, citing the bench files they came from."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    objective = runs[0].objective if runs else "valid"
    space = runs[0].space if runs else ""
    space = SPACE_TITLES.get(space, space)
    text = [
        f"# {space} at {runs[0].budget if runs else ''} evaluations, objective = "
        f"{objective} accuracy\n",
        f"Command: `{command}`\n",
        f"Provenance: {summary_line(provenance(command))}\n",
        *([inputs_markdown(inputs)] if inputs else []),
        f"Date: {time.strftime('%Y-%m-%d')}. Test and valid accuracy (mean±std over seeds) of the "
        "cell each run chose; optimum found = runs whose chosen cell has the best "
        f"{objective} accuracy in the space; best-so-far = mean best {objective} accuracy after "
        "that many distinct evaluations.\n",
    ]
    if any(r.predicted for r in runs):
        text.append(PREDICTED_NOTE + "\n")
    if note:
        text.append(note + "\n")
    text += ["## Comparison\n", comparison_table(runs), ""]
    counterfactual = counterfactual_table(runs)
    if counterfactual.count("\n") > 1:
        text += [
            "## The LLM's measured contribution (same-state counterfactual)\n",
            "At every LLM call, the candidates the LLM's answer produces and the candidates the "
            "LLM-free rule produces from the same archive are both scored by the evaluator (not "
            "evaluated by the search). Top-1% = share of candidates in the space's best 1 % "
            "(known for a table only). CI over calls (calls of one run are not independent, so "
            "it is optimistic).\n",
            counterfactual, "",
        ]
    paired = paired_table(runs)
    if paired.count("\n") > 1:
        text += [
            "## Each LLM mode against the same loop without its LLM (paired by seed)\n", paired, "",
        ]
    sources = source_table(runs)
    if sources.count("\n") > 1:
        text += ["## Share of evaluations by candidate source\n", sources, ""]
    out.write_text("\n".join(text))
    plot_curves(runs, out.with_suffix(".png"))
    return {"table": out, "plot": out.with_suffix(".png")}

