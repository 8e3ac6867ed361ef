"""What the Ray executor costs and what it buys, on this machine (not a test).

1. Per-evaluation overhead: the NAS-Bench-201 table evaluator on `--table-evals` random cells,
   one at a time, in this process (`local`) and through a one-worker Ray pool (`ray`); the
   difference is what a candidate pays for the round trip to a worker.
2. Speed-up: one round of `--supernet-evals` distinct MobileNetV3 subnets evaluated by the OFA
   supernet evaluator (`supernet` kind: copy the subnet out, recalibrate BatchNorm, top-1) with 1
   and with 2 Ray workers (1 CPU each), all candidates sent at once as the graph's `evaluate`
   branches do. There is no trained supernet here: the supernet has OFA's random initial weights
   and the images are a small synthetic ImageNet-layout folder (random pixels), so the accuracies
   mean nothing; the arithmetic per subnet is the real evaluator's at these image counts.

    python scripts/ray_overhead.py                    # writes results/ray_executor.md

Needs the `ray` and `ofa` extras and $COLLM_NAS_DATA (nb201.csv).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import ray
import torch
from collm_nas.spaces import get_space
from collm_nas.spaces.mobilenet import new_ofa_supernet
from collm_nas.tools.executors import EvaluatorSpec, LocalExecutor, RayExecutor, RayOptions
from PIL import Image

CLASSES = ("n01440764", "n01443537")  # the first two ImageNet classes (allow_fewer_classes)


def synthetic_image_folder(root: Path, per_class: int, seed: int) -> Path:
    """An ImageNet-layout folder of random 256x256 JPEGs."""
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for number in range(per_class):
            pixels = rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{number}.JPEG")
    return root


def per_evaluation_ms(evaluate, archs) -> list[float]:
    times = []
    for arch in archs:
        started = time.perf_counter()
        evaluate(arch)
        times.append(1000 * (time.perf_counter() - started))
    return times


def round_seconds(executor, archs) -> float:
    """All candidates at once, one thread each (as LangGraph's `Send` branches)."""
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(archs)) as pool:
        list(pool.map(executor.evaluate, archs))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--table-evals", type=int, default=300)
    parser.add_argument("--supernet-evals", type=int, default=20)
    parser.add_argument("--images", type=int, default=32, help="calibration and validation images each")
    parser.add_argument("--out", type=Path, default=Path("results/ray_executor.md"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    ray.init(num_cpus=2, include_dashboard=False)
    rng = np.random.default_rng(0)

    nb201 = get_space("nb201")
    cells = [nb201.sample(rng).model_dump() for _ in range(args.table_evals)]
    table = EvaluatorSpec("nb201", "cifar10")
    LocalExecutor(table).evaluate(cells[0])  # load the table before timing
    local_ms = per_evaluation_ms(LocalExecutor(table).evaluate, cells)
    one_worker = RayExecutor(table, RayOptions(workers=1))
    one_worker.evaluate(cells[0])
    ray_ms = per_evaluation_ms(one_worker.evaluate, cells)
    one_worker.close()

    mobilenet = get_space("mobilenet")
    keys, subnets = set(), []
    while len(subnets) < args.supernet_evals:
        arch = mobilenet.sample(rng)
        if mobilenet.key(arch) not in keys:
            keys.add(mobilenet.key(arch))
            subnets.append(arch.model_dump())
    with tempfile.TemporaryDirectory() as folder:
        images = synthetic_image_folder(Path(folder), args.images // len(CLASSES), seed=1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            supernet = new_ofa_supernet()
        options = (("supernet", supernet), ("val_dir", str(images)), ("allow_fewer_classes", True),
                   ("calib_images", args.images), ("val_images", args.images),
                   ("batch_size", args.images))
        spec = EvaluatorSpec("mobilenet", "imagenet", "supernet", options=options)
        rounds = {}
        for workers in (1, 2):
            pool = RayExecutor(spec, RayOptions(workers=workers))
            rounds[workers] = round_seconds(pool, subnets)
            pool.close()
    load_after = os.getloadavg()
    ray.shutdown()

    mean_local, mean_ray = statistics.mean(local_ms), statistics.mean(ray_ms)
    lines = [
        "# Ray executor: per-evaluation overhead and round speed-up",
        "",
        f"Command: `{shlex.join([Path(sys.executable).name, *sys.argv])}`  ",
        f"Machine: {platform.node()}, {os.cpu_count()} CPU cores, {platform.python_version()}, "
        f"ray {ray.__version__}, torch {torch.__version__}; local Ray cluster `ray.init(num_cpus=2)`.  ",
        f"Load average (1 min) before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        "(the 2 cores are shared with other users' jobs).",
        "",
        f"## Per-evaluation overhead, table evaluator (NAS-Bench-201 cifar10, {args.table_evals} random cells, "
        "one at a time)",
        "",
        "| executor | mean ms | median ms | p95 ms |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {statistics.mean(t):.3f} | {statistics.median(t):.3f} | "
          f"{np.percentile(t, 95):.3f} |" for name, t in (("local", local_ms), ("ray, 1 worker", ray_ms))),
        "",
        f"Overhead of the Ray path: **{mean_ray - mean_local:.2f} ms per evaluation** (mean).",
        "",
        f"## One round of {args.supernet_evals} supernet evaluations, 1 vs 2 Ray workers (1 CPU each)",
        "",
        "Evaluated: OFA MobileNetV3 w1.2 subnets (distinct random architectures) by the `supernet` "
        "evaluator, supernet on OFA's random initial weights (no trained checkpoint here), "
        f"{args.images} synthetic random-pixel JPEGs (ImageNet layout, 2 class folders) for BN "
        f"recalibration and {args.images} for top-1, at each subnet's resolution. Accuracies are "
        "meaningless; the work per subnet is the real evaluator's at this image count.",
        "",
        "| workers | round s | s per evaluation |",
        "|---:|---:|---:|",
        *(f"| {w} | {s:.1f} | {s / args.supernet_evals:.2f} |" for w, s in rounds.items()),
        "",
        f"Speed-up, 2 workers over 1: **{rounds[1] / rounds[2]:.2f}x**.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
