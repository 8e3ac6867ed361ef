"""Real processes: a SIGKILLed `collm-nas search` resumed from its SQLite checkpoint, and the
graph served by `langgraph dev` driven through the langgraph-sdk client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from collm_nas.graph.builder import compile_graph
from collm_nas.graph.run import load_run_settings, open_checkpointer
from collm_nas.spaces import get_space
from llm_server import free_port, log_tail, stop_server, wait_until_answers

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def _script(path: Path, batches: int, size: int, seed: int = 0) -> Path:
    space = get_space("nb201")
    rng = np.random.default_rng(seed)
    replies = [json.dumps({"architectures": [space.sample(rng).model_dump() for _ in range(size)]})
               for _ in range(batches)]
    path.write_text(json.dumps(replies))
    return path


def _evaluated_keys(events: Path) -> list[str]:
    keys = []
    for line in events.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event["event"] == "candidate" and event["verdict"] == "evaluated":
            keys.append(event["key"])
    return keys


def _archive(run_dir: Path) -> list[dict]:
    thread_id, _ = load_run_settings(run_dir)
    graph = compile_graph(open_checkpointer(run_dir))
    return graph.get_state({"configurable": {"thread_id": thread_id}}).values["archive"]


def test_sigkilled_search_resumes_without_losing_or_repeating(tmp_path):
    script = _script(tmp_path / "replies.json", batches=30, size=10)
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "collm_nas.cli", "search", "--mode", "paper", "--llm", "fake",
               "--fake-script", str(script), "--budget", "100", "--iterations", "30", "--candidates", "10", "--run-dir", str(run_dir)]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    events = run_dir / "events.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if events.exists() and len(_evaluated_keys(events)) >= 25:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the search ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    before = set(_evaluated_keys(events))
    assert 25 <= len(before) < 100

    thread_id, _ = load_run_settings(run_dir)
    resumed = subprocess.run(
        [sys.executable, "-m", "collm_nas.cli", "search", "--resume", thread_id, "--run-dir", str(run_dir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    keys = [record["key"] for record in _archive(run_dir)]
    assert len(keys) == len(set(keys)) == 100
    assert before <= set(keys)
    logged = _evaluated_keys(events)
    assert len(logged) == len(set(logged)) == 100 and set(logged) == set(keys)  # each logged once
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["evaluations"] == 100 and summary["stop_reason"].startswith("evaluation budget")
    assert (run_dir / "summary.md").exists() and (run_dir / "explored.png").exists()


def test_kill_resume_harness_finds_nothing_lost_redone_or_logged_twice(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import kill_resume

    # Before the first checkpoint (where a second process must be refused) and mid-round.
    results = kill_resume.run(["collm-nollm", "paper"], [kill_resume.BEFORE_FIRST_CHECKPOINT, 27], tmp_path)
    totals = kill_resume.totals(results)
    assert totals["second_process_refused"] == [True, True], results
    assert all(r["reached"] for r in results) and results[0]["checkpoints_at_kill"] == 0
    assert {k: totals[k] for k in ("lost", "redone", "duplicate_events", "events_not_matching_archive",
                                   "not_resumed")} == dict.fromkeys(
        ("lost", "redone", "duplicate_events", "events_not_matching_archive", "not_resumed"), 0), results


def _start_langgraph_dev(log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start `langgraph dev` on a free loopback port and wait until it answers `/ok`.

    Returns the process and its URL, or the process that exited before answering (url "")."""
    port = free_port()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "langgraph"), "dev", "--no-reload", "--no-browser",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "LANGGRAPH_NO_BROWSER": "1"},
        )
    url = f"http://127.0.0.1:{port}"
    return process, url if wait_until_answers(process, f"{url}/ok", 120) else ""


@pytest.fixture
def langgraph_server(tmp_path):
    # The server once died of SIGSEGV at start-up, before loading our graph, with an empty log; a
    # second start is allowed for a death by signal only, never for a clean failure or a timeout.
    log = tmp_path / "langgraph.log"
    process, url = _start_langgraph_dev(log)
    if not url and (process.returncode or 0) < 0:
        log = tmp_path / "langgraph-second-start.log"
        process, url = _start_langgraph_dev(log)
    try:
        assert url, f"langgraph dev did not answer (exit code {process.returncode}): {log_tail(log)}"
        yield url
    finally:
        stop_server(process)


def test_langgraph_dev_serves_the_graph(langgraph_server, tmp_path):
    from langgraph_sdk import get_sync_client

    replies = json.loads(_script(tmp_path / "r.json", batches=2, size=5, seed=3).read_text())
    fake = {"backend": "fake", "script": replies}
    context = {"space": "nb201", "dataset": "cifar10", "mode": "paper", "iterations": 2, "budget": 20, "candidates": 5,
               "navigator_llm": {"backend": "fake", "script": ["SUMMARY: go wide"]},
               "generator_llm": fake}
    client = get_sync_client(url=langgraph_server)
    thread = client.threads.create()
    state = client.runs.wait(thread["thread_id"], "collm_nas", input={}, context=context)
    assert state["stop_reason"].startswith("iteration limit")
    assert len(state["archive"]) == 10
    assert {r["source"] for r in state["archive"]} == {"generator"}
