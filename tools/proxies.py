"""Zero-cost proxies: training-free scores of an untrained network, higher meaning better.

Written from the papers' definitions on the networks our spaces build (`space.build`):
synflow (Tanaka et al. 2020), grad_norm / snip / grasp / fisher (as compared by Abdelfattah et al.
2021), jacob_cov and naswot (Mellor et al. 2021, v1 and v2), zen (Lin et al. 2021), zico (Li et
al. 2023), plus params and flops. `proxy_score(space, arch, dataset, name, seed, batch)` builds
the network after `torch.manual_seed(seed)` (the space's default initialisation), so a score is a
pure function of (arch, dataset, proxy, seed, input batch).

Synflow and zen are data-free (all-ones and Gaussian inputs). The data-dependent proxies read
`ProxyBatch`: Gaussian noise or Fashion-MNIST images (`proxy_batch`), always with the batch's
`label` shown beside the figures, and random class labels drawn from the seed.
"""

from __future__ import annotations

import copy
import gzip
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import torch
from collm_nas.errors import CollmNasError
from collm_nas.spaces import SearchSpace
from collm_nas.tools.cost import shared_cost_counter
from pydantic import BaseModel
from torch import nn
from torch.nn import functional as F

INPUTS = ("gaussian", "fashion-mnist")
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
_WEIGHTED = (nn.Conv2d, nn.Linear)  # the layers whose weights the per-parameter proxies sum over


class ProxyError(CollmNasError, ValueError):
    """An unknown proxy or input, or an input file that cannot be read."""


@dataclass(frozen=True)
class ProxyBatch:
    """The images and labels the data-dependent proxies see; `label` names where they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    label: str


def proxy_batch(kind: str, shape: tuple[int, ...], classes: int, size: int, seed: int) -> ProxyBatch:
    """`size` inputs of `shape` (C, H, W): Gaussian noise or Fashion-MNIST; random labels."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        images = torch.randn((size, *shape), generator=generator)
    elif kind == "fashion-mnist":
        images = _fashion_mnist(size, shape, generator)
    else:
        raise ProxyError(f"unknown proxy input {kind!r}; choose one of {', '.join(INPUTS)}")
    labels = torch.randint(0, classes, (size,), generator=generator)
    return ProxyBatch(images, labels, f"{kind} batch of {size}, random labels, seed {seed}")


def _fashion_mnist(size: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """`size` Fashion-MNIST training images, standardised, resized and replicated to `shape`."""
    pixels = _fashion_mnist_pixels()
    chosen = torch.randperm(len(pixels), generator=generator)[:size]
    images = torch.from_numpy(pixels[chosen.numpy()]).float().div(255.0).unsqueeze(1)
    images = (images - images.mean()) / images.std()
    images = F.interpolate(images, size=shape[1:], mode="bilinear", align_corners=False)
    return images.expand(-1, shape[0], -1, -1).contiguous()


@cache
def _fashion_mnist_pixels() -> np.ndarray:
    try:
        with gzip.open(FASHION_MNIST, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise ProxyError(
            f"cannot read {FASHION_MNIST} ({err}); install Debian's dataset-fashion-mnist or use "
            "--input gaussian"
        ) from None
    # idx3: magic, count, rows, cols as big-endian int32, then the pixels
    count, rows, cols = np.frombuffer(raw, ">i4", count=3, offset=4)
    return np.frombuffer(raw, np.uint8, offset=16).reshape(count, rows, cols)


# --- the proxies -----------------------------------------------------------------------------


def _weighted_layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, _WEIGHTED)]


def _loss_gradients(net: nn.Module, batch: ProxyBatch) -> None:
    net.zero_grad()
    F.cross_entropy(net(batch.images), batch.labels).backward()


def synflow(net: nn.Module, batch: ProxyBatch) -> float:
    """Sum over weights of |theta * dR/dtheta|, R = sum of the output of the BN-free network with
    |theta| weights on an all-ones input, in double precision (deep products overflow floats)."""
    net = _without_batch_norm(net).double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    ones = torch.ones((1, *batch.images.shape[1:]), dtype=torch.float64)
    net.zero_grad()
    net(ones).sum().backward()
    return float(sum((m.weight.detach() * m.weight.grad).abs().sum() for m in _weighted_layers(net)))


def _without_batch_norm(net: nn.Module) -> nn.Module:
    """A copy of `net` with every batch norm replaced by the identity (synflow's convention)."""
    net = copy.deepcopy(net)
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, nn.Identity())
    return net


def grad_norm(net: nn.Module, batch: ProxyBatch) -> float:
    """Sum over layers of the L2 norm of the loss gradient of the layer's weights."""
    _loss_gradients(net, batch)
    return float(sum(m.weight.grad.norm() for m in _weighted_layers(net)))


def snip(net: nn.Module, batch: ProxyBatch) -> float:
    """Sum over weights of |theta * dL/dtheta| (connection sensitivity)."""
    _loss_gradients(net, batch)
    return float(sum((m.weight.detach() * m.weight.grad).abs().sum() for m in _weighted_layers(net)))


def grasp(net: nn.Module, batch: ProxyBatch) -> float:
    """Sum over weights of -theta * (H g): how removing weights would change the gradient flow."""
    weights = [m.weight for m in _weighted_layers(net)]
    loss = F.cross_entropy(net(batch.images), batch.labels)
    grads = torch.autograd.grad(loss, weights)  # g, held fixed
    loss = F.cross_entropy(net(batch.images), batch.labels)
    first = torch.autograd.grad(loss, weights, create_graph=True)
    hessian_g = torch.autograd.grad(sum((g * f).sum() for g, f in zip(grads, first, strict=True)), weights)
    return float(sum((-w.detach() * hg).sum() for w, hg in zip(weights, hessian_g, strict=True)))


def fisher(net: nn.Module, batch: ProxyBatch) -> float:
    """Sum over the output channels of every convolution of 0.5 * mean over the batch of
    (sum over positions of activation * its loss gradient)^2 (Turner et al.'s channel saliency)."""
    activations: list[torch.Tensor] = []

    def keep(module, inputs, output):
        output.retain_grad()
        activations.append(output)

    hooks = [m.register_forward_hook(keep) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        _loss_gradients(net, batch)
    finally:
        for hook in hooks:
            hook.remove()
    return float(sum(
        (a.detach() * a.grad).sum((2, 3)).pow(2).mean(0).mul(0.5).sum() for a in activations if a.grad is not None
    ))


def jacob_cov(net: nn.Module, batch: ProxyBatch) -> float:
    """Mellor et al. v1: how uncorrelated the input Jacobians of the samples are,
    -sum(log(v + k) + 1 / (v + k)) over the eigenvalues v of their correlation matrix."""
    images = batch.images.clone().requires_grad_(True)
    net.zero_grad()
    net(images).sum().backward()
    jacobians = images.grad.reshape(len(images), -1).double()
    eigenvalues = torch.linalg.eigvalsh(torch.corrcoef(jacobians).nan_to_num(0.0))
    k = 1e-5
    return float(-(torch.log(eigenvalues.clamp_min(0) + k) + 1 / (eigenvalues.clamp_min(0) + k)).sum())


def naswot(net: nn.Module, batch: ProxyBatch) -> float:
    """Mellor et al. v2: log|det K|, K counting for each pair of samples the ReLUs on which
    their binary activation codes agree (GELUs count too: a GELU is positive where a ReLU is)."""
    size = len(batch.images)
    units = [m for m in net.modules() if isinstance(m, (nn.ReLU, nn.GELU))]
    if not units:
        raise ProxyError("naswot reads the on/off codes of ReLU or GELU modules, and this network "
                         "has none (activations called as functions cannot be hooked)")
    kernel = torch.zeros(size, size, dtype=torch.float64)

    def count(module, inputs, output):
        code = (output.detach().reshape(size, -1) > 0).double()
        kernel.add_(code @ code.T + (1 - code) @ (1 - code).T)

    hooks = [m.register_forward_hook(count) for m in units]
    try:
        with torch.no_grad():
            net(batch.images)
    finally:
        for hook in hooks:
            hook.remove()
    return float(torch.linalg.slogdet(kernel).logabsdet)


def zen(net: nn.Module, batch: ProxyBatch, mix: float = 0.01, momentum: float = 1.0) -> float:
    """Lin et al.: log E|f(x) - f(x + mix * e)| of the features before global pooling (no final
    layer), plus the log batch-norm scaling sum(log sqrt(mean var)), with Gaussian x and e and
    Gaussian weights (Zen-NAS's initialisation); batch norm uses the batch's own statistics.
    `momentum` 1 reads the scaling off the clean batch's variance (the paper's definition); 0.1
    reads the running variance after the two passes from 1, as public reference code does."""
    net = copy.deepcopy(net).train()
    generator = torch.Generator().manual_seed(int(batch.labels.sum()))  # fixed by the batch
    norms = []
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, _WEIGHTED):
                module.weight.normal_(generator=generator)
            elif isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
                module.momentum = momentum  # at 1 the running variance becomes this batch's
                norms.append(module)
        x = torch.randn(batch.images.shape, generator=generator)
        e = torch.randn(batch.images.shape, generator=generator)
        difference = (_features(net, x + mix * e) - _features(net, x)).abs().mean()
        # the scaling of the clean pass, which runs last and so sets the running variances
        scaling = sum(torch.log(torch.sqrt(m.running_var.mean())) for m in norms)
    return float(torch.log(difference) + scaling)


def _features(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The input of the network's last global pooling (else of its last linear layer)."""
    pools = [m for m in net.modules() if isinstance(m, (nn.AdaptiveAvgPool2d,))]
    target = pools[-1] if pools else _weighted_layers(net)[-1]
    seen: list[torch.Tensor] = []
    hook = target.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0]))
    try:
        net(x)
    finally:
        hook.remove()
    return seen[-1]


def zico(net: nn.Module, batch: ProxyBatch) -> float:
    """Li et al.: sum over layers of log(sum over weights of mean|g| / std(g)), the gradient g
    taken on each half of the batch (two mini-batches, as in ZiCo's reference setting)."""
    halves = [ProxyBatch(images, labels, batch.label)
              for images, labels in zip(batch.images.chunk(2), batch.labels.chunk(2), strict=True)]
    layers = _weighted_layers(net)
    per_half = []
    for half in halves:
        _loss_gradients(net, half)
        per_half.append([m.weight.grad.detach().clone() for m in layers])
    total = 0.0
    for grads in zip(*per_half, strict=True):
        stacked = torch.stack(grads)
        mean_abs, std = stacked.abs().mean(0), stacked.std(0)
        ratio = (mean_abs[std > 0] / std[std > 0]).sum()
        if ratio > 0:
            total += float(torch.log(ratio))
    return total


def params(net: nn.Module, batch: ProxyBatch) -> float:
    """Trainable parameters, in millions."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad) / 1e6


ProxyFunction = Callable[[nn.Module, ProxyBatch], float]
TORCH_PROXIES: dict[str, ProxyFunction] = {
    "synflow": synflow, "grad_norm": grad_norm, "snip": snip, "grasp": grasp, "fisher": fisher,
    "jacob_cov": jacob_cov, "naswot": naswot, "zen": zen, "zico": zico, "params": params,
}
PROXIES = (*TORCH_PROXIES, "flops")  # flops come from the space's cost counter
DATA_FREE = ("synflow", "zen", "params", "flops")


def check_proxy(name: str) -> str:
    if name not in PROXIES:
        raise ProxyError(f"unknown proxy {name!r}; choose one of {', '.join(PROXIES)}")
    return name


@dataclass(frozen=True)
class ProxyResult:
    score: float
    seconds: float


def proxy_score(
    space: SearchSpace, arch: BaseModel, dataset: str, name: str, seed: int, batch: ProxyBatch
) -> ProxyResult:
    """The proxy `name` of `arch` built after `torch.manual_seed(seed)`, and the seconds it took
    (building included). A network whose signal dies scores -inf (the worst); NaN raises."""
    function = TORCH_PROXIES[check_proxy(name)] if name != "flops" else None
    started = time.perf_counter()
    if function is None:
        value = shared_cost_counter(space.name, dataset)(arch).flops_m
    else:
        torch.manual_seed(seed)
        value = function(space.build(arch, dataset), batch)
    seconds = time.perf_counter() - started
    if math.isnan(value):
        raise ProxyError(f"proxy {name} is NaN for {space.key(arch)}")
    return ProxyResult(value, seconds)
