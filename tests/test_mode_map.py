"""One `mode` per search: the map to each round's first node, the CLI's aliases, old run folders'
flags, and the `measure_llm` node (scripted fake LLMs, no real model)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from collm_nas.agents.llm import LLMSettings, _cached_model
from collm_nas.cli import app, search_mode
from collm_nas.evals.report import write_report
from collm_nas.graph.builder import compile_graph
from collm_nas.graph.context import MODES, SearchSettings
from collm_nas.graph.nodes import FIRST_NODE
from collm_nas.graph.run import load_run_settings, run_search
from collm_nas.spaces import get_space
from langgraph.checkpoint.memory import InMemorySaver
from typer.testing import CliRunner

SPACE = get_space("nb201")
CELLS = [SPACE.sample(np.random.default_rng(i)).model_dump() for i in range(3)]
STEERING = json.dumps({"summary": "s", "prefer": {edge: ["nor_conv_3x3"] for edge in SPACE.dimensions}})
# Replies that serve every role: the Navigator's strategy (free text or steering), a batch.
SCRIPTS = {
    "collm": ([STEERING], ["unused"]),
    "collm-nollm": (["unused"], ["unused"]),
    "paper": (["SUMMARY: s"], [json.dumps({"architectures": CELLS})]),
    "sillm": ([json.dumps({"strategy": "s", "architectures": CELLS})], ["unused"]),
}


@pytest.fixture(autouse=True)
def fresh_models():
    _cached_model.cache_clear()
    yield
    _cached_model.cache_clear()


def settings(mode: str, **overrides) -> SearchSettings:
    navigator, generator = SCRIPTS[mode]
    return SearchSettings(**{
        "mode": mode, "evaluator": "synthetic", "iterations": 2, "budget": 6, "candidates": 3, "generator_retries": 0,
        "navigator_llm": LLMSettings(backend="fake", script=navigator),
        "generator_llm": LLMSettings(backend="fake", script=generator), **overrides,
    })


def nodes_run(s: SearchSettings) -> list[str]:
    """The graph's nodes in the order they ran, one entry per step (evaluations once per round)."""
    graph = compile_graph(InMemorySaver())
    ran: list[str] = []
    for chunk in graph.stream({}, {"configurable": {"thread_id": "t"}}, context=s,
                              stream_mode="updates"):
        for node in chunk:
            if not ran or ran[-1] != node:  # a round's parallel evaluations count once
                ran.append(node)
    return ran


def test_every_mode_has_a_first_node_in_the_graph():
    assert set(FIRST_NODE) == set(MODES)
    assert set(FIRST_NODE.values()) <= set(compile_graph().get_graph().nodes)


@pytest.mark.parametrize(
    "mode, round_steps",
    [
        ("collm", ["steer", "propose", "screen_candidates", "measure_llm", "evaluate"]),
        ("collm-nollm", ["propose", "screen_candidates", "evaluate"]),
        ("paper", ["navigate", "generate", "screen_candidates", "measure_llm", "evaluate"]),
        ("sillm", ["reflect_and_generate", "screen_candidates", "measure_llm", "evaluate"]),
    ],
)
def test_each_round_runs_the_modes_steps_and_measures_the_llm_where_one_acted(mode, round_steps):
    ran = nodes_run(settings(mode))
    assert ran[:len(round_steps) + 1] == [*round_steps, "record_round"]
    assert ran[0] == FIRST_NODE[mode]


def test_measure_llm_is_skipped_when_switched_off():
    assert "measure_llm" not in nodes_run(settings("collm", measure_llm=False))


def test_measure_llm_is_a_node_of_the_graph_after_screening():
    drawn = compile_graph().get_graph()
    assert "measure_llm" in drawn.nodes
    edges = {(e.source, e.target) for e in drawn.edges}
    assert ("screen_candidates", "measure_llm") in edges and ("measure_llm", "evaluate") in edges


@pytest.mark.parametrize(
    "mode, llm, single_llm, expected",
    [
        ("collm", "local", False, "collm"),
        ("collm", "none", False, "collm-nollm"),
        ("collm-nollm", "local", False, "collm-nollm"),
        ("paper", "openai", False, "paper"),
        ("collm", "local", True, "sillm"),
        ("paper", "local", True, "sillm"),
        ("sillm", "vllm", False, "sillm"),
        ("rznas", "local", False, "rznas"),
        ("rznas", "none", False, "rznas-nollm"),
        ("rznas-nollm", "local", False, "rznas-nollm"),
    ],
)
def test_cli_flags_are_aliases_of_one_mode(mode, llm, single_llm, expected):
    assert search_mode(mode, llm, single_llm) == expected


@pytest.mark.parametrize(
    "args, words",
    [
        (["--llm", "none", "--mode", "paper"], "needs the LLM"),
        (["--llm", "none", "--single-llm"], "needs the LLM"),
        (["--mode", "steer"], "collm, collm-nollm, paper, sillm"),
    ],
)
def test_cli_rejects_a_mode_that_cannot_run_in_one_line(args, words):
    done = CliRunner().invoke(app, ["search", *args])
    assert done.exit_code == 2 and words in " ".join(done.output.split())


@pytest.mark.parametrize(
    "old, mode",
    [
        ({"use_llm": True, "single_llm": False, "mode": "collm"}, "collm"),
        ({"use_llm": False, "single_llm": False, "mode": "collm"}, "collm-nollm"),
        ({"use_llm": False, "single_llm": True, "mode": "collm"}, "collm-nollm"),
        ({"use_llm": True, "single_llm": False, "mode": "paper"}, "paper"),
        ({"use_llm": True, "single_llm": True, "mode": "collm"}, "sillm"),
        ({"single_llm": False}, "paper"),  # written before `mode` existed: the paper's loop
        ({"single_llm": True}, "sillm"),
    ],
)
def test_old_config_flags_load_as_their_mode(old, mode):
    assert SearchSettings.model_validate(old).mode == mode


def test_old_config_asking_for_paper_without_llm_fails_clearly():
    with pytest.raises(ValueError, match="needs the LLM"):
        SearchSettings.model_validate({"use_llm": False, "single_llm": False, "mode": "paper"})


@pytest.mark.parametrize(
    "old, line",
    [
        ({"use_llm": False, "single_llm": False, "mode": "collm"}, "LLMs: none"),
        ({"use_llm": True, "single_llm": True, "mode": "collm"}, "LLMs (single LLM)"),
        ({"use_llm": True, "single_llm": False, "mode": "paper"}, "LLMs (Navigator + Generator)"),
    ],
)
def test_an_old_run_folder_loads_for_resume_and_report(tmp_path, old, line):
    run_dir = tmp_path / "run"
    run_search(settings("collm-nollm"), run_dir=run_dir, thread_id="old")
    config = json.loads((run_dir / "config.json").read_text())
    config["settings"] = {k: v for k, v in config["settings"].items() if k != "mode"} | old
    (run_dir / "config.json").write_text(json.dumps(config))
    thread_id, loaded = load_run_settings(run_dir)
    assert thread_id == "old" and loaded.mode == SearchSettings.model_validate(old).mode
    write_report(run_dir)
    assert line in (run_dir / "summary.md").read_text()


def test_agents_do_not_import_the_graph():
    agents = Path(__file__).resolve().parents[1] / "agents"
    for module in agents.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert not (node.module or "").startswith("collm_nas.graph"), module.name
