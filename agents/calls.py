"""Calling a chat model and accounting for it: tokens, seconds, reasoning kept out of parsing,
and structured replies (bounded re-asks with the error text, then per-item salvage)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import openai
from collm_nas.agents.llm import LLMSettings, structured_model
from collm_nas.errors import CollmNasError
from collm_nas.prompts import render
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from pydantic import BaseModel
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

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


@dataclass
class StructuredReply:
    """One structured exchange: the accepted reply (if any), the items that could be read, and
    every call made on the way."""

    parsed: BaseModel | None
    items: list[Any]  # architectures as proposed (parsed objects or raw dicts)
    calls: list[dict[str, Any]]
    transcript: list[BaseMessage]  # the messages added by this exchange
    reasoning: list[str] = field(default_factory=list)
    error: str | None = None

    def remembered(self) -> list[BaseMessage]:
        """What a conversation keeps of this exchange: the accepted answer only. Failed attempts
        and re-asks stay out (they are in `calls`), so bad replies cannot pile up in memory."""
        return self.transcript[-1:] if self.parsed is not None else []

    def candidates(self, source: str) -> list[dict[str, Any]]:
        """The proposed architectures as the state holds them (JSON values), tagged by source."""
        return [{"arch": item.model_dump() if isinstance(item, BaseModel) else item, "source": source}
                for item in self.items]


class _BadReply(Exception):
    pass


def ask_structured(
    model,
    settings: LLMSettings,
    schema: type[BaseModel],
    messages: list[BaseMessage],
    *,
    role: str,
    retries: int,
    size: int,
    iteration: int,
    retry_prompt: str = "generator_retry",
    items_field: str | None = "architectures",
) -> StructuredReply:
    """Ask for `schema`; on a bad reply re-ask with the error text, at most `retries` times.

    `items_field` names the reply's list of architectures (None: the reply has none)."""
    structured = structured_model(model, schema, settings)
    reply = StructuredReply(parsed=None, items=[], calls=[], transcript=[])
    conversation = list(messages)

    def attempt() -> None:
        out, seconds = timed_invoke(structured, conversation)
        raw: AIMessage | None = out.get("raw")
        error = out.get("parsing_error")
        text, reasoning = split_reasoning(raw) if raw is not None else ("", "")
        if reasoning:
            reply.reasoning.append(reasoning)
        reply.calls.append(
            usage_record(role, raw, seconds, iteration=iteration, ok=error is None,
                         error=str(error)[:300] if error else None)
        )
        if error is None:
            reply.parsed, reply.error = out["parsed"], None
            reply.items = list(getattr(reply.parsed, items_field)) if items_field else []
            reply.transcript.append(AIMessage(content=reply.parsed.model_dump_json()))
            return
        reply.error = _short_error(error)
        reply.items = salvage_items(raw, items_field) if items_field else []
        retry = HumanMessage(content=render(retry_prompt, error=reply.error, candidates=size))
        answer = AIMessage(content=text or str(getattr(raw, "tool_calls", "")))
        conversation.extend([answer, retry])
        reply.transcript.extend([answer, retry])
        raise _BadReply(reply.error)

    try:
        for try_ in Retrying(
            stop=stop_after_attempt(retries + 1), retry=retry_if_exception_type(_BadReply),
            reraise=True,
        ):
            with try_:
                attempt()
    except _BadReply:
        pass  # out of retries: go on with whatever items could be read
    return reply


def _short_error(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:600] + (" ..." if len(text) > 600 else "")
