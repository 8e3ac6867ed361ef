"""A seeded corpus of malformed Generator replies for NAS-Bench-201, and an independent oracle
of what a reply may legitimately yield.

`corpus(seed, n)` gives `n` reply texts (what a model or server might send), cycling through
kinds of damage: truncation, junk, wrong operations and edges, huge numbers, code fences, unicode
(lone surrogates, look-alike letters, invisible characters), 1 MB strings, deep nesting,
duplicate keys, nulls, wrong lengths and types, canonical cell strings (well-formed and not), and
prose around JSON. Some replies are partly or wholly well formed: the bar is not that nothing is
accepted but that nothing malformed or illegal is (`legal_notation`).
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES = ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")
BAD_OPS = ("conv_3x3", "nor_conv_5x5", "None", "NOR_CONV_3X3", "", " none", "skip connect",
           "nоne", "avg_pool_3x3\u200b", "ｎｏｎｅ", "max_pool_3x3", "identity", "zero")
HUGE = ("1e308", "-1e999", "1" * 5000, "NaN", "Infinity", "-0", "9" * 40, "3.5")
_ALIASES = {f"{t}<-{s}": f"edge_{t}_{s}" for t, s in ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))}
_CELL = re.compile(r"\|(\w+)~0\|\+\|(\w+)~0\|(\w+)~1\|\+\|(\w+)~0\|(\w+)~1\|(\w+)~2\|")


def legal_notation(item) -> tuple[str, ...] | None:
    """The six operations an item legitimately names (edge dict, `{"edges": [...]}`, a list of 6
    ops, the exact canonical string, or one of those under `arch`/`cell`), else None. Written
    apart from the space's parser, as the fuzz's judge."""
    if isinstance(item, dict) and len(item) == 1 and next(iter(item)) in ("arch", "cell", "edges"):
        inner = next(iter(item.values()))
        if isinstance(inner, dict) and len(inner) == 1 and next(iter(inner)) in ("arch", "cell", "edges"):
            return None
        item = inner
    if isinstance(item, dict):
        item = {_ALIASES.get(str(k).replace(" ", ""), k): v for k, v in item.items()}
    if isinstance(item, str):
        match = _CELL.fullmatch(item.strip())
        ops = match.groups() if match else ()
    elif isinstance(item, list):
        ops = tuple(item)
    elif isinstance(item, dict) and set(item) == set(EDGES):
        ops = tuple(item[edge] for edge in EDGES)
    else:
        return None
    if len(ops) == 6 and all(isinstance(op, str) and op in OPS for op in ops):
        return tuple(ops)
    return None


def cell(rng: random.Random) -> dict[str, str]:
    return {edge: rng.choice(OPS) for edge in EDGES}


def cell_string(ops) -> str:
    a, b, c, d, e, f = ops
    return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"


def batch(rng: random.Random, n: int = 3) -> dict:
    return {"architectures": [cell(rng) for _ in range(n)]}


def _dumps(value) -> str:
    return json.dumps(value)


# --- kinds of damage: each returns one reply text -------------------------------------------


def truncated(rng):
    text = _dumps(batch(rng))
    return text[: rng.randrange(1, len(text) - 1)]


def junk(rng):
    alphabet = "{}[]\":,0123456789abcdef \n\t\\~|+"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 400)))


def wrong_op(rng):
    reply = batch(rng)
    arch = rng.choice(reply["architectures"])
    arch[rng.choice(EDGES)] = rng.choice(BAD_OPS)
    return _dumps(reply)


def wrong_edges(rng):
    reply = batch(rng)
    arch = rng.choice(reply["architectures"])
    edge = rng.choice(EDGES)
    change = rng.randrange(4)
    if change == 0:
        del arch[edge]
    elif change == 1:
        arch["edge_4_0"] = "none"
    elif change == 2:
        arch[edge.replace("edge_", "e")] = arch.pop(edge)
    else:
        arch["1<-0"] = arch.pop("edge_1_0")  # an alias the parser accepts for a whole cell
    return _dumps(reply)


def huge_number(rng):
    reply = batch(rng)
    text = _dumps(reply)
    op = json.dumps(rng.choice(reply["architectures"])[rng.choice(EDGES)])
    return text.replace(op, rng.choice(HUGE), 1)


def fenced(rng):
    inner = rng.choice([_dumps(batch(rng)), truncated(rng), wrong_op(rng)])
    return rng.choice(["```json\n{}\n```", "```\n{}```", "Sure!\n```json\n{}\n```\nDone.", "```json\n{}"]).format(inner)


def unicode_damage(rng):
    reply = batch(rng)
    arch = rng.choice(reply["architectures"])
    edge = rng.choice(EDGES)
    arch[edge] = rng.choice(["\ud800", "none\udfff", "\u202enone", "nor_conv_3x3\u0000", "😀", "ｎｏｒ_conv_3x3"])
    text = json.dumps(reply, ensure_ascii=rng.random() < 0.5)
    return text if rng.random() < 0.7 else text + "\ud83d"


def megabyte(rng):
    reply = batch(rng)
    filler = rng.choice("ax{[\"")
    where = rng.randrange(3)
    if where == 0:
        reply["architectures"][0]["edge_1_0"] = "a" * 1_000_000
        return _dumps(reply)
    if where == 1:
        return _dumps(reply) + filler * 1_000_000
    return _dumps({"architectures": ["x" * 1_000_000]})


def deep(rng):
    depth = rng.choice([20, 300, 1000, 5000, 100_000])
    shape = rng.randrange(3)
    if shape == 0:
        return "[" * depth + "]" * depth
    if shape == 1:
        return '{"architectures": [' + '{"arch": ' * depth + _dumps(cell(rng)) + "}" * depth + "]}"
    return '{"architectures": [' + "[" * depth + "]" * depth + "]}"


def duplicate_keys(rng):
    a, b = _dumps(cell(rng)), '{"edge_1_0": "none", "edge_1_0": "conv_3x3", ' + _dumps(cell(rng))[1:]
    return rng.choice([
        f'{{"architectures": [{a}], "architectures": [{b}]}}',
        f'{{"architectures": [{b}, {a}]}}',
        '{"architectures": [' + a[:-1] + ', "edge_3_2": "none", "edge_3_2": "zero"}]}',
    ])


def nulls(rng):
    reply = batch(rng)
    choice = rng.randrange(4)
    if choice == 0:
        reply["architectures"][0] = None
    elif choice == 1:
        reply["architectures"][0][rng.choice(EDGES)] = None
    elif choice == 2:
        reply["architectures"] = None
    else:
        return "null"
    return _dumps(reply)


def wrong_length(rng):
    n = rng.choice([0, 1, 2, 4, 7, 60, 50_000])
    if n > 100:  # a 50,000-item reply: generated cheaply
        return '{"architectures": [' + ",".join([_dumps(cell(rng))] * n) + "]}"
    reply = batch(rng, n)
    if n and rng.random() < 0.5:
        arch = reply["architectures"][0]
        reply["architectures"][0] = [arch[e] for e in EDGES] + (["none"] if rng.random() < 0.5 else [])[:1]
        if rng.random() < 0.5:
            reply["architectures"][0] = reply["architectures"][0][:5]
    return _dumps(reply)


def wrong_type(rng):
    return _dumps(rng.choice([
        {"architectures": "three cells"}, {"architectures": 3}, {"architectures": {"a": cell(rng)}},
        {"architectures": [True, 1.5, -3]}, {"architectures": [{e: [op] for e, op in cell(rng).items()}]},
        {"architectures": [{e: {"op": op} for e, op in cell(rng).items()}]}, [cell(rng)], "a string",
        {"archs": [cell(rng)]}, {"architectures": [{"edges": {"1": "none"}}]}, 42,
    ]))


def canonical(rng):
    good = [cell_string([rng.choice(OPS) for _ in EDGES]) for _ in range(3)]
    bad = [
        "|none~0~1|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|nor_conv_3x3~9~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|none~1|+|none~0|none~1|",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|+|none~0|",
        "|none~0||+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|extra",
    ]
    items = [rng.choice(good + bad) for _ in range(3)]
    return _dumps({"architectures": items} if rng.random() < 0.7 else items)


def edge_forms(rng):
    ops = [rng.choice(OPS) for _ in EDGES]
    return _dumps({"architectures": rng.choice([
        [{"edges": ops}], [{"edges": ops[:5]}], [{"cell": cell_string(ops)}],
        [{"arch": {"arch": dict(zip(EDGES, ops, strict=True))}}], [ops], [{"edges": ops + ["none"]}],
        [{"edges": [[op, i] for i, op in enumerate(ops)]}],
    ])})


def prose(rng):
    inner = rng.choice([_dumps(batch(rng)), wrong_op(rng), canonical(rng), "{not json}"])
    return rng.choice([
        "Here are three cells:\n{}\nThey should work well.", "I think {} is best",
        "<think>Let me consider {{\"architectures\": []}}</think>{}", "Answer: {} and also {{\"x\": 1}}",
    ]).format(inner)


KINDS: dict[str, Callable[[random.Random], str]] = {f.__name__: f for f in (
    truncated, junk, wrong_op, wrong_edges, huge_number, fenced, unicode_damage, megabyte, deep,
    duplicate_keys, nulls, wrong_length, wrong_type, canonical, edge_forms, prose,
)}
BIG_KINDS = ("megabyte",)  # the few replies of ~1 MB: one in 20 of the others' count


def corpus(seed: int = 0, n: int = 1200) -> list[tuple[str, str]]:
    """`n` (kind, reply text) pairs, the same for the same seed, kinds in turn (1 MB replies
    less often, so the corpus stays quick to serve)."""
    rng = random.Random(seed)
    kinds = [k for k in KINDS if k not in BIG_KINDS]
    replies = []
    for i in range(n):
        kind = BIG_KINDS[0] if i % 40 == 39 else kinds[i % len(kinds)]
        replies.append((kind, KINDS[kind](rng)))
    return replies


# --- running replies through the real nodes on one backend path -----------------------------

PATHS = ("fake", "local", "json_schema", "function_calling", "json_mode")
REQUESTED = 3  # architectures asked for per Generator call


@dataclass
class FuzzResult:
    """What one backend path made of a corpus."""

    path: str
    replies: int = 0
    crashes: list[str] = field(default_factory=list)  # "kind: error" for every exception
    accepted: int = 0  # items that passed screening
    accepted_malformed: list[str] = field(default_factory=list)  # items the oracle does not accept
    rejected: int = 0  # items screened out as illegal
    seconds: float = 0.0


def run_corpus(replies: list[tuple[str, str]], path: str) -> FuzzResult:
    """Each reply through the generate and screen_candidates nodes, as `path` delivers it; the
    state update must also survive the checkpoint serializer."""
    from unittest import mock

    from collm_nas.agents import generator
    from collm_nas.graph import nodes
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.runtime import Runtime
    from openai_stub import OpenAIStub

    result = FuzzResult(path)
    serializer = JsonPlusSerializer()
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        stub = stack.enter_context(OpenAIStub()) if path not in ("fake", "local") else None
        runtime = Runtime(context=_settings(path, stub.url if stub else None))
        for kind, text in replies:
            if stub:
                stub.replies = [text]
                canned = contextlib.nullcontext()
            else:
                model = _canned_model(path, text)
                canned = mock.patch.object(generator, "make_chat_model", lambda *_a, m=model: m)
            state = {"iteration": 0, "archive": [], "strategy": "explore"}
            try:
                with canned:
                    update = nodes.generate(state, runtime)
                screened = nodes.screen_candidates({**state, **update}, runtime)
                serializer.dumps_typed({**update, **screened})
            except Exception as err:  # the bar: nothing escapes
                result.crashes.append(f"{kind}: {type(err).__name__}: {str(err)[:200]}")
                continue
            _judge(result, update["candidates"], screened)
            result.replies += 1
    result.seconds = time.perf_counter() - started
    return result


def _judge(result: FuzzResult, candidates: list[dict], screened: dict) -> None:
    legal = {cell_string(ops) for c in candidates if (ops := legal_notation(c["arch"]))}
    for passing in screened["screened"]:
        result.accepted += 1
        if passing["key"] not in legal:
            result.accepted_malformed.append(passing["key"])
    result.rejected += sum(r["verdict"] == "illegal" for r in screened["round_results"])


def _settings(path: str, url: str | None):
    from collm_nas.agents.llm import LLMSettings
    from collm_nas.graph.context import SearchSettings

    if path in ("fake", "local"):
        llm = LLMSettings(backend=path)
    else:
        llm = LLMSettings(backend="openai", model="stub", base_url=url, structured_method=path,
                          timeout=10, max_retries=0)
    return SearchSettings(space="nb201", dataset="cifar10", mode="paper", candidates=REQUESTED,
                          generator_retries=1, generator_llm=llm, navigator_llm=llm)


def _canned_model(path: str, text: str):
    """The fake model, or the embedded model's class with llama.cpp replaced by `text` (its own
    message building and reasoning split still run)."""
    if path == "fake":
        from collm_nas.agents.fake import ScriptedChatModel

        return ScriptedChatModel(script=[text])
    from collm_nas.agents.local_llm import FittedPrompt, LocalChatModel
    from langchain_core.outputs import ChatGeneration, ChatResult

    class CannedLocalModel(LocalChatModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            completion = {"choices": [{"text": text, "finish_reason": "stop"}],
                          "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}}
            timings = {"prompt_eval_tokens": 10, "prompt_eval_seconds": 0.0, "eval_tokens": 5, "eval_seconds": 0.0}
            message = self._to_message(completion, 0.0, timings, FittedPrompt([], [], self.max_tokens, 0))
            return ChatResult(generations=[ChatGeneration(message=message)])

    return CannedLocalModel(model_path="canned.gguf")
