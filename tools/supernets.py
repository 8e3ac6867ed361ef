"""The weight-sharing supernets stage one trains, one `Family` per space.

A family says how its space's supernet is built, how a path through it is sampled during
training, how an architecture becomes a path, and how a path becomes a stand-alone network. A
path is what the supernet's `forward(x, path)` takes: SPOS ShuffleNet's 20 unit indices, or an
AutoFormer `Config`. Training, the `supernet` evaluator and `supernet verify` only use this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from collm_nas.errors import CollmNasError
from collm_nas.spaces import autoformer, nb201, shufflenet
from collm_nas.spaces.shufflenet import count_conv_linear
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
    preset_for: Callable[[str], Any]  # dataset -> the preset a search counts its costs on
    key: Callable[[Any], str]  # path -> the space's key (what caches and result files use)


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


def _autoformer_preset(space: str) -> Callable[[str], autoformer.Preset]:
    def preset_for(dataset: str) -> autoformer.Preset:
        preset = autoformer.PRESETS[space]
        if preset.dataset != dataset:
            raise NoSupernet(f"the {space} space is for {preset.dataset}, not {dataset}")
        return preset

    return preset_for


def _nb201_preset(dataset: str) -> nb201.Preset:
    if dataset != "cifar10":  # the only NB201 dataset `tools/image_data.py` can load
        raise NoSupernet(f"the NAS-Bench-201 supernet trains and evaluates on cifar10 (a "
                         f"torchvision CIFAR-10 root); {dataset} images have no loader here")
    return nb201.PRESETS[dataset]


def _nb201_cost(path: tuple[str, ...], preset: nb201.Preset) -> tuple[float, float]:
    return count_conv_linear(nb201.standalone(path, preset), (1, 3, preset.size, preset.size))


def _nb201_flops_range(preset: nb201.Preset) -> tuple[float, float]:
    """All edges without a convolution, all 3x3 convolutions."""
    return _nb201_cost(("none",) * 6, preset)[0], _nb201_cost(("nor_conv_3x3",) * 6, preset)[0]


SHUFFLENET = Family(
    preset_from_dict=_shufflenet_preset,
    supernet=lambda preset, same_start: shufflenet.ShuffleNetSupernet(preset, same_start),
    standalone=lambda path, preset: shufflenet.ShuffleNetV2(path, preset),
    sample=_shufflenet_path, path_of=shufflenet.path_of, cost=shufflenet.cost_of_path,
    flops_range=shufflenet.flops_range, preset_for=shufflenet.PRESETS.__getitem__,
    key=lambda path: "".join(map(str, path)),
)
AUTOFORMER = Family(
    preset_from_dict=autoformer.Preset.from_dict,
    supernet=lambda preset, same_start: autoformer.AutoFormerNet(preset),
    standalone=lambda path, preset: autoformer.StandAlone(path, preset),
    sample=_autoformer_path, path_of=autoformer.config_of, cost=autoformer.cost_of_config,
    flops_range=_autoformer_flops_range, preset_for=_autoformer_preset("autoformer"),
    key=autoformer.config_key,
)
NB201 = Family(
    preset_from_dict=nb201.Preset.from_dict,
    supernet=lambda preset, same_start: nb201.NB201Supernet(preset),
    standalone=nb201.standalone,
    sample=lambda preset, rng: tuple(nb201.OPS[i] for i in rng.integers(len(nb201.OPS), size=len(nb201.EDGES))),
    path_of=lambda arch: tuple(getattr(arch, edge) for edge in nb201.EDGES), cost=_nb201_cost,
    flops_range=_nb201_flops_range, preset_for=_nb201_preset,
    key=lambda path: nb201.NB201Space().key(nb201.NB201Space().from_genes(path)),
)
FAMILIES = {"shufflenet": SHUFFLENET, "nb201": NB201,
            **{name: replace(AUTOFORMER, preset_for=_autoformer_preset(name)) for name in autoformer.PRESETS}}


def family(space: str) -> Family:
    if space not in FAMILIES:
        raise NoSupernet(f"no weight-sharing supernet is built for the {space} space; these "
                         f"have one: {', '.join(FAMILIES)}")
    return FAMILIES[space]


def default_preset(space: str, dataset: str) -> Any:
    """The preset a search on `space` and `dataset` counts its costs on."""
    return family(space).preset_for(dataset)


def path_key(space: str, path: Any) -> str:
    """The space's key of a path (what caches and result files use)."""
    return family(space).key(path)
