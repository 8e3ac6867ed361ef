"""The merged bench tables compute what their headers say (synthetic runs)."""

from __future__ import annotations

import json
import subprocess
import sys

from collm_nas.evals.bench import RunResult
from collm_nas.evals.tables import comparison_table, counterfactual_table, paired_table, source_table


def run(method: str, seed: int, valid: float, found: bool, **extra) -> RunResult:
    return RunResult(
        method=method, space="nb201", dataset="cifar10", objective="valid", seed=seed, budget=100,
        evaluations=100, arch="a", valid_acc=valid, test_acc=valid + 3, flops_m=1.0, params_m=0.1,
        optimum_found=found, predicted=False, stop_reason="budget", wall_seconds=2.0,
        curve=[valid - 1] * 50 + [valid] * 50, extra=extra,
    )


def measured(llm: float, rule: float, llm_top: float, rule_top: float) -> dict:
    return {"iteration": 1, "proposer": "steering", "llm": {"n": 10, "mean": llm, "top_rate": llm_top},
            "rule": {"n": 10, "mean": rule, "top_rate": rule_top}}


RUNS = [
    run("collm-nollm", 0, 91.0, False, sources={"neighbours": 90, "random": 10}),
    run("collm-nollm", 1, 91.5, True, sources={"neighbours": 90, "random": 10}),
    run("collm", 0, 91.5, True, llm={"calls": 10, "prompt_tokens": 900, "completion_tokens": 100},
        sources={"neighbours": 80, "navigator": 10, "random": 10},
        counterfactuals=[measured(90.0, 89.0, 0.2, 0.1), measured(88.0, 89.0, 0.0, 0.1)]),
    run("collm", 1, 91.5, True, llm={"calls": 10, "prompt_tokens": 900, "completion_tokens": 100},
        sources={"neighbours": 70, "navigator": 20, "random": 10},
        counterfactuals=[measured(91.0, 89.0, 0.3, 0.1)]),
]


def test_comparison_rows():
    table = comparison_table(RUNS)
    assert "| cifar10 | collm | 0–1 (2) | 100 | 94.50±0.00 | 91.50±0.00 | 2/2 | 90.50 / 90.50 / 91.50 / 91.50 | 2.0 | 1000 |" in table
    assert "| cifar10 | collm-nollm | 0–1 (2) | 100 | 94.25±0.35 | 91.25±0.35 | 1/2 |" in table


def test_counterfactual_and_paired_and_sources():
    cf = counterfactual_table(RUNS)
    assert "| cifar10 | collm | 3 | 89.67 | 89.00 | +0.67 ±" in cf
    assert cf.endswith("| — |")  # these calls predate the best score
    with_best = [run("collm", 0, 91.5, True, llm={"calls": 2}, counterfactuals=[
        {**measured(90.0, 89.0, 0.2, 0.1), "llm": {"n": 10, "mean": 90.0, "best": 92.0, "top_rate": 0.2},
         "rule": {"n": 10, "mean": 89.0, "best": 93.0, "top_rate": 0.1}}])]
    assert counterfactual_table(with_best).endswith("| -1.00 (one unit, no CI) |")
    paired = paired_table(RUNS)
    assert "| cifar10 | collm | collm-nollm | 2 | 2 / 1 | +0.25 ± 3.18 |" in paired  # t(0.975, 1 df) = 12.71
    sources = source_table(RUNS)
    cells = lambda line: [c.strip() for c in line.strip("|").split("|")]  # noqa: E731
    header = cells(sources.splitlines()[0])
    row = cells(next(line for line in sources.splitlines() if "| collm |" in line))
    assert row[header.index("navigator")] == "15%" and row[header.index("neighbours")] == "75%"


def test_each_llm_method_is_paired_with_its_own_loop_without_the_llm():
    from collm_nas.evals.tables import llm_free_counterpart

    assert llm_free_counterpart("collm-navmem-off") == "collm-nollm"
    assert llm_free_counterpart("rznas:synflow") == "rznas-nollm:synflow"
    assert llm_free_counterpart("collm+zico") == "collm-nollm+zico"
    runs = [run("rznas:synflow", 0, 91.0, None, llm={"calls": 8}),
            run("rznas-nollm:synflow", 0, 90.5, None), run("collm-nollm", 0, 95.0, True)]
    assert "| cifar10 | rznas:synflow | rznas-nollm:synflow | 1 | — | +0.50" in paired_table(runs)


def test_confidence_interval_is_students_t_not_normal():
    from collm_nas.evals.tables import ci_text

    # Three paired seeds: sd 0.1, so the normal 1.96 would give ± 0.11; t with 2 df is 4.30.
    assert ci_text([-0.2, -0.1, 0.0]) == "-0.10 ± 0.25"
    assert ci_text([0.5] * 3) == "+0.50 ± 0.00"
    assert ci_text([0.4]) == "+0.40 (one unit, no CI)"
    assert ci_text([]) == "—"


def test_predictor_runs_have_no_optimum_or_top_rate_and_are_labelled(tmp_path):
    from collm_nas.evals.tables import write_tables

    cf = {"iteration": 1, "proposer": "steering", "llm": {"n": 10, "mean": 81.2, "top_rate": None},
          "rule": {"n": 10, "mean": 81.0, "top_rate": None}}
    runs = [
        RunResult(method="collm", space="mobilenet", dataset="imagenet", objective="valid", seed=0,
                  budget=250, evaluations=250, arch="a", valid_acc=81.9, test_acc=81.9,
                  flops_m=299.8, params_m=7.3, optimum_found=None, predicted=True,
                  stop_reason="budget", wall_seconds=900.0, curve=[81.9] * 250,
                  extra={"llm": {"calls": 25}, "counterfactuals": [cf, cf]}),
    ]
    runs.append(RunResult(**{**runs[0].__dict__, "method": "collm-nollm", "valid_acc": 81.5,
                             "test_acc": 81.5, "extra": {}}))
    assert "| — | 81.90 / 81.90 / 81.90 / 81.90 |" in comparison_table(runs)  # @62/125/188/250
    assert "@62/125/188/250" in comparison_table(runs)
    assert "| imagenet | collm | collm-nollm | 1 | — | +0.40 (one unit, no CI) |" in paired_table(runs)
    assert "| 81.20 | 81.00 | +0.20 ± 0.00 | — | — | — | — |" in counterfactual_table(runs)
    text = write_tables(runs, tmp_path / "t.md", "cmd")["table"].read_text()
    assert text.startswith("# OFA MobileNetV3 at 250") and "predicted" in text


def test_table_command_refuses_mixed_objectives(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    from dataclasses import asdict

    a.write_text(json.dumps([asdict(RUNS[0])]))
    b.write_text(json.dumps([{**asdict(RUNS[1]), "objective": "test"}]))
    done = subprocess.run([sys.executable, "-m", "collm_nas.cli", "table", str(a), str(b), "--out",
                           str(tmp_path / "t.md")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "mix objectives" in done.stderr
    done = subprocess.run([sys.executable, "-m", "collm_nas.cli", "table", str(a), "--out",
                           str(tmp_path / "t.md")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and (tmp_path / "t.png").exists()


def test_merge_joins_per_seed_benches_counts_a_repeated_run_once_and_refuses_two_outcomes(tmp_path):
    from dataclasses import asdict

    parts = []
    for i, r in enumerate(RUNS[2:]):
        parts.append(tmp_path / f"seed{i}.json")
        parts[-1].write_text(json.dumps([asdict(r)]))
    out = tmp_path / "merged.md"
    done = subprocess.run([sys.executable, "-m", "collm_nas.cli", "merge", *map(str, parts), "--out", str(out),
                           "--note", "one process per seed"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    merged = json.loads(out.with_suffix(".json").read_text())["runs"]  # beside its "provenance"
    assert [(r["method"], r["seed"]) for r in merged] == [("collm", 0), ("collm", 1)]
    text = out.read_text()
    assert "| collm |" in text and "one process per seed" in text and out.with_suffix(".png").exists()
    twice = subprocess.run([sys.executable, "-m", "collm_nas.cli", "merge", str(parts[0]), str(parts[0]),
                            "--out", str(tmp_path / "once.md")], capture_output=True, text=True, timeout=300)
    assert twice.returncode == 0, twice.stderr
    assert len(json.loads((tmp_path / "once.json").read_text())["runs"]) == 1
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps([{**asdict(RUNS[2]), "valid_acc": RUNS[2].valid_acc - 1}]))
    clash = subprocess.run([sys.executable, "-m", "collm_nas.cli", "merge", str(parts[0]), str(changed),
                            "--out", str(tmp_path / "bad.md")], capture_output=True, text=True, timeout=300)
    assert clash.returncode == 2 and "with different results" in clash.stderr
    assert not (tmp_path / "bad.md").exists()
