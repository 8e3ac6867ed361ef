"""A bench that dies keeps every LLM run it finished (results/<out>.partial.json)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from collm_nas.cli import app
from collm_nas.evals import bench
from collm_nas.evals.bench import RunSpec, run_result
from collm_nas.tools.evaluators import make_evaluator
from typer.testing import CliRunner


def test_finished_llm_runs_survive_a_crashed_bench(tmp_path, monkeypatch):
    evaluator = make_evaluator("nb201", "cifar10")

    def one_run(spec: RunSpec):
        if spec.seed == 1:
            raise RuntimeError("the machine went away")
        record = {"key": "k", "valid_acc": 90.0, "test_acc": 93.0, "predicted": False}
        return run_result(spec, [record], evaluator, "budget spent", 1.0)

    monkeypatch.setitem(bench.METHODS, "collm", one_run)
    out = tmp_path / "b.md"
    result = CliRunner().invoke(app, ["bench", "--methods", "collm", "--datasets", "cifar10",
                                      "--runs", "2", "--out", str(out)])
    # not one of our errors: the CLI prints its traceback and exits 1
    assert result.exit_code == 1 and "RuntimeError: the machine went away" in result.output
    kept = json.loads(out.with_suffix(".partial.json").read_text())
    assert [run["seed"] for run in kept] == [0] and kept[0]["valid_acc"] == pytest.approx(90.0)
    assert not out.exists()

    monkeypatch.setitem(bench.METHODS, "collm", lambda spec: one_run(replace(spec, seed=0)))
    done = CliRunner().invoke(app, ["bench", "--methods", "collm", "--datasets", "cifar10",
                                    "--runs", "2", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert out.exists() and not out.with_suffix(".partial.json").exists()
