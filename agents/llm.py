"""LLM settings and the factory from settings to a LangChain chat model.

Backends are plugins of the entry-point group `collm_nas.llm_backends` (name -> a factory
`(settings, seed) -> BaseChatModel`); ours are registered the same way in pyproject.toml:
`local` (embedded llama.cpp model, the default), `openai` / `vllm` (any OpenAI-compatible
endpoint through `ChatOpenAI`), `fake` (scripted replies, for tests only).
API keys come only from environment variables and never enter settings, state or logs:
`$OPENAI_API_KEY` goes only to OpenAI's own endpoint, the key for any other `base_url` comes from
`$COLLM_NAS_LLM_API_KEY` (or the variable `api_key_env` names); none is sent by default.

Requests to OpenAI-compatible servers stream, so `timeout` bounds silence, not a reply: a long
generation that keeps sending tokens is never cut off, a server that sends nothing is given up
after `timeout` seconds, `max_retries` more times (the openai client's retries, with backoff).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from functools import lru_cache
from typing import Literal
from urllib.parse import urlparse

from collm_nas.errors import CollmNasError
from collm_nas.spaces.registry import Registry
from langchain_core.language_models import BaseChatModel
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, field_validator

log = logging.getLogger(__name__)

LLM_BACKENDS = Registry("collm_nas.llm_backends", "LLM backend")
StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]

DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"
OPENAI_KEY_ENV = "OPENAI_API_KEY"  # sent to OpenAI's own endpoint only
SERVER_KEY_ENV = "COLLM_NAS_LLM_API_KEY"  # the key for any other OpenAI-compatible server
OPENAI_HOSTS = ("api.openai.com",)


class LLMConfigError(CollmNasError, ValueError):
    """LLM settings that cannot reach a model (no endpoint, no key)."""


class LLMSettings(BaseModel):
    """How one role talks to its model. Serializable; holds no secrets."""

    backend: str = Field("local", description="an installed LLM backend: local | openai | vllm | "
                         "fake | one of yours (entry-point group collm_nas.llm_backends)")
    model: str = Field(DEFAULT_LOCAL_MODEL, description="model name, or a GGUF path for local")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    api_key_env: str | None = Field(
        None, description=f"environment variable holding the key; default: ${OPENAI_KEY_ENV} for "
        f"OpenAI's endpoint, ${SERVER_KEY_ENV} for any other base_url (${OPENAI_KEY_ENV} never "
        "goes to another server)",
    )
    temperature: float = Field(0.6, ge=0, le=2)
    max_tokens: int = Field(2048, ge=16, description="cap on reply tokens")
    timeout: float = Field(
        90.0, gt=0, description="openai/vllm: seconds of silence (no byte from the server) before "
        "a request is given up; a reply that keeps streaming is not cut off",
    )
    max_retries: int = Field(
        2, ge=0, description="openai/vllm: retries per request after a timeout, a lost "
        "connection or HTTP 408/409/429/5xx, with backoff",
    )
    reasoning: bool | None = Field(
        None, description="Qwen3 thinking switch on vLLM (chat_template_kwargs.enable_thinking)"
    )
    structured_method: StructuredMethod | None = Field(
        None,
        description="how structured output is requested; default by backend: json_schema for "
        "openai/vllm, a JSON-schema grammar for local. llama.cpp's server needs function_calling",
    )
    n_ctx: int = Field(
        8192, ge=512, description="context length in tokens: the local model's window; for other "
        "backends the conversation is trimmed (oldest exchanges first) to fit it",
    )
    n_threads: int | None = Field(None, description="CPU threads (local); default all cores")
    script: list[str] = Field(default_factory=list, description="fake: replies in order")

    @field_validator("backend")
    @classmethod
    def _installed(cls, name: str) -> str:
        if name not in LLM_BACKENDS.names():
            raise ValueError(f"unknown LLM backend {name!r}; installed: {', '.join(LLM_BACKENDS.names())}")
        return name

    def method(self) -> StructuredMethod:
        if self.structured_method:
            return self.structured_method
        return "json_schema"


def make_chat_model(settings: LLMSettings, seed: int | None = None) -> BaseChatModel:
    """A chat model for `settings`; one shared instance per distinct settings and seed."""
    return _cached_model(settings.model_dump_json(), seed)


def register_llm_backend(name: str, factory: Callable[[LLMSettings, int | None], BaseChatModel]) -> None:
    """Add an LLM backend for this process (tests, notebooks); packages use the entry point."""
    LLM_BACKENDS.register(name, factory)
    _cached_model.cache_clear()


@lru_cache(maxsize=16)
def _cached_model(settings_json: str, seed: int | None) -> BaseChatModel:
    settings = LLMSettings.model_validate_json(settings_json)
    factory = LLM_BACKENDS.load(settings.backend)
    try:
        return factory(settings, seed)
    except CollmNasError:
        raise
    except Exception as err:  # a plugin can fail in any way; name it and keep the cause
        raise LLM_BACKENDS.broken(settings.backend, err) from err


def fake_backend(settings: LLMSettings, seed: int | None) -> BaseChatModel:
    """Scripted replies in order (tests of control flow only)."""
    from collm_nas.agents.fake import ScriptedChatModel

    return ScriptedChatModel(script=list(settings.script), seed=seed or 0)


def local_backend(settings: LLMSettings, seed: int | None) -> BaseChatModel:
    """The embedded llama.cpp model."""
    from collm_nas.agents.local_llm import make_local_chat_model

    return make_local_chat_model(
        model=settings.model, temperature=settings.temperature,
        max_tokens=settings.max_tokens, seed=seed, n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
    )


def openai_backend(settings: LLMSettings, seed: int | None) -> BaseChatModel:
    """OpenAI's API or any OpenAI-compatible server (`vllm` is the same with a base_url)."""
    from langchain_openai import ChatOpenAI

    if settings.backend == "vllm" and not settings.base_url:
        raise LLMConfigError("the vllm backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    key_env = api_key_env(settings)
    api_key = os.environ.get(key_env)
    if not api_key:
        if is_openai_endpoint(settings.base_url):
            raise LLMConfigError(
                f"the openai backend needs an API key in ${key_env} (or a --base-url of a local server)"
            )
        api_key = "not-needed"  # local OpenAI-compatible servers ignore the key
    extra_body = {}
    if settings.reasoning is not None:
        extra_body["chat_template_kwargs"] = {"enable_thinking": settings.reasoning}
    return ChatOpenAI(
        model=settings.model, base_url=settings.base_url, api_key=api_key,
        temperature=settings.temperature, max_completion_tokens=settings.max_tokens,
        timeout=settings.timeout, max_retries=settings.max_retries, seed=seed,
        streaming=True, stream_usage=True, extra_body=extra_body or None,
    )


def is_openai_endpoint(base_url: str | None) -> bool:
    """True for OpenAI's own API: no base_url, or one on api.openai.com over https."""
    if base_url is None:
        return True
    url = urlparse(base_url)
    return url.scheme == "https" and url.hostname in OPENAI_HOSTS


def api_key_env(settings: LLMSettings) -> str:
    """The environment variable whose key `settings` may send: never $OPENAI_API_KEY to a
    server other than OpenAI's."""
    if is_openai_endpoint(settings.base_url):
        return settings.api_key_env or OPENAI_KEY_ENV
    if settings.api_key_env in (None, OPENAI_KEY_ENV):
        if settings.api_key_env:
            log.warning("not sending $%s to %s (not OpenAI's endpoint); using $%s",
                        OPENAI_KEY_ENV, settings.base_url, SERVER_KEY_ENV)
        return SERVER_KEY_ENV
    return settings.api_key_env


def structured_request(model: BaseChatModel, schema: type[BaseModel], settings: LLMSettings) -> Runnable:
    """`model` asked to answer with `schema` (so servers that constrain decoding do), returning
    the raw `AIMessage`: the caller parses and judges every reply the same way."""
    if settings.backend == "fake":
        return model
    if settings.backend == "local":  # a JSON-schema grammar, whatever the method
        return model.bind(response_format={"type": "json_object", "schema": schema.model_json_schema()})
    function = convert_to_openai_tool(schema)["function"]
    method = settings.method()
    if method == "function_calling":
        return model.bind_tools([schema], tool_choice=function["name"], parallel_tool_calls=False)
    if method == "json_mode":
        response_format = {"type": "json_object"}
    else:
        response_format = {"type": "json_schema", "json_schema": {
            "name": function["name"], "description": function.get("description", ""),
            "schema": function["parameters"],
        }}
    # In the request body, not as `response_format=`: langchain-openai would route that through
    # the openai client's parsing stream helper, which asserts on replies it cannot read.
    return model.bind(extra_body={**(model.extra_body or {}), "response_format": response_format})
