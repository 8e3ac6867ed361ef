"""`run_search`: run (or resume) one search, streaming events into a run folder.

The run folder holds `config.json` (resolved settings, no secrets, and the provenance of the
process that started the run and of each that resumed it), `events.jsonl`,
`strategies/` (each strategy as markdown), `summary.json` (rewritten after every round), the
SQLite checkpoint `checkpoints.sqlite` that `resume=True` continues from, and `run.lock`.

One process at a time: the folder is locked (`flock`, released by the OS even on kill -9).
Events are appended only for work a saved checkpoint holds, each tagged with that checkpoint's
id; a resume first appends the events of checkpoints saved after the last one logged, so a
killed and resumed run logs every step exactly once.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
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
LOCK_FILE = "run.lock"


class RunIdError(CollmNasError, ValueError):
    """A run id that cannot be started (it exists) or resumed (it does not)."""


class RunFolderError(CollmNasError, OSError):
    """A run folder that cannot be used: not a folder, not writable, or in use."""


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
    lessons: list[str] = field(default_factory=list)  # rznas: the reflection's latest lessons

    def summary(self) -> dict[str, Any]:
        best = self.best or {}
        keys = ("arch", "key", "valid_acc", "test_acc", "proxy", "flops_m", "params_m", "latency_ms", "predicted")
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
        "calls_without_usage": sum(not c.get("usage_reported", True) for c in calls),
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
        counterfactuals=list(values.get("counterfactuals", [])), lessons=list(values.get("lessons", [])),
    )


class RunFolder:
    """The run folder of one run, locked for this process, and its files (a context manager:
    claim a folder before anything else prints, then pass it to `run_search`)."""

    def __init__(self, path: Path, thread_id: str):
        self.path = Path(path)
        try:
            (self.path / "strategies").mkdir(parents=True, exist_ok=True)
            self._lock = self._acquire_lock()
        except OSError as err:
            if isinstance(err, CollmNasError):
                raise
            raise RunFolderError(
                f"cannot use {self.path} as the run folder ({err.strerror or err}); "
                "choose a writable folder with --run-dir"
            ) from None
        try:
            self._check_owner(thread_id)
            self._events = os.open(self.path / "events.jsonl", os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            self._drop_partial_line()
        except BaseException:
            os.close(self._lock)  # a folder refused is not held
            raise

    def _acquire_lock(self) -> int:
        """An exclusive lock on `run.lock` holding our pid; the OS drops it when we exit."""
        lock = os.open(self.path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(lock, 32).decode(errors="replace").strip() or "unknown"
            os.close(lock)
            raise RunFolderError(
                f"run folder {self.path} is in use by process {holder}; wait for it to stop "
                "(or stop it) before resuming, or choose another --run-dir"
            ) from None
        os.ftruncate(lock, 0)
        os.pwrite(lock, f"{os.getpid()}\n".encode(), 0)
        return lock

    def _check_owner(self, thread_id: str) -> None:
        owner = self.recorded_thread_id()
        if owner is not None and owner != thread_id:
            raise RunIdError(
                f"{self.path} holds run {owner!r}, not {thread_id!r}; resume it with "
                f"--resume {owner}, or choose another --run-dir"
            )

    def recorded_thread_id(self) -> str | None:
        """The run id in config.json, if a run was started in this folder."""
        config = self.path / "config.json"
        return json.loads(config.read_text())["thread_id"] if config.exists() else None

    def _drop_partial_line(self) -> None:
        """A line cut off by a crash would corrupt the next one: keep whole lines only."""
        size = os.fstat(self._events).st_size
        if size and os.pread(self._events, 1, size - 1) != b"\n":
            with open(self.path / "events.jsonl", "rb") as fh:
                whole = fh.read().rpartition(b"\n")[0]
            os.ftruncate(self._events, len(whole) + 1 if whole else 0)

    def append_events(self, events: list[tuple[str, dict[str, Any]]], **tags: Any) -> None:
        """Append events in one write (a kill leaves all of them or none)."""
        now = round(time.time(), 3)
        lines = [json.dumps({"event": kind, "time": now, **tags, **data}, default=str) + "\n"
                 for kind, data in events]
        if lines:
            os.write(self._events, "".join(lines).encode())

    def logged_through(self) -> tuple[str | None, bool]:
        """(the checkpoint id of the last logged step, whether any step's events were logged
        without one: a folder written before events were tagged)."""
        last, untagged = None, False
        with open(self.path / "events.jsonl") as fh:
            for line in fh:
                event = json.loads(line)
                if "checkpoint" in event:
                    last = event["checkpoint"]
                elif event["event"] not in ("start", "resume", "restart", "stop"):
                    untagged = True
        return last, untagged

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
        os.close(self._events)
        os.close(self._lock)  # releases the lock

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def events_of_update(node: str, update: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The run events carried by one node's state update."""
    events: list[tuple[str, dict[str, Any]]] = []
    if not isinstance(update, dict):
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
    if node == "reflect" and update.get("lessons"):
        iteration = next((c.get("iteration") for c in update.get("llm_calls", [])), None)
        events.append(("lesson", {"iteration": iteration, "text": update["lessons"][-1]}))
    if node == "record_round":
        events.append(("round", {
            "iteration": update["iteration"], "best": (update.get("best") or {}).get("key"),
            "stop_reason": update.get("stop_reason"),
        }))
    return events


def open_checkpointer(run_dir: Path) -> SqliteSaver:
    try:
        connection = sqlite3.connect(str(run_dir / CHECKPOINT_FILE), check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as err:
        raise RunFolderError(f"cannot open the checkpoint in {run_dir} ({err}); "
                             "choose a writable folder with --run-dir") from None
    return SqliteSaver(connection)


def checkpoint_id(config: dict[str, Any]) -> str:
    return config["configurable"]["checkpoint_id"]


def unlogged_steps(graph, config, logged: str | None) -> list[tuple[str, list[tuple[str, Any]]]]:
    """(checkpoint id, the node updates that made it) for each checkpoint saved after `logged`,
    oldest first: a step's updates are the results of its parent checkpoint's tasks."""
    steps = []
    child = None
    for snapshot in graph.get_state_history(config):  # newest first
        if child is not None:
            steps.append((child, [(task.name, task.result) for task in snapshot.tasks if task.result]))
        if checkpoint_id(snapshot.config) == logged:
            break
        child = checkpoint_id(snapshot.config)
    return steps[::-1]


class EventLog:
    """Turns node updates into run events, writing them (and calling `on_event`) only once a
    checkpoint that holds their work is saved."""

    def __init__(self, folder: RunFolder | None, on_event: Callable[[str, dict[str, Any]], None] | None):
        self.folder, self.on_event = folder, on_event
        self.pending: list[tuple[str, dict[str, Any]]] = []

    def add(self, node: str, update: Any) -> None:
        self.pending.extend(events_of_update(node, update))

    def saved(self, checkpoint: str, **tags: Any) -> bool:
        """The checkpoint `checkpoint` is saved: log what it holds; True if a round ended."""
        events, self.pending = self.pending, []
        if self.folder:
            self.folder.append_events(events, checkpoint=checkpoint, **tags)
        for kind, data in events:
            if kind == "strategy" and self.folder:
                self.folder.strategy(data["iteration"] or 0, data["text"])
            if self.on_event:
                self.on_event(kind, data)
        return any(kind == "round" for kind, _ in events)


def run_search(
    settings: SearchSettings,
    run_dir: str | Path | RunFolder | None = None,
    thread_id: str | None = None,
    resume: bool = False,
    checkpointer=None,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> SearchResult:
    """Run a search to its stop reason (or continue a stopped one with `resume=True`).

    With `run_dir`, events, strategies and summaries are written there and the checkpoint is
    SQLite in the same folder; otherwise the checkpoint is in memory. A run folder whose run
    was killed before its first checkpoint resumes by starting again with the same id. A
    claimed `RunFolder` stays open (its owner closes it); a path is claimed and released here.
    """
    thread_id = thread_id or uuid.uuid4().hex[:12]
    with ExitStack() as stack:
        if isinstance(run_dir, RunFolder):
            folder = run_dir
        else:
            folder = stack.enter_context(RunFolder(Path(run_dir), thread_id)) if run_dir else None
        if checkpointer is None and folder:
            checkpointer = open_checkpointer(folder.path)
            stack.callback(checkpointer.conn.close)  # also folds the write-ahead log into the file
        if checkpointer is None:
            checkpointer = InMemorySaver()
        return _run(settings, folder, thread_id, resume, checkpointer, EventLog(folder, on_event))


def _run(settings, folder: RunFolder | None, thread_id, resume, checkpointer, log: EventLog) -> SearchResult:
    config = {"configurable": {"thread_id": thread_id},
              "recursion_limit": settings.recursion_limit()}
    saved = checkpointer.get_tuple(config) is not None
    started_here = folder is not None and folder.recorded_thread_id() == thread_id
    if resume and not saved and not started_here:
        raise RunIdError(f"no checkpoint for run {thread_id!r} to resume")
    if not resume and (saved or started_here):
        raise RunIdError(f"run {thread_id!r} already exists; resume it or choose another id")
    started = time.perf_counter()
    previous = folder.previous_wall_seconds() if folder and resume else 0.0
    if folder:  # first, so that a run killed from here on can be resumed by its id
        folder.write_config(thread_id, settings, resume)
    graph = compile_graph(checkpointer)
    if folder:
        if saved:
            catch_up(graph, config, folder)
        folder.append_events([(("resume" if saved else "restart") if resume else "start",
                               {"thread_id": thread_id})])

    def summary(values: dict[str, Any]) -> SearchResult:
        wall = previous + time.perf_counter() - started
        return result_from_state(values, thread_id, wall, folder.path if folder else None)

    values = None
    for mode, chunk in graph.stream(
        None if saved else {}, config, context=settings, stream_mode=["updates", "checkpoints"],
        durability="sync",
    ):
        if mode == "updates":
            for node, update in chunk.items():
                log.add(node, update)
            continue
        values = chunk["values"]  # "checkpoints" comes once the step's checkpoint is saved
        if log.saved(checkpoint_id(chunk["config"])) and folder:
            folder.write_json("summary.json", summary(values).summary())
    result = summary(values if values is not None else graph.get_state(config).values)
    if folder:
        folder.write_json("summary.json", result.summary())
        folder.append_events([("stop", {"stop_reason": result.stop_reason})])
    return result


def catch_up(graph, config, folder: RunFolder) -> None:
    """Log the steps whose checkpoint was saved after the last logged one (a kill between the
    save and the log)."""
    logged, untagged = folder.logged_through()
    if logged is None and untagged:
        return  # a folder from before events were tagged: its steps cannot be matched
    log = EventLog(folder, None)
    for checkpoint, updates in unlogged_steps(graph, config, logged):
        for node, update in updates:
            log.add(node, update)
        log.saved(checkpoint, recovered=True)


def load_run_settings(run_dir: str | Path) -> tuple[str, SearchSettings]:
    """(thread id, settings) recorded in a run folder's config.json."""
    config = json.loads((Path(run_dir) / "config.json").read_text())
    return config["thread_id"], SearchSettings.model_validate(config["settings"])


__all__ = ["RunFolder", "SearchResult", "load_run_settings", "run_search"]
