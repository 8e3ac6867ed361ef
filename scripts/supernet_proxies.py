"""Zero-cost proxies on the paths of a `collm-nas supernet verify` result (SPOS ShuffleNet or
AutoFormer), ranked against the same stand-alone truth as the supernet (Kendall, Spearman).

    python scripts/supernet_proxies.py --verify results/shufflenet_verify.json \
        --proxies synflow,zen,params,flops,naswot,snip,grad_norm,zico --out results/shufflenet_proxies.md

Data-dependent proxies see one Fashion-MNIST batch (the space's own input, 1x28x28) with random
labels; the networks are the stand-alone `build()` of each path at the preset's width 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from collm_nas.evals.supernet import rank_agreement  # noqa: E402
from collm_nas.spaces import get_space  # noqa: E402
from collm_nas.tools.proxies import proxy_batch, proxy_score  # noqa: E402

TITLES = {"shufflenet": "SPOS ShuffleNet", "autoformer": "AutoFormer"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify", type=Path, required=True)
    parser.add_argument("--proxies", default="synflow,zen,params,flops,naswot,snip,grad_norm,zico")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    verified = json.loads(args.verify.read_text())
    space = get_space(verified.get("space", "shufflenet"))
    paths, dataset = verified["paths"], "fashion-mnist"
    truth = [p["standalone_valid"] for p in paths]
    batch = proxy_batch("fashion-mnist", (1, 28, 28), 10, args.batch, args.seed)
    supernet, top_k = [p["inherited_valid"] for p in paths], max(1, len(paths) // 5)
    rows = [{"proxy": "supernet (inherited valid)", **rank_agreement(supernet, truth, top_k),
             "seconds": sum(p["inherited_seconds"] for p in paths) / len(paths)}]
    for name in args.proxies.split(","):
        results = [proxy_score(space, space.parse(p["key"]), dataset, name, args.seed, batch)
                   for p in paths]
        rows.append({"proxy": name, **rank_agreement([r.score for r in results], truth, top_k),
                     "seconds": sum(r.seconds for r in results) / len(results)})
        print(rows[-1], flush=True)
    command = "python " + " ".join(sys.argv)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    lines = [
        f"# Zero-cost proxies vs the supernet on {TITLES[space.name]} (Fashion-MNIST)", "",
        f"Command: `{command}`", "",
        f"The {len(paths)} paths of `{args.verify}`, each ranked against its stand-alone validation "
        f"accuracy (recipe {verified['standalone_recipe']}). Proxy input: {batch.label} "
        "(Fashion-MNIST at its own size); networks built after `torch.manual_seed(seed)`. "
        "Seconds are per network on this 2-core machine (the supernet's include scoring 20,000 "
        "images, and BN recalibration where the network has batch norm).", "",
        f"| scorer | Kendall | Spearman | Kendall, stand-alone top half | top-{top_k} overlap "
        "| s per network |",
        "|---|---|---|---|---|---|",
        *(f"| {r['proxy']} | {r['kendall']:.3f} | {r['spearman']:.3f} | {r['kendall_top_half']:.3f} "
          f"| {r['top_k_overlap']:.2f} | {r['seconds']:.2f} |" for r in rows),
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
