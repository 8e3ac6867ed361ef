"""The OFA MobileNetV3 macro table from the bench JSON files in results/, next to the paper's rows.

    python scripts/macro_table.py [--results results] [--out results/mobilenet_macro_table.md]

Reads results/mobilenet_[nollm_|collm_]f<L>_b<B>.json (FLOPs limit L in M) and
results/mobilenet_lat<L>_b<B>.json (Note10 latency limit L in ms); the limit comes from the file
name. Every accuracy of ours is predicted by OFA's accuracy predictor; the paper's are measured.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from collm_nas.evals.bench import mean_std  # noqa: E402
from collm_nas.evals.tables import bench_rows, ci_text, llm_minus_rule, scored_calls  # noqa: E402

FILE_RE = re.compile(r"mobilenet_(?:nollm_|collm_)?(?P<kind>f|lat)(?P<limit>\d+)_b(?P<budget>\d+)\.json")
METHOD_NAMES = {"rs": "RS", "ea": "EA", "collm-nollm": "collm --llm none",
                "collm": "collm (embedded Qwen2.5-Coder-1.5B)"}
# The paper's Table (ImageNet top-1 measured with inherited supernet weights): limit -> rows.
PAPER_ROWS = {
    200: [("OFA-T: OFA baseline (EA, 5000 explored)", 75.5, 200),
          ("CoLLM-NAS (250 explored)", 75.7, 199)],
    300: [("OFA-S: OFA baseline (EA, 5000 explored)", 77.2, 299),
          ("CoLLM-NAS (250 explored)", 77.6, 297)],
    400: [("OFA-B: OFA baseline (EA, 5000 explored)", 78.2, 399),
          ("CoLLM-NAS (250 explored)", 78.4, 396)],
    500: [("OFA-L: OFA baseline (EA, 5000 explored)", 78.7, 496),
          ("CoLLM-NAS (250 explored)", 78.9, 494)],
}
LLM_HEADER = ("| limit | B | method | seeds paired | method − `--llm none` per seed "
              "| mean ± 95% CI (t) | LLM calls | same-state LLM − rule, mean (± 95% CI over calls) "
              "| same, best candidate | navigator share | prompt tokens / run |\n"
              "|---|---|---|---|---|---|---:|---|---|---:|---:|")
HEADER = ("| limit | B | method | seeds | best top-1 (%) | its FLOPs (M) | its latency (ms) "
          "| mean±std top-1 (%) | mean FLOPs (M) | evaluations | wall s / run | end |\n"
          "|---|---|---|---|---:|---:|---:|---:|---:|---|---|---|")


def load(results: Path) -> dict[tuple[str, int, int, str], list[dict]]:
    groups: dict[tuple[str, int, int, str], list[dict]] = {}
    for path in sorted(results.glob("mobilenet_*.json")):
        match = FILE_RE.fullmatch(path.name)
        if not match:
            continue
        kind = "flops" if match["kind"] == "f" else "latency"
        for run in bench_rows(path):
            key = (kind, int(match["limit"]), int(match["budget"]), run["method"])
            groups.setdefault(key, []).append(run)
    return groups


def row(kind: str, limit: int, budget: int, method: str, runs: list[dict]) -> str:
    best = max(runs, key=lambda r: r["valid_acc"])
    latency = f"{best['latency_ms']:.2f}" if best.get("latency_ms") is not None else ""
    unit = "M" if kind == "flops" else "ms"
    seeds = ",".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
    evaluations = "/".join(str(r["evaluations"]) for r in sorted(runs, key=lambda r: r["seed"]))
    walls = "/".join(f"{r['wall_seconds']:.0f}" for r in sorted(runs, key=lambda r: r["seed"]))
    end = "; ".join(f"{reason} ({n}/{len(runs)})"
                    for reason, n in Counter(r["stop_reason"] for r in runs).items())
    return (f"| {kind} ≤ {limit} {unit} | {budget} | {METHOD_NAMES.get(method, method)} | {seeds} "
            f"| {best['valid_acc']:.2f} *(pred.)* | {best['flops_m']:.1f} | {latency} "
            f"| {mean_std([r['valid_acc'] for r in runs])} "
            f"| {statistics.mean(r['flops_m'] for r in runs):.1f} | {evaluations} | {walls} | {end} |")


def table(groups: dict[tuple[str, int, int, str], list[dict]]) -> str:
    lines = [HEADER]
    order = list(METHOD_NAMES)
    for kind in ("flops", "latency"):
        for limit in sorted({k[1] for k in groups if k[0] == kind}):
            if kind == "flops":
                for name, top1, flops in PAPER_ROWS.get(limit, []):
                    lines.append(f"| **flops ≤ {limit} M** | paper | {name} | | {top1} *(measured)* "
                                 f"| {flops} | | | | | | |")
            keys = sorted((k for k in groups if k[:2] == (kind, limit)),
                          key=lambda k: (k[2], order.index(k[3]) if k[3] in order else len(order)))
            lines += [row(*k, groups[k]) for k in keys]
    return "\n".join(lines)


def llm_row(label: str, budget: int, method: str, pairs: list[tuple[dict, dict]], per_seed: str) -> str:
    """One row: `pairs` of (LLM run, the `--llm none` run of the same seed and limit)."""
    runs = [run for run, _ in pairs]
    diffs = [run["valid_acc"] - base["valid_acc"] for run, base in pairs]
    calls = scored_calls([r["extra"] for r in runs])
    navigator_share = (sum(r["extra"]["sources"].get("navigator", 0) for r in runs)
                       / sum(sum(r["extra"]["sources"].values()) for r in runs))
    shown = (", ".join(f"{d:+.2f}" for d in diffs) if len(diffs) <= 5
             else f"{sum(d < 0 for d in diffs)} of {len(diffs)} below 0")
    return (f"| {label} | {budget} | {METHOD_NAMES.get(method, method)} | {per_seed} "
            f"| {shown} "
            f"| {ci_text(diffs)} | {len(calls)} "
            f"| {ci_text(llm_minus_rule(calls, 'mean'))} | {ci_text(llm_minus_rule(calls, 'best'))} "
            f"| {navigator_share:.0%} "
            f"| {statistics.mean(r['extra']['llm']['prompt_tokens'] for r in runs):.0f} |")


def llm_table(groups: dict[tuple[str, int, int, str], list[dict]]) -> str:
    """Each LLM method against the same loop without its LLM at the same limit, seed by seed, and
    its same-state counterfactual (the LLM's candidates vs the rule's from the same archive);
    then all limits of a kind pooled, where more than one has pairs."""
    lines = [LLM_HEADER]
    pooled: dict[tuple[str, int, str], list[tuple[dict, dict]]] = {}
    for (kind, limit, budget, method), runs in sorted(groups.items()):
        base = {r["seed"]: r for r in groups.get((kind, limit, budget, "collm-nollm"), [])}
        pairs = [(r, base[r["seed"]]) for r in sorted(runs, key=lambda r: r["seed"])
                 if r.get("extra", {}).get("llm", {}).get("calls") and r["seed"] in base]
        if not pairs:
            continue
        pooled.setdefault((kind, budget, method), []).append(pairs)
        unit = "M" if kind == "flops" else "ms"
        lines.append(llm_row(f"{kind} ≤ {limit} {unit}", budget, method, pairs,
                             ",".join(str(r["seed"]) for r, _ in pairs)))
    for (kind, budget, method), per_limit in pooled.items():
        if len(per_limit) > 1:
            pairs = [pair for pairs in per_limit for pair in pairs]
            lines.append(llm_row(f"**{kind}, all {len(per_limit)} limits**", budget, method, pairs,
                                 f"{len(pairs)} pairs"))
    return "\n".join(lines) if len(lines) > 1 else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--out", type=Path, default=Path("results/mobilenet_macro_table.md"))
    args = parser.parse_args()
    groups = load(args.results)
    if not groups:
        sys.exit(f"no mobilenet bench JSON files in {args.results}")
    llm_rows = llm_table(groups)
    llm_section = (
        "\n## The LLM against the same loop without it\n\nPaired by seed with `collm --llm none` "
        "at the same limit and budget (predicted top-1, points). The same-state column scores, at "
        "every Navigator call, the candidates its answer picks and those the LLM-free rule picks "
        "from the same archive (calls of one run are not independent, so that interval is "
        "optimistic). Navigator share = the part of all the runs' evaluated architectures that came "
        "from the Navigator's source.\n\n" + llm_rows + "\n") if llm_rows else ""
    args.out.write_text(
        "# OFA MobileNetV3 macro table: best architecture per limit, budget and method\n\n"
        f"Command: `python scripts/macro_table.py --results {args.results} --out {args.out}` "
        f"({time.strftime('%Y-%m-%d')}), from the bench JSON files named in the script.\n\n"
        "**Every top-1 of ours is *predicted*** by OFA's accuracy predictor (valid = test = the "
        "prediction); the paper's rows are ImageNet top-1 *measured* with inherited supernet "
        "weights. The predictor reads ~4.8 points high on the one subnet we can check "
        "(`results/ofa_predictor_check.md`): compare methods within our rows, and our FLOPs "
        "with the paper's (same OFA counting convention). Best = the best of the seeds (how the "
        "paper reports); latency = Samsung Note10 from OFA's lookup tables (`tools/latency.py`), "
        "counted only under a latency limit. Evaluations and wall seconds are per seed.\n\n"
        + table(groups) + "\n"
        + llm_section
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
