"""A loopback OpenAI-compatible chat server that answers with canned replies or canned faults.

Real HTTP on 127.0.0.1 (http.server in a thread), streaming (server-sent events) or not, as the
client asks. Tests set `stub.replies` (texts, served in order, the last repeating) and `stub.fault`,
and read `stub.requests` (each request's JSON body and Authorization header). A streamed reply
carries token counts when the client asks (`stream_options.include_usage`) and `stub.usage` is on;
`usage=False` plays a server that never sends them (llama.cpp's).

Run as a script it serves until killed, for CLI tests in a subprocess:
`python tests/openai_stub.py PORT FAULT [REPLY]`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# What a stub can do instead of answering: HTTP 500, a 200 that is not JSON, JSON that is not a
# chat completion, an accepted connection that never gets a byte, a reply streamed slowly.
FAULTS = ("none", "http500", "non_json", "non_completion", "hang", "slow")


class OpenAIStub:
    """One server on a free loopback port; `url` is its /v1 base URL."""

    def __init__(self, replies: list[str] | None = None, fault: str = "none", port: int = 0,
                 slow_chunks: int = 5, slow_seconds: float = 1.0, usage: bool = True):
        self.replies = list(replies or ['{"architectures": []}'])
        self.fault, self.usage = fault, usage
        self.slow_chunks, self.slow_seconds = slow_chunks, slow_seconds
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> OpenAIStub:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def next_reply(self, body: dict[str, Any], authorization: str | None) -> str:
        with self._lock:
            self.requests.append({"body": body, "authorization": authorization})
            return self.replies[min(len(self.requests), len(self.replies)) - 1]


def completion_chunks(text: str, body: dict[str, Any], pieces: int = 3,
                      usage: bool = True) -> list[dict[str, Any]]:
    """`text` as streamed chat-completion chunks: as a tool call's arguments when the request
    named a tool, else as content; then the finish chunk and, when `usage` and the request asked
    for it, the usage chunk."""
    size = max(1, -(-len(text) // pieces))
    parts = [text[i:i + size] for i in range(0, len(text), size)] or [""]
    tool = (body.get("tool_choice") or {}).get("function", {}).get("name") if isinstance(
        body.get("tool_choice"), dict) else None
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    for i, part in enumerate(parts):
        if tool:
            call: dict[str, Any] = {"index": 0, "function": {"arguments": part}}
            if i == 0:
                call.update(id="call_0", type="function", function={"name": tool, "arguments": part})
            deltas.append({"tool_calls": [call]})
        else:
            deltas.append({"content": part})
    chunks = [_chunk({"index": 0, "delta": d, "finish_reason": None}) for d in deltas]
    chunks.append(_chunk({"index": 0, "delta": {}, "finish_reason": "tool_calls" if tool else "stop"}))
    if usage and (body.get("stream_options") or {}).get("include_usage"):
        counts = {"prompt_tokens": 10, "completion_tokens": len(text) // 4,
                  "total_tokens": 10 + len(text) // 4}
        chunks.append({**_chunk(None), "choices": [], "usage": counts})
    return chunks


def completion(text: str, body: dict[str, Any]) -> dict[str, Any]:
    """`text` as one (non-streamed) chat completion."""
    tool = body.get("tool_choice", {}).get("function", {}).get("name") if isinstance(
        body.get("tool_choice"), dict) else None
    message: dict[str, Any] = {"role": "assistant", "content": None if tool else text}
    if tool:
        message["tool_calls"] = [{"id": "call_0", "type": "function",
                                  "function": {"name": tool, "arguments": text}}]
    return {"id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
            "model": "stub", "choices": [{"index": 0, "message": message,
                                          "finish_reason": "tool_calls" if tool else "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11}}


def _chunk(choice: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": "stub", "choices": [choice] if choice else []}


def _handler(stub: OpenAIStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_: Any) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            self._send(200, b'{"object": "list", "data": [{"id": "stub", "object": "model"}]}')

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            text = stub.next_reply(body, self.headers.get("Authorization"))
            if stub.fault == "hang":
                time.sleep(3600)  # accepted, never answered: the client's timeout must end it
                return
            if stub.fault == "http500":
                return self._send(500, b'{"error": {"message": "stub: internal error"}}')
            if stub.fault == "non_json":
                return self._send(200, b"<html>502 Bad Gateway</html>", "text/html")
            if stub.fault == "non_completion":
                return self._send(200, b'{"status": "ok", "result": 42}')
            if not body.get("stream"):
                return self._send(200, json.dumps(completion(text, body)).encode())
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            pieces = stub.slow_chunks if stub.fault == "slow" else 3
            for chunk in completion_chunks(text, body, pieces, stub.usage):
                if stub.fault == "slow":
                    time.sleep(stub.slow_seconds)
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.close_connection = True

        def _send(self, status: int, payload: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


# --- the stub in its own process and the CLI against it (for the slow CLI tests and the script) --


def serve_in_subprocess(port: int, fault: str, replies: list[str]) -> subprocess.Popen:
    """This module as a server process on `port`; returns once the port accepts connections."""
    process = subprocess.Popen([sys.executable, __file__, str(port), fault, *replies])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"the stub server did not start on port {port}")


def run_search_cli(args: list[str], cwd: str | None = None) -> tuple[int, float, str]:
    """`collm-nas search ARGS` in a subprocess: (exit code, seconds, output)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "collm_nas.cli", "search", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)
    return done.returncode, time.monotonic() - started, done.stdout + done.stderr


if __name__ == "__main__":
    port, fault = int(sys.argv[1]), sys.argv[2]
    with OpenAIStub(sys.argv[3:] or None, fault=fault, port=port):
        threading.Event().wait()
