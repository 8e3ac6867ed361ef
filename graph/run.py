"""`run_search`: run (or resume) one search, streaming events into a run folder.

The run folder holds `config.json` (resolved settings, no secrets, and the provenance of the
process that started the run and of each that resumed it), `events.jsonl`,
`strategies/` (each strategy as markdown), `summary.json` (rewritten after every round) and the
SQLite checkpoint `checkpoints.sqlite` that `resume=True` continues from.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collm_nas.errors import CollmNasError
from collm_nas.graph.builder import compile_graph
from collm_nas.graph.context import SearchSettings, uses_llm
from collm_nas.graph.provenance import provenance
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver

CHECKPOINT_FILE = "checkpoints.sqlite"


class RunIdError(CollmNasError, ValueError):
    """A run id that cannot be started (it exists) or resumed (it does not)."""


@dataclass
class SearchResult:
    thread_id: str
    best: dict[str, Any] | None
    archive: list[dict[str, Any]]
    evaluations: int
    iterations: int
    stop_reason: str | None
    llm: dict[str, float]
    wall_seconds: float
    run_dir: str | None = None
    rejections: dict[str, int] = field(default_factory=dict)
    counterfactuals: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        best = self.best or {}
        keys = ("arch", "key", "valid_acc", "test_acc", "flops_m", "params_m", "latency_ms", "predicted")
        return {
            "best": {k: best.get(k) for k in keys} if best else None,
            "evaluations": self.evaluations,
            "iterations": self.iterations,
            "stop_reason": self.stop_reason,
            "rejections": self.rejections,
            "llm": self.llm,
            "wall_seconds": round(self.wall_seconds, 2),
            "thread_id": self.thread_id,
        }


def llm_totals(calls: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "calls": len(calls),
        "prompt_tokens": sum(c["prompt_tokens"] for c in calls),
        "completion_tokens": sum(c["completion_tokens"] for c in calls),
        "seconds": round(sum(c["seconds"] for c in calls), 2),
    }


def result_from_state(values: dict[str, Any], thread_id: str, wall: float, run_dir) -> SearchResult:
    rejections: dict[str, int] = {}
    for result in values.get("round_results", []):
        if result["verdict"] != "evaluated":
            rejections[result["verdict"]] = rejections.get(result["verdict"], 0) + 1
    return SearchResult(
        thread_id=thread_id, best=values.get("best"), archive=list(values.get("archive", [])),
        evaluations=len(values.get("archive", [])), iterations=values.get("iteration", 0),
        stop_reason=values.get("stop_reason"), llm=llm_totals(values.get("llm_calls", [])),
        wall_seconds=wall, run_dir=str(run_dir) if run_dir else None, rejections=rejections,
        counterfactuals=list(values.get("counterfactuals", [])),
    )


class RunFolder:
    """Writes the run folder's files as the graph streams its updates."""

    def __init__(self, path: Path):
        self.path = Path(path)
        (self.path / "strategies").mkdir(parents=True, exist_ok=True)
        self._events = open(self.path / "events.jsonl", "a", buffering=1)

    def event(self, kind: str, **data: Any) -> dict[str, Any]:
        record = {"event": kind, "time": round(time.time(), 3), **data}
        self._events.write(json.dumps(record, default=str) + "\n")
        return record

    def strategy(self, iteration: int, text: str) -> None:
        (self.path / "strategies" / f"{iteration:03d}.md").write_text(text + "\n")

    def write_json(self, name: str, data: Any) -> None:
        tmp = self.path / f".{name}.tmp"
        tmp.write_text(json.dumps(data, indent=1, default=str))
        tmp.replace(self.path / name)

    def write_config(self, thread_id: str, settings: SearchSettings, resume: bool) -> None:
        """config.json: the settings and what made the run; a resume adds its own provenance."""
        llms = {"navigator": settings.navigator_llm, "generator": settings.generator_llm}
        made_by = provenance(llms=llms if uses_llm(settings.mode) else None)
        config = {"thread_id": thread_id, "settings": settings.model_dump(), "provenance": made_by}
        path = self.path / "config.json"
        if resume and path.exists():  # keep the start's provenance; the settings are today's
            earlier = json.loads(path.read_text())
            config["provenance"] = earlier.get("provenance")
            config["resumed"] = [*earlier.get("resumed", []), made_by]
        self.write_json("config.json", config)

    def previous_wall_seconds(self) -> float:
        summary = self.path / "summary.json"
        return json.loads(summary.read_text()).get("wall_seconds", 0.0) if summary.exists() else 0.0

    def close(self) -> None:
        self._events.close()


def events_of_update(node: str, update: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The run events carried by one node's state update."""
    events: list[tuple[str, dict[str, Any]]] = []
    if not update:
        return events
    if update.get("strategy") is not None and node in ("steer", "navigate", "reflect_and_generate"):
        iteration = next((c.get("iteration") for c in update.get("llm_calls", [])), None)
        events.append(("strategy", {"iteration": iteration, "text": update["strategy"]}))
    for call in update.get("llm_calls", []):
        events.append(("llm_call", call))
    for result in update.get("round_results", []):
        events.append(("candidate", result))
    for measured in update.get("counterfactuals", []):
        events.append(("counterfactual", measured))
    if node == "record_round":
        events.append(("round", {
            "iteration": update["iteration"], "best": (update.get("best") or {}).get("key"),
            "stop_reason": update.get("stop_reason"),
        }))
    return events


def open_checkpointer(run_dir: Path) -> SqliteSaver:
    connection = sqlite3.connect(str(run_dir / CHECKPOINT_FILE), check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    return SqliteSaver(connection)


def run_search(
    settings: SearchSettings,
    run_dir: str | Path | None = None,
    thread_id: str | None = None,
    resume: bool = False,
    checkpointer=None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> SearchResult:
    """Run a search to its stop reason (or continue a stopped one with `resume=True`).

    With `run_dir`, events, strategies and summaries are written there and the checkpoint is
    SQLite in the same folder; otherwise the checkpoint is in memory.
    """
    thread_id = thread_id or uuid.uuid4().hex[:12]
    folder = RunFolder(Path(run_dir)) if run_dir else None
    if checkpointer is None:
        checkpointer = open_checkpointer(folder.path) if folder else InMemorySaver()
    graph = compile_graph(checkpointer)
    config = {"configurable": {"thread_id": thread_id},
              "recursion_limit": settings.recursion_limit()}
    existing = graph.get_state(config)
    if resume and not existing.values:
        raise RunIdError(f"no checkpoint for run {thread_id!r} to resume")
    if not resume and existing.values:
        raise RunIdError(f"run {thread_id!r} already exists; resume it or choose another id")
    started = time.perf_counter()
    previous = folder.previous_wall_seconds() if folder and resume else 0.0
    if folder:
        folder.write_config(thread_id, settings, resume)
        folder.event("resume" if resume else "start", thread_id=thread_id)
    try:
        for chunk in graph.stream(
            None if resume else {}, config, context=settings, stream_mode="updates",
            durability="sync",
        ):
            for node, update in chunk.items():
                for kind, data in events_of_update(node, update or {}):
                    if folder:
                        folder.event(kind, **data)
                        if kind == "strategy":
                            folder.strategy(data["iteration"] or 0, data["text"])
                    if on_event:
                        on_event(kind, data)
                if node == "record_round" and folder:
                    values = graph.get_state(config).values
                    wall = previous + time.perf_counter() - started
                    folder.write_json("summary.json", result_from_state(
                        values, thread_id, wall, folder.path).summary())
        values = graph.get_state(config).values
        result = result_from_state(
            values, thread_id, previous + time.perf_counter() - started,
            folder.path if folder else None,
        )
        if folder:
            folder.write_json("summary.json", result.summary())
            folder.event("stop", stop_reason=result.stop_reason)
        return result
    finally:
        if folder:
            folder.close()


def load_run_settings(run_dir: str | Path) -> tuple[str, SearchSettings]:
    """(thread id, settings) recorded in a run folder's config.json."""
    config = json.loads((Path(run_dir) / "config.json").read_text())
    return config["thread_id"], SearchSettings.model_validate(config["settings"])


__all__ = ["SearchResult", "load_run_settings", "run_search"]
