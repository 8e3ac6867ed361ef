"""Join supernet bench runs (ShuffleNet, AutoFormer) with stand-alone retraining of the
architectures they chose.

Each bench run reports the accuracy its architecture reaches with weights inherited from the
supernet; `collm-nas supernet verify --paths ...` trained the same architectures from scratch. This
script writes one table with both, per method and seed, beside the paper's ImageNet rows.

    python scripts/supernet_macro.py --bench results/shufflenet_bench_100.json \
        results/shufflenet_bench_400.json --retrained results/shufflenet_bench_retrained.json \
        --out results/shufflenet_macro.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

PAPER_ROWS = {  # the CoLLM-NAS paper's rows (PAPER_NOTES.md)
    "shufflenet": (
        "| SPOS (paper, ImageNet, full width) | 1,000 | 73.6 top-1 | 323 MFLOPs |",
        "| SPOS + CoLLM-NAS (paper, ImageNet, full width) | 250 | 73.8 top-1 | 325 MFLOPs |",
    ),
    "autoformer": (
        "| AutoFormer-T / S / B (paper, ImageNet) | 1,000 | 74.7 / 81.6 / 82.1 top-1 | about equal params |",
        "| AutoFormer + CoLLM-NAS, T / S / B (paper, ImageNet) | 250 | 75.3 / 81.7 / 82.3 top-1 | about equal params |",
    ),
}
TITLES = {"shufflenet": "SPOS ShuffleNet", "autoformer": "AutoFormer"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, nargs="+", required=True, help="bench JSON files")
    parser.add_argument("--retrained", type=Path, required=True, help="supernet verify JSON")
    parser.add_argument("--out", type=Path, default=Path("results/shufflenet_macro.md"))
    args = parser.parse_args()
    retrained = json.loads(args.retrained.read_text())
    standalone = {p["key"]: p for p in retrained["paths"]}
    rows, missing, commands = [], [], []
    for path in args.bench:
        bench = json.loads(path.read_text())
        commands.append(f"- `{path.name}`: `{bench['provenance']['command']}`")
        for run in bench["runs"]:
            alone = standalone.get(run["arch"])
            if alone is None:
                missing.append(run["arch"])
                continue
            rows.append(
                f"| {run['method']} | {run['seed']} | {run['evaluations']} | `{run['arch']}` "
                f"| {run['flops_m']:.2f} | {run['params_m']:.3f} | {run['valid_acc']:.2f} | {run['test_acc']:.2f} "
                f"| {alone['standalone_valid']:.2f} | {alone['standalone_test']:.2f} |"
            )
    if missing:
        sys.exit(f"no stand-alone result for {sorted(set(missing))}: run `collm-nas supernet "
                 f"verify --paths {','.join(sorted(set(missing)))}` first")
    recipe = retrained["standalone_recipe"]
    space = retrained.get("space", "shufflenet")
    lines = [
        f"# {TITLES[space]}: what each search chose, inherited and stand-alone",
        "",
        f"Command: `python {shlex.join(sys.argv)}`",
        "",
        "Bench runs:",
        "",
        *commands,
        "",
        f"Fashion-MNIST, reduced preset; checkpoint "
        f"`{retrained['checkpoint']}` ({retrained['checkpoint_epochs']} epochs). Inherited "
        f"accuracies are the bench's own (its evaluator's validation and test samples); "
        f"stand-alone ones come from training each architecture from scratch "
        f"({recipe['epochs']} epoch × {recipe['train_images']} images, {recipe['optimizer']}, "
        f"seed {recipe['seed']}) and scoring the full validation and test sets.",
        "",
        "| method | seed | explored | architecture | MFLOPs | M params | inherited valid "
        "| inherited test | stand-alone valid | stand-alone test |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "The paper's rows, for scale only (different data, width and training):",
        "",
        "| method | explored | accuracy | cost |",
        "|---|---|---|---|",
        *PAPER_ROWS[space],
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(args.out)


if __name__ == "__main__":
    main()
