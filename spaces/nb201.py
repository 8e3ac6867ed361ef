"""NAS-Bench-201: a cell of 4 nodes and 6 edges, each edge one of 5 operations (15,625 cells).

Canonical string: `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`, edges (1<-0), (2<-0), (2<-1), (3<-0),
(3<-1), (3<-2). `build()` returns the NAS-Bench-201 network: a 3x3 stem (16 channels), three
stages of 5 cells (16/32/64 channels) joined by residual reduction blocks, global pooling and a
linear classifier. `NB201Supernet` holds all five operations on every edge of every cell (the
weight-sharing supernet of RSPS / SPOS on NAS-Bench-201) and runs the one cell it is given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch
from collm_nas.spaces.base import IllegalArchitecture, SearchSpace, check_input_size, short_repr
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
Op = Literal["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]
EDGES = ("edge_1_0", "edge_2_0", "edge_2_1", "edge_3_0", "edge_3_1", "edge_3_2")
DATASETS = {"cifar10": (10, 32), "cifar100": (100, 32), "imagenet16": (120, 16)}

_EDGE_ALIASES = {f"{t}<-{s}": f"edge_{t}_{s}" for t, s in ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))}
# One edge is `|op~source|`: an operation name, one tilde, the source node's digit.
_OP = r"([A-Za-z0-9_]+)"
_CELL_RE = re.compile(
    rf"^\|{_OP}~0\|\+\|{_OP}~0\|{_OP}~1\|\+\|{_OP}~0\|{_OP}~1\|{_OP}~2\|$"
)
# Single-key wrappers a model puts around a cell: `{"arch": ...}`, `{"edges": [6 ops]}`.
_WRAPPERS = ("arch", "cell", "edges")


def _edge_field(target: int, source: int) -> Any:
    return Field(description=f"operation on the edge from node {source} to node {target}")


class NB201Arch(BaseModel):
    """One NAS-Bench-201 cell: the operation on each of its six edges."""

    model_config = ConfigDict(extra="forbid")

    edge_1_0: Op = _edge_field(1, 0)
    edge_2_0: Op = _edge_field(2, 0)
    edge_2_1: Op = _edge_field(2, 1)
    edge_3_0: Op = _edge_field(3, 0)
    edge_3_1: Op = _edge_field(3, 1)
    edge_3_2: Op = _edge_field(3, 2)


class NB201Space(SearchSpace):
    name = "nb201"
    Arch: ClassVar[type[BaseModel]] = NB201Arch
    datasets = tuple(DATASETS)
    evaluators = ("benchmark", "supernet")

    def cost_is_additive(self) -> bool:
        # Every edge's operation is its own module and the cell's sums count no FLOPs, so a
        # cell's cost is a base plus one term per edge (checked against full counts in the tests).
        return True

    @property
    def dimensions(self) -> dict[str, tuple[str, ...]]:
        return {edge: OPS for edge in EDGES}

    def genes(self, arch: NB201Arch) -> tuple[str, ...]:
        return tuple(getattr(arch, edge) for edge in EDGES)

    def from_genes(self, genes) -> NB201Arch:
        genes = list(genes)
        if len(genes) != len(EDGES):
            raise IllegalArchitecture(
                f"a NAS-Bench-201 cell has exactly 6 edges, got {len(genes)} operations"
            )
        for i, op in enumerate(genes):
            if op not in OPS:
                raise IllegalArchitecture(
                    f"unknown operation {short_repr(op)} on {EDGES[i]}; allowed: {', '.join(OPS)}"
                )
        return NB201Arch(**dict(zip(EDGES, genes, strict=True)))

    def key(self, arch: NB201Arch) -> str:
        a, b, c, d, e, f = self.genes(arch)
        return f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"

    def parse(self, obj: Any) -> NB201Arch:
        """Accepts an `NB201Arch`, the canonical string, a list of 6 ops, a dict of edges, or
        one of those under a single key `arch`, `cell` or `edges`."""
        if isinstance(obj, NB201Arch):
            return obj
        check_input_size(obj, self.name)
        if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in _WRAPPERS:
            obj = next(iter(obj.values()))  # one level only: a wrapper of a wrapper is not a cell
            if isinstance(obj, dict) and len(obj) == 1 and next(iter(obj)) in _WRAPPERS:
                raise IllegalArchitecture(f"a cell wrapped twice ({short_repr(obj)}) is not a cell")
        if isinstance(obj, str):
            return self._parse_string(obj.strip())
        if isinstance(obj, (list, tuple)):
            return self.from_genes(obj)
        if isinstance(obj, dict):
            return self._parse_dict(obj)
        raise IllegalArchitecture(
            f"cannot read a NAS-Bench-201 cell from a {type(obj).__name__}; "
            "give the cell string, a list of 6 operations, or a dict of edges"
        )

    def _parse_string(self, text: str) -> NB201Arch:
        match = _CELL_RE.match(text)
        if not match:
            n_edges = text.count("~")
            hint = f" (found {n_edges} edges)" if n_edges and n_edges != 6 else ""
            raise IllegalArchitecture(
                f"{short_repr(text)} is not a NAS-Bench-201 cell string{hint}; expected "
                "'|op~0|+|op~0|op~1|+|op~0|op~1|op~2|': 6 edges, each one operation and its "
                "source node"
            )
        return self.from_genes(match.groups())

    def _parse_dict(self, obj: dict) -> NB201Arch:
        named = {_EDGE_ALIASES.get(str(k).replace(" ", ""), str(k)): v for k, v in obj.items()}
        unknown = sorted(set(named) - set(EDGES))
        missing = [edge for edge in EDGES if edge not in named]
        if unknown or missing:
            parts = []
            if missing:
                parts.append(f"missing edges {missing}")
            if unknown:
                parts.append(f"unknown fields {short_repr(unknown)}")
            raise IllegalArchitecture(
                "; ".join(parts) + f"; a NAS-Bench-201 cell names exactly the edges {list(EDGES)}"
            )
        return self.from_genes([named[edge] for edge in EDGES])

    def input_shape(self, arch: NB201Arch, dataset: str) -> tuple[int, ...]:
        self.check_dataset(dataset)
        _, size = DATASETS[dataset]
        return (1, 3, size, size)

    def build(self, arch: NB201Arch, dataset: str) -> nn.Module:
        self.check_dataset(dataset)
        num_classes, _ = DATASETS[dataset]
        return NB201Network(self.genes(arch), num_classes)

    def describe(self) -> str:
        return (
            "NAS-Bench-201 cell search space (15,625 cells).\n"
            "A cell is a small directed acyclic graph with 4 nodes: node 0 is the cell input, "
            "node 3 is the cell output, and node j sums the results of its incoming edges. "
            "There are 6 edges, and each carries exactly one operation:\n"
            "  edge_1_0 (node 0 -> node 1), edge_2_0 (0 -> 2), edge_2_1 (1 -> 2),\n"
            "  edge_3_0 (0 -> 3), edge_3_1 (1 -> 3), edge_3_2 (2 -> 3).\n"
            "Operations: none (the edge is cut, contributes zeros), skip_connect (identity), "
            "nor_conv_1x1 (ReLU-conv1x1-BN), nor_conv_3x3 (ReLU-conv3x3-BN), "
            "avg_pool_3x3 (3x3 average pooling).\n"
            "The same cell is stacked 15 times: 3 stages of 5 cells with 16, 32 and 64 channels, "
            "joined by fixed residual reduction blocks. Convolutions add parameters and FLOPs; "
            "none, skip_connect and avg_pool_3x3 add none. If every path from node 0 to node 3 "
            "is cut, the cell outputs zeros.\n"
            "Representation: one operation name per edge, e.g. as JSON "
            '{"edge_1_0": "<op>", "edge_2_0": "<op>", "edge_2_1": "<op>", "edge_3_0": "<op>", '
            '"edge_3_1": "<op>", "edge_3_2": "<op>"}; the benchmark string form is '
            "|<edge_1_0>~0|+|<edge_2_0>~0|<edge_2_1>~1|+|<edge_3_0>~0|<edge_3_1>~1|<edge_3_2>~2|."
        )


# --- the NAS-Bench-201 network ------------------------------------------------------------


class _ReLUConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class _Zero(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def _make_op(name: str, channels: int) -> nn.Module:
    if name == "none":
        return _Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return _ReLUConvBN(channels, channels, 1, 1)
    if name == "nor_conv_3x3":
        return _ReLUConvBN(channels, channels, 3, 1)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(name)


_SOURCES = ((0,), (0, 1), (0, 1, 2))  # the nodes feeding node 1, 2 and 3, in edge order


def _run_cell(x: torch.Tensor, edge_op) -> torch.Tensor:
    """Node j = sum of op(i -> j)(node i) for i < j; the output is node 3. `edge_op(e)` is the
    module on edge e."""
    nodes = [x]
    edge = 0
    for sources in _SOURCES:
        total = 0
        for i in sources:
            total = total + edge_op(edge)(nodes[i])
            edge += 1
        nodes.append(total)
    return nodes[-1]


class _Cell(nn.Module):
    def __init__(self, ops: tuple[str, ...], channels: int):
        super().__init__()
        self.edges = nn.ModuleList(_make_op(op, channels) for op in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _run_cell(x, lambda edge: self.edges[edge])


class _SharedCell(nn.Module):
    """Every operation on every edge; `forward(x, ops)` runs the ones `ops` names."""

    def __init__(self, channels: int):
        super().__init__()
        self.edges = nn.ModuleList(nn.ModuleDict({op: _make_op(op, channels) for op in OPS}) for _ in EDGES)

    def forward(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        return _run_cell(x, lambda edge: self.edges[edge][ops[edge]])


class _ResidualReduction(nn.Module):
    """Stride-2 basic residual block with an avg-pool + 1x1 conv shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = _ReLUConvBN(c_in, c_out, 3, 2)
        self.conv_b = _ReLUConvBN(c_out, c_out, 3, 1)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))


def _layers(make_cell, channels: int, cells: int) -> tuple[list[nn.Module], int]:
    """Three stages of `cells` cells, joined by residual reductions; and the last width."""
    layers: list[nn.Module] = []
    c = channels
    for stage in range(3):
        if stage > 0:
            layers.append(_ResidualReduction(c, 2 * c))
            c *= 2
        layers.extend(make_cell(c) for _ in range(cells))
    return layers, c


class NB201Network(nn.Module):
    def __init__(self, ops: tuple[str, ...], num_classes: int, channels: int = 16, cells: int = 5):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels)
        )
        layers, c = _layers(lambda width: _Cell(ops, width), channels, cells)
        self.cells = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.head(self.cells(self.stem(x))))


@dataclass(frozen=True)
class Preset:
    """The network's shapes on one dataset (a supernet's checkpoint records them)."""

    dataset: str
    classes: int
    size: int
    channels: int = 16
    cells: int = 5

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Preset:
        return cls(**fields)


PRESETS = {name: Preset(name, classes, size) for name, (classes, size) in DATASETS.items()}


class NB201Supernet(nn.Module):
    """The NAS-Bench-201 network with all five operations on every edge, one set per cell (as
    RSPS and SPOS share them); `forward(x, ops)` runs the cell `ops` (six operation names) in
    every position."""

    def __init__(self, preset: Preset):
        super().__init__()
        self.preset = preset
        self.stem = nn.Sequential(
            nn.Conv2d(3, preset.channels, 3, padding=1, bias=False), nn.BatchNorm2d(preset.channels)
        )
        layers, c = _layers(_SharedCell, preset.channels, preset.cells)
        self.cells = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(c, preset.classes)

    def forward(self, x: torch.Tensor, ops: Sequence[str]) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x, ops) if isinstance(layer, _SharedCell) else layer(x)
        return self.classifier(self.head(x))


def standalone(ops: Sequence[str], preset: Preset) -> NB201Network:
    """The stand-alone network of cell `ops` on `preset`, freshly initialised."""
    return NB201Network(tuple(ops), preset.classes, preset.channels, preset.cells)
