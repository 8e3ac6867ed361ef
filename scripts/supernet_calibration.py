"""How the number of BatchNorm calibration batches changes supernet evaluation: throughput
(subnets per minute on this machine) and rank agreement with stand-alone training.

Reads the paths and stand-alone accuracies of a `collm-nas supernet verify` result, scores every
path with the supernet evaluator at each calibration size (no cache), and writes a markdown table
with the command that produced it (and its JSON beside it).

    python scripts/supernet_calibration.py --verify results/shufflenet_verify.json \
        --calib 1,2,5,10,20,40 --out results/shufflenet_calibration.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collm_nas.evals.supernet import rank_agreement  # noqa: E402
from collm_nas.spaces.shufflenet import ShuffleNetSpace  # noqa: E402
from collm_nas.tools.evaluators.weight_sharing import WeightSharingEvaluator  # noqa: E402

SPACE = ShuffleNetSpace()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify", type=Path, required=True, help="JSON written by supernet verify")
    parser.add_argument("--calib", default="1,2,5,10,20,40", help="calibration batch counts")
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("results/shufflenet_calibration.md"))
    args = parser.parse_args()
    verified = json.loads(args.verify.read_text())
    paths = verified["paths"]
    truth = [p["standalone_valid"] for p in paths]
    rows = []
    for count in (int(c) for c in args.calib.split(",")):
        evaluator = WeightSharingEvaluator(verified["checkpoint"], calib_batches=count,
                                          batch_size=args.batch_size,
                                          valid_images=verified["evaluator"]["valid_images"],
                                          cache=False)
        started = time.monotonic()
        scores = [evaluator.evaluate(SPACE.parse(p["key"])).valid_acc for p in paths]
        seconds = (time.monotonic() - started) / len(paths)
        agreement = rank_agreement(scores, truth, verified["agreement"]["top_k"])
        rows.append({"calib_batches": count, "calib_images": count * args.batch_size,
                     "seconds_per_subnet": round(seconds, 2),
                     "subnets_per_minute": round(60 / seconds, 1), **agreement,
                     "mean_inherited_valid": round(sum(scores) / len(scores), 2)})
        print(rows[-1], flush=True)
    command = "python " + " ".join(sys.argv)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    lines = [
        "# Supernet evaluation: BatchNorm calibration batches vs throughput and ranking", "",
        f"Command: `{command}`", "",
        f"{len(paths)} paths of `{args.verify}` (checkpoint `{verified['checkpoint']}`); each "
        "evaluation recalibrates BN, then scores the validation images "
        f"({verified['evaluator']['valid_images'] or 'all'}) and the 10,000 test images, on this "
        "2-core machine. Kendall/Spearman against the stand-alone validation accuracies.", "",
        "| calibration batches (images) | s per subnet | subnets per minute | Kendall | Spearman "
        "| Kendall, top half | mean inherited valid |",
        "|---|---|---|---|---|---|---|",
        *(f"| {r['calib_batches']} ({r['calib_images']}) | {r['seconds_per_subnet']} | "
          f"{r['subnets_per_minute']} | {r['kendall']:.3f} | {r['spearman']:.3f} | "
          f"{r['kendall_top_half']:.3f} | {r['mean_inherited_valid']} |" for r in rows),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
