"""LLM settings and the factory from settings to a LangChain chat model.

Backends: `local` (embedded llama.cpp model, the default), `openai` / `vllm` (any
OpenAI-compatible endpoint through `ChatOpenAI`), `fake` (scripted replies, for tests only).
API keys come only from environment variables and never enter settings, state or logs.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from collm_nas.errors import CollmNasError
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel, Field

Backend = Literal["local", "openai", "vllm", "fake"]
StructuredMethod = Literal["json_schema", "function_calling", "json_mode"]

DEFAULT_LOCAL_MODEL = "qwen2.5-coder-1.5b"


class LLMConfigError(CollmNasError, ValueError):
    """LLM settings that cannot reach a model (no endpoint, no key)."""


class LLMSettings(BaseModel):
    """How one role talks to its model. Serializable; holds no secrets."""

    backend: Backend = Field("local", description="local | openai | vllm | fake")
    model: str = Field(DEFAULT_LOCAL_MODEL, description="model name, or a GGUF path for local")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://host:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the key")
    temperature: float = Field(0.6, ge=0, le=2)
    max_tokens: int = Field(2048, ge=16, description="cap on reply tokens")
    timeout: float = Field(300.0, gt=0, description="seconds per request")
    max_retries: int = Field(2, ge=0, description="transport retries per request (openai/vllm)")
    reasoning: bool | None = Field(
        None, description="Qwen3 thinking switch on vLLM (chat_template_kwargs.enable_thinking)"
    )
    structured_method: StructuredMethod | None = Field(
        None,
        description="how structured output is requested; default by backend: json_schema for "
        "openai/vllm, a JSON-schema grammar for local. llama.cpp's server needs function_calling",
    )
    n_ctx: int = Field(8192, ge=512, description="context length (local)")
    n_threads: int | None = Field(None, description="CPU threads (local); default all cores")
    script: list[str] = Field(default_factory=list, description="fake: replies in order")

    def method(self) -> StructuredMethod:
        if self.structured_method:
            return self.structured_method
        return "json_schema"


def make_chat_model(settings: LLMSettings, seed: int | None = None) -> BaseChatModel:
    """A chat model for `settings`; one shared instance per distinct settings and seed."""
    return _cached_model(settings.model_dump_json(), seed)


@lru_cache(maxsize=16)
def _cached_model(settings_json: str, seed: int | None) -> BaseChatModel:
    settings = LLMSettings.model_validate_json(settings_json)
    if settings.backend == "fake":
        from collm_nas.agents.fake import ScriptedChatModel

        return ScriptedChatModel(script=list(settings.script), seed=seed or 0)
    if settings.backend == "local":
        from collm_nas.agents.local_llm import make_local_chat_model

        return make_local_chat_model(
            model=settings.model, temperature=settings.temperature,
            max_tokens=settings.max_tokens, seed=seed, n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
        )
    return _openai_model(settings, seed)


def _openai_model(settings: LLMSettings, seed: int | None) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    if settings.backend == "vllm" and not settings.base_url:
        raise LLMConfigError("the vllm backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    api_key = os.environ.get(settings.api_key_env)
    if not api_key:
        if settings.base_url is None:
            raise LLMConfigError(
                f"the openai backend needs an API key in ${settings.api_key_env} "
                "(or a --base-url of a local server)"
            )
        api_key = "not-needed"  # local OpenAI-compatible servers ignore the key
    extra_body = {}
    if settings.reasoning is not None:
        extra_body["chat_template_kwargs"] = {"enable_thinking": settings.reasoning}
    return ChatOpenAI(
        model=settings.model, base_url=settings.base_url, api_key=api_key,
        temperature=settings.temperature, max_completion_tokens=settings.max_tokens,
        timeout=settings.timeout, max_retries=settings.max_retries, seed=seed,
        extra_body=extra_body or None,
    )


def structured_model(model: BaseChatModel, schema: type[BaseModel], settings: LLMSettings):
    """`model` answering with `schema`, returning {raw, parsed, parsing_error}, never raising
    on a bad reply (the caller re-asks with the error)."""
    kwargs = {"method": settings.method()} if settings.backend in ("openai", "vllm") else {}
    return model.with_structured_output(schema, include_raw=True, **kwargs)
