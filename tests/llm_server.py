"""A llama.cpp OpenAI-compatible server on the embedded model, as a session fixture.

Not a conftest: test modules that need the server import the fixture by name,
`from llm_server import openai_server_url` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

STARTUP_SECONDS = 120
SERVER_N_CTX = 4096


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a server's log, for an error message."""
    return path.read_text(errors="replace")[-chars:]


def wait_until_answers(process: subprocess.Popen, url: str, seconds: float) -> bool:
    """Poll `url` until it answers 200 (True), or the process exits or time runs out (False)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        if _answers(url):
            return True
        time.sleep(0.5)
    return False


def start_server(model_path: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start `python -m llama_cpp.server` on a free port; returns the process and its /v1 URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--host", "127.0.0.1",
        "--port", str(port),
        "--n_ctx", str(SERVER_N_CTX),
        "--n_threads", str(os.cpu_count() or 1),
    ]  # fmt: skip
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
        )
    base_url = f"http://127.0.0.1:{port}/v1"
    if wait_until_answers(process, f"{base_url}/models", STARTUP_SECONDS):
        return process, base_url
    if process.poll() is not None:
        raise RuntimeError(f"llama_cpp.server exited with code {process.returncode}:\n{log_tail(log_path)}")
    stop_server(process)
    raise RuntimeError(f"llama_cpp.server did not answer within {STARTUP_SECONDS} s:\n{log_tail(log_path)}")


def stop_server(process: subprocess.Popen) -> None:
    """Stop the server we started, by its pid: terminate, then kill if it lingers."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=15)


@pytest.fixture(scope="session")
def openai_server_url() -> Iterator[str]:
    """Base URL (`http://127.0.0.1:<port>/v1`) of a llama.cpp server on the default model."""
    pytest.importorskip("llama_cpp.server", reason="needs `pip install 'collm-nas[server]'`")
    from collm_nas.agents.model_store import DEFAULT_MODEL, ensure_model

    model_path = ensure_model(DEFAULT_MODEL)
    with tempfile.TemporaryDirectory(prefix="collm-nas-llm-server-") as tmp:
        process, base_url = start_server(model_path, Path(tmp) / "server.log")
        try:
            yield base_url
        finally:
            stop_server(process)
