"""The weight-sharing supernets stage one trains, one `Family` per space.

A family says how its space's supernet is built, how a path through it is sampled during
training, how an architecture becomes a path, and how a path becomes a stand-alone network. A
path is what the supernet's `forward(x, path)` takes: SPOS ShuffleNet's 20 unit indices, or an
AutoFormer `Config`. Training, the `supernet` evaluator and `supernet verify` only use this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from collm_nas.errors import CollmNasError
from collm_nas.spaces import autoformer, shufflenet
from pydantic import BaseModel
from torch import nn


class NoSupernet(CollmNasError, ValueError):
    """A space without a weight-sharing supernet here."""


@dataclass(frozen=True)
class Family:
    """How one space's supernet is built, sampled and cut into stand-alone networks."""

    preset_from_dict: Callable[[dict[str, Any]], Any]
    supernet: Callable[[Any, bool], nn.Module]  # (preset, same_start)
    standalone: Callable[[Any, Any], nn.Module]  # (path, preset)
    sample: Callable[[Any, np.random.Generator], Any]  # (preset, rng) -> a uniform path
    path_of: Callable[[BaseModel], Any]
    cost: Callable[[Any, Any], tuple[float, float]]  # (path, preset) -> (MFLOPs, M params)
    flops_range: Callable[[Any], tuple[float, float]]


def _shufflenet_preset(fields: dict[str, Any]) -> shufflenet.Preset:
    return shufflenet.Preset(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in fields.items()})


def _shufflenet_path(preset: shufflenet.Preset, rng: np.random.Generator) -> tuple[int, ...]:
    return tuple(int(c) for c in rng.integers(len(shufflenet.CHOICES), size=shufflenet.N_BLOCKS))


def _autoformer_path(preset: autoformer.Preset, rng: np.random.Generator) -> autoformer.Config:
    """Uniform: the embedding dim, the depth, then each active layer's MLP ratio and heads."""
    def pick(values):
        return values[int(rng.integers(len(values)))]

    embed, depth = pick(preset.embed_dims), pick(preset.depths)
    return autoformer.Config(embed, depth, tuple(pick(preset.mlp_ratios) for _ in range(depth)),
                             tuple(pick(preset.heads) for _ in range(depth)))


def _autoformer_flops_range(preset: autoformer.Preset) -> tuple[float, float]:
    low, high = autoformer.cost_range(preset)
    return low[0], high[0]


SHUFFLENET = Family(
    preset_from_dict=_shufflenet_preset,
    supernet=lambda preset, same_start: shufflenet.ShuffleNetSupernet(preset, same_start),
    standalone=lambda path, preset: shufflenet.ShuffleNetV2(path, preset),
    sample=_shufflenet_path, path_of=shufflenet.path_of, cost=shufflenet.cost_of_path,
    flops_range=shufflenet.flops_range,
)
AUTOFORMER = Family(
    preset_from_dict=autoformer.Preset.from_dict,
    supernet=lambda preset, same_start: autoformer.AutoFormerNet(preset),
    standalone=lambda path, preset: autoformer.StandAlone(path, preset),
    sample=_autoformer_path, path_of=autoformer.config_of, cost=autoformer.cost_of_config,
    flops_range=_autoformer_flops_range,
)
FAMILIES = {"shufflenet": SHUFFLENET, **{name: AUTOFORMER for name in autoformer.PRESETS}}


def family(space: str) -> Family:
    if space not in FAMILIES:
        raise NoSupernet(f"no weight-sharing supernet is built for the {space} space; these "
                         f"have one: {', '.join(FAMILIES)}")
    return FAMILIES[space]


def default_preset(space: str, dataset: str) -> Any:
    """The preset a search on `space` and `dataset` counts its costs on."""
    if space == "shufflenet":
        return shufflenet.PRESETS[dataset]
    preset = autoformer.PRESETS[space]
    if preset.dataset != dataset:
        raise NoSupernet(f"the {space} space is for {preset.dataset}, not {dataset}")
    return preset


def path_key(space: str, path: Any) -> str:
    """The space's key of a path (what caches and result files use)."""
    if space == "shufflenet":
        return "".join(map(str, path))
    return autoformer.config_key(path)
