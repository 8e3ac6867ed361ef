"""Run reports: summary.md and plots rebuilt from a run folder's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from collm_nas.agents.briefing import record_cost
from collm_nas.errors import CollmNasError
from collm_nas.graph.context import mode_of, uses_llm
from collm_nas.spaces import get_space
from collm_nas.spaces.evaluation import score
from collm_nas.tools.cost import CostLimit


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / "events.jsonl"
    events = []
    for line in path.read_text().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a line cut by a crash
    return events


class NotARunFolder(CollmNasError, ValueError):
    """`collm-nas report` pointed at a folder that is not a run folder."""


def write_report(run_dir: str | Path) -> list[Path]:
    """Write summary.md, best_so_far.png and explored.png; returns their paths."""
    run_dir = Path(run_dir)
    for name in ("config.json", "summary.json", "events.jsonl"):
        if not (run_dir / name).exists():
            raise NotARunFolder(f"{run_dir} is not a run folder: {name} is missing")
    config = json.loads((run_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    settings = config["settings"]
    events = read_events(run_dir)
    evaluated = [e for e in events if e["event"] == "candidate" and e["verdict"] == "evaluated"]
    measured = [e for e in events if e["event"] == "counterfactual"]
    # A resumed run may have logged a record twice (before the kill and after); keep one per key.
    unique = list({e["key"]: e for e in sorted(evaluated, key=lambda e: e["evaluation"])}.values())
    paths = [run_dir / "summary.md", run_dir / "best_so_far.png", run_dir / "explored.png"]
    lessons = [e for e in events if e["event"] == "lesson"]
    paths[0].write_text(summary_markdown(settings, summary) + sources_markdown(unique, measured)
                        + lessons_markdown(lessons))
    _plot_best_so_far(unique, settings["objective"], paths[1])
    _plot_explored(unique, settings, paths[2])
    return paths


def sources_markdown(evaluated: list[dict[str, Any]], measured: list[dict[str, Any]]) -> str:
    """Where the evaluated architectures came from, and the LLM's answers against the rule."""
    counts: dict[str, int] = {}
    for event in evaluated:
        counts[event.get("source", "?")] = counts.get(event.get("source", "?"), 0) + 1
    lines = ["", "## Sources", "", ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"]
    pairs = [m for m in measured if m["llm"]["n"] and m["rule"]["n"]]
    if pairs:
        llm = np.mean([m["llm"]["mean"] for m in pairs])
        rule = np.mean([m["rule"]["mean"] for m in pairs])
        lines += [
            "", "## The LLM against the rule (same states, scored by the evaluator)", "",
            f"{len(pairs)} calls: mean score of the LLM's candidates {llm:.2f}, of the rule's "
            f"{rule:.2f} (difference {llm - rule:+.2f}).",
        ]
    return "\n".join(lines) + "\n"


def lessons_markdown(lessons: list[dict[str, Any]]) -> str:
    """The rznas reflection's lessons, in the order they were written."""
    if not lessons:
        return ""
    lines = ["", "## Reflection lessons", ""]
    lines += [f"- round {e.get('iteration')}: {e['text']}" for e in lessons]
    return "\n".join(lines) + "\n"


def summary_markdown(settings: dict[str, Any], summary: dict[str, Any]) -> str:
    best = summary.get("best") or {}
    label = " (predicted)" if best.get("predicted") else ""
    llm = summary["llm"]
    limit = (
        CostLimit(settings["cost_kind"], settings["max_cost"]).describe()
        if settings.get("cost_kind") else "none"
    )
    mode = mode_of(settings)
    roles = {"collm": "statistics-steered Navigator", "paper": "Navigator + Generator",
             "sillm": "single LLM", "rznas": "LLM mutation and reflection"}.get(mode)
    lines = [
        f"# Search {summary['thread_id']}",
        "",
        f"- space / dataset / objective: {settings['space']} / {settings['dataset']} / {settings['objective']}",
        f"- LLMs ({roles}): navigator {settings['navigator_llm']['backend']}:{settings['navigator_llm']['model']}, "
        f"generator {settings['generator_llm']['backend']}:{settings['generator_llm']['model']}"
        if uses_llm(mode) else "- LLMs: none (the code sources alone)",
        f"- memory: navigator {settings['navigator_memory']}, generator {settings['generator_memory']}",
        f"- cost limit: {limit}; budget {settings['budget']}; iteration limit {settings['iterations']}",
        f"- stop reason: {summary['stop_reason']}",
        f"- evaluations: {summary['evaluations']}; rounds: {summary['iterations']}; rejected: "
        + (", ".join(f"{k} {v}" for k, v in sorted(summary.get("rejections", {}).items())) or "none"),
        f"- LLM: {llm['calls']} calls, {llm['prompt_tokens']} prompt + {llm['completion_tokens']} "
        f"completion tokens, {llm['seconds']:.1f} s"
        + (f" (the server reported no token counts for {llm['calls_without_usage']} calls)"
           if llm.get("calls_without_usage") else ""),
        f"- wall time: {summary['wall_seconds']:.1f} s",
        "",
        "## Best architecture",
        "",
    ]
    if best:
        cost = record_cost(best)
        lines += [
            f"`{best['key']}`",
            "",
            f"valid {best['valid_acc']:.2f}{label}, test {best['test_acc']:.2f}{label}; {cost}",
        ]
        if best.get("proxy") is not None:
            lines += ["", f"Chosen by its {settings['evaluator'].partition(':')[2]} score "
                      f"{best['proxy']:.3f}; the search never saw its accuracies."]
    else:
        lines.append("none (nothing was evaluated)")
    return "\n".join(lines) + "\n"


def _plot_best_so_far(records: list[dict[str, Any]], objective: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = [score(r, objective) for r in records]
    fig, ax = plt.subplots(figsize=(6, 4))
    if scores:
        ax.plot(range(1, len(scores) + 1), np.maximum.accumulate(scores), label="best so far")
        ax.scatter(range(1, len(scores) + 1), scores, s=8, alpha=0.5, label="evaluated")
        ax.legend()
    ax.set_xlabel("evaluations")
    ax.set_ylabel(f"{objective} accuracy (%)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_explored(records: list[dict[str, Any]], settings: dict[str, Any], path: Path) -> None:
    """t-SNE of the explored architectures' one-hot encodings, coloured by accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    fig, ax = plt.subplots(figsize=(6, 5))
    if len(records) >= 5:
        space = get_space(settings["space"])
        codes = np.stack([space.encode(space.parse(r["arch"])) for r in records])
        points = TSNE(
            n_components=2, perplexity=min(30, len(records) - 1), random_state=0, init="random"
        ).fit_transform(codes)
        scores = [score(r, settings["objective"]) for r in records]
        shown = ax.scatter(points[:, 0], points[:, 1], c=scores, cmap="viridis", s=18)
        fig.colorbar(shown, ax=ax, label=f"{settings['objective']} accuracy (%)")
    ax.set_title("explored architectures (t-SNE of encodings)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
