"""The run folder: events only for checkpointed work, resume that repeats nothing, one process
per folder, checkpoints linear in the evaluations, and bad folders or data as one clear line."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import collm_nas.cli as cli
import pytest
from collm_nas.graph.builder import compile_graph
from collm_nas.graph.context import SearchSettings
from collm_nas.graph.run import RunFolder, RunFolderError, RunIdError, open_checkpointer, run_search
from collm_nas.spaces import get_space
from collm_nas.tools.data import DATA_ENV, DataFileError, absolute_data_env, find_data_file
from collm_nas.tools.evaluators.benchmark import NB201Benchmark, read_nb201_table
from langgraph.checkpoint.sqlite import SqliteSaver
from typer.testing import CliRunner

SPACE = get_space("nb201")


def settings(budget: int = 30, **changes) -> SearchSettings:
    return SearchSettings(mode="collm-nollm", budget=budget, iterations=budget, **changes)


class Killed(Exception):
    """Stands for a kill -9 at a checkpoint save."""


class DyingSaver(SqliteSaver):
    """A SQLite saver whose process 'dies' instead of saving its `die_at`-th checkpoint."""

    def __init__(self, run_dir: Path, die_at: int):
        run_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(open_checkpointer(run_dir).conn)
        self.puts, self.die_at = 0, die_at

    def put(self, *args, **kwargs):
        self.puts += 1
        if self.puts == self.die_at:
            raise Killed(f"killed before checkpoint {self.puts}")
        return super().put(*args, **kwargs)


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def evaluated(run_dir: Path) -> list[str]:
    return [e["key"] for e in events(run_dir) if e["event"] == "candidate" and e["verdict"] == "evaluated"]


def checkpointed(run_dir: Path, thread_id: str) -> tuple[set[str], set[str]]:
    """(keys in the state's archive, keys saved as the latest checkpoint's pending writes)."""
    saver = open_checkpointer(run_dir)
    config = {"configurable": {"thread_id": thread_id}}
    archive = {r["key"] for r in compile_graph(saver).get_state(config).values.get("archive", [])}
    latest = saver.get_tuple(config)
    pending = {r["key"] for _, channel, value in (latest.pending_writes or []) if channel == "archive"
               for r in value}
    saver.conn.close()
    return archive, pending


@pytest.fixture
def evaluations(monkeypatch) -> list[str]:
    """Every key the NB201 evaluator is called with, in order."""
    calls: list[str] = []
    original = NB201Benchmark.evaluate

    def counted(self, arch):
        calls.append(SPACE.key(arch))
        return original(self, arch)

    monkeypatch.setattr(NB201Benchmark, "evaluate", counted)
    return calls


@pytest.mark.parametrize("die_at", [7, 10, 13])  # before the screening, evaluation, round checkpoints
def test_a_killed_run_logged_only_checkpointed_work_and_its_resume_repeats_nothing(tmp_path, evaluations, die_at):
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        run_search(settings(), run_dir=run_dir, thread_id="k", checkpointer=DyingSaver(run_dir, die_at))
    archive, pending = checkpointed(run_dir, "k")
    held, before = archive | pending, len(evaluations)
    assert set(evaluated(run_dir)) <= held  # nothing logged beyond what the checkpoint holds
    assert len(evaluated(run_dir)) % 10 == 0  # a step's events are logged whole or not at all

    result = run_search(settings(), run_dir=run_dir, thread_id="k", resume=True)
    keys = evaluated(run_dir)
    assert len(keys) == len(set(keys)) == result.evaluations == 30
    assert set(keys) == {r["key"] for r in result.archive}
    assert not held & set(evaluations[before:])  # the checkpoint's evaluations never ran again


def test_a_kill_between_checkpoint_and_log_is_caught_up_on_resume(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    original = RunFolder.append_events

    def dies_on_first_evaluations(self, batch, **tags):
        if any(kind == "candidate" and data["verdict"] == "evaluated" for kind, data in batch):
            raise Killed("killed after the checkpoint was saved, before its events were logged")
        original(self, batch, **tags)

    monkeypatch.setattr(RunFolder, "append_events", dies_on_first_evaluations)
    with pytest.raises(Killed):
        run_search(settings(), run_dir=run_dir, thread_id="c")
    assert evaluated(run_dir) == []
    monkeypatch.setattr(RunFolder, "append_events", original)

    run_search(settings(), run_dir=run_dir, thread_id="c", resume=True)
    keys = evaluated(run_dir)
    assert len(keys) == len(set(keys)) == 30
    recovered = [e for e in events(run_dir) if e.get("recovered")]
    assert [e["verdict"] for e in recovered] == ["evaluated"] * 10  # round 1, logged once, late
    assert [e["event"] for e in events(run_dir)].count("round") == 3


def test_a_run_killed_before_its_first_checkpoint_starts_again_with_its_id(tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(Killed):
        run_search(settings(), run_dir=run_dir, thread_id="early", checkpointer=DyingSaver(run_dir, 1))
    result = run_search(settings(), run_dir=run_dir, thread_id="early", resume=True)
    assert result.evaluations == 30 and result.thread_id == "early"
    assert [e["event"] for e in events(run_dir)][:2] == ["start", "restart"]


def test_a_second_claim_of_a_run_folder_names_the_holder(tmp_path):
    with RunFolder(tmp_path / "run", "a"):
        with pytest.raises(RunFolderError, match=f"in use by process {os.getpid()}"):
            RunFolder(tmp_path / "run", "a")
    RunFolder(tmp_path / "run", "a").close()  # free again once the holder let go


def test_a_folder_holding_another_run_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_search(settings(budget=5), run_dir=run_dir, thread_id="first")
    with pytest.raises(RunIdError, match="holds run 'first'"):
        run_search(settings(budget=5), run_dir=run_dir, thread_id="second")
    RunFolder(run_dir, "first").close()  # the refusal did not keep the folder locked
    result = CliRunner().invoke(cli.app, ["search", "--resume", "second", "--run-dir", str(run_dir)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        f"error: {run_dir} holds run 'first', not 'second'; pass --resume first, or the folder "
        "of run 'second' with --run-dir"]


def _one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


def test_a_run_dir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    line = _one_line_error(["search", "--llm", "none", "--budget", "3", "--run-dir", str(tmp_path / "file")])
    assert line.startswith(f"error: cannot use {tmp_path / 'file'} as the run folder")


def test_a_run_dir_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)  # as a read-only folder does (root may write anywhere)
    line = _one_line_error(["search", "--llm", "none", "--budget", "3", "--run-dir", str(tmp_path / "ro")])
    assert "as the run folder (Permission denied); choose a writable folder with --run-dir" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_dir_is_one_line(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        line = _one_line_error(["search", "--llm", "none", "--budget", "3", "--run-dir", str(folder)])
    finally:
        folder.chmod(0o700)
    assert "as the run folder" in line


def _checkpoint_bytes(run_dir: Path) -> int:
    return sum(p.stat().st_size for p in run_dir.glob("checkpoints.sqlite*"))


def test_checkpoints_grow_linearly_with_the_evaluations(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    run_search(settings(budget=150), run_dir=small)
    run_search(settings(budget=600), run_dir=large)
    ratio = _checkpoint_bytes(large) / _checkpoint_bytes(small)
    assert ratio < 5.5  # 4x the evaluations: linear ~4x, a copy of the archive per step ~16x
    assert _checkpoint_bytes(large) < 600 * 10_000  # the bar: <= 10 MB per 1,000 evaluations
    with sqlite3.connect(large / "checkpoints.sqlite") as connection:
        largest = connection.execute("SELECT MAX(LENGTH(checkpoint)) FROM checkpoints").fetchone()[0]
    assert largest < 400_000  # no checkpoint holds the whole archive yet (snapshot every 100 updates)


def test_a_relative_data_path_is_made_absolute_for_later_folders_and_children(tmp_path, monkeypatch, data_dir):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, os.path.relpath(data_dir, tmp_path))
    absolute_data_env()
    monkeypatch.chdir("/")
    assert Path(os.environ[DATA_ENV]).is_absolute()
    assert find_data_file("nb201.csv") == data_dir.absolute() / "nb201.csv"


def _damaged_table(tmp_path: Path, data_dir: Path, row: int, change) -> Path:
    lines = (data_dir / "nb201.csv").read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[row].split(",")
    change(header, cells)
    lines[row] = ",".join(cells)
    path = tmp_path / "nb201.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_accuracy_outside_0_to_100_is_rejected_at_load(tmp_path, data_dir):
    def million(header, cells):
        cells[header.index("cifar10_valid_acc")] = "1000000"

    path = _damaged_table(tmp_path, data_dir, 7, million)
    with pytest.raises(DataFileError, match="line 8: an accuracy outside 0-100 \\(1e\\+06\\)"):
        read_nb201_table(str(path))


def test_a_cell_missing_from_the_table_is_named_at_load(tmp_path, data_dir):
    def renamed(header, cells):
        cells[header.index("arch_str")] = "|not_an_op~0|+|none~0|none~1|+|none~0|none~1|none~2|"

    path = _damaged_table(tmp_path, data_dir, 2, renamed)
    with pytest.raises(DataFileError, match="1 rows are no NAS-Bench-201 cell \\(e.g. '\\|not_an_op~0"):
        read_nb201_table(str(path))


def test_a_limit_that_excludes_the_space_is_a_warning(tmp_path):
    tight = cli.limit_warning(settings(cost_kind="params", max_cost=0.0001))
    assert tight.startswith("--max-params 0.0001 allows 0 of 100 random nb201 architectures")
    assert cli.limit_warning(settings(cost_kind="params", max_cost=1.0)) is None
    result = CliRunner().invoke(cli.app, ["search", "--llm", "none", "--budget", "2", "--iterations", "1",
                                          "--max-params", "0.0001", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0 and "warning: --max-params 0.0001 allows 0 of 100" in result.output

