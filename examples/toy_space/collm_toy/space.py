"""The toy space: four categorical dimensions, 36 small CNNs, and the real torch network of each.

A space is a `SearchSpace` subclass: the `Arch` model (its JSON schema is what an LLM fills), the
facts collm-nas reads (datasets, evaluator kinds, cost limits; the first of each list is the
default), the dimensions, and the network. Genes, keys and parsing come from the contract's
defaults because every dimension is one field of `Arch`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from collm_nas.spaces import SearchSpace
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

DEPTHS = (1, 2, 3)
WIDTHS = (8, 16, 32)
KERNELS = (3, 5)
ACTIVATIONS = ("relu", "gelu")
CLASSES = 4
IMAGE_SIZE = 16


class ToyArch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    depth: Literal[1, 2, 3] = Field(description="convolutions after the stem")
    width: Literal[8, 16, 32] = Field(description="channels of every convolution")
    kernel: Literal[3, 5] = Field(description="kernel size of every convolution")
    act: Literal["relu", "gelu"] = Field(description="activation after every convolution")


class ToyNet(nn.Module):
    """Stem and `depth` conv-BN-activation layers of one width, global pooling, a classifier."""

    def __init__(self, arch: ToyArch):
        super().__init__()
        convs = [nn.Conv2d(1, arch.width, arch.kernel, padding=arch.kernel // 2, bias=False)]
        convs += [nn.Conv2d(arch.width, arch.width, arch.kernel, padding=arch.kernel // 2, bias=False)
                  for _ in range(arch.depth)]
        self.convs = nn.ModuleList(convs)
        self.norms = nn.ModuleList(nn.BatchNorm2d(arch.width) for _ in convs)
        self.act = nn.ReLU() if arch.act == "relu" else nn.GELU()
        self.classifier = nn.Linear(arch.width, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = self.act(norm(conv(x)))
        return self.classifier(x.mean((2, 3)))


class ToySpace(SearchSpace):
    name = "toy"
    Arch: ClassVar[type[BaseModel]] = ToyArch
    datasets = ("blobs",)  # synthetic 16x16 grey images in 4 classes (`evaluators.blobs`)
    evaluators = ("formula", "toy_supernet")
    cost_kinds = ("flops", "params")  # counted on `build()`'s network by collm-nas

    @property
    def dimensions(self) -> dict[str, tuple]:
        return {"depth": DEPTHS, "width": WIDTHS, "kernel": KERNELS, "act": ACTIVATIONS}

    def build(self, arch: ToyArch, dataset: str) -> nn.Module:
        self.check_dataset(dataset)
        return ToyNet(arch)

    def input_shape(self, arch: ToyArch, dataset: str) -> tuple[int, ...]:
        return (1, 1, IMAGE_SIZE, IMAGE_SIZE)

    def describe(self) -> str:
        return (
            "Toy CNN space (36 networks) on 16x16 grey images in 4 classes: a stem convolution, "
            f"then `depth` ({DEPTHS}) conv-BN-activation layers, all with `width` ({WIDTHS}) "
            f"channels and `kernel` ({KERNELS}) kernels, activation `act` ({ACTIVATIONS}), global "
            'average pooling and a linear classifier. JSON: {"depth": 2, "width": 16, '
            '"kernel": 3, "act": "relu"}.'
        )
