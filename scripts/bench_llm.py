"""Speed of the embedded local LLM in the shapes the search uses it (not a test).

For each bundled model: raw prompt and generation throughput, then a few search rounds in which a
Navigator-like conversation (stateful, ~200 tokens of plain text per turn) and a Generator-like
call (stateless, strategy in -> a structured batch of 10 NAS-Bench-201 cells out) take turns on
one shared model, once without and once with the prefix cache.

    python scripts/bench_llm.py                       # both bundled models, 4 rounds
    python scripts/bench_llm.py --models qwen2.5-coder-1.5b --rounds 2

Writes results/llm_speed.md and results/llm_speed.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from collm_nas.agents.local_llm import (  # noqa: E402
    PREFIX_CACHE_BYTES,
    LocalChatModel,
    PrefixCache,
    get_local_runtime,
    make_local_chat_model,
)
from collm_nas.agents.model_store import MODELS, ModelUnavailable, ensure_model  # noqa: E402
from collm_nas.spaces.nb201 import NB201Arch, NB201Space  # noqa: E402
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, Field

BATCH_SIZE = 10


class Batch(BaseModel):
    architectures: list[NB201Arch] = Field(min_length=BATCH_SIZE, max_length=BATCH_SIZE)


SPACE = NB201Space()

NAVIGATOR_SYSTEM = (
    "You are the Navigator of a neural architecture search. Each round you read the cells that "
    "were evaluated and write a short search strategy for the Generator: which operations to "
    "favour on which edges, what to avoid, and what to try next. Write plain text, about 150 "
    "words, no code.\n\n" + SPACE.describe()
)
GENERATOR_SYSTEM = (
    "You are the Generator of a neural architecture search. Turn the Navigator's strategy into "
    f"exactly {BATCH_SIZE} distinct, complete cells. Answer with JSON only.\n\n" + SPACE.describe()
)


def score(arch: NB201Arch) -> float:
    """A stand-in accuracy (the benchmark is not needed to time the LLM)."""
    genes = SPACE.genes(arch)
    return round(
        85.0 + 1.6 * genes.count("nor_conv_3x3") + 0.7 * genes.count("nor_conv_1x1") - 1.1 * genes.count("none"),
        2,
    )


def results_text(round_no: int, cells: list[NB201Arch]) -> str:
    lines = [f"Round {round_no} results (validation accuracy, %):"]
    lines += [f"- {SPACE.key(cell)}: {score(cell)}" for cell in cells]
    lines.append("Write the strategy for the next round.")
    return "\n".join(lines)


def call_record(role: str, round_no: int, message: AIMessage, **extra) -> dict:
    usage = message.usage_metadata or {}
    timings = message.response_metadata.get("timings", {})
    return {
        "role": role,
        "round": round_no,
        "seconds": message.response_metadata.get("seconds"),
        "input_tokens": usage.get("input_tokens"),
        "cache_read": usage.get("input_token_details", {}).get("cache_read"),
        "prompt_eval_tokens": timings.get("prompt_eval_tokens"),
        "output_tokens": usage.get("output_tokens"),
        "finish_reason": message.response_metadata.get("finish_reason"),
        **extra,
    }


def run_rounds(navigator: LocalChatModel, generator: LocalChatModel, rounds: int) -> list[dict]:
    """Navigator and Generator take turns on one model, as in the search loop."""
    records = []
    history: list[BaseMessage] = [
        SystemMessage(NAVIGATOR_SYSTEM),
        HumanMessage("Round 1: nothing is evaluated yet. Write an initial, diverse strategy."),
    ]
    structured = generator.with_structured_output(Batch, include_raw=True)
    for round_no in range(1, rounds + 1):
        strategy = navigator.invoke(history)
        records.append(call_record("navigator", round_no, strategy))
        history.append(strategy)
        result = structured.invoke([SystemMessage(GENERATOR_SYSTEM), HumanMessage(f"Strategy:\n{strategy.content}")])
        cells = result["parsed"].architectures if result["parsed"] else []
        records.append(
            call_record(
                "generator",
                round_no,
                result["raw"],
                valid=result["parsing_error"] is None,
                unique_cells=len({SPACE.key(c) for c in cells}),
                error=str(result["parsing_error"])[:300] if result["parsing_error"] else None,
            )
        )
        history.append(HumanMessage(results_text(round_no, cells)))
    return records


def raw_throughput(model: LocalChatModel) -> dict:
    """Prompt tok/s on a fresh ~600-token prompt; generation tok/s over 128 free tokens."""
    llama = model.runtime.llama
    llama.set_cache(None)
    llama.reset()
    prompt = [SystemMessage(NAVIGATOR_SYSTEM), HumanMessage("Summarize the space in one word.")]
    read = model.invoke(prompt, max_tokens=1)
    llama.reset()
    write = model.invoke(
        [HumanMessage("Write a long essay about convolutional networks.")],
        max_tokens=128,
        temperature=0.7,
    )
    t_read, t_write = read.response_metadata["timings"], write.response_metadata["timings"]
    return {
        "prompt_tokens": t_read["prompt_eval_tokens"],
        "prompt_tok_s": round(t_read["prompt_eval_tokens"] / t_read["prompt_eval_seconds"], 1),
        "gen_tokens": t_write["eval_tokens"],
        "gen_tok_s": round(t_write["eval_tokens"] / t_write["eval_seconds"], 1),
    }


def bench_model(name: str, rounds: int, n_ctx: int, threads: int, seed: int) -> dict:
    path = ensure_model(name)
    started = time.perf_counter()
    runtime = get_local_runtime(str(path), n_ctx, threads)
    load_seconds = time.perf_counter() - started

    def chat(temperature: float, max_tokens: int) -> LocalChatModel:
        return make_local_chat_model(str(path), temperature, max_tokens, seed=seed, n_ctx=n_ctx, n_threads=threads)

    navigator, generator = chat(0.6, 200), chat(0.6, 1400)
    navigator.invoke("Say ok.", max_tokens=2)  # warm-up: page in the weights
    speed = raw_throughput(navigator)
    scenarios = {}
    for label, cache in (("no cache", None), ("prefix cache", PrefixCache(PREFIX_CACHE_BYTES))):
        runtime.llama.set_cache(cache)
        runtime.llama.reset()
        print(f"[{name}] {label}: {rounds} rounds ...", file=sys.stderr, flush=True)
        scenarios[label] = run_rounds(navigator, generator, rounds)
    runtime.llama.set_cache(PrefixCache(PREFIX_CACHE_BYTES))
    return {
        "model": name,
        "file_bytes": path.stat().st_size,
        "load_seconds": round(load_seconds, 2),
        **speed,
        "scenarios": scenarios,
    }


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 2) if values else None


def summarize(result: dict) -> dict:
    out = {}
    for label, records in result["scenarios"].items():
        nav = [r for r in records if r["role"] == "navigator"]
        gen = [r for r in records if r["role"] == "generator"]
        later = [r for r in nav if r["round"] > 1]
        out[label] = {
            "generator_s": _mean(r["seconds"] for r in gen),
            "generator_valid": f"{sum(r['valid'] for r in gen)}/{len(gen)}",
            "generator_unique": _mean(r["unique_cells"] for r in gen),
            "navigator_s": _mean(r["seconds"] for r in nav),
            "navigator_later_s": _mean(r["seconds"] for r in later),
            "navigator_later_evaluated": _mean(r["prompt_eval_tokens"] for r in later),
            "navigator_later_input": _mean(r["input_tokens"] for r in later),
        }
    return out


def markdown(results: list[dict], command: str, args: argparse.Namespace, load: str) -> str:
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "# Local LLM speed",
        "",
        f"Command: `{command}`",
        "",
        f"Date: {now}. Machine: {os.cpu_count()} CPU cores ({platform.machine()}, "
        f"{platform.processor() or 'unknown CPU'}), no GPU; llama.cpp threads: {args.threads}, "
        f"n_ctx {args.n_ctx}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}. "
        f"Load average (1 min) before/after the run: {load}; where it is above zero other work "
        "shared the cores and the numbers are lower than on an idle machine.",
        "",
        "Throughput: prompt tok/s on a fresh prompt; generation tok/s over 128 sampled tokens.",
        "",
        "| model | file | load s | prompt tok/s | gen tok/s |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['model']} | {r['file_bytes'] / 1e9:.2f} GB | {r['load_seconds']} "
            f"| {r['prompt_tok_s']} | {r['gen_tok_s']} |"
        )
    lines += [
        "",
        f"Search rounds ({args.rounds}): each round one Navigator call (growing conversation, "
        f"≤200 tokens of text out) then one Generator call (fresh conversation, strategy in, "
        f"{BATCH_SIZE} NB201 cells out through the JSON-schema grammar), on one shared model. "
        "'later' = Navigator turns 2+; 'evaluated' = prompt tokens llama.cpp actually computed "
        "(the rest came from the cache).",
        "",
        "| model | cache | Generator s/call | valid batches | unique cells/batch "
        "| Navigator s/call | Navigator later s/call | later prompt tokens | later evaluated |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for label, s in summarize(r).items():
            lines.append(
                f"| {r['model']} | {label} | {s['generator_s']} | {s['generator_valid']} "
                f"| {s['generator_unique']} | {s['navigator_s']} | {s['navigator_later_s']} "
                f"| {s['navigator_later_input']} | {s['navigator_later_evaluated']} |"
            )
    lines += [
        "",
        "Per call:",
        "",
        "| model | cache | round | role | s | prompt tokens | from cache | out tokens | valid |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for label, records in r["scenarios"].items():
            for c in records:
                valid = c.get("valid", "")
                lines.append(
                    f"| {r['model']} | {label} | {c['round']} | {c['role']} | {c['seconds']} "
                    f"| {c['input_tokens']} | {c['cache_read']} | {c['output_tokens']} | {valid} |"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--n-ctx", type=int, default=8192)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results"))
    args = parser.parse_args(argv)
    command = "python " + shlex.join(["scripts/bench_llm.py", *(argv or sys.argv[1:])])
    load_before = os.getloadavg()[0]
    results = []
    for name in args.models:
        try:
            results.append(bench_model(name, args.rounds, args.n_ctx, args.threads, args.seed))
        except ModelUnavailable as err:
            print(f"skipping {name}: {err}", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    load = f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"
    (args.out / "llm_speed.md").write_text(markdown(results, command, args, load))
    payload = {"command": command, "cpu_count": os.cpu_count(), "threads": args.threads,
               "n_ctx": args.n_ctx, "rounds": args.rounds, "load_average": load, "results": results,
               "summary": {r["model"]: summarize(r) for r in results}}  # fmt: skip
    (args.out / "llm_speed.json").write_text(json.dumps(payload, indent=2) + "\n")
    print((args.out / "llm_speed.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
