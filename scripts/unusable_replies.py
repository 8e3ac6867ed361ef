"""A server that answers every request with prose or with JSON of the wrong form, through the CLI,
for each structured method: the run must end with one error line (exit 2) after
`llm_give_up_rounds` rounds. Run from the repository root:
    COLLM_NAS_DATA=../shared/data python scripts/unusable_replies.py
"""

import json
import sys
import tempfile

sys.path.insert(0, "tests")  # the loopback OpenAI-compatible stub the tests use
from llm_server import free_port  # noqa: E402
from openai_stub import run_search_cli, serve_in_subprocess  # noqa: E402

REPLIES = {"prose": "The best cell is probably a ResNet-like one with 3x3 convolutions.",
           "wrong_json": json.dumps({"cells": [1, 2, 3]})}

rows = []
for name, reply in REPLIES.items():
    for method in ("json_schema", "function_calling", "json_mode"):
        port = free_port()
        proc = serve_in_subprocess(port, "none", [reply])
        try:
            with tempfile.TemporaryDirectory() as run_dir:
                rc, secs, out = run_search_cli(["--mode", "paper", "--llm", "openai", "--model", "m", "--base-url",
                    f"http://127.0.0.1:{port}/v1", "--structured-method", method, "--llm-timeout", "2",
                    "--llm-retries", "1", "--budget", "20", "--run-dir", run_dir])
        finally:
            proc.kill()
        lines = [line for line in out.strip().splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        last = errors[0] if errors else lines[-1]
        rows.append((name, method, rc, round(secs, 1), len(errors), "Traceback" in out, last[:150]))
        print(rows[-1], flush=True)
