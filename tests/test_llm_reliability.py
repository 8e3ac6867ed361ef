"""Every LLM backend survives bad replies, servers fail with one clear error, keys stay home.

Replies and faults come from a real loopback HTTP server (`openai_stub`), the fuzz corpus from
the seeded generator `fuzz_replies`; the full corpus and the CLI fault matrix are `slow`.
"""

from __future__ import annotations

import json
import logging
import time

import pytest
from collm_nas.agents.calls import (
    MAX_REPLY_CHARS,
    LLMUnavailable,
    ask_structured,
    fit_conversation,
)
from collm_nas.agents.generator import batch_schema
from collm_nas.agents.llm import LLMSettings, is_openai_endpoint, make_chat_model
from collm_nas.graph.run import llm_totals
from collm_nas.spaces import IllegalArchitecture, get_space
from fuzz_replies import PATHS, cell_string, corpus, run_corpus
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from llm_server import free_port
from openai_stub import OpenAIStub, run_search_cli, serve_in_subprocess

METHODS = ("json_schema", "function_calling", "json_mode")
SPACE = get_space("nb201")
CELL = {"edge_1_0": "nor_conv_3x3", "edge_2_0": "none", "edge_2_1": "skip_connect",
        "edge_3_0": "none", "edge_3_1": "avg_pool_3x3", "edge_3_2": "nor_conv_1x1"}


def _ask(url: str, method: str, size: int = 3, **llm):
    settings = LLMSettings(backend="openai", model="stub", base_url=url, structured_method=method, **llm)
    return ask_structured(make_chat_model(settings), settings, batch_schema(SPACE, size),
                          [HumanMessage("propose")], role="generator", retries=1, size=size, iteration=1)


# --- the fuzz ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_fuzz_sample_crashes_nothing_and_accepts_nothing_malformed(path):
    result = run_corpus(corpus(seed=7, n=50), path)
    assert result.crashes == []
    assert result.accepted_malformed == []
    assert result.accepted > 0 and result.rejected > 0  # the sample holds both kinds


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_full_fuzz_corpus_crashes_nothing_and_accepts_nothing_malformed(path):
    result = run_corpus(corpus(seed=0, n=1200), path)
    assert result.replies == 1200
    assert result.crashes == []
    assert result.accepted_malformed == []


# --- parsing: notations a model writes -------------------------------------------------------


@pytest.mark.parametrize("text", [
    "|none~0~1|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_3x3~9~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
])
def test_malformed_cell_strings_are_rejected_with_a_reason(text):
    with pytest.raises(IllegalArchitecture, match="not a NAS-Bench-201 cell string"):
        SPACE.parse(text)


def test_unambiguous_notations_are_read_as_the_same_cell():
    ops = [CELL[edge] for edge in CELL]
    expected = SPACE.parse(CELL)
    for notation in (cell_string(ops), {"edges": ops}, ops, {"cell": cell_string(ops)}, {"arch": CELL}):
        assert SPACE.parse(notation) == expected


@pytest.mark.parametrize("bad, words", [
    ({"arch": {"arch": CELL}}, "wrapped twice"),
    ({"edges": ["none"] * 5}, "exactly 6 edges"),
    ({"arch": [[[[[[[[[["none"]]]]]]]]]]}, "nested more than"),
    ("x" * 30_000, "too large"),
])
def test_input_a_cell_cannot_be_is_rejected_before_it_is_read(bad, words):
    with pytest.raises(IllegalArchitecture, match=words):
        SPACE.parse(bad)


def test_a_batch_of_canonical_strings_reaches_the_coordinator_item_by_item():
    strings = [cell_string(["none", "skip_connect", op, "none", "none", "nor_conv_3x3"])
               for op in ("none", "nor_conv_1x1", "avg_pool_3x3")]
    with OpenAIStub([json.dumps({"architectures": strings})]) as stub:
        reply = _ask(stub.url, "json_schema")
    assert reply.parsed is None and "does not fit" in reply.error
    assert [SPACE.key(SPACE.parse(item)) for item in reply.items] == strings


def test_reply_bounds_reject_with_a_reason():
    too_many = {"architectures": [CELL] * 50}
    with OpenAIStub([json.dumps(too_many)]) as stub:
        reply = _ask(stub.url, "json_mode")
    assert len(reply.items) == 6 and "44 items beyond the limit of 6" in reply.error
    with OpenAIStub(["[" * 5000 + "]" * 5000]) as stub:
        assert "nests 5000 levels deep" in _ask(stub.url, "json_mode").error
    with OpenAIStub(["x" * (MAX_REPLY_CHARS + 1)]) as stub:
        assert "over the limit" in _ask(stub.url, "json_mode").error


def test_a_lone_surrogate_does_not_break_the_reask():
    with OpenAIStub(['{"architectures": ["\\ud800"]} \ud800']) as stub:
        reply = _ask(stub.url, "json_mode")
    assert len(stub.requests) == 2 and reply.items == ["?"]


# --- server faults -------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("fault, words", [
    ("http500", "answered HTTP 500"),
    ("non_json", "did not answer with a chat completion"),
    ("non_completion", "did not answer with a chat completion"),
    ("hang", "sent nothing within the timeout"),
])
def test_server_faults_end_in_one_error_naming_the_server(method, fault, words):
    with OpenAIStub(fault=fault) as stub:
        started = time.monotonic()
        with pytest.raises(LLMUnavailable, match=words) as err:
            _ask(stub.url, method, timeout=0.5, max_retries=1)
        seconds = time.monotonic() - started
    assert "127.0.0.1" in str(err.value) and "\n" not in str(err.value)
    assert seconds < 2 * 0.5 + 3  # two attempts of 0.5 s and the client's backoff
    assert len(stub.requests) <= 2


def test_a_closed_port_ends_in_one_error_naming_the_server():
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMUnavailable, match="could not reach the LLM server at http://127.0.0.1"):
        _ask(url, "json_schema", timeout=1, max_retries=1)


def test_a_slow_stream_is_not_cut_off_by_the_silence_timeout():
    with OpenAIStub([json.dumps({"architectures": [CELL]})], fault="slow", slow_chunks=4,
                    slow_seconds=0.6) as stub:
        started = time.monotonic()
        reply = _ask(stub.url, "json_schema", size=1, timeout=1.0, max_retries=0)
    assert time.monotonic() - started > 2.4  # longer than the timeout: only silence counts
    assert reply.parsed is not None and reply.items[0].model_dump() == CELL


@pytest.mark.parametrize("sends_usage", [True, False])
def test_token_counts_are_kept_when_sent_and_flagged_when_not(sends_usage):
    with OpenAIStub([json.dumps({"architectures": [CELL]})], usage=sends_usage) as stub:
        reply = _ask(stub.url, "json_schema", size=1)
    assert stub.requests[0]["body"]["stream_options"] == {"include_usage": True}
    totals = llm_totals(reply.calls)
    if sends_usage:
        assert totals["prompt_tokens"] == 10 and totals["calls_without_usage"] == 0
    else:
        assert totals["prompt_tokens"] == 0 and totals["calls_without_usage"] == totals["calls"] == 1


# --- keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize("api_key_env", [None, "OPENAI_API_KEY"])
def test_the_openai_key_is_never_sent_to_another_server(monkeypatch, api_key_env):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    monkeypatch.delenv("COLLM_NAS_LLM_API_KEY", raising=False)
    with OpenAIStub([json.dumps({"architectures": [CELL]})]) as stub:
        _ask(stub.url, "json_schema", size=1, api_key_env=api_key_env)
        monkeypatch.setenv("COLLM_NAS_LLM_API_KEY", "server-key")
        _ask(stub.url, "json_mode", size=1, api_key_env=api_key_env)
    headers = [r["authorization"] for r in stub.requests]
    assert all("sk-openai-secret" not in (h or "") for h in headers)
    assert headers[-1] == "Bearer server-key"


def test_only_openai_itself_counts_as_openai():
    assert is_openai_endpoint(None) and is_openai_endpoint("https://api.openai.com/v1")
    for url in ("http://api.openai.com/v1", "https://api.openai.com.evil.test/v1", "http://127.0.0.1:8000/v1"):
        assert not is_openai_endpoint(url)


# --- conversation memory -------------------------------------------------------------------


def test_a_long_conversation_is_trimmed_oldest_first_with_a_notice(caplog):
    llm = LLMSettings(backend="openai", model="m", base_url="http://127.0.0.1:9/v1", n_ctx=1024, max_tokens=512)
    history = [SystemMessage("rules", id="s")]
    for i in range(20):
        history += [HumanMessage("results " * 50, id=f"h{i}"), AIMessage("strategy " * 50, id=f"a{i}")]
    with caplog.at_level(logging.INFO, logger="collm_nas.agents.calls"):
        kept, removals = fit_conversation([*history, HumanMessage("now")], llm, "navigator")
    assert kept[0].id == "s" and kept[-1].content == "now" and kept[1].id.startswith("h")
    assert sum(len(str(m.content)) for m in kept) <= 4 * (1024 - 512)
    assert [r.id for r in removals][:2] == ["h0", "a0"]
    assert "navigator: context trimmed" in caplog.text


def test_the_embedded_model_keeps_its_own_token_exact_fitting():
    history = [HumanMessage("x" * 100_000), AIMessage("y"), HumanMessage("now")]
    assert fit_conversation(history, LLMSettings(backend="local"), "navigator") == (history, [])


# --- the CLI against faulty servers (slow: subprocesses) -----------------------------------

STEERING = json.dumps({"summary": "ok", "prefer": {edge: ["nor_conv_3x3"] for edge in CELL}})


def _search_args(port: int, method: str, run_dir) -> list[str]:
    return ["--llm", "openai", "--model", "stub", "--base-url", f"http://127.0.0.1:{port}/v1",
            "--structured-method", method, "--budget", "6", "--iterations", "2", "--candidates", "3",
            "--llm-timeout", "1", "--llm-retries", "1", "--run-dir", str(run_dir)]


@pytest.mark.slow
@pytest.mark.parametrize("fault, method", [  # every fault x method is covered above, without the CLI
    (None, "json_schema"), ("http500", "function_calling"), ("hang", "json_mode"),
    ("non_json", "function_calling"), ("non_completion", "json_schema"),
])
def test_cli_ends_a_server_fault_with_one_line_and_the_run_resumes(tmp_path, method, fault):
    port = free_port()
    server = serve_in_subprocess(port, fault, []) if fault else None  # None: a closed port
    try:
        code, seconds, output = run_search_cli(_search_args(port, method, tmp_path / "run"))
    finally:
        if server:
            server.kill()
            server.wait()
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in output
    assert f"127.0.0.1:{port}" in errors[0]
    assert seconds < 2 * 1 + 60  # two attempts of 1 s, backoff, and the CLI's start-up
    thread_id = json.loads((tmp_path / "run" / "config.json").read_text())["thread_id"]
    good = serve_in_subprocess(port, "none", [STEERING])
    try:
        code, _, output = run_search_cli(["--resume", thread_id, "--run-dir", str(tmp_path / "run")])
    finally:
        good.kill()
        good.wait()
    assert code == 0, output
