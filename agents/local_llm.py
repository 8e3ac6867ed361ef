"""The embedded offline chat model: llama.cpp in-process behind LangChain's chat-model interface.

One loaded `Llama` (weights + KV cache) is shared by every `LocalChatModel` that names the same
file and context settings, so the Navigator and the Generator can run on one model. Each
`LocalChatModel` is a light wrapper that holds sampling settings.

Prompts are rendered with the model's own chat template and tokenized here, so the adapter knows
the exact prompt length before llama.cpp sees it: a conversation that outgrows the context is
trimmed (oldest turns first) instead of failing. Structured output is constrained by a grammar
built from the pydantic JSON schema and then validated by pydantic.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from collm_nas.agents.calls import read_reply
from collm_nas.agents.model_store import DEFAULT_MODEL, ModelUnavailable, ensure_model
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.exceptions import OutputParserException
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage, UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ConfigDict, PrivateAttr

log = logging.getLogger(__name__)

# llama.cpp's CPU threads meet at OpenMP barriers. With libgomp's default (active) waiting, a
# waiting thread spins, and when another process holds a core the two threads starve each other:
# measured here with one busy core, 2 threads generated 0.3 tok/s spinning vs 9.5 tok/s passive.
# libgomp reads this once, when it is loaded (by llama_cpp, or earlier by torch), so entry points
# that import torch first should set it too.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

DEFAULT_N_CTX = 8192
PREFIX_CACHE_BYTES = 1 << 30
# Below this many free tokens for the answer, message text is shortened rather than the answer.
MIN_ANSWER_TOKENS = 128

_ROLES = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
_THINK_BLOCK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


# --- the shared llama.cpp runtime -----------------------------------------------------------


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as err:
        raise ModelUnavailable(
            "the local LLM backend needs llama-cpp-python; install it with "
            "`pip install 'collm-nas[local]'` (set CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" for a "
            "portable build)"
        ) from err
    return llama_cpp


@dataclass
class LlamaRuntime:
    """One loaded model, the formatter of its chat template, and the lock that serializes calls."""

    llama: Any
    formatter: Any
    lock: threading.RLock
    model_path: str

    def tokenize_chat(self, messages: list[dict[str, str]]) -> tuple[list[int], list[str]]:
        """Prompt tokens for `messages` (with the assistant turn opened) and the stop strings."""
        rendered = self.formatter(messages=messages)
        tokens = self.llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        stop = rendered.stop if isinstance(rendered.stop, list) else [rendered.stop]
        return tokens, [s for s in stop if s]

    def count_tokens(self, text: str) -> int:
        return len(self.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def get_local_runtime(model_path: str, n_ctx: int = DEFAULT_N_CTX, n_threads: int | None = None) -> LlamaRuntime:
    return _runtime(model_path, n_ctx, n_threads or os.cpu_count() or 1)


@functools.lru_cache(maxsize=4)
def _runtime(model_path: str, n_ctx: int, n_threads: int) -> LlamaRuntime:
    llama_cpp = _llama_cpp()
    from llama_cpp.llama_chat_format import CHATML_CHAT_TEMPLATE, Jinja2ChatFormatter

    log.info("loading %s (n_ctx=%d, n_threads=%d)", model_path, n_ctx, n_threads)
    llama = llama_cpp.Llama(
        model_path=model_path,
        n_ctx=n_ctx,
        n_threads=n_threads,
        n_threads_batch=n_threads,
        verbose=False,
    )
    llama.set_cache(PrefixCache(PREFIX_CACHE_BYTES))
    formatter = Jinja2ChatFormatter(
        template=llama.metadata.get("tokenizer.chat_template", CHATML_CHAT_TEMPLATE),
        eos_token=_token_text(llama, llama.token_eos()),
        bos_token=_token_text(llama, llama.token_bos()),
    )
    return LlamaRuntime(llama, formatter, threading.RLock(), model_path)


def _token_text(llama, token: int) -> str:
    if token == -1:
        return ""
    return llama.detokenize([token], special=True).decode("utf-8", errors="ignore")


class PrefixCache:
    """KV states of earlier calls, keyed by their tokens, for llama-cpp-python's `set_cache`.

    Before a call llama-cpp-python restores the state that shares the longest prefix with the new
    prompt (when that beats what is in the context now), so a conversation that two roles take
    turns on is not re-read from the start. Differences from `LlamaRAMCache`: a state whose
    tokens are a prefix of a newer one is dropped (the newer one serves the same prompts), and the
    saved logits are cut to one row. llama-cpp-python snapshots its whole logits buffer
    (n_batch x n_vocab floats, ~300 MB for Qwen) with every state, but a restored state always
    re-decodes its last token before sampling, and one row broadcasts over the buffer on restore.
    """

    def __init__(self, capacity_bytes: int = PREFIX_CACHE_BYTES):
        self.capacity_bytes = capacity_bytes
        self._states: OrderedDict[tuple[int, ...], Any] = OrderedDict()

    def __bool__(self) -> bool:  # llama-cpp-python tests `if self.cache:`
        return True

    def __len__(self) -> int:
        return len(self._states)

    @property
    def cache_size(self) -> int:
        return sum(state.llama_state_size + state.scores.nbytes for state in self._states.values())

    def _longest_prefix_key(self, tokens: tuple[int, ...]) -> tuple[int, ...] | None:
        best_key, best_len = None, 0
        for key in self._states:
            n = _common_prefix(key, tokens)
            if n > best_len:
                best_key, best_len = key, n
        return best_key

    def __contains__(self, tokens) -> bool:
        return self._longest_prefix_key(tuple(tokens)) is not None

    def __getitem__(self, tokens):
        key = self._longest_prefix_key(tuple(tokens))
        if key is None:
            raise KeyError("no cached state shares a prefix with this prompt")
        self._states.move_to_end(key)
        return self._states[key]

    def __setitem__(self, tokens, state) -> None:
        key = tuple(tokens)
        state.scores = state.scores[-1:].copy()
        for old in [k for k in self._states if len(k) <= len(key) and key[: len(k)] == k]:
            del self._states[old]
        self._states[key] = state
        while self.cache_size > self.capacity_bytes and len(self._states) > 1:
            self._states.popitem(last=False)


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


# --- message conversion and context fitting -------------------------------------------------


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(block.get("text", ""))
    return "".join(parts)


def to_chat_messages(messages: list[BaseMessage]) -> list[dict[str, str]]:
    chat = []
    for message in messages:
        role = getattr(message, "role", None) or _ROLES.get(message.type)
        if role is None:
            raise ValueError(f"the local model cannot take a {message.type!r} message")
        chat.append({"role": role, "content": _text(message.content)})
    return chat


@dataclass
class FittedPrompt:
    tokens: list[int]
    stop: list[str]
    max_tokens: int
    dropped: int


def fit_prompt(runtime: LlamaRuntime, chat: list[dict[str, str]], max_tokens: int) -> FittedPrompt:
    """Make prompt + answer fit the context: drop old turns, then shrink the answer or the text.

    System messages and the last user message are always kept.
    """
    n_ctx = runtime.llama.n_ctx()
    chat = list(chat)
    tokens, stop = runtime.tokenize_chat(chat)
    dropped = 0
    while len(tokens) + max_tokens > n_ctx and (i := _oldest_droppable(chat)) is not None:
        del chat[i]
        dropped += 1
        # A history must not open with an assistant turn once its user turn is gone.
        while (j := _oldest_droppable(chat)) is not None and chat[j]["role"] == "assistant":
            del chat[j]
            dropped += 1
        tokens, stop = runtime.tokenize_chat(chat)
    if dropped:
        log.warning(
            "local LLM: the conversation does not fit n_ctx=%d with max_tokens=%d; dropped the "
            "%d oldest message(s), the prompt is now %d tokens",
            n_ctx,
            max_tokens,
            dropped,
            len(tokens),
        )
    room = n_ctx - len(tokens)
    if room >= max_tokens:
        return FittedPrompt(tokens, stop, max_tokens, dropped)
    if room >= min(max_tokens, MIN_ANSWER_TOKENS):
        log.warning(
            "local LLM: only %d tokens left for the answer (max_tokens=%d, n_ctx=%d)",
            room,
            max_tokens,
            n_ctx,
        )
        return FittedPrompt(tokens, stop, room, dropped)
    answer = min(max_tokens, MIN_ANSWER_TOKENS)
    chat = _shorten_longest(runtime, chat, len(tokens) + answer - n_ctx)
    tokens, stop = runtime.tokenize_chat(chat)
    log.warning(
        "local LLM: the kept messages alone exceed n_ctx=%d; shortened the longest one to a %d-token prompt",
        n_ctx,
        len(tokens),
    )
    return FittedPrompt(tokens, stop, max(1, min(answer, n_ctx - len(tokens) - 1)), dropped)


def _oldest_droppable(chat: list[dict[str, str]]) -> int | None:
    last_user = max((i for i, m in enumerate(chat) if m["role"] == "user"), default=None)
    for i, message in enumerate(chat):
        if message["role"] != "system" and i != last_user:
            return i
    return None


def _shorten_longest(runtime: LlamaRuntime, chat: list[dict[str, str]], excess_tokens: int) -> list[dict[str, str]]:
    """Cut the middle out of the longest message (its start and end usually matter most)."""
    llama = runtime.llama
    i = max(range(len(chat)), key=lambda k: len(chat[k]["content"]))
    content_tokens = llama.tokenize(chat[i]["content"].encode("utf-8"), add_bos=False)
    # The marker itself and re-tokenization at the cut need a little slack.
    keep = max(0, len(content_tokens) - excess_tokens - 32)
    head, tail = content_tokens[: keep // 2], content_tokens[len(content_tokens) - keep // 2 :]
    omitted = len(content_tokens) - len(head) - len(tail)
    text = (
        llama.detokenize(head).decode("utf-8", errors="ignore")
        + f"\n[... {omitted} tokens omitted to fit the context ...]\n"
        + llama.detokenize(tail).decode("utf-8", errors="ignore")
    )
    shortened = list(chat)
    shortened[i] = {**chat[i], "content": text}
    return shortened


def split_reasoning(text: str) -> tuple[str, str]:
    """(answer, reasoning): `<think>` blocks go to reasoning, the rest is the answer."""
    reasoning = [m.strip() for m in _THINK_BLOCK.findall(text)]
    answer = _THINK_BLOCK.sub("", text)
    if "</think>" in answer:  # the chat template opened the block inside the prompt
        before, _, answer = answer.partition("</think>")
        reasoning.insert(0, before.strip())
    elif answer.lstrip().startswith("<think>"):  # cut off while still thinking
        reasoning.append(answer.lstrip()[len("<think>") :].strip())
        answer = ""
    return answer.strip(), "\n\n".join(r for r in reasoning if r)


# --- timings from llama.cpp -----------------------------------------------------------------


def _perf_counters(llama) -> tuple[float, int, float, int]:
    import llama_cpp

    data = llama_cpp.llama_perf_context(llama.ctx)
    return data.t_p_eval_ms, data.n_p_eval, data.t_eval_ms, data.n_eval


def _timings(before, after) -> dict[str, float]:
    t_prompt, n_prompt, t_gen, n_gen = (b - a for a, b in zip(before, after, strict=True))
    return {
        "prompt_eval_tokens": int(n_prompt),
        "prompt_eval_seconds": round(t_prompt / 1000, 4),
        "eval_tokens": int(n_gen),
        "eval_seconds": round(t_gen / 1000, 4),
    }


@functools.lru_cache(maxsize=32)
def _grammar(schema_json: str):
    """GBNF grammar for a JSON schema; plain JSON (with a warning) if the schema can't convert."""
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(schema_json, verbose=False)
    except Exception as err:  # the converter raises bare Exceptions of several kinds
        log.warning(
            "local LLM: this JSON schema cannot become a grammar (%s); decoding is constrained "
            "to plain JSON only and the result is checked against the schema afterwards",
            err,
        )
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)


# --- the chat model -------------------------------------------------------------------------


class LocalChatModel(BaseChatModel):
    """A LangChain chat model over an in-process llama.cpp model (see `make_local_chat_model`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    model_name: str = DEFAULT_MODEL
    temperature: float = 0.6
    max_tokens: int = 1024
    seed: int | None = None
    n_ctx: int = DEFAULT_N_CTX
    n_threads: int | None = None
    top_p: float = 0.95
    top_k: int = 40

    _seeds: random.Random | None = PrivateAttr(default=None)

    def _next_seed(self) -> int:
        # A fixed seed makes the run reproducible while successive calls still differ.
        if self._seeds is None:
            self._seeds = random.Random(self.seed) if self.seed is not None else random.SystemRandom()
        return self._seeds.randrange(2**31)

    @property
    def _llm_type(self) -> str:
        return "collm-nas-llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "model_path": self.model_path,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "n_ctx": self.n_ctx,
        }

    @property
    def runtime(self) -> LlamaRuntime:
        return get_local_runtime(self.model_path, self.n_ctx, self.n_threads)

    def get_num_tokens(self, text: str) -> int:
        return self.runtime.count_tokens(text)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        runtime = self.runtime
        max_tokens = int(kwargs.get("max_tokens", self.max_tokens))
        seed = kwargs.get("seed")
        grammar = _grammar_for_response_format(kwargs.get("response_format"))
        with runtime.lock:
            prompt = fit_prompt(runtime, to_chat_messages(messages), max_tokens)
            before = _perf_counters(runtime.llama)
            started = time.perf_counter()
            completion = runtime.llama.create_completion(
                prompt.tokens,
                max_tokens=prompt.max_tokens,
                temperature=float(kwargs.get("temperature", self.temperature)),
                top_p=self.top_p,
                top_k=self.top_k,
                seed=int(seed) if seed is not None else self._next_seed(),
                stop=prompt.stop + list(stop or []),
                grammar=grammar,
            )
            seconds = time.perf_counter() - started
            timings = _timings(before, _perf_counters(runtime.llama))
        message = self._to_message(completion, seconds, timings, prompt)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _to_message(self, completion, seconds, timings, prompt: FittedPrompt) -> AIMessage:
        choice = completion["choices"][0]
        usage = completion["usage"]
        answer, reasoning = split_reasoning(choice["text"])
        input_tokens = int(usage["prompt_tokens"])
        return AIMessage(
            content=answer,
            additional_kwargs={"reasoning_content": reasoning} if reasoning else {},
            response_metadata={
                "model_name": self.model_name,
                "finish_reason": choice["finish_reason"],
                "seconds": round(seconds, 4),
                "max_tokens": prompt.max_tokens,
                "dropped_messages": prompt.dropped,
                "timings": timings,
            },
            usage_metadata=UsageMetadata(
                input_tokens=input_tokens,
                output_tokens=int(usage["completion_tokens"]),
                total_tokens=int(usage["total_tokens"]),
                input_token_details={"cache_read": max(0, input_tokens - timings["prompt_eval_tokens"])},
            ),
        )

    def with_structured_output(
        self,
        schema: type[BaseModel],
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Grammar-constrained JSON for a pydantic model, validated by that model.

        A reply that does not validate raises `OutputParserException` whose message names the
        problems, so the caller can re-ask with it (with `include_raw=True` it is returned as
        `parsing_error` instead).
        """
        # Every method (json_schema, function_calling, json_mode) means the same grammar here,
        # so callers can pass the method their other backends need.
        unsupported = sorted(set(kwargs) - {"method", "strict"})
        if unsupported:
            raise ValueError(f"unsupported arguments for the local model: {unsupported}")
        if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
            raise TypeError("the local model's structured output takes a pydantic model class")
        bound = self.bind(response_format={"type": "json_object", "schema": schema.model_json_schema()})
        parse = functools.partial(parse_structured, schema)
        if not include_raw:
            return bound | RunnableLambda(parse)
        return bound | RunnableLambda(functools.partial(_parse_with_raw, parse))


def _grammar_for_response_format(response_format: dict | None):
    if not response_format or response_format.get("type") != "json_object":
        return None
    schema = response_format.get("schema")
    if schema is None:
        from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    return _grammar(json.dumps(schema, sort_keys=True))


def parse_structured(schema: type[BaseModel], message: AIMessage) -> BaseModel:
    """The reply as `schema`, read as every backend's reply is (`calls.read_reply`); else
    `OutputParserException` saying why."""
    parsed, error, _ = read_reply(message, schema, None, 0)
    if parsed is None:
        cut = message.response_metadata.get("finish_reason") == "length"
        reason = f" (the reply was cut off at max_tokens={message.response_metadata.get('max_tokens')})" if cut else ""
        raise OutputParserException(
            f"the reply is not a valid {schema.__name__}{reason}: {error}", llm_output=_text(message.content),
        )
    return parsed


def _parse_with_raw(parse, message: AIMessage) -> dict[str, Any]:
    try:
        return {"raw": message, "parsed": parse(message), "parsing_error": None}
    except OutputParserException as err:
        return {"raw": message, "parsed": None, "parsing_error": err}


def make_local_chat_model(
    model: str = DEFAULT_MODEL,
    temperature: float = 0.6,
    max_tokens: int = 1024,
    seed: int | None = None,
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int | None = None,
) -> LocalChatModel:
    """A chat model on the embedded model `model` (a bundled name or a .gguf path).

    Assembles the bundled model on first use; the weights load on the first call and are shared
    with every other local chat model on the same file, n_ctx and n_threads.
    """
    _llama_cpp()
    path = ensure_model(model)
    return LocalChatModel(
        model_path=str(path),
        model_name=model,
        temperature=temperature,
        max_tokens=max_tokens,
        seed=seed,
        n_ctx=n_ctx,
        n_threads=n_threads,
    )
