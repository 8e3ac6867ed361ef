"""Calling a chat model and accounting for it: tokens, seconds, reasoning kept out of parsing."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import openai
from collm_nas.errors import CollmNasError
from langchain_core.messages import AIMessage, BaseMessage

_THINK = re.compile(r"<think>(.*?)(</think>|$)", re.DOTALL)


def split_reasoning(message: AIMessage) -> tuple[str, str]:
    """(answer text, reasoning text): `<think>` blocks and `reasoning_content` are reasoning."""
    content = message.content if isinstance(message.content, str) else str(message.content)
    reasoning = [m.group(1).strip() for m in _THINK.finditer(content)]
    extra = message.additional_kwargs.get("reasoning_content")
    if extra:
        reasoning.insert(0, str(extra))
    return _THINK.sub("", content).strip(), "\n".join(reasoning)


def usage_record(role: str, message: AIMessage | None, seconds: float, **extra: Any) -> dict:
    """One LLM call for the run's accounting (JSON-able)."""
    usage = (message.usage_metadata if message is not None else None) or {}
    return {
        "role": role,
        "prompt_tokens": int(usage.get("input_tokens", 0)),
        "completion_tokens": int(usage.get("output_tokens", 0)),
        "cached_tokens": int((usage.get("input_token_details") or {}).get("cache_read", 0)),
        "seconds": round(seconds, 3),
        **extra,
    }


class LLMUnavailable(CollmNasError, RuntimeError):
    """The LLM server could not be reached (after the client's bounded retries)."""


def timed_invoke(runnable, messages: list[BaseMessage]) -> tuple[Any, float]:
    started = time.perf_counter()
    try:
        result = runnable.invoke(messages)
    except (openai.APIConnectionError, openai.APITimeoutError) as err:
        url = getattr(getattr(err, "request", None), "url", "the configured base URL")
        raise LLMUnavailable(
            f"could not reach the LLM server at {url} ({type(err).__name__}: {err}); "
            "check --base-url and that the server is running"
        ) from err
    return result, time.perf_counter() - started


def salvage_items(message: AIMessage | None, field: str) -> list[Any]:
    """The list under `field` in a reply that failed validation as a whole, if it has one.

    Lets the Coordinator judge each proposed architecture on its own (with a reason) instead of
    losing the batch to one bad item.
    """
    if message is None:
        return []
    payloads: list[Any] = [call.get("args") for call in getattr(message, "tool_calls", []) or []]
    text, _ = split_reasoning(message)
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    for candidate in (fenced.group(1) if fenced else None, text):
        if not candidate:
            continue
        try:
            payloads.append(json.loads(candidate))
        except ValueError:
            continue
    for payload in payloads:
        if isinstance(payload, dict) and isinstance(payload.get(field), list):
            return payload[field]
        if isinstance(payload, list):
            return payload
    return []
