"""The embedded offline LLM backend: model provisioning and the llama.cpp chat model.

Tests marked `llm` load the real bundled model (the `local` extra); it is loaded once per session.
The rest check the pure logic (reasoning split, parsing errors, the prefix cache) without it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from collm_nas.agents import model_store
from collm_nas.agents.local_llm import (
    LocalChatModel,
    PrefixCache,
    make_local_chat_model,
    parse_structured,
    split_reasoning,
)
from collm_nas.agents.model_store import DEFAULT_MODEL, ModelSpec, ModelUnavailable, ensure_model
from collm_nas.spaces.nb201 import NB201Arch, NB201Space
from langchain_core.exceptions import OutputParserException
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field


class Batch(BaseModel):
    architectures: list[NB201Arch] = Field(min_length=3, max_length=3)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_path() -> Path:
    pytest.importorskip("llama_cpp", reason="needs `pip install 'collm-nas[local]'`")
    return ensure_model(DEFAULT_MODEL)


@pytest.fixture(scope="session")
def chat_model(model_path: Path) -> LocalChatModel:
    return make_local_chat_model(str(model_path), temperature=0.2, max_tokens=512, seed=7, n_ctx=4096)


def _fake_parts(root: Path, chunks: list[bytes]) -> ModelSpec:
    """A registry entry over part packages made on the fly (importable from `root`)."""
    packages = []
    for i, chunk in enumerate(chunks, start=1):
        package = f"collm_fake_model_part{i}"
        data = root / package / "data"
        data.mkdir(parents=True)
        (root / package / "__init__.py").write_text("")
        (data / f"part{i:02d}.bin").write_bytes(chunk)
        packages.append(package.replace("_", "-"))
    whole = b"".join(chunks)
    return ModelSpec(
        name="fake-model",
        packages=tuple(packages),
        version="0.0.1",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
    )


@pytest.fixture
def fake_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModelSpec, Path]:
    packages = tmp_path / "site"
    spec = _fake_parts(packages, [b"GGUF" + bytes(range(200)), b"\x01" * 300, b"tail"])
    monkeypatch.syspath_prepend(str(packages))
    monkeypatch.setitem(model_store.MODELS, spec.name, spec)
    cache = tmp_path / "cache"
    monkeypatch.setenv(model_store.CACHE_ENV, str(cache))
    return spec, cache


# --- provisioning ---------------------------------------------------------------------------


def test_assembles_parts_in_order_then_reuses(fake_model):
    spec, cache = fake_model
    path = ensure_model(spec.name)
    assert path == cache / "fake-model.gguf"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == spec.sha256
    mtime = path.stat().st_mtime_ns
    assert ensure_model(spec.name) == path
    assert path.stat().st_mtime_ns == mtime  # reused, not rebuilt
    assert list(cache.iterdir()) == [path]  # no temp files left


def test_corrupt_copy_is_caught_deleted_and_rebuilt(fake_model):
    spec, _ = fake_model
    path = ensure_model(spec.name)
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF  # same size: only the sha256 can tell
    path.write_bytes(bytes(data))
    assert ensure_model(spec.name) == path  # the cheap check passes on reuse
    with pytest.raises(ModelUnavailable, match="corrupt.*sha256.*deleted"):
        ensure_model(spec.name, verify=True)
    assert not path.exists()
    assert hashlib.sha256(ensure_model(spec.name).read_bytes()).hexdigest() == spec.sha256


def test_truncated_copy_is_caught_by_size(fake_model):
    spec, _ = fake_model
    path = ensure_model(spec.name)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ModelUnavailable, match="size.*deleted"):
        ensure_model(spec.name)
    assert not path.exists()


def test_corrupt_parts_fail_the_assembly(fake_model, monkeypatch):
    spec, cache = fake_model
    monkeypatch.setitem(model_store.MODELS, spec.name, replace(spec, sha256="0" * 64))
    with pytest.raises(ModelUnavailable, match="--force-reinstall"):
        ensure_model(spec.name)
    assert not list(cache.iterdir())


def test_missing_part_package_names_the_fix(fake_model, monkeypatch):
    spec, _ = fake_model
    broken = replace(spec, packages=(*spec.packages, "collm-fake-model-part9"))
    monkeypatch.setitem(model_store.MODELS, spec.name, broken)
    with pytest.raises(ModelUnavailable) as err:
        ensure_model(spec.name)
    message = str(err.value)
    assert "1 of its 4 part packages are missing" in message
    assert "pip install collm-fake-model-part9==0.0.1" in message


def test_bad_user_path_and_unknown_name(tmp_path):
    with pytest.raises(ModelUnavailable, match="does not exist"):
        ensure_model(str(tmp_path / "nope.gguf"))
    with pytest.raises(ModelUnavailable, match="unknown local model.*qwen2.5-coder-1.5b"):
        ensure_model("gpt-17")
    existing = tmp_path / "mine.gguf"
    existing.write_bytes(b"GGUF")
    assert ensure_model(str(existing)) == existing


@pytest.mark.llm
def test_bundled_model_is_provisioned_and_verifies(model_path):
    spec = model_store.MODELS[DEFAULT_MODEL]
    assert model_path.stat().st_size == spec.size
    assert ensure_model(DEFAULT_MODEL, verify=True) == model_path


# --- pure logic -----------------------------------------------------------------------------


def test_split_reasoning():
    assert split_reasoning('<think>hmm\nok</think>\n{"a": 1}') == ('{"a": 1}', "hmm\nok")
    assert split_reasoning("opened in the prompt</think>answer") == (
        "answer",
        "opened in the prompt",
    )
    assert split_reasoning("<think>never finished") == ("", "never finished")
    assert split_reasoning("plain") == ("plain", "")


def test_parse_structured_error_says_what_is_wrong():
    bad = AIMessage(
        content='{"architectures": [{"edge_1_0": "conv"}]}',
        response_metadata={"finish_reason": "stop"},
    )
    with pytest.raises(OutputParserException, match="not a valid Batch") as err:
        parse_structured(Batch, bad)
    assert err.value.llm_output == bad.content
    cut = AIMessage(
        content='{"architectures": [',
        response_metadata={"finish_reason": "length", "max_tokens": 9},
    )
    with pytest.raises(OutputParserException, match="cut off at max_tokens=9"):
        parse_structured(Batch, cut)


class _State:
    def __init__(self, n: int):
        self.scores = np.zeros((4, 3), dtype=np.float32)
        self.llama_state_size = n


def test_prefix_cache_keeps_longest_and_drops_superseded_prefixes():
    cache = PrefixCache(capacity_bytes=10_000)
    cache[(1, 2, 3)] = _State(100)
    cache[(1, 2, 3, 4, 5)] = _State(100)  # supersedes (1, 2, 3)
    cache[(9, 9)] = _State(100)
    assert len(cache) == 2 and bool(cache)
    assert cache[(1, 2, 3, 4, 7)].scores.shape == (1, 3)  # logits cut to one row
    assert (1, 2, 8) in cache and (5,) not in cache
    with pytest.raises(KeyError):
        cache[(5, 6)]
    cache[(7,)] = _State(9_900)  # over capacity: least recently used states go first
    assert len(cache) == 1 and (7,) in cache


# --- the real model -------------------------------------------------------------------------


@pytest.mark.llm
def test_structured_batch_of_nb201_cells(chat_model):
    space = NB201Space()
    structured = chat_model.with_structured_output(Batch, include_raw=True)
    result = structured.invoke(
        [
            SystemMessage(space.describe() + "\nAnswer with JSON only."),
            HumanMessage("Propose 3 different cells that use mostly 3x3 convolutions."),
        ]
    )
    assert result["parsing_error"] is None
    batch = result["parsed"]
    assert isinstance(batch, Batch) and len(batch.architectures) == 3
    for arch in batch.architectures:
        assert space.parse(arch.model_dump()) == arch
    assert result["raw"].usage_metadata["output_tokens"] > 0
    # Without include_raw the runnable ends in this same parser.
    assert parse_structured(Batch, result["raw"]) == batch


@pytest.mark.llm
def test_plain_chat_has_text_usage_and_seconds(chat_model):
    reply = chat_model.invoke(
        [SystemMessage("You are terse."), HumanMessage("Name one CIFAR-10 class.")],
        max_tokens=24,
    )
    assert isinstance(reply.content, str) and reply.content.strip()
    usage = reply.usage_metadata
    assert usage["input_tokens"] > 0 and 0 < usage["output_tokens"] <= 24
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert reply.response_metadata["seconds"] > 0


@pytest.mark.llm
def test_prefix_cache_serves_alternating_roles(chat_model):
    history = [
        SystemMessage("You are the navigator. " + "Keep notes short. " * 40),
        HumanMessage("Round 1: say 'ok'."),
    ]
    first = chat_model.invoke(history, max_tokens=8)
    # Another role on the same model replaces what is in the KV cache.
    chat_model.invoke([SystemMessage("You are the generator."), HumanMessage("Say 'hi'.")], max_tokens=8)
    history += [first, HumanMessage("Round 2: say 'ok' again.")]
    second = chat_model.invoke(history, max_tokens=8)
    assert second.usage_metadata["input_token_details"]["cache_read"] > first.usage_metadata["input_tokens"] // 2


@pytest.mark.llm
def test_context_overflow_drops_old_turns(model_path, caplog):
    small = make_local_chat_model(str(model_path), temperature=0.0, max_tokens=32, n_ctx=512)
    history = [SystemMessage("You summarize search results in one line.")]
    for i in range(12):
        history += [
            HumanMessage(f"Results of round {i}: " + "cell accuracy 91.2, " * 20),
            AIMessage(f"Round {i} noted."),
        ]
    history.append(HumanMessage("What is 2 + 2? Answer with the number."))
    with caplog.at_level(logging.WARNING, logger="collm_nas.agents.local_llm"):
        reply = small.invoke(history)
    assert "dropped" in caplog.text
    assert reply.response_metadata["dropped_messages"] > 0
    assert reply.usage_metadata["input_tokens"] + 32 <= 512
    assert reply.content.strip()


@pytest.mark.llm
def test_oversized_single_message_is_shortened(model_path, caplog):
    small = make_local_chat_model(str(model_path), temperature=0.0, max_tokens=16, n_ctx=512)
    with caplog.at_level(logging.WARNING, logger="collm_nas.agents.local_llm"):
        reply = small.invoke([HumanMessage("Reply 'ok'. " + "padding words " * 600)])
    assert "shortened" in caplog.text
    assert reply.usage_metadata["input_tokens"] < 512
