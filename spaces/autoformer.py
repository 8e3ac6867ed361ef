"""AutoFormer vision-transformer spaces (Chen et al., "AutoFormer: Searching Transformers for
Visual Recognition", ICCV 2021).

A network is a patch embedding, `depth` encoder layers of one embedding dimension, a final
LayerNorm and a linear classifier on the mean of the patch tokens. Each layer chooses its own MLP
ratio and number of attention heads; every head has `head_dim` dimensions, so a layer's q, k
and v are `heads x head_dim` wide whatever the embedding dimension (the official `change_qkv`).
Attention adds 2-D relative position embeddings to keys and values (the official
`relative_position`, distances clipped at `max_relative`), and absolute position embeddings
and a class token are kept as in the official network.

Presets, one space each (the Generator's schema lists only the preset's values):
- `autoformer-tiny`, `autoformer-small`, `autoformer-base`: the official supernets at 3x224x224
  with 16x16 patches and 1,000 classes. Embedding dims, depths and heads are the official
  repository's; MLP ratios are {3.0, 3.5, 4.0} everywhere as in the paper's appendix (the
  official tiny supernet config lists {3.5, 4.0}, but the published AutoFormer-T uses 3.0) and
  base heads are {8, 9, 10} as in the appendix (the official config lists {9, 10}).
- `autoformer`: ours for 1x28x28 Fashion-MNIST on CPUs: 4x4 patches (49 tokens), embedding dims
  {48, 56, 64}, depth {4, 5, 6}, heads {2, 3, 4} of 16 dimensions, MLP ratios {3.0, 3.5, 4.0},
  relative distances clipped at 3.

Parameters are counted by the official convention (every parameter of the sampled network,
including position embeddings and relative-position tables); FLOPs are multiply-adds of the
patch convolution, the linear layers and the two attention matrix products.

`AutoFormerNet` is both the supernet and a stand-alone network: its weights are allocated at
the largest sizes it was built for and every forward slices them to the sampled config (weight
entanglement); built for exactly one config, nothing is sliced. Module names follow the
official supernet, so its `checkpoint["model"]` loads (`official_supernet`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple

import torch
import torch.nn.functional as F
from collm_nas.errors import CollmNasError
from collm_nas.spaces.base import IllegalArchitecture, SearchSpace, check_input_size, short_repr
from collm_nas.spaces.checkpoints import state_mismatch
from pydantic import BaseModel, ConfigDict, Field, create_model
from torch import nn


@dataclass(frozen=True)
class Preset:
    """The choices and fixed shapes of one AutoFormer space."""

    name: str
    dataset: str
    in_channels: int
    resolution: int
    patch: int
    classes: int
    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    mlp_ratios: tuple[float, ...]
    heads: tuple[int, ...]
    head_dim: int = 64
    max_relative: int = 14

    @property
    def tokens(self) -> int:
        """Patch tokens (the class token not counted)."""
        return (self.resolution // self.patch) ** 2

    def as_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Preset:
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in fields.items()})


_RATIOS = (3.0, 3.5, 4.0)
_IMAGENET = dict(dataset="imagenet", in_channels=3, resolution=224, patch=16, classes=1000)
PRESETS = {
    "autoformer": Preset("autoformer", "fashion-mnist", 1, 28, 4, 10, embed_dims=(48, 56, 64),
                         depths=(4, 5, 6), mlp_ratios=_RATIOS, heads=(2, 3, 4), head_dim=16,
                         max_relative=3),
    "autoformer-tiny": Preset("autoformer-tiny", **_IMAGENET, embed_dims=(192, 216, 240),
                              depths=(12, 13, 14), mlp_ratios=_RATIOS, heads=(3, 4)),
    "autoformer-small": Preset("autoformer-small", **_IMAGENET, embed_dims=(320, 384, 448),
                               depths=(12, 13, 14), mlp_ratios=_RATIOS, heads=(5, 6, 7)),
    "autoformer-base": Preset("autoformer-base", **_IMAGENET, embed_dims=(528, 576, 624),
                              depths=(14, 15, 16), mlp_ratios=_RATIOS, heads=(8, 9, 10)),
}


class Config(NamedTuple):
    """One sampled network: the embedding dim, the depth, and each active layer's MLP ratio and
    heads (exactly `depth` of each)."""

    embed_dim: int
    depth: int
    mlp_ratios: tuple[float, ...]
    heads: tuple[int, ...]

    def hidden(self, layer: int) -> int:
        """The MLP hidden width of a layer (rounded down, as the official code does)."""
        return int(round(self.embed_dim * self.mlp_ratios[layer], 6))


# Published subnets (official repository, `experiments/subnet/AutoFormer-{T,S,B}.yaml`) with the
# parameter counts of the paper (millions).
PUBLISHED = {
    "autoformer-tiny": (Config(192, 13, (3.5, 3.5, 3.0, 3.5, 3.0, 3.0, 4.0, 4.0, 3.5, 4.0, 3.5, 4.0, 3.5),
                               (3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3)), 5.8),
    "autoformer-small": (Config(384, 13, (3.0, 3.5, 3.0, 3.5, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.5, 4.0),
                                (6, 6, 5, 7, 5, 5, 5, 6, 6, 7, 7, 6, 7)), 22.9),
    "autoformer-base": (Config(576, 14, (3.5, 3.5, 4.0, 3.5, 4.0, 3.5, 3.5, 3.0, 4.0, 4.0, 3.0, 4.0, 3.0, 3.5),
                               (9, 9, 9, 9, 9, 10, 9, 9, 10, 9, 10, 9, 9, 10)), 53.7),
}


def _arch_model(preset: Preset) -> type[BaseModel]:
    """The pydantic `Arch` of a preset: every value a `Literal` of the preset's choices."""
    layers = max(preset.depths)
    ratio = Literal[preset.mlp_ratios]  # type: ignore[valid-type]
    heads = Literal[preset.heads]  # type: ignore[valid-type]
    fields: dict[str, Any] = {
        "embed_dim": (Literal[preset.embed_dims], Field(description="embedding dim of every layer")),  # type: ignore[valid-type]
        "depth": (Literal[preset.depths], Field(description="encoder layers used (the first `depth`)")),  # type: ignore[valid-type]
    }
    for i in range(layers):
        fields[f"mlp_ratio_{i}"] = (ratio, Field(description=f"MLP ratio of layer {i}"))
    for i in range(layers):
        fields[f"heads_{i}"] = (heads, Field(description=f"attention heads of layer {i}"))
    return create_model(f"{_camel(preset.name)}Arch", __config__=ConfigDict(extra="forbid"),
                        __doc__=f"One {preset.name} network: embedding dim, depth, per-layer "
                                "MLP ratio and heads (layers at or beyond depth are unused).",
                        **fields)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-"))


_KEY_RE = re.compile(r"^e(\d+)-d(\d+)((?:-[0-9.]+x\d+)+)$")


class AutoFormerSpace(SearchSpace):
    """The reduced preset for Fashion-MNIST; subclasses are the official presets."""

    name = "autoformer"
    datasets = ("fashion-mnist",)
    evaluators = ("supernet",)
    cost_kinds = ("params", "flops")
    preset_name: ClassVar[str] = "autoformer"
    Arch: ClassVar[type[BaseModel]] = _arch_model(PRESETS["autoformer"])

    @property
    def preset(self) -> Preset:
        return PRESETS[self.preset_name]

    @property
    def dimensions(self) -> dict[str, tuple[Any, ...]]:
        p, layers = self.preset, max(self.preset.depths)
        return {"embed_dim": p.embed_dims, "depth": p.depths,
                **{f"mlp_ratio_{i}": p.mlp_ratios for i in range(layers)},
                **{f"heads_{i}": p.heads for i in range(layers)}}

    def active_genes(self, arch: BaseModel) -> tuple[bool, ...]:
        depth = arch.depth
        return tuple(dim in ("embed_dim", "depth") or int(dim.rsplit("_", 1)[1]) < depth
                     for dim in self.dimensions)

    def from_genes(self, genes: tuple[Any, ...] | list[Any]) -> BaseModel:
        """As the base, with numbers matched to the allowed value they equal (4 -> 4.0)."""
        dims = list(self.dimensions.values())
        if len(genes) == len(dims):
            genes = [next((v for v in values if _number(gene) == v), gene)
                     for gene, values in zip(genes, dims, strict=True)]
        return super().from_genes(genes)

    def key(self, arch: BaseModel) -> str:
        """`e<embed>-d<depth>` then `<ratio>x<heads>` per active layer, e.g. `e48-d4-3.0x2-4.0x4-3.5x2-3.0x3`."""
        return config_key(config_of(arch))

    def parse(self, obj: Any) -> BaseModel:
        """An `Arch`, a dict of its fields (or `mlp_ratios`/`heads` lists of `depth` values),
        a gene list, a key, or JSON of any of these."""
        if isinstance(obj, self.Arch):
            return obj
        check_input_size(obj, self.name)
        if isinstance(obj, str):
            match = _KEY_RE.match(obj.strip())
            if match:
                layers = [part.split("x") for part in match.group(3).strip("-").split("-")]
                return self._from_config(int(match.group(1)), int(match.group(2)),
                                         [float(r) for r, _ in layers], [int(h) for _, h in layers])
        if isinstance(obj, dict) and ("mlp_ratios" in obj or "heads" in obj):
            return self._from_config(obj.get("embed_dim"), obj.get("depth"),
                                     obj.get("mlp_ratios"), obj.get("heads"),
                                     extra=set(obj) - {"embed_dim", "depth", "mlp_ratios", "heads"})
        if isinstance(obj, dict):  # layers beyond depth may be left out: they are unused
            depth = _number(obj.get("depth"))
            filler = {f"{kind}_{i}": default for i in range(max(self.preset.depths))
                      for kind, default in (("mlp_ratio", self.preset.mlp_ratios[0]),
                                            ("heads", self.preset.heads[0]))
                      if isinstance(depth, int) and i >= depth}
            obj = {**filler, **obj}
        return super().parse(obj)

    def _from_config(self, embed_dim: Any, depth: Any, ratios: Any, heads: Any,
                     extra: set[str] = frozenset()) -> BaseModel:
        if extra:
            raise IllegalArchitecture(f"unknown fields {sorted(extra)}; give embed_dim, depth, "
                                      "mlp_ratios and heads")
        depth = _number(depth)
        if not isinstance(ratios, list) or not isinstance(heads, list):
            raise IllegalArchitecture("mlp_ratios and heads must be lists with one value per layer")
        if depth not in self.preset.depths:
            raise IllegalArchitecture(f"depth = {short_repr(depth)} is not allowed; choose one of "
                                      f"{', '.join(map(str, self.preset.depths))}")
        if len(ratios) != depth or len(heads) != depth:
            raise IllegalArchitecture(f"depth {depth} needs {depth} MLP ratios and {depth} head "
                                      f"counts, got {len(ratios)} and {len(heads)}")
        layers = max(self.preset.depths)
        pad = layers - depth
        return self.from_genes([embed_dim, depth, *ratios, *[self.preset.mlp_ratios[0]] * pad,
                                *heads, *[self.preset.heads[0]] * pad])

    def input_shape(self, arch: BaseModel, dataset: str) -> tuple[int, ...]:
        p = self.preset
        return (1, p.in_channels, p.resolution, p.resolution)

    def build(self, arch: BaseModel, dataset: str) -> nn.Module:
        self.check_dataset(dataset)
        return StandAlone(config_of(arch), self.preset)

    def count_cost(self, arch: BaseModel, dataset: str) -> tuple[float, float]:
        self.check_dataset(dataset)
        return cost_of_config(config_of(arch), self.preset)

    def describe(self) -> str:
        p = self.preset
        low, high = cost_range(p)
        return (
            f"AutoFormer vision-transformer search space ({p.name}): {p.in_channels}x"
            f"{p.resolution}x{p.resolution} images cut into {p.patch}x{p.patch} patches "
            f"({p.tokens} tokens), a stack of transformer encoder layers, then LayerNorm, mean "
            "pooling of the tokens and a linear classifier.\n"
            f"- embed_dim: one embedding dimension for the whole network, one of {list(p.embed_dims)}.\n"
            f"- depth: how many encoder layers are used, one of {list(p.depths)}; layer i for "
            "i >= depth is unused (its fields are ignored).\n"
            f"- mlp_ratio_i: the MLP hidden width of layer i is embed_dim x ratio, one of "
            f"{list(p.mlp_ratios)}.\n"
            f"- heads_i: attention heads of layer i, one of {list(p.heads)}, each of {p.head_dim} "
            "dimensions (q, k and v are heads x head_dim wide).\n"
            "All sizes share weights in the supernet: a smaller choice uses a slice of the "
            "largest weight matrices.\n"
            "Cost: parameters grow with embed_dim squared times depth; the MLP holds about two "
            "thirds of a layer's parameters (2 x embed_dim^2 x ratio), attention heads add "
            f"4 x embed_dim x heads x {p.head_dim}. Params range {low[1]:.3g}-{high[1]:.3g} M, "
            f"FLOPs {low[0]:.4g}-{high[0]:.4g} M.\n"
            'Representation: JSON {"embed_dim": E, "depth": D, "mlp_ratio_0": r, ..., '
            '"heads_0": h, ...}, or {"embed_dim": E, "depth": D, "mlp_ratios": [D values], '
            '"heads": [D values]}, or the key, e.g. '
            f"e{p.embed_dims[0]}-d{p.depths[0]}-" + "-".join(
                f"{p.mlp_ratios[i % len(p.mlp_ratios)]}x{p.heads[i % len(p.heads)]}"
                for i in range(p.depths[0]))
        )


class AutoFormerTinySpace(AutoFormerSpace):
    name = "autoformer-tiny"
    datasets = ("imagenet",)
    preset_name = "autoformer-tiny"
    Arch = _arch_model(PRESETS["autoformer-tiny"])


class AutoFormerSmallSpace(AutoFormerSpace):
    name = "autoformer-small"
    datasets = ("imagenet",)
    preset_name = "autoformer-small"
    Arch = _arch_model(PRESETS["autoformer-small"])


class AutoFormerBaseSpace(AutoFormerSpace):
    name = "autoformer-base"
    datasets = ("imagenet",)
    preset_name = "autoformer-base"
    Arch = _arch_model(PRESETS["autoformer-base"])


def _number(value: Any) -> Any:
    """`value` as an int or float where it is a number or a number written as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def config_of(arch: BaseModel) -> Config:
    """The sampled network an architecture describes (its active layers only)."""
    depth = arch.depth
    return Config(arch.embed_dim, depth,
                  tuple(float(getattr(arch, f"mlp_ratio_{i}")) for i in range(depth)),
                  tuple(int(getattr(arch, f"heads_{i}")) for i in range(depth)))


def config_key(config: Config) -> str:
    """The key of a config (see `AutoFormerSpace.key`)."""
    return f"e{config.embed_dim}-d{config.depth}-" + "-".join(
        f"{r}x{h}" for r, h in zip(config.mlp_ratios, config.heads, strict=True))


def largest(preset: Preset) -> Config:
    """The config every supernet weight is allocated for."""
    depth = max(preset.depths)
    return Config(max(preset.embed_dims), depth, (max(preset.mlp_ratios),) * depth,
                  (max(preset.heads),) * depth)


def cost_of_config(config: Config, preset: Preset) -> tuple[float, float]:
    """(MFLOPs, M params) of a config by the official convention (see the module docstring)."""
    e, n, hd = config.embed_dim, preset.tokens, preset.head_dim
    tokens = n + 1
    params = preset.in_channels * preset.patch ** 2 * e + e  # patch embedding
    params += e * (n + 2)  # class token and absolute position embeddings
    flops = preset.in_channels * preset.patch ** 2 * e * n
    rel_table = (2 * preset.max_relative + 2) * hd
    for layer in range(config.depth):
        qk = config.heads[layer] * hd
        hidden = config.hidden(layer)
        params += 2 * 2 * e  # two LayerNorms
        params += e * 3 * qk + 3 * qk + qk * e + e  # qkv and proj
        params += 4 * rel_table  # relative positions of keys and values, two axes each
        params += e * hidden + hidden + hidden * e + e  # MLP
        flops += tokens * (e * 3 * qk + qk * e + 2 * e * hidden) + 2 * tokens * tokens * qk
    params += 2 * e + e * preset.classes + preset.classes  # final LayerNorm, classifier
    flops += e * preset.classes
    return flops / 1e6, params / 1e6


def cost_range(preset: Preset) -> tuple[tuple[float, float], tuple[float, float]]:
    """The costs of the smallest and the largest config of a preset."""
    low_depth = min(preset.depths)
    smallest = Config(min(preset.embed_dims), low_depth, (min(preset.mlp_ratios),) * low_depth,
                      (min(preset.heads),) * low_depth)
    return cost_of_config(smallest, preset), cost_of_config(largest(preset), preset)


# --- the network ----------------------------------------------------------------------------


def _linear(layer: nn.Linear, x: torch.Tensor, out: int, inp: int) -> torch.Tensor:
    """`layer` restricted to its first `out` outputs and `inp` inputs (the layer itself when that
    is all of it, as in a stand-alone network, so that forward hooks on it see the call)."""
    if (out, inp) == tuple(layer.weight.shape):
        return layer(x)
    bias = layer.bias[:out] if layer.bias is not None else None
    return F.linear(x, layer.weight[:out, :inp], bias)


def _norm(layer: nn.LayerNorm, x: torch.Tensor, dim: int) -> torch.Tensor:
    if layer.normalized_shape == (dim,):
        return layer(x)
    return F.layer_norm(x, (dim,), layer.weight[:dim], layer.bias[:dim], layer.eps)


class RelativePosition(nn.Module):
    """Learned embeddings of the clipped row and column distance between two patches (index 0:
    any pair with the class token), summed; one vector of `head_dim` per pair."""

    def __init__(self, head_dim: int, max_relative: int):
        super().__init__()
        self.max_relative = max_relative
        size = 2 * max_relative + 2
        self.embeddings_table_v = nn.Parameter(torch.randn(size, head_dim) * 0.02)
        self.embeddings_table_h = nn.Parameter(torch.randn(size, head_dim) * 0.02)

    def forward(self, tokens: int) -> torch.Tensor:
        side = int(math.isqrt(tokens - 1))
        position = torch.arange(tokens - 1, device=self.embeddings_table_v.device)
        rows, cols = position // side, position % side
        index_v = (rows[None, :] - rows[:, None]).clamp(-self.max_relative, self.max_relative)
        index_h = (cols[None, :] - cols[:, None]).clamp(-self.max_relative, self.max_relative)
        index_v = F.pad(index_v + self.max_relative + 1, (1, 0, 1, 0))
        index_h = F.pad(index_h + self.max_relative + 1, (1, 0, 1, 0))
        return self.embeddings_table_v[index_v] + self.embeddings_table_h[index_h]


class Attention(nn.Module):
    def __init__(self, embed: int, heads: int, head_dim: int, max_relative: int):
        super().__init__()
        self.head_dim = head_dim
        self.qkv = nn.Linear(embed, 3 * heads * head_dim)
        self.proj = nn.Linear(heads * head_dim, embed)
        self.rel_pos_embed_k = RelativePosition(head_dim, max_relative)
        self.rel_pos_embed_v = RelativePosition(head_dim, max_relative)

    def forward(self, x: torch.Tensor, heads: int) -> torch.Tensor:
        batch, tokens, embed = x.shape
        width = 3 * heads * self.head_dim
        # Rows of the sampled q, k and v: those below `width` taken every third row (the official
        # layout for sampled widths, so official weights keep their meaning).
        rows = torch.cat([torch.arange(i, width, 3, device=x.device) for i in range(3)])
        qkv = F.linear(x, self.qkv.weight[rows, :embed], self.qkv.bias[rows])
        q, k, v = qkv.reshape(batch, tokens, 3, heads, self.head_dim).permute(2, 0, 3, 1, 4)
        scale = self.head_dim ** -0.5
        position_k = self.rel_pos_embed_k(tokens)  # tokens x tokens x head_dim
        logits = q @ k.transpose(-2, -1) + torch.einsum("bhid,ijd->bhij", q, position_k)
        weights = (logits * scale).softmax(dim=-1)
        out = weights @ v + torch.einsum("bhij,ijd->bhid", weights, self.rel_pos_embed_v(tokens))
        out = out.transpose(1, 2).reshape(batch, tokens, heads * self.head_dim)
        return _linear(self.proj, out, embed, heads * self.head_dim)


class EncoderLayer(nn.Module):
    def __init__(self, embed: int, hidden: int, heads: int, head_dim: int, max_relative: int):
        super().__init__()
        self.attn_layer_norm = nn.LayerNorm(embed)
        self.attn = Attention(embed, heads, head_dim, max_relative)
        self.ffn_layer_norm = nn.LayerNorm(embed)
        self.fc1 = nn.Linear(embed, hidden)
        self.activation = nn.GELU()  # a module, so that activation-based proxies can hook it
        self.fc2 = nn.Linear(hidden, embed)

    def forward(self, x: torch.Tensor, embed: int, hidden: int, heads: int) -> torch.Tensor:
        x = x + self.attn(_norm(self.attn_layer_norm, x, embed), heads)
        h = self.activation(_linear(self.fc1, _norm(self.ffn_layer_norm, x, embed), hidden, embed))
        return x + _linear(self.fc2, h, embed, hidden)


class _PatchEmbed(nn.Module):
    def __init__(self, preset: Preset, embed: int):
        super().__init__()
        self.proj = nn.Conv2d(preset.in_channels, embed, preset.patch, stride=preset.patch)

    def forward(self, x: torch.Tensor, embed: int) -> torch.Tensor:
        x = F.conv2d(x, self.proj.weight[:embed], self.proj.bias[:embed], stride=self.proj.stride)
        return x.flatten(2).transpose(1, 2)


class AutoFormerNet(nn.Module):
    """Weights for every config up to `sizes` (per layer: the largest MLP hidden width and
    heads); `forward(x, config)` runs one config on slices of them."""

    def __init__(self, preset: Preset, sizes: Config | None = None):
        super().__init__()
        sizes = sizes or largest(preset)
        self.preset, self.sizes = preset, sizes
        embed = sizes.embed_dim
        self.patch_embed_super = _PatchEmbed(preset, embed)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed))
        self.pos_embed = nn.Parameter(torch.zeros(1, preset.tokens + 1, embed))
        self.blocks = nn.ModuleList(
            EncoderLayer(embed, sizes.hidden(i), sizes.heads[i], preset.head_dim, preset.max_relative)
            for i in range(sizes.depth))
        self.norm = nn.LayerNorm(embed)
        self.head = nn.Linear(embed, preset.classes)
        self._initialise()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, x: torch.Tensor, config: Config) -> torch.Tensor:
        e = config.embed_dim
        x = self.patch_embed_super(x, e)
        x = torch.cat([self.cls_token[..., :e].expand(len(x), -1, -1), x], dim=1)
        x = x + self.pos_embed[..., :e]
        for i in range(config.depth):
            x = self.blocks[i](x, e, config.hidden(i), config.heads[i])
        x = _norm(self.norm, x, e)
        return _linear(self.head, x[:, 1:].mean(dim=1), self.preset.classes, e)


class StandAlone(AutoFormerNet):
    """One config as a network of exactly its size (`forward(x)`)."""

    def __init__(self, config: Config, preset: Preset):
        super().__init__(preset, config)
        self.config = config

    def forward(self, x: torch.Tensor, config: Config | None = None) -> torch.Tensor:
        return super().forward(x, config or self.config)


def check_config(config: Config, preset: Preset) -> None:
    """Raise `IllegalArchitecture` unless the supernet of `preset` holds `config`."""
    problems = []
    if config.embed_dim not in preset.embed_dims:
        problems.append(f"embed_dim {config.embed_dim} not in {list(preset.embed_dims)}")
    if config.depth not in preset.depths:
        problems.append(f"depth {config.depth} not in {list(preset.depths)}")
    problems += [f"layer {i}: MLP ratio {r} not in {list(preset.mlp_ratios)}"
                 for i, r in enumerate(config.mlp_ratios) if r not in preset.mlp_ratios]
    problems += [f"layer {i}: {h} heads not in {list(preset.heads)}"
                 for i, h in enumerate(config.heads) if h not in preset.heads]
    if problems:
        raise IllegalArchitecture(f"not a {preset.name} config: " + "; ".join(problems))


class OfficialCheckpointError(CollmNasError, ValueError):
    """An official AutoFormer checkpoint that does not fit the supernet it is loaded into."""


def official_supernet(preset: Preset, state: dict[str, torch.Tensor]) -> AutoFormerNet:
    """The supernet in the `model` entry of an official AutoFormer checkpoint (its module names,
    trained with relative positions and `change_qkv`), allocated at the sizes its tensors have
    (an official supernet may be wider or deeper than the largest choice), or one
    `OfficialCheckpointError` saying what does not fit `preset`."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    try:
        embed = state["cls_token"].shape[-1]
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        hidden = [state[f"blocks.{i}.fc1.weight"].shape[0] for i in range(depth)]
        heads = [state[f"blocks.{i}.attn.qkv.weight"].shape[0] // (3 * preset.head_dim)
                 for i in range(depth)]
    except (KeyError, ValueError, IndexError) as err:
        raise OfficialCheckpointError(
            f"not an official AutoFormer supernet state dict (no {err}); expected cls_token, "
            "blocks.<i>.fc1.weight, blocks.<i>.attn.qkv.weight, ...") from None
    sizes = Config(embed, depth, tuple(h / embed for h in hidden), tuple(heads))
    if embed < max(preset.embed_dims) or depth < max(preset.depths) or min(heads) < max(preset.heads):
        raise OfficialCheckpointError(
            f"the checkpoint (embed {embed}, depth {depth}, heads up to {max(heads)}) is smaller "
            f"than the {preset.name} space's largest network")
    model = AutoFormerNet(preset, sizes)
    mismatch = state_mismatch(model.state_dict(), state)
    if mismatch:
        raise OfficialCheckpointError(f"the checkpoint does not fit the {preset.name} supernet: {mismatch}")
    model.load_state_dict(state)
    return model
