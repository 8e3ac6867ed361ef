"""Live progress of a search on the terminal: round, evaluations / budget, best, verdicts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from collm_nas.spaces.evaluation import score
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class SearchProgress:
    """Context manager whose `update(kind, data)` takes the run's events."""

    def __init__(self, settings, console: Console):
        self.objective = settings.objective
        kind = settings.evaluator or ""  # a zero-cost evaluator's score is its proxy's
        self.label = kind.partition(":")[2] if kind.startswith("zero_cost:") else settings.objective
        self.verdicts: Counter[str] = Counter()
        self.best: float | None = None
        self.round = 0
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=False,
        )
        self.task = self.progress.add_task("starting", total=settings.budget)

    def __enter__(self) -> SearchProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, kind: str, data: dict[str, Any]) -> None:
        if kind == "candidate":
            self.verdicts[data["verdict"]] += 1
            if data["verdict"] == "evaluated":
                self.progress.advance(self.task)
                value = score(data, self.objective)
                self.best = value if self.best is None else max(self.best, value)
        elif kind == "round":
            self.round = data["iteration"]
        elif kind == "llm_call":
            self.verdicts["llm calls"] += 1
        best = f"{self.best:.2f}" if self.best is not None else "-"
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.verdicts.items()))
        self.progress.update(
            self.task, description=f"round {self.round} | best {self.label} {best} | {counts}"
        )
