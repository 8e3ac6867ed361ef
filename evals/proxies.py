"""How well zero-cost proxies rank architectures: correlation with the true accuracies.

For each proxy: Kendall tau and Spearman rho against the valid and test accuracy of the space's
truth (the NAS-Bench-201 table), the top-10 % hit rate (the share of the proxy's top 10 % that
is in the true top 10 %), seconds per network, and bootstrap 95 % intervals (resampling the
networks). `params` and `flops` are counted over the whole space (the cost counter is additive);
the torch proxies run on a random sample. Anchors from RZ-NAS (Table 3) and Abdelfattah et al.
(2021) stand beside ours.
"""

from __future__ import annotations

import itertools
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from collm_nas.spaces import get_space
from collm_nas.tools.cost import shared_cost_counter
from collm_nas.tools.evaluators import make_evaluator
from collm_nas.tools.proxies import DATA_FREE, proxy_batch, proxy_score
from scipy.stats import ConstantInputWarning, kendalltau, spearmanr

WHOLE_SPACE = ("params", "flops")  # cheap: counted for every architecture
TOP_SHARE = 0.10
BOOTSTRAP = 1000
# Correlation with NB201 test accuracy (cifar10, cifar100, imagenet16).
RZNAS_TABLE3 = {  # (Kendall, Spearman)
    "grasp": ((0.37, 0.54), (0.36, 0.51), (0.40, 0.56)),
    "synflow": ((0.54, 0.73), (0.57, 0.76), (0.56, 0.75)),
    "zen": ((0.29, 0.38), (0.28, 0.36), (0.29, 0.40)),
    "zico": ((0.61, 0.80), (0.61, 0.81), (0.60, 0.79)),
}
ABDELFATTAH_SPEARMAN = {  # all 15,625 cells, CIFAR batches
    "grad_norm": (0.59, 0.64, 0.58), "snip": (0.60, 0.64, 0.58), "grasp": (0.51, 0.55, 0.55),
    "fisher": (0.36, 0.39, 0.33), "synflow": (0.74, 0.76, 0.75), "jacob_cov": (0.73, 0.70, 0.70),
}
NB201_DATASETS = ("cifar10", "cifar100", "imagenet16")


def all_architectures(space_name: str) -> list:
    """Every architecture of a space with finite dimensions (NB201: 15,625 cells)."""
    space = get_space(space_name)
    return [space.from_genes(g) for g in itertools.product(*space.dimensions.values())]


def sample_architectures(archs: list, sample: int, seed: int) -> list:
    """`sample` of `archs` drawn without replacement for a seed, in the space's order."""
    chosen = np.random.default_rng(seed).choice(len(archs), min(sample, len(archs)), replace=False)
    return [archs[i] for i in sorted(chosen)]


def hit_rate(scores: np.ndarray, truth: np.ndarray, share: float = TOP_SHARE) -> float:
    """Of the `share` best by `scores`, the fraction also among the `share` best by `truth`."""
    count = max(1, int(round(share * len(scores))))
    chosen = set(np.argsort(-scores, kind="stable")[:count])
    best = set(np.argsort(-truth, kind="stable")[:count])
    return len(chosen & best) / count


def correlations(scores: np.ndarray, truth: np.ndarray, seed: int, sampled: bool = True) -> dict[str, Any]:
    """Kendall, Spearman and the top-10 % hit rate; on a sample each with a bootstrap 95 %
    interval (over the whole space there is no sampling error: `ci95` is None)."""
    rng = np.random.default_rng(seed)
    measures = {
        "kendall": lambda s, t: kendalltau(s, t).statistic,
        "spearman": lambda s, t: spearmanr(s, t).statistic,
        "top10_hit": hit_rate,
    }
    resamples = [rng.integers(0, len(scores), len(scores)) for _ in range(BOOTSTRAP if sampled else 0)]
    result = {}
    with warnings.catch_warnings():  # a tiny resample may be constant: its NaN is left out
        warnings.simplefilter("ignore", ConstantInputWarning)
        for name, measure in measures.items():
            draws = [measure(scores[i], truth[i]) for i in resamples]
            interval = [float(v) for v in np.nanpercentile(draws, [2.5, 97.5])] if sampled else None
            result[name] = {"value": float(measure(scores, truth)), "ci95": interval}
    return result


def run_study(
    space_name: str, dataset: str, proxies: list[str], sample: int, seed: int,
    input_kind: str = "gaussian", batch_size: int = 64, data_path: str | None = None,
    truth_kind: str | None = None, progress=None,
) -> dict[str, Any]:
    """Score the proxies and correlate them with the accuracies of the `truth_kind` evaluator
    (the space's default); `progress(study so far)` after each proxy."""
    space = get_space(space_name)
    truth = make_evaluator(space_name, dataset, truth_kind, data_path)
    archs = all_architectures(space_name)
    sampled = sample_architectures(archs, sample, seed)
    shape = space.input_shape(archs[0], dataset)[1:]
    with torch.no_grad():  # the number of classes, read off the network's output
        classes = space.build(archs[0], dataset)(torch.zeros(1, *shape)).shape[-1]
    batch = proxy_batch(input_kind, shape, classes, batch_size, seed)
    study: dict[str, Any] = {
        "space": space_name, "dataset": dataset, "truth": truth_kind or space.evaluators[0],
        "seed": seed, "sample": len(sampled), "input": batch.label, "batch_size": batch_size, "proxies": {},
    }
    for name in proxies:
        networks = archs if name in WHOLE_SPACE else sampled
        study["proxies"][name] = _study_one(space, dataset, name, networks, truth, seed, batch)
        study["proxies"][name]["input"] = "none (data-free)" if name in DATA_FREE else batch.label
        if progress:
            progress(study)
    return study


def _study_one(space, dataset, name, networks, truth, seed, batch) -> dict[str, Any]:
    counter = shared_cost_counter(space.name, dataset)
    started = time.perf_counter()
    if name in WHOLE_SPACE:  # the additive cost counter: no network is run
        scores = [getattr(counter(a), "params_m" if name == "params" else "flops_m") for a in networks]
        seconds = [(time.perf_counter() - started) / len(networks)] * len(networks)
    else:
        results = [proxy_score(space, a, dataset, name, seed, batch) for a in networks]
        scores, seconds = [r.score for r in results], [r.seconds for r in results]
    metrics = [truth.evaluate(a) for a in networks]
    score_array = np.array(scores, dtype=float)
    sampled = name not in WHOLE_SPACE
    return {
        "networks": len(networks),
        "seconds_per_network": float(np.mean(seconds)),
        "valid": correlations(score_array, np.array([m.valid_acc for m in metrics]), seed, sampled),
        "test": correlations(score_array, np.array([m.test_acc for m in metrics]), seed, sampled),
        # per-network scores of the sample only: the whole-space counts are the cost counter's
        "scores": {space.key(a): s for a, s in zip(networks, scores, strict=True)} if sampled else None,
    }


def _cell(stat: dict[str, Any]) -> str:
    if stat["ci95"] is None:
        return f"{stat['value']:.3f} (whole space)"
    low, high = stat["ci95"]
    return f"{stat['value']:.3f} [{low:.2f}, {high:.2f}]"


def anchors(name: str, dataset: str) -> str:
    """The published figures for this proxy and dataset (test accuracy), or a dash."""
    if dataset not in NB201_DATASETS:
        return "—"
    index = NB201_DATASETS.index(dataset)
    parts = []
    if name in RZNAS_TABLE3:
        k, s = RZNAS_TABLE3[name][index]
        parts.append(f"RZ-NAS {k:.2f} / {s:.2f}")
    if name in ABDELFATTAH_SPEARMAN:
        parts.append(f"Abdelfattah – / {ABDELFATTAH_SPEARMAN[name][index]:.2f}")
    return "; ".join(parts) or "—"


def write_study(study: dict[str, Any], out: Path, command: str) -> Path:
    """The markdown table at `out` and the full results (scores included) beside it as .json."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({**study, "command": command}, indent=1))
    lines = [
        f"# Zero-cost proxies on {study['space']} {study['dataset']} (truth: {study['truth']})",
        "",
        f"Command: `{command}`",
        "",
        f"Torch proxies on a random sample of {study['sample']} networks (seed {study['seed']}); "
        f"params and flops over the whole space. Data-dependent proxies see: {study['input']}. "
        f"Brackets: bootstrap 95 % intervals ({BOOTSTRAP} resamples of the networks). Anchors: "
        "Kendall / Spearman against test accuracy (RZ-NAS Table 3; Abdelfattah et al. 2021, all "
        "cells, CIFAR images).",
        "",
        "| proxy | input | networks | Kendall (valid) | Spearman (valid) | Kendall (test) | "
        "Spearman (test) | top-10 % hit (test) | s / network | anchors (test) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in study["proxies"].items():
        lines.append(
            f"| {name} | {row['input']} | {row['networks']} | {_cell(row['valid']['kendall'])} | "
            f"{_cell(row['valid']['spearman'])} | {_cell(row['test']['kendall'])} | "
            f"{_cell(row['test']['spearman'])} | {_cell(row['test']['top10_hit'])} | "
            f"{row['seconds_per_network']:.3f} | {anchors(name, study['dataset'])} |"
        )
    out.write_text("\n".join(lines) + "\n")
    return out


def limit_threads(threads: int = 1) -> None:
    """Proxies run one network at a time; one thread keeps a shared machine usable."""
    torch.set_num_threads(threads)


def write_summary(studies: list[Path], out: Path) -> Path:
    """One table over datasets: our Spearman (test) per proxy beside the anchors' figures."""
    loaded = [json.loads(path.read_text()) for path in studies]
    lines = [
        "# Zero-cost proxies on NAS-Bench-201: ours vs RZ-NAS Table 3 vs Abdelfattah et al.",
        "",
        "Spearman rho (Kendall tau) against test accuracy; ours with bootstrap 95 % intervals, "
        "the networks counted and the input the proxy saw. From: "
        + ", ".join(f"`{path}`" for path in studies),
        "",
        "| dataset | proxy | input | networks | ours: Spearman (Kendall) | RZ-NAS: Spearman (Kendall) "
        "| Abdelfattah: Spearman | ours − nearest anchor |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for study in loaded:
        dataset = study["dataset"]
        index = NB201_DATASETS.index(dataset)
        for name, row in study["proxies"].items():
            rho, tau = row["test"]["spearman"], row["test"]["kendall"]
            ours = f"{_cell(rho)} ({tau['value']:.3f})"
            rz = RZNAS_TABLE3.get(name)
            rz_text = f"{rz[index][1]:.2f} ({rz[index][0]:.2f})" if rz else "—"
            ab = ABDELFATTAH_SPEARMAN.get(name)
            ab_text = f"{ab[index]:.2f}" if ab else "—"
            anchors_rho = [v for v in (rz and rz[index][1], ab and ab[index]) if v]
            gap = min((rho["value"] - a for a in anchors_rho), key=abs, default=None)
            gap_text = "—" if gap is None else f"{gap:+.3f}"
            lines.append(f"| {dataset} | {name} | {row['input']} | {row['networks']} | {ours} | "
                         f"{rz_text} | {ab_text} | {gap_text} |")
    out.write_text("\n".join(lines) + "\n")
    return out
