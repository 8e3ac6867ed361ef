"""Zen on NAS-Bench-201 under two readings of its batch-norm scaling, on one sample of cells.

    python scripts/zen_conventions.py --sample 300 --seed 1 --out results/zen_conventions.md

`batch variance` is ours (`tools/proxies.py: zen`, the paper's definition: each BatchNorm's
variance of the clean batch); `running variance` is what public reference code reads, the running
variance after its two passes at PyTorch's momentum 0.1, starting from 1. Zen's features come
before the classifier, so one score per cell serves all three datasets. Spearman and Kendall
against test accuracy, with bootstrap 95 % intervals, beside RZ-NAS Table 3's anchors.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from collm_nas.evals.proxies import NB201_DATASETS, RZNAS_TABLE3, all_architectures, correlations, sample_architectures  # noqa: E402
from collm_nas.graph.provenance import command_line  # noqa: E402
from collm_nas.spaces import get_space  # noqa: E402
from collm_nas.tools.evaluators import make_evaluator  # noqa: E402
from collm_nas.tools.proxies import proxy_batch, zen  # noqa: E402

READINGS = {"batch variance (ours)": 1.0, "running variance, momentum 0.1 (reference code)": 0.1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("results/zen_conventions.md"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = get_space("nb201")
    sample = sample_architectures(all_architectures("nb201"), args.sample, args.seed)
    batch = proxy_batch("gaussian", (3, 32, 32), 10, args.batch, args.seed)
    scores = {name: [] for name in READINGS}
    started = time.monotonic()
    for arch in sample:
        torch.manual_seed(args.seed)
        net = space.build(arch, "cifar10")
        for name, momentum in READINGS.items():
            scores[name].append(zen(net, batch, momentum=momentum))
    seconds = time.monotonic() - started
    rows = []
    for i, dataset in enumerate(NB201_DATASETS):
        truth = make_evaluator("nb201", dataset, None)
        accuracy = np.array([truth.evaluate(a).test_acc for a in sample])
        kendall, spearman = RZNAS_TABLE3["zen"][i]
        for name, values in scores.items():
            c = correlations(np.array(values), accuracy, args.seed)
            s, k = c["spearman"], c["kendall"]
            rows.append(f"| {dataset} | {name} | {s['value']:.3f} [{s['ci95'][0]:.2f}, {s['ci95'][1]:.2f}] | "
                        f"{k['value']:.3f} [{k['ci95'][0]:.2f}, {k['ci95'][1]:.2f}] | {spearman:.2f} / "
                        f"{kendall:.2f} | {s['value'] - spearman:+.3f} |")
    args.out.write_text("\n".join([
        "# Zen on NAS-Bench-201: batch-norm scaling read two ways", "",
        f"Command: `{command_line()}`", "",
        f"{len(sample)} cells sampled with seed {args.seed}; Gaussian input and weights (batch "
        f"{args.batch}); {seconds / len(sample):.2f} s per cell for both readings on one thread.",
        "Brackets: bootstrap 95 % intervals (1000 resamples of the cells).", "",
        "| dataset | scaling | Spearman (test) | Kendall (test) | RZ-NAS Spearman / Kendall | "
        "Spearman − anchor |", "|---|---|---|---|---|---|", *rows, ""]))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
