"""SPOS ShuffleNetV2 macro space (Guo et al., "Single Path One-Shot NAS", ECCV 2020).

20 choice blocks in four stages of 4, 4, 8 and 4; each block is one of four units, numbered as the
official repository numbers them: 0 `shuffle3x3`, 1 `shuffle5x5`, 2 `shuffle7x7` (ShuffleNetV2
units with that depthwise kernel) and 3 `xception` (three 3x3 depthwise + pointwise pairs).
4^20 (about 10^12) networks. The first block of a stage takes its whole input and adds a
projection branch; the others split the channels in two, transform one half and shuffle.

Presets (the dataset picks one):
- `imagenet`, the official network: 3x224x224 input, a 3x3 stride-2 stem of 16 channels, stages
  of 64/160/320/640 channels each starting with stride 2, a 1x1 conv to 1024, pooling, dropout
  0.1, a bias-free linear classifier. FLOPs are multiply-adds of the convolutions and the linear
  layer, the official convention (323 MFLOPs and 3.5 M params for the published architecture).
- `fashion-mnist` (1x28x28) and `cifar10` (3x32x32), ours for small images and CPUs: a stride-2
  stem of 16 channels, stages of 32/64/128/256 channels with strides 1/2/2/2 (spatial 14, 14, 7,
  4, 2 for Fashion-MNIST; 3.7-5.9 MFLOPs), a 1x1 conv to 512. A width multiplier scales the stem
  and stage channels.

`ShuffleNetSupernet` holds all four units of every block (the official module names, so the
official supernet's `state_dict` loads into it) and runs the one path it is given;
`ShuffleNetV2` is one stand-alone path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from typing import Any, ClassVar, Literal

import torch
from collm_nas.spaces.base import IllegalArchitecture, SearchSpace, check_input_size, short_repr
from pydantic import BaseModel, ConfigDict, Field, create_model
from torch import nn

CHOICES = ("shuffle3x3", "shuffle5x5", "shuffle7x7", "xception")  # official indices 0..3
Choice = Literal["shuffle3x3", "shuffle5x5", "shuffle7x7", "xception"]
KERNELS = (3, 5, 7, 3)  # depthwise kernel of each choice (xception: three 3x3)
STAGE_REPEATS = (4, 4, 8, 4)
N_BLOCKS = sum(STAGE_REPEATS)
BLOCKS = tuple(f"block_{i}" for i in range(N_BLOCKS))
# Architecture of the official repository's published result (323 MFLOPs, 3.5 M params).
OFFICIAL_ARCH = (2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3)


@dataclass(frozen=True)
class Preset:
    """Shapes of one network family: input, stem, stages, head."""

    name: str
    in_channels: int
    resolution: int
    classes: int
    stem_channels: int
    stem_stride: int
    stage_channels: tuple[int, int, int, int]
    stage_strides: tuple[int, int, int, int]
    last_channels: int
    width: float = 1.0

    def scaled(self, width: float) -> Preset:
        """The preset with stem and stage channels times `width` (rounded to even numbers, for
        the channel split)."""
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")

        def even(c: int) -> int:
            return max(4, 2 * round(c * width / 2))

        return replace(self, stem_channels=even(self.stem_channels), width=width,
                       stage_channels=tuple(even(c) for c in self.stage_channels))

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


_SMALL = dict(stem_channels=16, stem_stride=2, stage_channels=(32, 64, 128, 256),
              stage_strides=(1, 2, 2, 2), last_channels=512)
PRESETS = {
    "fashion-mnist": Preset("fashion-mnist", 1, 28, 10, **_SMALL),
    "cifar10": Preset("cifar10", 3, 32, 10, **_SMALL),
    "imagenet": Preset("imagenet", 3, 224, 1000, stem_channels=16, stem_stride=2,
                       stage_channels=(64, 160, 320, 640), stage_strides=(2, 2, 2, 2),
                       last_channels=1024),
}


_POSITIONS = [(stage + 1, j) for stage, n in enumerate(STAGE_REPEATS) for j in range(n)]
ShuffleNetArch = create_model(
    "ShuffleNetArch",
    __config__=ConfigDict(extra="forbid"),
    __doc__="One SPOS path: the unit chosen for each of the 20 blocks.",
    **{block: (Choice, Field(description=f"unit of block {i} (stage {stage}, position {j})"))
       for i, (block, (stage, j)) in enumerate(zip(BLOCKS, _POSITIONS, strict=True))},
)

_DIGITS_RE = re.compile(r"^[0-3]{20}$")
_WRAPPERS = ("arch", "architecture", "blocks", "path", "choices")


class ShuffleNetSpace(SearchSpace):
    name = "shufflenet"
    Arch: ClassVar[type[BaseModel]] = ShuffleNetArch
    datasets = tuple(PRESETS)
    evaluators = ("supernet",)

    def cost_is_additive(self) -> bool:
        # Each block's unit is its own module and nothing between blocks counts FLOPs, so the
        # cost is the stem and head plus one term per block (checked in the space's tests).
        return True

    @property
    def dimensions(self) -> dict[str, tuple[str, ...]]:
        return {block: CHOICES for block in BLOCKS}

    def key(self, arch: BaseModel) -> str:
        """The official encoding as 20 digits, one per block (0-2 shuffle 3/5/7, 3 xception)."""
        return "".join(str(i) for i in path_of(arch))

    def parse(self, obj: Any) -> BaseModel:
        """Accepts an `Arch`, a dict of blocks, a list of 20 unit names or official indices,
        the 20-digit key, JSON of any of these, or one under a key `arch`/`blocks`/`path`."""
        if isinstance(obj, self.Arch):
            return obj
        check_input_size(obj, self.name)
        if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in _WRAPPERS:
            obj = next(iter(obj.values()))
        if isinstance(obj, str) and _DIGITS_RE.match(obj.strip()):
            return self.from_genes([CHOICES[int(d)] for d in obj.strip()])
        if isinstance(obj, (list, tuple)):
            return self.from_genes([_unit_name(v) for v in obj])
        if isinstance(obj, dict):
            return super().parse({k: _unit_name(v) for k, v in obj.items()})
        if isinstance(obj, str):
            return super().parse(obj)
        raise IllegalArchitecture(
            f"cannot read a SPOS ShuffleNet path from a {type(obj).__name__}; give 20 unit names "
            f"({', '.join(CHOICES)}), 20 official indices 0-3, or a dict of block_0..block_19"
        )

    def preset(self, dataset: str, width: float = 1.0) -> Preset:
        self.check_dataset(dataset)
        return PRESETS[dataset] if width == 1.0 else PRESETS[dataset].scaled(width)

    def input_shape(self, arch: BaseModel, dataset: str) -> tuple[int, ...]:
        p = self.preset(dataset)
        return (1, p.in_channels, p.resolution, p.resolution)

    def build(self, arch: BaseModel, dataset: str) -> nn.Module:
        return ShuffleNetV2(path_of(arch), self.preset(dataset))

    def count_cost(self, arch: BaseModel, dataset: str) -> tuple[float, float]:
        return cost_of_path(path_of(arch), self.preset(dataset))

    def describe(self) -> str:
        stages, start = [], 0
        for s, n in enumerate(STAGE_REPEATS):
            stages.append(f"  stage {s + 1}: block_{start}..block_{start + n - 1}")
            start += n
        ranges = [f"{name} {low:.3g}-{high:.3g}" for name, preset in PRESETS.items()
                  for low, high in [flops_range(preset)]]
        return (
            "SPOS ShuffleNetV2 search space (Single Path One-Shot): 20 choice blocks, 4^20 "
            "networks.\nThe network is a 3x3 conv stem, four stages of blocks, a 1x1 conv, "
            "global pooling and a linear classifier:\n" + "\n".join(stages) + "\n"
            "The first block of each stage widens the channels and downsamples (stride 2; stage 1 "
            "of the small-image presets keeps the size); the others keep the shape: they split "
            "the channels in two, transform one half and shuffle the halves together.\n"
            "Each block is one of four units:\n"
            "  shuffle3x3, shuffle5x5, shuffle7x7: 1x1 conv, depthwise conv with that kernel, "
            "1x1 conv (ShuffleNetV2 unit); a larger kernel sees more context at a small extra "
            "cost;\n"
            "  xception: three depthwise 3x3 + 1x1 pairs; the deepest unit.\n"
            "Representation: JSON {\"block_0\": \"<unit>\", ..., \"block_19\": \"<unit>\"}, or "
            "the 20-digit string with one official index per block (0 shuffle3x3, 1 shuffle5x5, "
            "2 shuffle7x7, 3 xception), e.g. 21012020202300003233.\n"
            f"MFLOPs by dataset: {', '.join(ranges)}. In a block, a larger kernel "
            "costs a little more; xception has the most parameters everywhere and the most FLOPs "
            "in every block except the first of a stage, where it has the fewest. Later stages are "
            "wider, so their units hold most of the parameters."
        )


def path_of(arch: BaseModel) -> tuple[int, ...]:
    """The official indices (0-3) of an architecture's 20 units."""
    return tuple(CHOICES.index(getattr(arch, block)) for block in BLOCKS)


def _unit_name(value: Any) -> Any:
    """A unit given as its official index (0-3, int or digit string) becomes its name."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and 0 <= value < len(CHOICES):
        return CHOICES[value]
    if isinstance(value, str) and value.strip() in ("0", "1", "2", "3"):
        return CHOICES[int(value.strip())]
    if isinstance(value, str) and value.strip().lower() in CHOICES:
        return value.strip().lower()
    if not isinstance(value, (str, int)):
        raise IllegalArchitecture(f"a unit is a name or an index 0-3, not {short_repr(value)}")
    return value


# --- the networks --------------------------------------------------------------------------


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int, *,
             depthwise: bool = False, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=c_in if depthwise else 1,
                  bias=False),
        nn.BatchNorm2d(c_out),
    ]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


class ShuffleUnit(nn.Module):
    """One block: a ShuffleNetV2 unit with a `kernel` depthwise conv, or the Xception-like unit.

    The first block of a stage (`project`) feeds its whole input to the main branch and to a
    projection branch (depthwise + 1x1) and concatenates them; the others pass half the
    channels through and transform the other half, after a channel shuffle."""

    def __init__(self, c_in: int, c_out: int, stride: int, choice: int, project: bool):
        super().__init__()
        self.project = project
        main_in = c_in if project else c_in // 2
        mid, main_out = c_out // 2, c_out - main_in
        kernel = KERNELS[choice]
        if choice < 3:
            main = (_conv_bn(main_in, mid, 1, 1)
                    + _conv_bn(mid, mid, kernel, stride, depthwise=True, relu=False)
                    + _conv_bn(mid, main_out, 1, 1))
        else:
            main = (_conv_bn(main_in, main_in, 3, stride, depthwise=True, relu=False)
                    + _conv_bn(main_in, mid, 1, 1)
                    + _conv_bn(mid, mid, 3, 1, depthwise=True, relu=False)
                    + _conv_bn(mid, mid, 1, 1)
                    + _conv_bn(mid, mid, 3, 1, depthwise=True, relu=False)
                    + _conv_bn(mid, main_out, 1, 1))
        self.branch_main = nn.Sequential(*main)
        if project:
            self.branch_proj = nn.Sequential(
                *_conv_bn(c_in, c_in, kernel, stride, depthwise=True, relu=False),
                *_conv_bn(c_in, c_in, 1, 1),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.project:
            return torch.cat((self.branch_proj(x), self.branch_main(x)), 1)
        kept, changed = x[:, 0::2], x[:, 1::2]  # the shuffle: even channels pass, odd change
        return torch.cat((kept, self.branch_main(changed)), 1)


def _block_shapes(preset: Preset) -> list[tuple[int, int, int, bool]]:
    """(in channels, out channels, stride, first of its stage) of the 20 blocks."""
    shapes, c_in = [], preset.stem_channels
    for n, c_out, stride in zip(STAGE_REPEATS, preset.stage_channels, preset.stage_strides,
                                strict=True):
        for j in range(n):
            shapes.append((c_in, c_out, stride if j == 0 else 1, j == 0))
            c_in = c_out
    return shapes


class _Network(nn.Module):
    """Stem and head shared by the stand-alone network and the supernet."""

    def __init__(self, preset: Preset):
        super().__init__()
        self.preset = preset
        self.first_conv = nn.Sequential(
            *_conv_bn(preset.in_channels, preset.stem_channels, 3, preset.stem_stride))
        self.conv_last = nn.Sequential(
            *_conv_bn(preset.stage_channels[-1], preset.last_channels, 1, 1))
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Sequential(nn.Linear(preset.last_channels, preset.classes, bias=False))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.globalpool(self.conv_last(x)).flatten(1))
        return self.classifier(x)


class ShuffleNetV2(_Network):
    """A stand-alone SPOS network: the units of one path."""

    def __init__(self, path: Sequence[int], preset: Preset):
        super().__init__(preset)
        self.path = tuple(path)
        self.features = nn.Sequential(*(
            ShuffleUnit(c_in, c_out, stride, choice, project)
            for (c_in, c_out, stride, project), choice in zip(_block_shapes(preset), self.path,
                                                              strict=True)
        ))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(self.first_conv(x)))


class ShuffleNetSupernet(_Network):
    """Every unit of every block (official layout: `features.<block>.<choice>`); `forward(x,
    path)` runs one path. Not thread-safe to train or to recalibrate, like any module whose
    BatchNorm statistics change.

    BatchNorm has affine parameters, which the official supernet lacks (an official checkpoint
    loads with them at 1 and 0: the same function). `same_start` makes every path start as
    nearly the same network: units 1-2 of a block copy unit 0 (its depthwise kernels centred in
    their larger ones), the Xception unit copies its projection branch, and the last BatchNorm of
    every main branch starts at scale 0.01. Measured here, uniform single-path training from
    independent random units stays at chance for hundreds of steps (`results/shufflenet_supernet.md`).
    """

    def __init__(self, preset: Preset, same_start: bool = True):
        super().__init__(preset)
        self.features = nn.ModuleList(
            nn.ModuleList(ShuffleUnit(c_in, c_out, stride, choice, project)
                          for choice in range(len(CHOICES)))
            for c_in, c_out, stride, project in _block_shapes(preset)
        )
        if same_start:
            self._same_start()

    @torch.no_grad()
    def _same_start(self, main_scale: float = 0.01) -> None:
        for units in self.features:
            first = units[0]
            for unit in units[1:]:
                branches = ["branch_proj"] if unit.project else []
                branches += ["branch_main"] if unit is not units[3] else []
                for branch in branches:
                    for mine, theirs in zip(getattr(unit, branch), getattr(first, branch), strict=True):
                        if isinstance(mine, nn.Conv2d):
                            _centre_copy(mine.weight, theirs.weight)
            for unit in units:
                norms = [m for m in unit.branch_main if isinstance(m, nn.BatchNorm2d)]
                norms[-1].weight.fill_(main_scale)

    def forward(self, x: torch.Tensor, path: Sequence[int]) -> torch.Tensor:
        if len(path) != N_BLOCKS:
            raise ValueError(f"a path has {N_BLOCKS} choices, got {len(path)}")
        x = self.first_conv(x)
        for units, choice in zip(self.features, path, strict=True):
            x = units[choice](x)
        return self.head(x)


def _centre_copy(target: torch.Tensor, source: torch.Tensor) -> None:
    """`source`'s kernel in the centre of `target`'s (same or larger), zeros around it."""
    offset = (target.shape[-1] - source.shape[-1]) // 2
    target.zero_()
    target[..., offset:offset + source.shape[-2], offset:offset + source.shape[-1]] = source


# --- cost ------------------------------------------------------------------------------------


def count_conv_linear(module: nn.Module, shape: tuple[int, ...]) -> tuple[float, float]:
    """(multiply-adds, parameters) of `module` on one input of `shape` (batch 1): MACs of its
    convolutions and linear layers (the SPOS and OFA convention), every parameter."""
    macs = 0

    def conv(layer: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        k = layer.kernel_size[0] * layer.kernel_size[1]
        macs += output.numel() * k * layer.in_channels // layer.groups

    def linear(layer: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal macs
        macs += output.numel() * layer.in_features

    hooks = [m.register_forward_hook(conv if isinstance(m, nn.Conv2d) else linear)
             for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        was_training = module.training
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, *shape[1:]))
        module.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return float(macs), float(sum(p.numel() for p in module.parameters()))


@cache
def _cost_table(preset: Preset) -> tuple[tuple[float, float], list[list[tuple[float, float]]]]:
    """(stem + head cost, per-block per-choice cost), each (MACs, params), for `preset`."""
    net = _Network(preset)
    size = preset.resolution
    stem = count_conv_linear(net.first_conv, (1, preset.in_channels, size, size))
    size = -(-size // preset.stem_stride)
    blocks = []
    for c_in, c_out, stride, project in _block_shapes(preset):
        blocks.append([count_conv_linear(ShuffleUnit(c_in, c_out, stride, choice, project),
                                         (1, c_in, size, size)) for choice in range(len(CHOICES))])
        size = -(-size // stride)
    last = preset.stage_channels[-1]
    head = count_conv_linear(nn.Sequential(net.conv_last, net.globalpool, nn.Flatten(),
                                           net.classifier), (1, last, size, size))
    return (stem[0] + head[0], stem[1] + head[1]), blocks


def flops_range(preset: Preset) -> tuple[float, float]:
    """The fewest and the most MFLOPs a path of `preset` has (the cheapest or costliest unit of
    every block)."""
    (base, _), blocks = _cost_table(preset)
    low = base + sum(min(macs for macs, _ in block) for block in blocks)
    high = base + sum(max(macs for macs, _ in block) for block in blocks)
    return low / 1e6, high / 1e6


def cost_of_path(path: Sequence[int], preset: Preset) -> tuple[float, float]:
    """(MFLOPs, M params) of the stand-alone network of `path`, from per-block counts."""
    (macs, params), blocks = _cost_table(preset)
    for choice, costs in zip(path, blocks, strict=True):
        macs += costs[choice][0]
        params += costs[choice][1]
    return macs / 1e6, params / 1e6
