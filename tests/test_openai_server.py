"""The embedded model behind llama.cpp's OpenAI-compatible server, reached through ChatOpenAI.

Documents the capability gap that decides how the project talks to llama.cpp servers: structured
output works with `method="function_calling"` (the server turns the tool's parameter schema into a
grammar) and fails with `method="json_schema"` (the server answers HTTP 500).
"""

from __future__ import annotations

import pytest
from collm_nas.spaces.nb201 import NB201Arch, NB201Space
from langchain_core.messages import HumanMessage, SystemMessage
from llm_server import openai_server_url  # noqa: F401  (session fixture)
from pydantic import BaseModel, Field

pytestmark = [pytest.mark.llm, pytest.mark.slow]


class Batch(BaseModel):
    """A batch of NAS-Bench-201 cells."""

    architectures: list[NB201Arch] = Field(min_length=3, max_length=3)


def _client(base_url: str):
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        base_url=base_url,
        api_key="none",
        model="local",
        temperature=0.2,
        max_tokens=600,
        max_retries=0,
        timeout=300,
    )


def _request() -> list:
    return [
        SystemMessage(NB201Space().describe()),
        HumanMessage("Propose 3 different cells as a batch."),
    ]


def test_function_calling_returns_valid_cells(openai_server_url):  # noqa: F811
    structured = _client(openai_server_url).with_structured_output(Batch, method="function_calling")
    batch = structured.invoke(_request())
    assert isinstance(batch, Batch) and len(batch.architectures) == 3
    space = NB201Space()
    for arch in batch.architectures:
        assert space.parse(arch.model_dump()) == arch


def test_json_schema_method_is_rejected_by_the_server(openai_server_url):  # noqa: F811
    import openai

    structured = _client(openai_server_url).with_structured_output(Batch, method="json_schema")
    with pytest.raises(openai.InternalServerError):
        structured.invoke(_request())
