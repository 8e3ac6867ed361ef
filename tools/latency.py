"""Samsung Note10 latency (ms) of OFA MobileNetV3 w1.2 subnets, summed from OFA's published
per-layer lookup tables (`ofa/note10_<r>_lookup_table.yaml` in the data folder).

The layer keys and the sum follow `ofa.tutorial.latency_table` (`tests/test_latency.py` checks
that both give the same number). That module is not imported here: its package pulls in `gdown`
and the ImageNet helpers, and it calls `yaml.load` without a Loader, which PyYAML 6 refuses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from collm_nas.errors import CollmNasError
from collm_nas.spaces.mobilenet import (
    BLOCKS_PER_STAGE,
    N_BLOCKS,
    RESOLUTIONS,
    STAGE_CHANNELS,
    STAGE_STRIDES,
    MobileNetArch,
)
from collm_nas.tools.data import DataFileError, find_data_file

LATENCY_DEVICE = "note10"
LATENCY_SPACES = ("mobilenet",)
TABLE_FILE = "ofa/" + LATENCY_DEVICE + "_{r}_lookup_table.yaml"
HOW_TO_GET_TABLES = (
    "The tables are OFA's files ofa/note10/<r>_lookup_table.yaml from github.com/han-cai/files "
    "(one per resolution 160..224); see the data folder's PROVENANCE.md."
)
# Fixed layers of the w1.2 network around the searchable blocks (OFA's own numbers).
FIRST_CHANNELS = 24
LAST_STAGE_CHANNELS, FINAL_EXPAND, FEATURE_MIX, CLASSES = 192, 1152, 1536, 1000
SQUEEZE_EXCITE = (False, True, False, True, True)
HARD_SWISH = (False, False, True, True, True)


def _shape(*dims: int) -> str:
    return "x".join(map(str, dims))


class Note10Latency:
    """Predicted latency on a Samsung Note10 in milliseconds; tables are read once, when first
    needed, and every file is checked for up front so a missing one fails at start."""

    def __init__(self, data_path: str | Path | None = None):
        self.files = {
            r: find_data_file(TABLE_FILE.format(r=r), data_path, HOW_TO_GET_TABLES)
            for r in RESOLUTIONS
        }
        self._tables: dict[int, dict[str, Any]] = {}

    def _table(self, r: int) -> dict[str, Any]:
        if r not in self._tables:
            try:
                table = yaml.safe_load(self.files[r].read_text())
            except yaml.YAMLError as err:
                raise DataFileError(f"{self.files[r]} is not valid YAML ({err}). {HOW_TO_GET_TABLES}") from None
            if not isinstance(table, dict):
                raise DataFileError(f"{self.files[r]} is not a latency lookup table. {HOW_TO_GET_TABLES}")
            self._tables[r] = table
        return self._tables[r]

    def _ms(self, r: int, key: str) -> float:
        try:
            return float(self._table(r)[key]["mean"])
        except (KeyError, TypeError):
            raise DataFileError(
                f"{self.files[r]} has no entry {key!r}: it is not OFA's Note10 table for "
                f"resolution {r}. {HOW_TO_GET_TABLES}"
            ) from None

    def __call__(self, arch: MobileNetArch) -> float:
        r = arch.r
        size = (r + 1) // 2
        total = self._ms(r, f"Conv-input:{_shape(r, r, 3)}-output:{_shape(size, size, FIRST_CHANNELS)}")
        # the fixed first block: 3x3, no expansion, ReLU, no squeeze-excite
        total += self._block(r, (size, size), (FIRST_CHANNELS,) * 3, 3, 1, True, False, False)
        channels = FIRST_CHANNELS
        for block in range(N_BLOCKS):
            stage, position = divmod(block, BLOCKS_PER_STAGE)
            if position >= arch.d[stage]:
                continue
            stride = STAGE_STRIDES[stage] if position == 0 else 1
            out_size = (size - 1) // stride + 1
            widths = (channels, STAGE_CHANNELS[stage], round(channels * arch.e[block]))
            total += self._block(r, (size, out_size), widths, arch.ks[block], stride, position > 0,
                                 SQUEEZE_EXCITE[stage], HARD_SWISH[stage])
            size, channels = out_size, STAGE_CHANNELS[stage]
        total += self._ms(r, f"Conv_1-input:{_shape(size, size, LAST_STAGE_CHANNELS)}"
                             f"-output:{_shape(size, size, FINAL_EXPAND)}")
        total += self._ms(r, f"AvgPool2D-input:{_shape(size, size, FINAL_EXPAND)}"
                             f"-output:{_shape(1, 1, FINAL_EXPAND)}")
        total += self._ms(r, f"Conv_2-input:{_shape(1, 1, FINAL_EXPAND)}-output:{_shape(1, 1, FEATURE_MIX)}")
        total += self._ms(r, f"Logits-input:{_shape(1, 1, FEATURE_MIX)}-output:{CLASSES}")
        return total

    def _block(self, r: int, sizes: tuple[int, int], widths: tuple[int, int, int], kernel: int,
               stride: int, skip: bool, se: bool, hs: bool) -> float:
        """One inverted-residual block; widths = (in, out, expanded) channels."""
        (size, out_size), (channels, out_channels, mid) = sizes, widths
        return self._ms(
            r, f"expanded_conv-input:{_shape(size, size, channels)}"
               f"-output:{_shape(out_size, out_size, out_channels)}-expand:{mid}-kernel:{kernel}"
               f"-stride:{stride}-idskip:{int(skip)}-se:{int(se)}-hs:{int(hs)}",
        )


class NoLatencyTables(CollmNasError, ValueError):
    """A latency limit on a space without latency tables."""


def check_latency_space(space: str) -> None:
    """One clear error for a latency limit on a space without latency tables."""
    if space not in LATENCY_SPACES:
        raise NoLatencyTables(
            f"a latency limit needs a space with latency tables ({', '.join(LATENCY_SPACES)}); "
            f"{space!r} has none: limit FLOPs or params instead"
        )


def latency_model(space: str, data_path: str | Path | None = None) -> Note10Latency:
    """The latency model of a space (its tables found through the data settings)."""
    check_latency_space(space)
    return Note10Latency(data_path)
