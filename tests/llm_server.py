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


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:]


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
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with code {process.returncode}:\n{_tail(log_path)}")
        if _answers(f"{base_url}/models"):
            return process, base_url
        time.sleep(0.5)
    stop_server(process)
    raise RuntimeError(f"llama_cpp.server did not answer within {STARTUP_SECONDS} s:\n{_tail(log_path)}")


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
    from agents.model_store import DEFAULT_MODEL, ensure_model

    model_path = ensure_model(DEFAULT_MODEL)
    with tempfile.TemporaryDirectory(prefix="collm-nas-llm-server-") as tmp:
        process, base_url = start_server(model_path, Path(tmp) / "server.log")
        try:
            yield base_url
        finally:
            stop_server(process)
