"""MobileNetV3 macro space of Once-for-All (OFA, Cai et al. ICLR 2020), width multiplier 1.2.

An architecture is a resolution `r`, five stage depths `d` and, for each of the 20 blocks
(4 per stage), a kernel size `ks` and an expand ratio `e`. Block j of stage i (global index
4*i + j) runs only when j < d[i]; the genes of the other blocks are carried but ignored, so the
key, the encoding and `mutate` look only at active blocks. About 2 x 10^19 distinct networks.

`build()` returns the real subnet of the official supernet class
`ofa.imagenet_classification.elastic_nn.networks.OFAMobileNetV3` (the PyPI package `ofa`, the
`ofa` extra of this project); it is imported lazily so the space itself loads without it.
FLOPs follow OFA's own counter (`ofa.utils.count_net_flops`: multiply-accumulates of
convolutions and linear layers), run on parts built from a weightless ("meta") copy of the
supernet: the same modules and shapes, no arithmetic. `count_cost` counts each network part
(first conv, first fixed block, each searchable MBConv block given its slot, kernel size and
expand ratio, the head) once per input shape with OFA's counter, caches the per-layer counts and
adds them up in the order and the float32 arithmetic of `count_net_flops`, so it returns exactly
the whole-network count (`count_cost_whole`, kept as the reference) in microseconds instead of
about half a second.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import threading
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
from collm_nas.spaces.base import IllegalArchitecture, SearchSpace, check_input_size, short_repr
from pydantic import BaseModel, ConfigDict, Field

RESOLUTIONS = (160, 176, 192, 208, 224)
DEPTHS = (2, 3, 4)
KERNEL_SIZES = (3, 5, 7)
EXPAND_RATIOS = (3, 4, 6)
N_STAGES = 5
BLOCKS_PER_STAGE = 4
N_BLOCKS = N_STAGES * BLOCKS_PER_STAGE
WIDTH_MULT = 1.2
NUM_CLASSES = 1000
DATASETS = ("imagenet",)
# Output channels of the five searchable stages at width 1.2 (OFA base widths 24/40/80/112/160).
STAGE_CHANNELS = (32, 48, 96, 136, 192)
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_NOTES = ("ReLU", "ReLU + squeeze-excite", "h-swish", "h-swish + squeeze-excite",
               "h-swish + squeeze-excite")

Resolution = Literal[160, 176, 192, 208, 224]
Depth = Literal[2, 3, 4]
KernelSize = Literal[3, 5, 7]
ExpandRatio = Literal[3, 4, 6]

_FIELDS = ("r", "d", "ks", "e")
_ALIASES = {
    "resolution": "r", "image_size": "r", "img_size": "r", "input_size": "r",
    "depth": "d", "depths": "d", "depth_list": "d",
    "kernel_size": "ks", "kernel_sizes": "ks", "ks_list": "ks", "k": "ks", "kernel": "ks",
    "expand_ratio": "e", "expand_ratios": "e", "expand": "e", "e_list": "e", "expansion": "e",
    "expand_ratio_list": "e",
}
_KEY_RE = re.compile(
    r"^r(\d+)_d([0-9]{5})_ks([0-9-]{4}(?:/[0-9-]{4}){4})_e([0-9-]{4}(?:/[0-9-]{4}){4})$"
)


class MobileNetArch(BaseModel):
    """One OFA MobileNetV3 subnet: resolution, stage depths, kernel sizes, expand ratios."""

    model_config = ConfigDict(extra="forbid")

    r: Resolution = Field(description="input image resolution in pixels (height = width)")
    d: list[Depth] = Field(
        min_length=N_STAGES, max_length=N_STAGES,
        description="depth of each of the 5 stages: how many of its 4 blocks are used",
    )
    ks: list[KernelSize] = Field(
        min_length=N_BLOCKS, max_length=N_BLOCKS,
        description="depthwise kernel size of each of the 20 blocks (4 per stage, in order); "
        "values of unused blocks are ignored",
    )
    e: list[ExpandRatio] = Field(
        min_length=N_BLOCKS, max_length=N_BLOCKS,
        description="expand ratio of each of the 20 blocks (4 per stage, in order); "
        "values of unused blocks are ignored",
    )


def active_blocks(d: list[int] | tuple[int, ...]) -> list[int]:
    """Global indices (0..19) of the blocks that run for stage depths `d`."""
    return [BLOCKS_PER_STAGE * i + j for i, depth in enumerate(d) for j in range(depth)]


class MobileNetSpace(SearchSpace):
    name = "mobilenet"
    Arch: ClassVar[type[BaseModel]] = MobileNetArch
    datasets = DATASETS
    evaluators = ("predictor", "supernet")
    cost_kinds = ("flops", "params", "latency")  # latency: OFA's Samsung Note10 tables

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._supernet = None
        self._meta_supernet = None
        self._cost_cache: dict[str, tuple[float, float]] = {}
        # (part, input shape) -> that part's OFA counts; see `_part_cost`.
        self._part_cache: dict[tuple[tuple, tuple[int, ...]], _PartCost] = {}

    # --- genes ---------------------------------------------------------------------------

    @property
    def dimensions(self) -> dict[str, tuple[int, ...]]:
        dims: dict[str, tuple[int, ...]] = {"r": RESOLUTIONS}
        dims.update({f"d_{i}": DEPTHS for i in range(N_STAGES)})
        dims.update({f"ks_{b}": KERNEL_SIZES for b in range(N_BLOCKS)})
        dims.update({f"e_{b}": EXPAND_RATIOS for b in range(N_BLOCKS)})
        return dims

    def genes(self, arch: MobileNetArch) -> tuple[int, ...]:
        return (arch.r, *arch.d, *arch.ks, *arch.e)

    def from_genes(self, genes) -> MobileNetArch:
        genes = list(genes)
        n = 1 + N_STAGES + 2 * N_BLOCKS
        if len(genes) != n:
            raise IllegalArchitecture(
                f"a MobileNetV3 gene list has {n} values (r, 5 depths, 20 kernel sizes, "
                f"20 expand ratios), got {len(genes)}"
            )
        return self._validated(
            {"r": genes[0], "d": genes[1:6], "ks": genes[6:26], "e": genes[26:46]}
        )

    def key(self, arch: MobileNetArch) -> str:
        """`r208_d33334_ks357-/.../..._e346-/...`: one group per stage, `-` for unused blocks."""
        active = set(active_blocks(arch.d))

        def stages(values: list[int]) -> str:
            return "/".join(
                "".join(
                    str(values[b]) if b in active else "-"
                    for b in range(BLOCKS_PER_STAGE * i, BLOCKS_PER_STAGE * (i + 1))
                )
                for i in range(N_STAGES)
            )

        return f"r{arch.r}_d{''.join(map(str, arch.d))}_ks{stages(arch.ks)}_e{stages(arch.e)}"

    def encode(self, arch: MobileNetArch) -> np.ndarray:
        """One-hot over all 46 dimensions, with unused blocks' kernel/expand one-hots all zero
        (so two encodings of the same network give the same vector)."""
        vector = super().encode(arch)
        offset_ks = len(RESOLUTIONS) + N_STAGES * len(DEPTHS)
        offset_e = offset_ks + N_BLOCKS * len(KERNEL_SIZES)
        active = set(active_blocks(arch.d))
        for b in range(N_BLOCKS):
            if b not in active:
                vector[offset_ks + 3 * b: offset_ks + 3 * b + 3] = 0.0
                vector[offset_e + 3 * b: offset_e + 3 * b + 3] = 0.0
        return vector

    def active_genes(self, arch: MobileNetArch) -> tuple[bool, ...]:
        active = set(active_blocks(arch.d))
        blocks = tuple(b in active for b in range(N_BLOCKS))
        return (True,) * (1 + N_STAGES) + blocks + blocks

    def mutate(self, arch: MobileNetArch, rng: np.random.Generator) -> MobileNetArch:
        """Change one gene that matters (resolution, a depth, or an active block's kernel size or
        expand ratio) to a different value; the result is always a different network."""
        genes = list(self.genes(arch))
        dims = list(self.dimensions.values())
        active = active_blocks(arch.d)
        positions = (
            [0]
            + [1 + i for i in range(N_STAGES)]
            + [1 + N_STAGES + b for b in active]
            + [1 + N_STAGES + N_BLOCKS + b for b in active]
        )
        i = positions[int(rng.integers(len(positions)))]
        others = [v for v in dims[i] if v != genes[i]]
        genes[i] = others[int(rng.integers(len(others)))]
        return self.from_genes(genes)

    # --- parsing -------------------------------------------------------------------------

    def parse(self, obj: Any) -> MobileNetArch:
        """Accepts a `MobileNetArch`, a dict `{'r': 208 or [208], 'd': [5], 'ks': [20],
        'e': [20]}` (or its JSON / Python-literal text), a key string, or a list of 46 genes."""
        if isinstance(obj, MobileNetArch):
            return obj
        check_input_size(obj, self.name)
        if isinstance(obj, str):
            return self._parse_text(obj)
        if isinstance(obj, (list, tuple)):
            return self.from_genes(obj)
        if isinstance(obj, dict):
            return self._parse_dict(obj)
        raise IllegalArchitecture(
            f"cannot read a MobileNetV3 architecture from a {type(obj).__name__}; give a dict "
            "with fields r, d, ks, e (or its JSON text)"
        )

    def _parse_text(self, text: str) -> MobileNetArch:
        text = text.strip()
        fenced = re.match(r"^```[a-zA-Z]*\s*(.*?)\s*```$", text, re.DOTALL)
        if fenced:
            text = fenced.group(1).strip()
        match = _KEY_RE.match(text)
        if match:
            return self._parse_key(match)
        for loader in (json.loads, ast.literal_eval):
            try:
                value = loader(text)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, (dict, list, tuple)):
                return self.parse(value)
        raise IllegalArchitecture(
            f"{text[:80]!r} is not a MobileNetV3 architecture; expected JSON like "
            '{"r": 208, "d": [5 depths], "ks": [20 kernel sizes], "e": [20 expand ratios]}'
        )

    def _parse_key(self, match: re.Match) -> MobileNetArch:
        r, d, ks, e = match.groups()

        def values(stages: str, fill: int) -> list[Any]:
            return [fill if c == "-" else int(c) for c in stages.replace("/", "")]

        return self._validated(
            {"r": int(r), "d": [int(c) for c in d], "ks": values(ks, KERNEL_SIZES[0]),
             "e": values(e, EXPAND_RATIOS[0])}
        )

    def _parse_dict(self, obj: dict) -> MobileNetArch:
        if len(obj) == 1:
            (name, inner), = obj.items()
            if str(name).lower() in ("arch", "architecture", "net_config", "config") and isinstance(
                inner, (dict, str)
            ):
                return self.parse(inner)
        named: dict[str, Any] = {}
        unknown = []
        for name, value in obj.items():
            field = _ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
            if field in _FIELDS:
                named[field] = value
            else:
                unknown.append(name)
        missing = [f for f in _FIELDS if f not in named]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing field(s) {missing}")
            if unknown:
                parts.append(f"unknown field(s) {short_repr(unknown)}")
            raise IllegalArchitecture(
                "; ".join(parts) + "; a MobileNetV3 architecture has exactly the fields "
                "r (resolution), d (5 stage depths), ks (20 kernel sizes), e (20 expand ratios)"
            )
        return self._validated(named)

    def _validated(self, fields: dict[str, Any]) -> MobileNetArch:
        """Check every field and report all problems at once, each with its place."""
        errors: list[str] = []
        r = fields["r"]
        if isinstance(r, (list, tuple)):
            if len(r) != 1:
                errors.append(
                    f"r must be one resolution (e.g. 208 or [208]), got a list of {len(r)} values"
                )
                r = None
            else:
                r = r[0]
        if r is not None:
            value = _as_int(r)
            if value not in RESOLUTIONS:
                errors.append(
                    f"r = {short_repr(r)} is not an allowed resolution; allowed: {_choices(RESOLUTIONS)}"
                )
            r = value
        checked = {"r": r}
        for field, length, allowed, what in (
            ("d", N_STAGES, DEPTHS, "stage depth"),
            ("ks", N_BLOCKS, KERNEL_SIZES, "kernel size"),
            ("e", N_BLOCKS, EXPAND_RATIOS, "expand ratio"),
        ):
            values = fields[field]
            if not isinstance(values, (list, tuple)):
                errors.append(f"{field} must be a list of {length} integers, got {short_repr(values)}")
                continue
            if len(values) != length:
                unit = "one per stage" if field == "d" else (
                    "one per block: 4 per stage, including unused blocks, whose values are "
                    "ignored"
                )
                errors.append(f"{field} must have {length} values ({unit}), got {len(values)}")
                continue
            ints = []
            for index, raw in enumerate(values):
                value = _as_int(raw)
                if value not in allowed:
                    errors.append(
                        f"{field}[{index}] = {short_repr(raw)} is not an allowed {what}; "
                        f"allowed: {_choices(allowed)}"
                    )
                ints.append(value)
            checked[field] = ints
        if errors:
            raise IllegalArchitecture("; ".join(errors))
        return MobileNetArch(**checked)

    # --- networks ------------------------------------------------------------------------

    def input_shape(self, arch: MobileNetArch, dataset: str) -> tuple[int, ...]:
        self.check_dataset(dataset)
        return (1, 3, arch.r, arch.r)

    @property
    def supernet(self):
        """The OFA MobileNetV3 w1.2 supernet (randomly initialised here; built once)."""
        with self._lock:
            if self._supernet is None:
                self._supernet = new_ofa_supernet()
            return self._supernet

    def build(self, arch: MobileNetArch, dataset: str):
        """The real subnet of the (randomly initialised) supernet, weights copied out of it."""
        self.check_dataset(dataset)
        supernet = self.supernet
        with self._lock:
            return extract_subnet(supernet, arch)

    def count_cost(self, arch: MobileNetArch, dataset: str = "imagenet") -> tuple[float, float]:
        """(MFLOPs, M params) at the subnet's resolution, OFA's convention; cached by key.

        Summed from cached per-part counts: identical to `count_cost_whole`, much faster."""
        self.check_dataset(dataset)
        key = self.key(arch)
        if key not in self._cost_cache:
            self._cost_cache[key] = self.cost_at_resolution(arch, arch.r)
        return self._cost_cache[key]

    def cost_at_resolution(self, arch: MobileNetArch, resolution: int) -> tuple[float, float]:
        """OFA-convention cost of the subnet's structure at any input resolution (the
        architecture is not cached; its parts are).

        `count_net_flops` stores each layer's count in a float32 tensor and adds the layers up in
        float32 in module order; the same layer counts are added here in the same order and the
        same precision, so the result equals the whole-network count bit for bit."""
        shape: tuple[int, ...] = (1, 3, resolution, resolution)
        ops: list[np.ndarray] = []
        params = 0
        for part in _parts(arch):
            cost = self._part_cache.get((part, shape))
            if cost is None:
                cost = self._part_cost(part, shape)
            ops.append(cost.ops)
            params += cost.params
            shape = cost.out_shape
        flops = float(np.cumsum(np.concatenate(ops), dtype=np.float32)[-1])
        return flops / 1e6, params / 1e6

    def count_cost_whole(
        self, arch: MobileNetArch, resolution: int | None = None
    ) -> tuple[float, float]:
        """The reference count: OFA's `count_net_flops` on the whole weightless subnet (about
        0.5 s; not cached). `resolution` defaults to the architecture's own."""
        from ofa.utils import count_net_flops

        resolution = arch.r if resolution is None else resolution
        with self._lock:
            subnet = extract_subnet(self._meta(), arch)
        flops = count_net_flops(subnet, (1, 3, resolution, resolution))
        params = sum(p.numel() for p in subnet.parameters())
        return flops / 1e6, params / 1e6

    def _meta(self):
        """The weightless supernet (callers hold the lock)."""
        if self._meta_supernet is None:
            self._meta_supernet = new_ofa_supernet(device="meta")
        return self._meta_supernet

    def _part_cost(self, part: tuple, in_shape: tuple[int, ...]) -> _PartCost:
        """Build one network part from the weightless supernet and count it with OFA's counter
        (`ofa.utils.flops_counter.profile`, what `count_net_flops` runs) at `in_shape`."""
        from ofa.utils.flops_counter import profile

        with self._lock:
            cached = self._part_cache.get((part, in_shape))
            if cached is not None:
                return cached
            module = _build_part(self._meta(), part, in_shape[1])
            seen: dict[str, Any] = {}

            def read_counts(_module, _inputs, output):
                # Runs once the forward inside `profile` is done: each leaf layer's count is in
                # its `total_ops` (a float32 tensor), which `profile` sums in module order. Zeros
                # change no float32 sum and are left out.
                seen["ops"] = [
                    m.total_ops.item() for m in module.modules()
                    if not list(m.children()) and m.total_ops.item() != 0
                ]
                seen["out_shape"] = tuple(output.shape)

            handle = module.register_forward_hook(read_counts)
            try:
                profile(module, in_shape)
            finally:
                handle.remove()
            cost = _PartCost(
                ops=np.array(seen["ops"], dtype=np.float32),
                params=sum(p.numel() for p in module.parameters()),
                out_shape=seen["out_shape"],
            )
            self._part_cache[(part, in_shape)] = cost
            return cost

    # --- prompt knowledge ----------------------------------------------------------------

    def describe(self) -> str:
        stage_lines = "\n".join(
            f"  stage {i + 1}: blocks {4 * i}-{4 * i + 3} (list positions), {STAGE_CHANNELS[i]} "
            f"output channels, first block stride {STAGE_STRIDES[i]}, {STAGE_NOTES[i]}"
            for i in range(N_STAGES)
        )
        return (
            "Once-for-All MobileNetV3 search space (width multiplier 1.2, ImageNet, 1000 "
            "classes); about 2 x 10^19 networks.\n"
            "The network is a fixed stem (3x3 conv, 24 channels, stride 2, then one fixed 3x3 "
            "depthwise block), five searchable stages of inverted-residual (MBConv) blocks, and a "
            "fixed head (1x1 conv to 1152, global pooling, 1x1 conv to 1536, classifier). Each "
            "stage has 4 block slots:\n"
            f"{stage_lines}\n"
            "An MBConv block expands its input channels by the expand ratio with a 1x1 conv, "
            "runs a depthwise conv with the kernel size, and projects back with a 1x1 conv; "
            "blocks after the first in a stage add a residual connection.\n"
            "Choices:\n"
            f"  r: input resolution, one of {_choices(RESOLUTIONS)};\n"
            f"  d: 5 stage depths, each one of {_choices(DEPTHS)}: stage i uses only its first "
            "d[i] blocks;\n"
            f"  ks: 20 kernel sizes, each one of {_choices(KERNEL_SIZES)};\n"
            f"  e: 20 expand ratios, each one of {_choices(EXPAND_RATIOS)}.\n"
            "Representation: JSON "
            '{"r": 208, "d": [d1, d2, d3, d4, d5], "ks": [20 values], "e": [20 values]}. '
            "ks and e always list all 20 block slots in order, 4 per stage: positions 0-3 are "
            "stage 1, 4-7 stage 2, 8-11 stage 3, 12-15 stage 4, 16-19 stage 5. Counting both from "
            "0 (stage 1 is i = 0), slot j of stage i is list position 4*i + j and is active only "
            "when j < d[i]; the ks and e values of inactive slots are ignored (write any allowed "
            "value, e.g. 3). Example: "
            "d = [2, 3, 4, 2, 3] uses positions 0-1, 4-6, 8-11, 12-13 and 16-18.\n"
            "Cost: FLOPs grow with the square of the resolution, with depth, and with larger "
            "kernel sizes and expand ratios (the expand ratio affects FLOPs most); later stages "
            "are wider but run at lower spatial resolution. The smallest network "
            "(r 160, all d 2, ks 3, e 3) has about 100 MFLOPs, the largest (r 224, all d 4, ks 7, "
            "e 6) about 843 MFLOPs."
        )


def _as_int(value: Any) -> Any:
    """An integer from an int, an integral float or a digit string; otherwise the value itself."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 6:
        return int(value.strip())
    return value


def _choices(values: tuple[int, ...]) -> str:
    return ", ".join(map(str, values))


# --- the OFA supernet (package `ofa`, imported on first use) -------------------------------


def new_ofa_supernet(device: str = "cpu"):
    """A fresh OFA MobileNetV3 supernet `ofa_mbv3_d234_e346_k357_w1.2` (random weights).

    `device="meta"` builds it without memory or arithmetic (for counting FLOPs and params).
    """
    import torch

    try:
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    except ImportError as err:
        raise ImportError(
            "the mobilenet space needs the Once-for-All package: pip install 'collm-nas[ofa]' "
            f"(or: pip install ofa torchvision pillow) [{err}]"
        ) from err
    with torch.device(device):
        return OFAMobileNetV3(
            n_classes=NUM_CLASSES, dropout_rate=0, width_mult=WIDTH_MULT,
            ks_list=list(KERNEL_SIZES), expand_ratio_list=list(EXPAND_RATIOS),
            depth_list=list(DEPTHS),
        )


class _PartCost(NamedTuple):
    ops: np.ndarray  # float32 counts of the part's leaf layers, in module order (zeros left out)
    params: int
    out_shape: tuple[int, ...]


def _parts(arch: MobileNetArch) -> list[tuple]:
    """The parts of the subnet in module order: first conv, first fixed block, the active
    MBConv blocks (slot, kernel size, expand ratio), head. A part's cost depends only on it and
    its input shape."""
    return [
        ("first_conv",),
        ("first_block",),
        *(("block", b, arch.ks[b], arch.e[b]) for b in active_blocks(arch.d)),
        ("head",),
    ]


def _build_part(supernet, part: tuple, in_channels: int):
    """One part of the subnet, built the way `OFAMobileNetV3.get_active_subnet` builds it."""
    from ofa.utils.layers import ResidualBlock

    kind = part[0]
    if kind == "first_conv":
        return copy.deepcopy(supernet.first_conv)
    if kind == "first_block":
        return copy.deepcopy(supernet.blocks[0])
    if kind == "block":
        _, b, ks, e = part
        block = supernet.blocks[1 + b]
        conv = block.conv
        saved = conv.active_kernel_size, conv.active_expand_ratio
        conv.active_kernel_size, conv.active_expand_ratio = ks, e
        try:
            layer = conv.get_active_subnet(in_channels, preserve_weight=False)
        finally:
            conv.active_kernel_size, conv.active_expand_ratio = saved
        return ResidualBlock(layer, copy.deepcopy(block.shortcut))
    if kind == "head":  # `MobileNetV3.forward` after the blocks, in the subnet's module order
        import torch
        from ofa.utils import MyGlobalAvgPool2d

        return torch.nn.Sequential(
            copy.deepcopy(supernet.final_expand_layer), MyGlobalAvgPool2d(keep_dim=True),
            copy.deepcopy(supernet.feature_mix_layer), torch.nn.Flatten(),
            copy.deepcopy(supernet.classifier),
        )
    raise ValueError(f"unknown network part {part!r}")


def extract_subnet(supernet, arch: MobileNetArch):
    """Set `arch` active on an OFA supernet and copy that subnet out (weights preserved).

    Not thread-safe on the same supernet: callers serialise access.
    """
    supernet.set_active_subnet(ks=list(arch.ks), e=list(arch.e), d=list(arch.d))
    return supernet.get_active_subnet(preserve_weight=True)
