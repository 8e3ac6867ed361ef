"""Calling a chat model and accounting for it: tokens, seconds, reasoning kept out of parsing,
server faults as one clear error, and structured replies.

Every backend's structured reply takes one path: the model is asked for the schema (servers that
constrain decoding use it) but we read the raw message ourselves, within size bounds, validate it
against the schema, re-ask a bounded number of times with the error text, and else keep the items
that could be read for the Coordinator to judge one by one.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
from collm_nas.agents.llm import LLMSettings, structured_request
from collm_nas.errors import CollmNasError
from collm_nas.prompts import render
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, RemoveMessage, SystemMessage
from langchain_core.messages.ai import add_ai_message_chunks
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

_THINK = re.compile(r"<think>(.*?)(</think>|$)", re.DOTALL)
_FENCED = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)

# Bounds on a structured reply, checked before any recursive code (json, pydantic) reads it.
MAX_REPLY_CHARS = 100_000
MAX_REPLY_DEPTH = 16
ITEMS_PER_REQUESTED = 2  # a reply's items beyond 2x the requested count are dropped
ECHO_CHARS = 2_000  # a failed reply is repeated in the re-ask cut to this
ERROR_CHARS = 600
# What reading untrusted JSON can raise besides ValueError (which covers JSON and pydantic errors).
_READ_ERRORS = (ValueError, TypeError, RecursionError, UnicodeError, OverflowError)


def split_reasoning(message: AIMessage) -> tuple[str, str]:
    """(answer text, reasoning text): `<think>` blocks and `reasoning_content` are reasoning."""
    content = message.content if isinstance(message.content, str) else str(message.content)
    reasoning = [m.group(1).strip() for m in _THINK.finditer(content)]
    extra = message.additional_kwargs.get("reasoning_content")
    if extra:
        reasoning.insert(0, str(extra))
    return _THINK.sub("", content).strip(), "\n".join(reasoning)


def usage_record(role: str, message: AIMessage | None, seconds: float, **extra: Any) -> dict:
    """One LLM call for the run's accounting (JSON-able). `usage_reported` is False when the server
    sent no token counts (llama.cpp's server sends none while streaming); the counts are then 0."""
    usage = (message.usage_metadata if message is not None else None) or {}
    return {
        "role": role,
        "usage_reported": bool(usage),
        "prompt_tokens": int(usage.get("input_tokens", 0)),
        "completion_tokens": int(usage.get("output_tokens", 0)),
        "cached_tokens": int((usage.get("input_token_details") or {}).get("cache_read", 0)),
        "seconds": round(seconds, 3),
        **extra,
    }


class LLMUnavailable(CollmNasError, RuntimeError):
    """The LLM server could not be reached or did not answer with a chat completion (after the
    client's bounded retries)."""


def timed_invoke(
    runnable, messages: list[BaseMessage], server: str | None = None, streamed: bool = False
) -> tuple[Any, float]:
    """`runnable.invoke(messages)` and its seconds; a server fault becomes one `LLMUnavailable`
    line naming the server (`server`: its base URL, for faults that carry none). `streamed`:
    the reply's chunks added up instead, which keeps a tool call's arguments as sent."""
    started = time.perf_counter()
    try:
        result = _streamed(runnable, messages) if streamed else runnable.invoke(messages)
    except openai.APIStatusError as err:
        raise LLMUnavailable(
            f"the LLM server at {_url(err, server)} answered HTTP {err.status_code}: "
            f"{clean_text(_body(err), 200)}"
        ) from err
    except openai.APITimeoutError as err:
        raise LLMUnavailable(
            f"the LLM server at {_url(err, server)} sent nothing within the timeout "
            "(--llm-timeout), on every attempt (--llm-retries); check that it is running and not overloaded"
        ) from err
    except (openai.APIConnectionError, httpx.TransportError) as err:
        raise LLMUnavailable(
            f"could not reach the LLM server at {_url(err, server)} ({type(err).__name__}: "
            f"{clean_text(str(err), 200)}); check --base-url and that the server is running"
        ) from err
    except (openai.APIError, *_READ_ERRORS) as err:
        if server is None:  # not a remote server's reply: a bug, shown with its traceback
            raise
        raise LLMUnavailable(
            f"the LLM server at {server} did not answer with a chat completion "
            f"({type(err).__name__}: {clean_text(str(err), 200)})"
        ) from err
    return result, time.perf_counter() - started


def _streamed(runnable, messages: list[BaseMessage]) -> AIMessage:
    chunks = list(runnable.stream(messages))
    if not chunks:
        raise ValueError("the reply held no chat completion")
    # Added up at once: adding chunk by chunk re-reads the tool call's arguments every time.
    return chunks[0] if len(chunks) == 1 else add_ai_message_chunks(*chunks)


def _url(err: Exception, server: str | None) -> str:
    try:
        return str(err.request.url)  # type: ignore[attr-defined]
    except (AttributeError, RuntimeError):
        return server or "the configured base URL"


def _body(err: openai.APIStatusError) -> str:
    try:
        return err.response.text or err.message
    except (httpx.ResponseNotRead, UnicodeError):
        return err.message


def clean_text(text: str, chars: int) -> str:
    """`text` safe to store and send: lone surrogates replaced, whitespace folded, at most
    `chars` characters."""
    text = " ".join(text.encode("utf-8", "replace").decode("utf-8").split())
    return text if len(text) <= chars else text[:chars] + " ..."


def json_safe(value: Any) -> Any:
    """A JSON value as the checkpoint can store it and a server be sent it: lone surrogates
    replaced, integers beyond 64 bits kept as their digits (a string)."""
    text = json.dumps(value, ensure_ascii=False).encode("utf-8", "replace").decode("utf-8")
    return json.loads(text, parse_int=lambda digits: int(digits) if len(digits) <= 18 else digits)


# --- reading a structured reply -------------------------------------------------------------


class BadReply(ValueError):
    """A reply that cannot be used as a whole; the message says why (sent back on the re-ask)."""


def reply_payload(message: AIMessage) -> Any:
    """The JSON value a reply carries: a tool call's arguments, or JSON in the answer text (whole,
    fenced, or the first object or list in prose). Raises `BadReply` with the reason."""
    # A streamed tool call's arguments as sent (langchain's own reading of them repairs cut-off
    # JSON), else the arguments of a whole reply's tool calls.
    texts = [str(chunk.get("args") or "") for chunk in getattr(message, "tool_call_chunks", None) or []]
    for call in [] if texts else message.tool_calls or []:
        if isinstance(call.get("args"), dict) and call["args"]:
            check_depth(call["args"])
            return call["args"]
    texts += [str(call.get("args") or "") for call in message.invalid_tool_calls or []]
    texts.append(split_reasoning(message)[0])
    text = next((t for t in texts if t.strip()), "")
    if not text.strip():
        raise BadReply("the reply is empty: answer with the JSON object")
    if len(text) > MAX_REPLY_CHARS:
        raise BadReply(f"the reply has {len(text):,} characters, over the limit of {MAX_REPLY_CHARS:,}")
    return _json_in(text)


def _json_in(text: str) -> Any:
    fenced = _FENCED.search(text)
    candidates = [fenced.group(1)] if fenced else []
    candidates.append(text)
    starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    error = "no JSON object in the reply"
    for candidate in candidates:
        depth = text_depth(candidate)
        if depth > MAX_REPLY_DEPTH:
            raise BadReply(f"the reply nests {depth} levels deep, over the limit of {MAX_REPLY_DEPTH}")
        try:
            return json.loads(candidate)
        except _READ_ERRORS as err:
            error = f"the reply is not valid JSON: {err}"
    if starts:  # prose around the JSON
        try:
            return json.JSONDecoder().raw_decode(text, min(starts))[0]
        except _READ_ERRORS:
            pass
    raise BadReply(error)


def text_depth(text: str) -> int:
    """How deep brackets nest in JSON `text`, strings skipped (iterative: safe on any input)."""
    depth = deepest = 0
    for char in _STRING.sub("", text):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def check_depth(value: Any) -> None:
    """Raise `BadReply` if a parsed value nests deeper than MAX_REPLY_DEPTH (iteratively)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_REPLY_DEPTH:
            raise BadReply(f"the reply nests over {MAX_REPLY_DEPTH} levels deep")
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)


def reply_items(payload: Any, items_field: str, limit: int) -> tuple[list[Any], str]:
    """The architectures a reply proposes, as JSON-safe values, at most `limit` (and a note on
    what was dropped)."""
    items: list[Any] = []
    if isinstance(payload, dict) and isinstance(payload.get(items_field), list):
        items = payload[items_field]
    elif isinstance(payload, list):
        items = payload
    note = ""
    if len(items) > limit:
        note = f"; {len(items) - limit} items beyond the limit of {limit} were dropped"
        items = items[:limit]
    return [json_safe(item) for item in items], note


@dataclass
class StructuredReply:
    """One structured exchange: the accepted reply (if any), the items that could be read, and
    every call made on the way."""

    parsed: BaseModel | None
    items: list[Any]  # architectures as proposed (parsed objects or JSON-safe raw values)
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
    earlier_calls: list[dict[str, Any]] = (),
    give_up_rounds: int = 0,
) -> StructuredReply:
    """Ask for `schema`; on a bad reply re-ask with the error text, at most `retries` times.

    `items_field` names the reply's list of architectures (None: the reply has none). With
    `give_up_rounds` > 0, a reply that stays unusable after the re-asks, when this role's
    `earlier_calls` of the rounds just before were unusable too, raises `LLMUnusable`."""
    request = structured_request(model, schema, settings)
    reply = StructuredReply(parsed=None, items=[], calls=[], transcript=[])
    conversation = list(messages)
    for _ in range(retries + 1):
        raw, seconds = timed_invoke(request, conversation, server=server_url(settings), streamed=True)
        text, reasoning = split_reasoning(raw)
        if reasoning:
            reply.reasoning.append(reasoning)
        reply.parsed, reply.error, reply.items = read_reply(raw, schema, items_field, size)
        reply.calls.append(usage_record(role, raw, seconds, iteration=iteration,
                                        ok=reply.error is None, error=reply.error))
        if reply.parsed is not None:
            reply.transcript.append(AIMessage(content=reply.parsed.model_dump_json()))
            break
        retry = HumanMessage(content=render(retry_prompt, error=reply.error, candidates=size))
        answer = AIMessage(content=clean_text(text or _arguments(raw), ECHO_CHARS))
        conversation.extend([answer, retry])
        reply.transcript.extend([answer, retry])
    if reply.parsed is None and give_up_rounds > 0:
        failed = failed_rounds_before(earlier_calls, role, iteration)
        if failed + 1 >= give_up_rounds:
            raise LLMUnusable(
                f"the {role} LLM{' at ' + server_url(settings) if server_url(settings) else ''} gave no "
                f"usable reply in {failed + 1} rounds in a row (last: {reply.error}); check the model "
                "and --structured-method, then continue with --resume"
            )
    return reply


class LLMUnusable(CollmNasError):
    """Round after round the LLM's replies could not be read. Raised before the round's update is
    saved, so a resumed run asks again."""


def failed_rounds_before(calls: list[dict[str, Any]], role: str, iteration: int) -> int:
    """How many rounds right before `iteration` had calls of `role`, none of them usable."""
    ok_by_round: dict[int, bool] = {}
    for call in calls:
        if call.get("role") == role and call.get("iteration") is not None:
            ok_by_round[call["iteration"]] = ok_by_round.get(call["iteration"], False) or bool(call.get("ok"))
    failed = 0
    while ok_by_round.get(iteration - failed - 1) is False:
        failed += 1
    return failed


def _arguments(message: AIMessage) -> str:
    chunks = getattr(message, "tool_call_chunks", None) or []
    return " ".join(str(c.get("args") or "") for c in chunks) or str(message.tool_calls or message.invalid_tool_calls)


def read_reply(
    message: AIMessage, schema: type[BaseModel], items_field: str | None, size: int
) -> tuple[BaseModel | None, str | None, list[Any]]:
    """(the reply validated as `schema` or None, why not, the items it proposes): the one way
    every backend's structured reply is read."""
    try:
        payload = reply_payload(message)
    except BadReply as err:
        return None, _error_text(err, message), []
    items, note = reply_items(payload, items_field, ITEMS_PER_REQUESTED * size) if items_field else ([], "")
    try:
        parsed = schema.model_validate(payload)
    except _READ_ERRORS as err:  # pydantic's ValidationError is a ValueError
        return None, _error_text(err, message) + note, items
    return parsed, None, list(getattr(parsed, items_field)) if items_field else []


def server_url(settings: LLMSettings) -> str | None:
    """The server a role talks to, for error messages (None: no remote server)."""
    if settings.backend not in ("openai", "vllm"):
        return None
    return settings.base_url or "https://api.openai.com/v1"


def _error_text(err: Exception, message: AIMessage) -> str:
    text = str(err)
    if isinstance(err, ValidationError):  # pydantic repeats each bad input in full: keep it short
        text = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'reply'}: {e['msg']}" for e in err.errors()[:8])
        text = f"the reply does not fit the required form: {text}"
    if message.response_metadata.get("finish_reason") == "length":
        text += " (the reply was cut off at the token limit)"
    return clean_text(text, ERROR_CHARS)


# --- conversation memory --------------------------------------------------------------------

CHARS_PER_TOKEN = 4  # a rough estimate, enough to keep a conversation well inside a context


def fit_conversation(
    messages: list[BaseMessage], llm: LLMSettings, role: str
) -> tuple[list[BaseMessage], list[RemoveMessage]]:
    """(the messages to send, removals for the state): the oldest exchanges dropped until the
    conversation fits `llm`'s context (`n_ctx` less `max_tokens` for the answer); system
    messages and the last message are always kept. Logs a notice when it drops anything.

    The embedded model keeps its own, token-exact fitting (`local_llm.fit_prompt`)."""
    if llm.backend == "local":
        return messages, []
    budget = CHARS_PER_TOKEN * max(0, llm.n_ctx - llm.max_tokens)
    kept, dropped = list(messages), []
    while _chars(kept) > budget:
        oldest = next((i for i, m in enumerate(kept) if not isinstance(m, SystemMessage)), len(kept))
        if oldest >= len(kept) - 1:
            break
        # a request goes with its answer, so a history never opens with an answer
        end = oldest + 2 if isinstance(kept[oldest + 1], AIMessage) and oldest + 2 < len(kept) else oldest + 1
        dropped.extend(kept[oldest:end])
        del kept[oldest:end]
    if dropped:
        log.info("%s: context trimmed, dropped the %d oldest messages (%d characters) to stay "
                 "within about %d tokens (n_ctx %d less max_tokens %d)", role, len(dropped),
                 _chars(dropped), budget // CHARS_PER_TOKEN, llm.n_ctx, llm.max_tokens)
    return kept, [RemoveMessage(id=m.id) for m in dropped if m.id]


def _chars(messages: list[BaseMessage]) -> int:
    return sum(len(str(m.content)) for m in messages)
