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


def test_llm_rows_are_paired_with_the_loop_without_llm(tmp_path):
    def llm_run(seed: int, acc: float, gains: list[float]) -> dict:
        calls = [{"iteration": i, "proposer": "steering", "llm": {"n": 10, "mean": 80 + g, "top_rate": None},
                  "rule": {"n": 10, "mean": 80.0, "top_rate": None}} for i, g in enumerate(gains)]
        return {**_run("collm", seed, acc, 299.0), "wall_seconds": 800.0,
                "extra": {"llm": {"calls": 25, "prompt_tokens": 88000, "completion_tokens": 1700},
                          "sources": {"navigator": 90, "neighbours": 150, "prior": 10},
                          "counterfactuals": calls}}

    (tmp_path / "mobilenet_nollm_f300_b250.json").write_text(json.dumps(
        [_run("collm-nollm", 0, 82.0, 299.0), _run("collm-nollm", 1, 81.8, 298.0),
         _run("collm-nollm", 2, 81.6, 297.0)]))
    (tmp_path / "mobilenet_collm_f300_b250.json").write_text(json.dumps(
        [llm_run(0, 81.9, [0.1, -0.1]), llm_run(2, 81.4, [0.3])]))
    out = tmp_path / "table.md"
    subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path), "--out", str(out)],
                   check=True, capture_output=True)
    row = next(line for line in out.read_text().splitlines() if "-0.10, -0.20" in line)
    assert row.startswith("| flops ≤ 300 M | 250 | collm (embedded Qwen2.5-Coder-1.5B) ")
    # seeds 0 and 2 pair (seed 1 has no LLM run): diffs -0.10 and -0.20, t with 1 df.
    assert "| 0,2 | -0.10, -0.20 | -0.15 ± 0.64 | 3 | +0.10 ± " in row
    assert "| — | 36% |" in row  # these calls carry no best score
    assert "| 36% | 88000 |" in row
