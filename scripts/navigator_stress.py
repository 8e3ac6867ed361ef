"""Design check, not an LLM result: how much can a Navigator that cannot read the statistics
cost the default loop? A scripted Navigator states random preferences every round (`random`:
1-2 operations per edge; `uniform`: the same 1-2 operations on every edge, the embedded model's
habit), and the loop runs through the real graph on NAS-Bench-201 at 100 evaluations.
`none` is the same loop without a Navigator.

    python scripts/navigator_stress.py --dataset imagenet16 --seeds 100-159 --style random

Prints how many runs found the valid optimum and the mean test accuracy. Use tuning seeds only.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from collm_nas.evals.bench import METHODS, RunSpec, _llm_method  # noqa: E402
from collm_nas.spaces import get_space  # noqa: E402

STYLES = ("random", "uniform", "none")


def random_replies(style: str, seed: int, rounds: int = 12) -> list[str]:
    """One steering answer per round, drawn from the seed (reproducible)."""
    space = get_space("nb201")
    ops = list(next(iter(space.dimensions.values())))
    rng = np.random.default_rng(10_000 + seed)

    def some() -> list[str]:
        return [str(op) for op in rng.choice(ops, size=int(rng.integers(1, 3)), replace=False)]

    replies = []
    for _ in range(rounds):
        common = some()
        prefer = {group: common if style == "uniform" else some() for group in space.dimension_groups()}
        replies.append(json.dumps({"summary": f"{style} preferences", "prefer": prefer}))
    return replies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="imagenet16")
    parser.add_argument("--seeds", default="100-159", help="first-last, inclusive")
    parser.add_argument("--style", choices=STYLES, default="random")
    args = parser.parse_args()
    first, last = (int(x) for x in args.seeds.split("-"))
    found, tests = 0, []
    for seed in range(first, last + 1):
        spec = RunSpec(method=args.style, space="nb201", dataset=args.dataset, objective="valid",
                       seed=seed, budget=100)
        if args.style == "none":
            result = METHODS["collm-nollm"](spec)
        else:
            script = random_replies(args.style, seed)
            result = _llm_method(navigator_llm={"backend": "fake", "script": script})(spec)
        found += bool(result.optimum_found)
        tests.append(result.test_acc)
    runs = last - first + 1
    print(f"{args.dataset} seeds {args.seeds} navigator={args.style}: valid optimum {found}/{runs}, "
          f"mean test {np.mean(tests):.2f}")


if __name__ == "__main__":
    main()
