"""Judging stage one: supernet-inherited accuracy against stand-alone training of the same paths.

`verify` samples K distinct paths, scores each with the supernet evaluator (inherited weights,
recalibrated BatchNorm) and trains each from scratch with one recipe, then reports how well the
first ranks the second: Kendall tau and Spearman over all K and over the stand-alone top half,
and the overlap of the two top-k sets. Stand-alone results are cached in a JSON lines file keyed
by path and recipe, so a run can be extended to more paths without training any path twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from collm_nas.spaces import get_space
from collm_nas.spaces.evaluation import Evaluator
from collm_nas.tools.evaluators.weight_sharing import WeightSharingEvaluator
from collm_nas.tools.image_data import loader
from collm_nas.tools.supernet_eval import top1_accuracy
from collm_nas.tools.supernet_train import Recipe, train_standalone
from collm_nas.tools.supernets import family, path_key
from pydantic import BaseModel
from scipy import stats


def sample_paths(space: str, preset: Any, count: int, seed: int) -> list[Any]:
    """`count` distinct uniformly random paths, the same for a seed."""
    rng, paths, kind = np.random.default_rng(seed), {}, family(space)
    while len(paths) < count:
        path = kind.sample(preset, rng)
        paths.setdefault(path_key(space, path), path)
    return list(paths.values())


def standalone_accuracy(evaluator: WeightSharingEvaluator, path: Any, recipe: Recipe,
                        cache: Path) -> dict[str, Any]:
    """Valid/test top-1 of `path` trained from scratch with `recipe` (cached in `cache`)."""
    space = evaluator.run.space
    key, tag = path_key(space, path), json.dumps(asdict(recipe), sort_keys=True)
    if cache.is_file():
        for line in cache.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("key") == key and row.get("recipe") == tag:
                return row
    started = time.monotonic()
    splits = evaluator.splits
    model = train_standalone(space, path, evaluator.run.preset, splits, recipe)
    row = {"key": key, "recipe": tag,
           "valid_acc": top1_accuracy(model, loader(splits.valid, 500, False, 0)),
           "test_acc": top1_accuracy(model, loader(splits.test, 500, False, 0)),
           "seconds": round(time.monotonic() - started, 1)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    with cache.open("a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def standalone_mean(evaluator: WeightSharingEvaluator, path: Any, recipe: Recipe, seeds: list[int],
                    cache: Path) -> dict[str, Any]:
    """`standalone_accuracy` with each of `seeds`; with more than one, the mean and each seed's."""
    runs = [standalone_accuracy(evaluator, path, replace(recipe, seed=s), cache) for s in seeds]
    if len(runs) == 1:
        return runs[0]
    return {"valid_acc": float(np.mean([r["valid_acc"] for r in runs])),
            "test_acc": float(np.mean([r["test_acc"] for r in runs])),
            "seconds": round(sum(r["seconds"] for r in runs), 1),
            "by_seed": [{"seed": s, "valid_acc": r["valid_acc"], "test_acc": r["test_acc"]}
                        for s, r in zip(seeds, runs, strict=True)]}


def rank_agreement(inherited: list[float], standalone: list[float], top_k: int) -> dict[str, float]:
    """Kendall tau and Spearman over all paths and over the stand-alone top half, and the share
    of the stand-alone top-k that the inherited top-k finds."""
    a, b = np.asarray(inherited), np.asarray(standalone)
    half = np.argsort(-b)[: max(2, len(b) // 2)]
    top_inherited = set(np.argsort(-a)[:top_k].tolist())
    top_true = set(np.argsort(-b)[:top_k].tolist())
    return {
        "kendall": float(stats.kendalltau(a, b).statistic),
        "spearman": float(stats.spearmanr(a, b).statistic),
        "kendall_top_half": float(stats.kendalltau(a[half], b[half]).statistic),
        "spearman_top_half": float(stats.spearmanr(a[half], b[half]).statistic),
        "top_k": top_k,
        "top_k_overlap": len(top_inherited & top_true) / top_k,
    }


def table_accuracy(truth: Evaluator, arch: BaseModel) -> dict[str, Any]:
    """A path's accuracy from a benchmark table (NAS-Bench-201), in place of training it."""
    metrics = truth.evaluate(arch)
    return {"valid_acc": metrics.valid_acc, "test_acc": metrics.test_acc, "seconds": 0.0}


def verify(evaluator: WeightSharingEvaluator, subnets: int, recipe: Recipe, seed: int, cache: Path,
           progress: Callable[[int, dict], None] | None = None,
           keys: list[str] | None = None, truth: Evaluator | None = None,
           train_seeds: list[int] | None = None) -> dict[str, Any]:
    """Inherited vs stand-alone accuracy of `subnets` sampled paths (or of the paths `keys`, e.g.
    the ones searches chose), and their agreement. With `truth` (a benchmark table), the
    stand-alone accuracy is the table's and nothing is trained. With several `train_seeds`, each
    path is trained once per seed, its stand-alone accuracy is their mean, and the agreement of
    the first two seeds' rankings measures how noisy that truth is."""
    run = evaluator.run
    space, kind = get_space(run.space), family(run.space)
    paths = ([kind.path_of(space.parse(key)) for key in keys] if keys
             else sample_paths(run.space, run.preset, subnets, seed))
    if len(paths) < 3:
        raise ValueError(f"ranking needs at least 3 paths, got {len(paths)}")
    seeds = train_seeds or [recipe.seed]
    rows = []
    for i, path in enumerate(paths):
        arch = space.parse(path_key(run.space, path))
        started = time.monotonic()
        inherited = evaluator.evaluate(arch)
        seconds = time.monotonic() - started
        alone = (table_accuracy(truth, arch) if truth
                 else standalone_mean(evaluator, path, recipe, seeds, cache))
        mflops, mparams = kind.cost(path, run.preset)
        rows.append({"key": path_key(run.space, path), "mflops": round(mflops, 3), "mparams": round(mparams, 4),
                     "inherited_valid": inherited.valid_acc, "inherited_test": inherited.test_acc,
                     "inherited_seconds": round(seconds, 2), "standalone_valid": alone["valid_acc"],
                     "standalone_test": alone["test_acc"], "standalone_seconds": alone["seconds"],
                     **({"standalone_by_seed": alone["by_seed"]} if "by_seed" in alone else {})})
        if progress:
            progress(i + 1, rows[-1])
    top_k = max(1, len(rows) // 5)
    inherited_valid = [r["inherited_valid"] for r in rows]
    agreement = rank_agreement(inherited_valid, [r["standalone_valid"] for r in rows], top_k)
    if len(seeds) > 1 and not truth:
        per_seed = [[r["standalone_by_seed"][i]["valid_acc"] for r in rows] for i in range(len(seeds))]
        agreement_of_seeds = {
            "seed_agreement": {**rank_agreement(per_seed[0], per_seed[1], top_k), "seeds": seeds[:2]},
            "agreement_by_seed": [{"seed": s, **rank_agreement(inherited_valid, truth_s, top_k)}
                                  for s, truth_s in zip(seeds, per_seed, strict=True)]}
    else:
        agreement_of_seeds = {}
    return {"space": run.space, "checkpoint": str(evaluator.checkpoint), "checkpoint_epochs": run.epoch,
            "supernet_recipe": asdict(evaluator.run.recipe), "evaluator": evaluator.settings,
            "standalone_recipe": ({"truth": truth.kind} if truth
                                  else {**asdict(recipe), "seed": seeds if len(seeds) > 1 else seeds[0]}),
            "seed": seed,
            "given": bool(keys),
            "agreement": agreement, **agreement_of_seeds,
            "paths": rows}


def write_verify(result: dict[str, Any], out: Path, command: str) -> Path:
    """`out` (markdown), its JSON and a scatter plot (PNG) beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"command": command, **result}, indent=1))
    rows, a = result["paths"], result["agreement"]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter([r["standalone_valid"] for r in rows], [r["inherited_valid"] for r in rows], s=14)
    ax.set_xlabel("stand-alone valid top-1 (%)")
    ax.set_ylabel("supernet-inherited valid top-1 (%)")
    ax.set_title(f"{len(rows)} paths: Kendall {a['kendall']:.2f}, Spearman {a['spearman']:.2f}")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)
    lines = [
        f"# Supernet vs stand-alone training ({result['space']})", "",
        f"Command: `{command}`", "",
        f"- checkpoint: `{result['checkpoint']}` ({result['checkpoint_epochs']} epochs; recipe "
        f"{result['supernet_recipe']})",
        f"- supernet evaluator: {result['evaluator']}",
        f"- stand-alone recipe: {result['standalone_recipe']}",
        f"- paths: {len(rows)} " + ("given" if result.get("given") else
                                    f"sampled uniformly with seed {result['seed']}"), "",
        "| | Kendall tau | Spearman |", "|---|---|---|",
        f"| all {len(rows)} paths | {a['kendall']:.3f} | {a['spearman']:.3f} |",
        f"| stand-alone top half | {a['kendall_top_half']:.3f} | {a['spearman_top_half']:.3f} |",
        *seed_lines(result),
        "", f"Top-{a['top_k']} overlap (inherited top-{a['top_k']} among the stand-alone "
        f"top-{a['top_k']}): {a['top_k_overlap']:.2f}", "",
        "| path | MFLOPs | inherited valid | stand-alone valid | stand-alone test | train s |",
        "|---|---|---|---|---|---|",
        *(f"| {r['key']} | {r['mflops']:.2f} | {r['inherited_valid']:.2f} | "
          f"{r['standalone_valid']:.2f} | {r['standalone_test']:.2f} | {r['standalone_seconds']} |"
          for r in sorted(rows, key=lambda r: -r["standalone_valid"])),
        "", f"Scatter plot: `{out.with_suffix('.png').name}`.",
    ]
    out.write_text("\n".join(lines) + "\n")
    return out


def seed_lines(result: dict[str, Any]) -> list[str]:
    """Table rows, when there were several training seeds: the inherited ranking against each
    seed's alone, and two seeds against each other."""
    s = result.get("seed_agreement")
    if not s:
        return []
    a, b = s["seeds"]
    return [*(f"| inherited vs training seed {one['seed']} alone | {one['kendall']:.3f} | "
              f"{one['spearman']:.3f} |" for one in result["agreement_by_seed"]),
            f"| stand-alone, between training seeds {a} and {b} (all paths) | {s['kendall']:.3f} | "
            f"{s['spearman']:.3f} |",
            f"| stand-alone, between training seeds {a} and {b} (top half) | "
            f"{s['kendall_top_half']:.3f} | {s['spearman_top_half']:.3f} |"]


def write_training_curve(history: list[dict[str, float]], out: Path) -> Path:
    """Loss and training accuracy of the sampled paths per epoch (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, left = plt.subplots(figsize=(5, 3.5))
    left.plot(epochs, [h["loss"] for h in history], "o-", color="tab:blue")
    left.set_xlabel("epoch")
    left.set_ylabel("training loss (sampled paths)", color="tab:blue")
    right = left.twinx()
    right.plot(epochs, [h["train_acc"] for h in history], "s-", color="tab:orange")
    right.set_ylabel("training top-1 (%)", color="tab:orange")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
