"""The LLM reliability measurements of issue 24, written to results/reliability_llm.md.

1. The seeded fuzz corpus (tests/fuzz_replies.py) through the real generate and screen_candidates
   nodes on every backend path: crashes, accepted items the oracle calls malformed, timings.
2. The server-fault matrix through the CLI against a loopback stub (tests/openai_stub.py): each
   fault with each structured method, exit code, the error line, seconds; and a resume of each
   failed run once a working server is back on the same port.

Usage: COLLM_NAS_DATA=... python scripts/fuzz_llm_replies.py [--replies 1200] [--timeout 2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz_replies import PATHS, corpus, run_corpus  # noqa: E402
from llm_server import free_port  # noqa: E402
from openai_stub import run_search_cli, serve_in_subprocess  # noqa: E402

METHODS = ("json_schema", "function_calling", "json_mode")
CELL = {"edge_1_0": "nor_conv_3x3", "edge_2_0": "none", "edge_2_1": "skip_connect",
        "edge_3_0": "none", "edge_3_1": "avg_pool_3x3", "edge_3_2": "nor_conv_1x1"}
# (fault, stub mode, reply): closed port has no stub; prose and wrong JSON are well-formed
# completions whose content cannot be used.
FAULTS = (
    ("closed port", None, ""),
    ("HTTP 500", "http500", ""),
    ("hang", "hang", ""),
    ("200, not JSON", "non_json", ""),
    ("200, JSON, not a completion", "non_completion", ""),
    ("prose", "none", "I would try more convolutions."),
    ("wrong JSON", "none", json.dumps({"cells": [1, 2, 3]})),
)
STEERING = json.dumps({"summary": "ok", "prefer": {e: ["nor_conv_3x3"] for e in CELL}})


def fuzz_section(n: int) -> list[str]:
    replies = corpus(seed=0, n=n)
    lines = [f"## Fuzz: {n} malformed Generator replies (seed 0) through generate + screen_candidates",
             "", "| path | replies | crashes | items accepted | accepted but malformed "
             "| items rejected (illegal) | seconds |",
             "|---|---|---|---|---|---|---|"]
    for path in PATHS:
        result = run_corpus(replies, path)
        lines.append(f"| {path} | {result.replies + len(result.crashes)} | {len(result.crashes)} | "
                     f"{result.accepted} | {len(result.accepted_malformed)} | {result.rejected} "
                     f"| {result.seconds:.1f} |")
        print(lines[-1], flush=True)
        lines += [f"  - crash: {c}" for c in result.crashes[:5]]
        lines += [f"  - malformed accepted: {k}" for k in result.accepted_malformed[:5]]
    return lines


def fault_section(timeout: float, retries: int) -> list[str]:
    lines = [f"## Server faults through the CLI (--llm-timeout {timeout:g} --llm-retries {retries})", "",
             "`collm-nas search --llm openai --model stub --base-url http://127.0.0.1:PORT/v1 "
             f"--structured-method M --budget 6 --iterations 2 --candidates 3 --llm-timeout {timeout:g} "
             f"--llm-retries {retries} --run-dir D`, then, with a working stub on the same port, "
             "`collm-nas search --resume ID --run-dir D`.", "",
             "| fault | method | exit | seconds | lines of error output | error line | resumed exit |",
             "|---|---|---|---|---|---|---|"]
    for fault, mode, reply in FAULTS:
        for method in METHODS:
            row = _fault_run(mode, reply, method, timeout, retries)
            lines.append(f"| {fault} | {method} | {row['exit']} | {row['seconds']:.1f} | "
                         f"{row['error_lines']} | {row['error'][:160]} | {row['resumed']} |")
            print(lines[-1], flush=True)
    return lines


def _fault_run(mode, reply, method, timeout, retries) -> dict:
    port = free_port()
    folder = Path(tempfile.mkdtemp(prefix="collm-nas-fault-"))
    server = serve_in_subprocess(port, mode, [STEERING, reply]) if mode else None
    try:
        code, seconds, output = run_search_cli([
            "--llm", "openai", "--model", "stub", "--base-url", f"http://127.0.0.1:{port}/v1",
            "--structured-method", method, "--budget", "6", "--iterations", "2", "--candidates", "3",
            "--llm-timeout", str(timeout), "--llm-retries", str(retries), "--run-dir", str(folder / "run"),
        ])
    finally:
        if server:
            server.kill()
            server.wait()
    errors = [line for line in output.splitlines() if line.startswith("error:") or "Traceback" in line]
    resumed = "-"
    if code != 0 and (folder / "run" / "config.json").exists():
        thread_id = json.loads((folder / "run" / "config.json").read_text())["thread_id"]
        good = serve_in_subprocess(port, "none", [STEERING])
        try:
            resumed = run_search_cli(["--resume", thread_id, "--run-dir", str(folder / "run")])[0]
        finally:
            good.kill()
            good.wait()
    shutil.rmtree(folder, ignore_errors=True)
    return {"exit": code, "seconds": seconds, "error_lines": len(errors),
            "error": " ".join(errors).replace("|", "/") or "(none)", "resumed": resumed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=1200)
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/reliability_llm.md"))
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = ["# LLM reliability (issue 24: replies, server faults)", "",
             f"Command: `COLLM_NAS_DATA=... python {' '.join(['scripts/fuzz_llm_replies.py', *sys.argv[1:]])}` "
             f"({started}). Seconds include CLI start-up (~4 s).", ""]
    lines += fuzz_section(args.replies) + [""] + fault_section(args.timeout, args.retries)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
