"""Provenance: bench JSON and run folders record what made them; merged tables cite inputs."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict
from pathlib import Path

import collm_nas.graph.provenance as prov
import pytest
from collm_nas.agents.llm import LLMSettings
from collm_nas.agents.model_store import MODELS
from collm_nas.evals.bench import RunSpec, run_bench, write_outputs
from collm_nas.evals.tables import load_runs, write_tables
from collm_nas.graph.context import SearchSettings
from collm_nas.graph.run import run_search

REPO = Path(prov.__file__).resolve().parents[1]


def _head() -> str:
    return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def runs():
    return run_bench([RunSpec(m, "nb201", "cifar10", "valid", 0, 5) for m in ("rs", "rea")])


def test_a_bench_json_records_commit_versions_and_command(tmp_path, runs):
    paths = write_outputs(runs, tmp_path / "b.md", "collm-nas bench --budget 5")
    data = json.loads(paths["runs"].read_text())
    made_by = data["provenance"]
    assert made_by["command"] == "collm-nas bench --budget 5"
    assert made_by["git"]["commit"] == _head() and isinstance(made_by["git"]["dirty"], bool)
    assert set(made_by["packages"]) == {"torch", "langgraph", "langchain-core", "llama-cpp-python"}
    assert made_by["packages"]["torch"] and made_by["python"].count(".") == 2
    assert made_by["llms"] == {}  # LLM-free methods only
    assert [r["method"] for r in data["runs"]] == ["rs", "rea"]
    assert f"commit {_head()[:12]}" in paths["table"].read_text()


def test_bench_files_load_in_the_old_and_the_new_format(tmp_path, runs):
    old = tmp_path / "old.json"
    old.write_text(json.dumps([asdict(r) for r in runs]))  # before provenance: a bare list
    new = write_outputs(runs, tmp_path / "new.md", "cmd")["runs"]
    assert load_runs([old]) == load_runs([new]) == runs


def test_merged_results_cite_inputs_inside_results_and_others_as_given(tmp_path, monkeypatch, runs):
    results = tmp_path / "repo" / "results"
    monkeypatch.setattr(prov, "results_dir", lambda: results)
    inside = write_outputs(runs[:1], results / "part" / "a.md", "cmd a")["runs"]
    outside = write_outputs(runs[1:], tmp_path / "b.md", "cmd b")["runs"]
    merged = write_outputs(load_runs([inside, outside]), tmp_path / "m.md", "collm-nas merge",
                           inputs=[inside, outside])
    made_by = json.loads(merged["runs"].read_text())["provenance"]
    assert [i["path"] for i in made_by["inputs"]] == ["results/part/a.json", str(outside)]
    assert made_by["inputs"][0]["provenance"]["command"] == "cmd a"  # each part's own record
    assert f"- `results/part/a.json` (commit {_head()[:12]}" in merged["table"].read_text()
    table = write_tables(load_runs([inside]), tmp_path / "t.md", "collm-nas table", inputs=[inside])
    assert f"- `results/part/a.json` (commit {_head()[:12]}" in table["table"].read_text()


def test_settings_variables_are_recorded_but_never_a_secret(monkeypatch):
    monkeypatch.setenv("COLLM_NAS_BUDGET", "50")
    monkeypatch.setenv("COLLM_NAS_VLLM_API_KEY", "sk-do-not-store")
    recorded = prov.provenance("cmd")["environment"]
    assert recorded["COLLM_NAS_BUDGET"] == "50" and "COLLM_NAS_VLLM_API_KEY" not in recorded


def test_no_git_state_outside_the_package_repository(tmp_path, monkeypatch):
    monkeypatch.setattr(prov, "PACKAGE_ROOT", tmp_path)  # e.g. installed from a wheel
    assert prov.git_state() is None


def test_the_embedded_model_sha256_is_the_store_checked_one_and_a_user_file_is_hashed(tmp_path):
    bundled = prov.llm_fingerprint(LLMSettings(backend="local", model="qwen2.5-coder-1.5b"))
    assert bundled["sha256"] == MODELS["qwen2.5-coder-1.5b"].sha256
    gguf = tmp_path / "mine.gguf"
    gguf.write_bytes(b"GGUF weights")
    mine = prov.llm_fingerprint(LLMSettings(backend="local", model=str(gguf)))
    assert mine["sha256"] == hashlib.sha256(b"GGUF weights").hexdigest()
    served = prov.llm_fingerprint(LLMSettings(backend="vllm", model="Qwen", base_url="http://h/v1"))
    assert served == {"backend": "vllm", "model": "Qwen", "base_url": "http://h/v1"}


def test_a_run_folder_records_provenance_and_each_resume_adds_its_own(tmp_path):
    settings = SearchSettings(mode="collm-nollm", budget=12, iterations=1)
    run_search(settings, run_dir=tmp_path, thread_id="p1")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["provenance"]["git"]["commit"] == _head()
    assert config["provenance"]["llms"] == {}  # the loop ran without its LLM
    run_search(settings.model_copy(update={"iterations": 2}), run_dir=tmp_path, thread_id="p1", resume=True)
    resumed = json.loads((tmp_path / "config.json").read_text())
    assert resumed["provenance"] == config["provenance"] and len(resumed["resumed"]) == 1
    assert resumed["settings"]["iterations"] == 2


def test_a_bench_records_the_commit_it_started_on_even_if_the_tree_moves_meanwhile(
        tmp_path, monkeypatch):
    import collm_nas.cli as cli
    from typer.testing import CliRunner

    head = {"commit": "a" * 40, "dirty": False}

    def bench_then_commit(*args, **kwargs):
        results = run_bench(*args, **kwargs)
        head["commit"] = "b" * 40  # someone commits while the bench runs
        return results

    monkeypatch.setattr(prov, "git_state", lambda: dict(head))
    monkeypatch.setattr(cli, "run_bench", bench_then_commit)
    out = tmp_path / "b.md"
    done = CliRunner().invoke(cli.app, ["bench", "--methods", "rs", "--datasets", "cifar10",
                                    "--budget", "5", "--runs", "1", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert json.loads(out.with_suffix(".json").read_text())["provenance"]["git"]["commit"] == "a" * 40
    assert f"commit {'a' * 12}" in out.read_text()


def test_merging_keeps_one_copy_of_a_run_given_twice_and_refuses_two_that_disagree(tmp_path, runs):
    from collm_nas.errors import CollmNasError

    first = write_outputs(runs, tmp_path / "a.md", "cmd a")["runs"]
    second = write_outputs(runs[:1], tmp_path / "b.md", "cmd b")["runs"]  # rs seed 0 again
    assert load_runs([first, second]) == runs  # not counted twice
    other = json.loads(second.read_text())
    other["runs"][0]["test_acc"] += 1.0  # the same run, another outcome
    second.write_text(json.dumps(other))
    with pytest.raises(CollmNasError, match="rs on nb201 cifar10, seed 0, budget 5.*a.json.*b.json"):
        load_runs([first, second])
