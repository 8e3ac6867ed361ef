"""The Generator: strategy in, a batch of architectures out, as structured output.

Stateless by default (a fresh conversation each call). A reply that fails validation is re-asked
with the error text a bounded number of times (tenacity); after that the round goes on with the
items that could be read, which the Coordinator judges one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from collm_nas.agents.calls import salvage_items, split_reasoning, timed_invoke, usage_record
from collm_nas.agents.llm import LLMSettings, structured_model
from collm_nas.prompts import render
from collm_nas.spaces import SearchSpace
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field, create_model
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt


@cache
def batch_schema(space: SearchSpace, size: int) -> type[BaseModel]:
    """`{"architectures": [Arch x size]}`: list length in the schema so small models fill it."""
    return create_model(
        "CandidateBatch",
        architectures=(
            list[space.Arch],
            Field(min_length=size, max_length=size, description="distinct architectures"),
        ),
    )


@cache
def single_llm_schema(space: SearchSpace, size: int) -> type[BaseModel]:
    """SiLLM-NAS reply: the model's strategy and its batch in one object."""
    return create_model(
        "StrategyAndBatch",
        strategy=(str, Field(description="what the results show and where to look next")),
        architectures=(
            list[space.Arch],
            Field(min_length=size, max_length=size, description="distinct architectures"),
        ),
    )


@dataclass
class StructuredReply:
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


def generator_messages(
    space: SearchSpace, strategy: str, size: int, evaluated: list[str], history: list[BaseMessage]
) -> list[BaseMessage]:
    """System prompt (unless `history` already has it), earlier turns, then this request."""
    system = [] if history else [
        SystemMessage(content=render("generator_system", space_description=space.describe()))
    ]
    request = HumanMessage(
        content=render("generator_user", strategy=strategy, candidates=size, evaluated=evaluated)
    )
    return [*system, *history, request]
