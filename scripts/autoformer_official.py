"""The official AutoFormer presets here: parameters and FLOPs of the published T/S/B subnets
against the paper's figures, and how long one forward of each supernet takes on this CPU.

    python scripts/autoformer_official.py --out results/autoformer_official.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from collm_nas.spaces.autoformer import (  # noqa: E402
    PRESETS,
    PUBLISHED,
    AutoFormerNet,
    StandAlone,
    cost_of_config,
    largest,
)

PUBLISHED_GFLOPS = {"autoformer-tiny": "1.3"}  # the figure; S and B not checked here


def forward_seconds(model: torch.nn.Module, config, shape, repeats: int) -> float:
    """Median seconds of a no-grad forward of one image (after one warm-up)."""
    x = torch.randn(*shape)
    times = []
    with torch.no_grad():
        model(x, config)
        for _ in range(repeats):
            started = time.perf_counter()
            model(x, config)
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("results/autoformer_official.md"))
    args = parser.parse_args()
    rows = []
    for name, (config, published_m) in PUBLISHED.items():
        preset = PRESETS[name]
        flops_m, params_m = cost_of_config(config, preset)
        built = sum(p.numel() for p in StandAlone(config, preset).parameters())
        torch.manual_seed(0)
        supernet = AutoFormerNet(preset).eval()
        shape = (1, preset.in_channels, preset.resolution, preset.resolution)
        rows.append(
            f"| {name} | e{config.embed_dim}, depth {config.depth} | {built:,} | {published_m} "
            f"| {100 * (params_m - published_m) / published_m:+.2f} % | {flops_m / 1e3:.3f} "
            f"| {PUBLISHED_GFLOPS.get(name, '—')} | {forward_seconds(supernet, config, shape, args.repeats):.3f} "
            f"| {forward_seconds(supernet, largest(preset), shape, args.repeats):.3f} |")
    lines = [
        "# AutoFormer official presets: published subnets and supernet forward time",
        "",
        f"Command: `python {shlex.join(sys.argv)}`",
        "",
        f"Machine: {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average before: "
        f"{os.getloadavg()[0]:.2f}. Parameters counted by the official convention (every parameter "
        "of the sampled network) and equal to the stand-alone network's; FLOPs: multiply-adds of "
        "the patch conv, the linear layers and the two attention products. Forward: one 224x224 "
        f"image through the supernet (weights sliced to the config), median of {args.repeats}.",
        "",
        "| space | published subnet | params here | published (M) | difference | GFLOPs here "
        "| published GFLOPs | forward s, the subnet | forward s, the largest config |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
