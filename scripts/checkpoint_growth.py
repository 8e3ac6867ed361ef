"""Checkpoint size, peak memory and time per round of one LLM-free MobileNet search.

Runs `collm-nas search --space mobilenet --llm none --budget B --iterations 200 --max-flops 400`
as a subprocess, samples the run folder's checkpoint size as the evaluations grow, and writes
`results/checkpoint_growth_<label>.json` and `.md` with the command that produced them.

    python scripts/checkpoint_growth.py --budget 1000 --label after

To measure another checkout's code, put it first on PYTHONPATH (a folder holding `collm_nas/`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_SECONDS = 1.0


def checkpoint_bytes(run_dir: Path) -> int:
    """The SQLite checkpoint with its write-ahead log and shared-memory file."""
    return sum(p.stat().st_size for p in run_dir.glob("checkpoints.sqlite*") if p.is_file())


def evaluations_so_far(run_dir: Path) -> int:
    try:
        return json.loads((run_dir / "summary.json").read_text())["evaluations"]
    except (OSError, ValueError, KeyError):
        return 0


def round_seconds(events: Path) -> list[float]:
    """Seconds between consecutive `round` events (the first round counts from `start`)."""
    times = []
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event["event"] in ("start", "round"):
            times.append(event["time"])
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


def tenths(values: list[float]) -> list[float]:
    """The mean of each tenth of `values`, in order (flat when time per round is flat)."""
    size = max(1, len(values) // 10)
    return [round(statistics.mean(values[i:i + size]), 4) for i in range(0, len(values), size)][:10]


def measure(budget: int, run_dir: Path) -> dict:
    command = [sys.executable, "-m", "collm_nas.cli", "search", "--space", "mobilenet", "--llm", "none",
               "--budget", str(budget), "--iterations", "200", "--max-flops", "400", "--run-dir", str(run_dir)]
    samples = []
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while process.poll() is None:
        time.sleep(SAMPLE_SECONDS)
        if run_dir.exists():
            samples.append({"seconds": round(time.perf_counter() - started, 1),
                            "evaluations": evaluations_so_far(run_dir), "bytes": checkpoint_bytes(run_dir)})
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"the search failed (exit {process.returncode}): {process.stderr.read()[-2000:]}")
    rounds = round_seconds(run_dir / "events.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {
        "search_command": " ".join(command[3:]),
        "evaluations": summary["evaluations"],
        "rounds": summary["iterations"],
        "checkpoint_mb": round(checkpoint_bytes(run_dir) / 1e6, 3),
        "files": {p.name: p.stat().st_size for p in sorted(run_dir.glob("checkpoints.sqlite*"))},
        # ru_maxrss of the waited-for children: kilobytes on Linux; the search is the only child.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "wall_seconds": round(wall, 1),
        "round_seconds_by_tenth": tenths(rounds),
        "growth": samples,
    }


def write_results(result: dict, label: str) -> Path:
    out = ROOT / "results" / f"checkpoint_growth_{label}"
    result = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "label": label, **result}
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    growth = result["growth"]
    step = max(1, len(growth) // 10)
    lines = [
        f"# Checkpoint growth: {label}", "",
        f"Command: `python {result['command']}` (runs `collm-nas {result['search_command']}`)", "",
        f"- evaluations: {result['evaluations']} in {result['rounds']} rounds, {result['wall_seconds']} s",
        f"- checkpoint files at the end: {result['checkpoint_mb']} MB ({result['files']})",
        f"- peak RSS of the search process: {result['peak_rss_mb']} MB",
        f"- mean seconds per round, by tenth of the run: {result['round_seconds_by_tenth']}", "",
        "| seconds | evaluations | checkpoint MB |", "|---:|---:|---:|",
        *(f"| {s['seconds']} | {s['evaluations']} | {s['bytes'] / 1e6:.3f} |" for s in growth[::step] + growth[-1:]),
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return out.with_suffix(".md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--label", default="after", help="results/checkpoint_growth_<label>.{json,md}")
    args = parser.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory() as tmp:
        result = measure(args.budget, Path(tmp) / "run")
    print(write_results(result, args.label).read_text())


if __name__ == "__main__":
    main()
