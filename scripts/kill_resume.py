"""kill -9 a real `collm-nas search` at many points of a 100-evaluation NB201 run, resume it,
and count what was lost, re-done or logged twice.

    python scripts/kill_resume.py        # 13 points x 2 modes -> results/kill_resume.{json,md}
    python scripts/kill_resume.py --modes collm-nollm --points 1,45 --out /tmp/k

Each run is started through a small shim that records every call of the NB201 evaluator (one
line per finished evaluation, so re-done work is seen, not guessed), makes each lookup take
20 ms as a real evaluation takes time (so kills land mid-round), and, for the point "before
the first checkpoint", holds the first checkpoint save so that the kill lands there every time
(while it is held, a second process tries to resume the same run and must be refused).
`paper` mode uses the scripted fake LLM (`--llm fake`); the LLM-vs-rule measurement is off
(`COLLM_NAS_MEASURE_LLM=false`) so that every evaluator call is a search's.
Counted per point:
- lost: evaluations the checkpoint held at the kill that the finished run lacks;
- re-done: evaluations the checkpoint held at the kill that the resumed process ran again;
- unsaved re-run: evaluations that finished before the kill but were not yet saved (run again,
  by design; reported, not an error);
- duplicate events: `candidate` events with verdict `evaluated` logged twice for one key;
- events != archive: the logged evaluations differ from the final archive;
- resumed: the resume exited 0 with the budget spent.
Once per mode (at the point before the first checkpoint) a second `--resume` of the running
search must be refused with the holder's pid.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BUDGET = 100
BEFORE_FIRST_CHECKPOINT = 0  # the point "killed before the first checkpoint"
AFTER_LOGGED_ROUND = -30  # the point "30 evaluations logged: the next round is under way"
# Evaluator calls after which a run is killed: mid-round (rounds are 10) and at round ends.
CALL_POINTS = (1, 5, 13, 20, 27, 38, 45, 59, 71, 86, 99)
DEFAULT_POINTS = (BEFORE_FIRST_CHECKPOINT, AFTER_LOGGED_ROUND, *CALL_POINTS)

SHIM = '''
import os, sys, threading, time
from collm_nas.tools.evaluators.benchmark import NB201Benchmark
from langgraph.checkpoint.sqlite import SqliteSaver

calls = open(os.environ["KILL_RESUME_CALLS"], "a", buffering=1)
EVALUATION_SECONDS = 0.02
original_evaluate = NB201Benchmark.evaluate

def evaluate(self, arch):
    time.sleep(EVALUATION_SECONDS)  # as a real evaluator takes time: kills land mid-round
    metrics = original_evaluate(self, arch)
    calls.write(self.space.key(arch) + "\\n")
    return metrics

NB201Benchmark.evaluate = evaluate
if os.environ.get("KILL_RESUME_HOLD_FIRST_SAVE"):
    original_put, held = SqliteSaver.put, threading.Event()

    def put(self, *args, **kwargs):
        if not held.is_set():
            held.set()
            open(os.environ["KILL_RESUME_HOLD_FIRST_SAVE"], "w").close()
            time.sleep(30)
        return original_put(self, *args, **kwargs)

    SqliteSaver.put = put
from collm_nas.cli import app
sys.argv[0] = "collm-nas"
app()
'''


def fake_script(path: Path, batches: int, size: int, seed: int) -> Path:
    from collm_nas.spaces import get_space

    space = get_space("nb201")
    rng = np.random.default_rng(seed)
    replies = [json.dumps({"architectures": [space.sample(rng).model_dump() for _ in range(size)]})
               for _ in range(batches)]
    path.write_text(json.dumps(replies))
    return path


def search_command(mode: str, run_dir: Path, script: Path) -> list[str]:
    common = ["--budget", str(BUDGET), "--candidates", "10", "--run-dir", str(run_dir)]
    if mode == "paper":
        return ["search", "--mode", "paper", "--llm", "fake", "--fake-script", str(script),
                "--iterations", "40", *common]
    return ["search", "--mode", "collm-nollm", "--iterations", "40", *common]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def evaluated_events(run_dir: Path) -> list[str]:
    keys = []
    for line in lines(run_dir / "events.jsonl"):
        event = json.loads(line)
        if event["event"] == "candidate" and event["verdict"] == "evaluated":
            keys.append(event["key"])
    return keys


def held_by_checkpoint(run_dir: Path) -> set[str]:
    """Keys the SQLite checkpoint holds: the latest checkpoint's archive and the evaluations
    saved as its pending writes (what a resume will not run again)."""
    from collm_nas.graph.builder import compile_graph
    from collm_nas.graph.run import load_run_settings, open_checkpointer

    if not (run_dir / "checkpoints.sqlite").exists() or not (run_dir / "config.json").exists():
        return set()
    thread_id, _ = load_run_settings(run_dir)
    saver = open_checkpointer(run_dir)
    config = {"configurable": {"thread_id": thread_id}}
    latest = saver.get_tuple(config)
    if latest is None:
        return set()
    values = compile_graph(saver).get_state(config).values
    held = {record["key"] for record in values.get("archive", [])}
    held |= {record["key"] for _, channel, value in latest.pending_writes or [] if channel == "archive"
             for record in value}
    saver.conn.close()
    return held


def checkpoints_saved(run_dir: Path) -> int:
    path = run_dir / "checkpoints.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as connection:
        try:
            return connection.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
        except sqlite3.OperationalError:  # the table was never created
            return 0


def start(shim: Path, args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(shim), *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(process: subprocess.Popen, ready, timeout: float = 300) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if ready():
            return True
        time.sleep(0.002)
    return False


def one_point(mode: str, point: int, work: Path, shim: Path, script: Path, check_lock: bool) -> dict:
    run_dir = work / f"{mode}-{point}"
    calls_before, calls_after = work / f"{mode}-{point}.calls1", work / f"{mode}-{point}.calls2"
    hold = work / f"{mode}-{point}.held"
    env = {**os.environ, "COLLM_NAS_MEASURE_LLM": "false", "KILL_RESUME_CALLS": str(calls_before)}
    if point == BEFORE_FIRST_CHECKPOINT:
        env["KILL_RESUME_HOLD_FIRST_SAVE"] = str(hold)
        ready = hold.exists
    elif point == AFTER_LOGGED_ROUND:
        ready = lambda: len(evaluated_events(run_dir)) >= -point  # noqa: E731
    else:
        ready = lambda: len(lines(calls_before)) >= point  # noqa: E731
    process = start(shim, search_command(mode, run_dir, script), env, work)
    reached = wait_for(process, ready)
    refused = None
    if check_lock and reached:
        thread_id = json.loads((run_dir / "config.json").read_text())["thread_id"]
        second = subprocess.run([sys.executable, str(shim), "search", "--resume", thread_id, "--run-dir", str(run_dir)],
                                cwd=work, env={**env, "KILL_RESUME_HOLD_FIRST_SAVE": ""},
                                capture_output=True, text=True, timeout=300)
        message = second.stderr.strip()
        refused = {"exit": second.returncode, "message": message,
                   "ok": second.returncode == 2 and f"in use by process {process.pid}" in message
                   and len(message.splitlines()) == 1}
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    saved_at_kill = checkpoints_saved(run_dir)
    held = held_by_checkpoint(run_dir)
    logged = evaluated_events(run_dir)
    first_calls = lines(calls_before)
    thread_id = json.loads((run_dir / "config.json").read_text())["thread_id"]
    resumed = subprocess.run(
        [sys.executable, str(shim), "search", "--resume", thread_id, "--run-dir", str(run_dir)],
        cwd=work, env={**env, "KILL_RESUME_CALLS": str(calls_after), "KILL_RESUME_HOLD_FIRST_SAVE": ""},
        capture_output=True, text=True, timeout=600,
    )
    events = evaluated_events(run_dir)
    final = held_by_checkpoint(run_dir)
    second_calls = set(lines(calls_after))
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    return {
        "mode": mode, "point": point, "reached": reached,
        "checkpoints_at_kill": saved_at_kill, "held_at_kill": len(held), "logged_at_kill": len(logged),
        "calls_before_kill": len(first_calls),
        "lost": len((held | set(logged)) - final),
        "redone": len(second_calls & held),
        "unsaved_rerun": len(second_calls & (set(first_calls) - held)),
        "duplicate_events": len(events) - len(set(events)),
        "evaluated_events": len(events), "archive": len(final),
        "events_match_archive": set(events) == final,
        "resumed": resumed.returncode == 0 and summary.get("evaluations") == BUDGET,
        "resume_error": resumed.stderr.strip()[-500:] if resumed.returncode else "",
        "second_process": refused,
    }


def run(modes: list[str], points: list[int], work: Path) -> list[dict]:
    shim = work / "shim.py"
    shim.write_text(SHIM)
    script = fake_script(work / "replies.json", batches=40, size=10, seed=0)
    results = []
    for mode in modes:
        for point in points:
            result = one_point(mode, point, work, shim, script,
                               check_lock=point == BEFORE_FIRST_CHECKPOINT)
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


def totals(results: list[dict]) -> dict:
    return {
        "kills": len(results),
        "lost": sum(r["lost"] for r in results),
        "redone": sum(r["redone"] for r in results),
        "duplicate_events": sum(r["duplicate_events"] for r in results),
        "events_not_matching_archive": sum(not r["events_match_archive"] for r in results),
        "not_resumed": sum(not r["resumed"] for r in results),
        "unsaved_rerun": sum(r["unsaved_rerun"] for r in results),
        "second_process_refused": [r["second_process"]["ok"] for r in results if r["second_process"]],
    }


def point_name(point: int) -> str:
    if point == BEFORE_FIRST_CHECKPOINT:
        return "before the 1st checkpoint"
    if point == AFTER_LOGGED_ROUND:
        return f"{-point} evaluations logged (next round under way)"
    return f"after {point} evaluator calls"


def write(results: list[dict], out: Path, command: str) -> None:
    summary = totals(results)
    report = {"command": command, "totals": summary, "runs": results}
    out.with_suffix(".json").write_text(json.dumps(report, indent=1))
    rows = [f"| {r['mode']} | {point_name(r['point'])} "
            f"| {r['checkpoints_at_kill']} | {r['held_at_kill']} | {r['lost']} | {r['redone']} | {r['unsaved_rerun']} "
            f"| {r['duplicate_events']} | {r['evaluated_events']} | {'yes' if r['resumed'] else 'NO'} |"
            for r in results]
    out.with_suffix(".md").write_text("\n".join([
        "# kill -9 and resume", "", f"Command: `{command}`", "", f"Totals: {json.dumps(summary)}", "",
        "| mode | killed | checkpoints at kill | evaluations held | lost | re-done | unsaved re-run "
        "| duplicate events | evaluated events | resumed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|", *rows, ""]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="collm-nollm,paper")
    parser.add_argument("--points", default=",".join(map(str, DEFAULT_POINTS)),
                        help=f"{BEFORE_FIRST_CHECKPOINT}: before the first checkpoint; {AFTER_LOGGED_ROUND}: "
                             "after 30 logged evaluations; n > 0: after n evaluator calls")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "kill_resume")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = run(args.modes.split(","), [int(p) for p in args.points.split(",")], Path(tmp))
    command = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    write(results, args.out, command)
    print(json.dumps(totals(results)))


if __name__ == "__main__":
    main()
