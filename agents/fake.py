"""A scripted chat model for unit tests of control flow. Never a default, never a result."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import PrivateAttr


class ScriptedChatModel(BaseChatModel):
    """Replies with `script[i]` on the i-th call (the last entry repeats once it runs out).

    `calls` keeps every prompt it received, so tests can check what each role saw.
    """

    script: list[str]
    seed: int = 0
    _calls: list[list[BaseMessage]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    @property
    def calls(self) -> list[list[BaseMessage]]:
        return self._calls

    def _generate(self, messages: list[BaseMessage], stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        if not self.script:
            raise RuntimeError("the scripted fake model has no replies")
        index = min(len(self._calls), len(self.script) - 1)
        self._calls.append(list(messages))
        text = self.script[index]
        prompt_chars = sum(len(str(m.content)) for m in messages)
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": prompt_chars // 4,
                "output_tokens": len(text) // 4,
                "total_tokens": prompt_chars // 4 + len(text) // 4,
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
