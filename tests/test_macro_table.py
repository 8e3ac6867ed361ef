"""scripts/macro_table.py: limits from file names, best of the seeds, paper rows beside ours."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "macro_table.py"


def _run(method: str, seed: int, acc: float, flops: float, latency: float | None = None) -> dict:
    return {"method": method, "seed": seed, "valid_acc": acc, "test_acc": acc, "flops_m": flops,
            "latency_ms": latency, "evaluations": 250, "wall_seconds": 3.0,
            "stop_reason": "budget spent"}


def test_macro_table_rows(tmp_path):
    (tmp_path / "mobilenet_f300_b250.json").write_text(json.dumps(
        [_run("ea", 0, 81.2, 298.0), _run("ea", 1, 81.6, 299.5)]))
    (tmp_path / "mobilenet_lat20_b250.json").write_text(json.dumps(
        [_run("collm-nollm", 0, 79.5, 201.0, 19.9)]))
    (tmp_path / "other.json").write_text("[]")
    out = tmp_path / "table.md"
    subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path), "--out", str(out)],
                   check=True, capture_output=True)
    lines = out.read_text().splitlines()
    ea = next(line for line in lines if "| EA |" in line)
    assert ea.startswith("| flops ≤ 300 M | 250 | EA | 0,1 | 81.60 *(pred.)* | 299.5 |")
    assert "81.40±0.28" in ea and "budget spent (2/2)" in ea
    assert any("OFA-S" in line and "77.2 *(measured)*" in line for line in lines)
    nollm = next(line for line in lines if "collm --llm none" in line)
    assert nollm.startswith("| latency ≤ 20 ms | 250 | collm --llm none | 0 | 79.50 *(pred.)* | 201.0 | 19.90 |")
    assert not any("OFA-T" in line for line in lines)  # no 200 M rows without a 200 M bench


def _llm_run(seed: int, acc: float, gains: list[float], navigator: int = 90, prior: int = 10) -> dict:
    calls = [{"iteration": i, "proposer": "steering", "llm": {"n": 10, "mean": 80 + g, "top_rate": None},
              "rule": {"n": 10, "mean": 80.0, "top_rate": None}} for i, g in enumerate(gains)]
    return {**_run("collm", seed, acc, 299.0), "wall_seconds": 800.0,
            "extra": {"llm": {"calls": 25, "prompt_tokens": 88000, "completion_tokens": 1700},
                      "sources": {"navigator": navigator, "neighbours": 240 - navigator, "prior": prior},
                      "counterfactuals": calls}}


def _table(tmp_path) -> list[str]:
    out = tmp_path / "table.md"
    subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path), "--out", str(out)],
                   check=True, capture_output=True)
    return out.read_text().splitlines()


def test_llm_rows_are_paired_with_the_loop_without_llm(tmp_path):
    (tmp_path / "mobilenet_nollm_f300_b250.json").write_text(json.dumps(
        [_run("collm-nollm", 0, 82.0, 299.0), _run("collm-nollm", 1, 81.8, 298.0),
         _run("collm-nollm", 2, 81.6, 297.0)]))
    (tmp_path / "mobilenet_collm_f300_b250.json").write_text(json.dumps(
        [_llm_run(0, 81.9, [0.1, -0.1]), _llm_run(2, 81.4, [0.3])]))
    lines = _table(tmp_path)
    row = next(line for line in lines if "-0.10, -0.20" in line)
    assert row.startswith("| flops ≤ 300 M | 250 | collm (embedded Qwen2.5-Coder-1.5B) ")
    # seeds 0 and 2 pair (seed 1 has no LLM run): diffs -0.10 and -0.20, t with 1 df.
    assert "| 0,2 | -0.10, -0.20 | -0.15 ± 0.64 | 3 | +0.10 ± " in row
    assert "| — | 36% |" in row  # these calls carry no best score
    assert "| 36% | 88000 |" in row
    assert not any("limits**" in line for line in lines)  # one limit: nothing to pool


def test_llm_rows_are_pooled_over_limits(tmp_path):
    for limit, base, runs in (
        (200, [80.0, 79.0], [_llm_run(0, 80.1, [0.2], navigator=50), _llm_run(1, 78.8, [0.4], navigator=50)]),
        (300, [82.0], [_llm_run(0, 81.7, [-0.3], navigator=200, prior=260)]),
    ):
        (tmp_path / f"mobilenet_nollm_f{limit}_b250.json").write_text(json.dumps(
            [_run("collm-nollm", seed, acc, limit - 1.0) for seed, acc in enumerate(base)]))
        (tmp_path / f"mobilenet_collm_f{limit}_b250.json").write_text(json.dumps(runs))
    pooled = next(line for line in _table(tmp_path) if "all 2 limits" in line)
    # pairs +0.10, -0.20, -0.30: mean -0.13, sd 0.21, t(2 df) 4.30 -> ± 0.52; calls +0.2, +0.4, -0.3
    assert "| 3 pairs | +0.10, -0.20, -0.30 | -0.13 ± 0.52 | 3 | +0.10 ± " in pooled
    assert "| 30% | 88000 |" in pooled  # 300 of 1,000 architectures (the runs' shares average 27%)
