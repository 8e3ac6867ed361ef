"""Convert an official NAS-Bench-201 / NATS-Bench topology file into the project's NB201 table.

Sources, recognised by content (not only by name):
- NAS-Bench-201 `.pth` (`NAS-Bench-201-v1_0-e61699.pth`, `NAS-Bench-201-v1_1-096897.pth`), read
  through the PyPI package `nas-bench-201` (`nas_201_api.NASBench201API`).
- NATS-Bench topology (tss) benchmark: the `NATS-tss-v1_0-3ffb9-simple` folder (one pickle per
  architecture + `meta.pickle.pbz2`, read with `fast_mode=True`) or the single
  `NATS-tss-v1_0-3ffb9.pickle.pbz2` file (`fast_mode=False`), read through the PyPI package
  `nats_bench` (`nats_bench.create(path, "tss", ...)`).

Every value is the 200-epoch result (hp='200') at the last epoch, averaged over the seeds
(`is_random=False`), exactly as `../shared/data/PROVENANCE.md` describes each column:
  cifar10_valid_acc      get_more_info(i, 'cifar10-valid')['valid-accuracy']    (x-valid)
  cifar10_test_acc       get_more_info(i, 'cifar10')['test-accuracy']           (ori-test)
  <ds>_valid_acc         get_more_info(i, DS)['valid-accuracy']                 (x-valid)
  <ds>_test_acc          get_more_info(i, DS)['test-accuracy']                  (x-test)
  <ds>_valtest_acc       get_more_info(i, DS)['valtest-accuracy']               (ori-test)
  params_<ds>_M          get_cost_info(i, DS, hp='200')['params']
  train_time_<ds>_s      get_more_info(i, DS)['train-all-time']
with DS = 'cifar100' / 'ImageNet16-120'. `n_seeds_200ep` is the smallest number of 200-epoch seeds
over the four training sets; `unique_str` is NATS' isomorphism string (`get_unique_str`).
The six `*_valid_acc` / `*_test_acc` columns are required; the others are left empty when the
source does not hold them (e.g. no training times).

Loading: the `.pth` is read here with torch.load through a data-only unpickler (plain containers,
numpy scalars, tensors; any other global is refused) and handed to `NASBench201API` as a dict.
Set COLLM_NAS_TRUST_PICKLE=1 to read a trusted file that holds more. NATS-Bench files are read
by `nats_bench` itself, which uses plain pickle: convert only files from the official release.
Expect minutes and much memory for the full files (the v1_1 .pth is 4.7 GB).
"""

from __future__ import annotations

import csv
import math
import os
import pickle
import tempfile
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collm_nas.errors import CollmNasError
from collm_nas.tools.data import DataFileError

NB201_CELLS = 15625
HP = "200"

COLUMNS = (
    "arch_index",
    "arch_str",
    "cifar10_valid_acc",
    "cifar10_test_acc",
    "cifar100_valid_acc",
    "cifar100_test_acc",
    "cifar100_valtest_acc",
    "imagenet16_valid_acc",
    "imagenet16_test_acc",
    "imagenet16_valtest_acc",
    "params_cifar10_M",
    "params_cifar100_M",
    "params_imagenet16_M",
    "train_time_cifar10valid_s",
    "train_time_cifar100_s",
    "train_time_imagenet16_s",
    "n_seeds_200ep",
    "unique_str",
)

# column -> (training set in the API, key of get_more_info's dict); None marks a cost column.
_INFO_COLUMNS = {
    "cifar10_valid_acc": ("cifar10-valid", "valid-accuracy"),
    "cifar10_test_acc": ("cifar10", "test-accuracy"),
    "cifar100_valid_acc": ("cifar100", "valid-accuracy"),
    "cifar100_test_acc": ("cifar100", "test-accuracy"),
    "cifar100_valtest_acc": ("cifar100", "valtest-accuracy"),
    "imagenet16_valid_acc": ("ImageNet16-120", "valid-accuracy"),
    "imagenet16_test_acc": ("ImageNet16-120", "test-accuracy"),
    "imagenet16_valtest_acc": ("ImageNet16-120", "valtest-accuracy"),
    "train_time_cifar10valid_s": ("cifar10-valid", "train-all-time"),
    "train_time_cifar100_s": ("cifar100", "train-all-time"),
    "train_time_imagenet16_s": ("ImageNet16-120", "train-all-time"),
}
_PARAM_COLUMNS = {
    "params_cifar10_M": "cifar10-valid",
    "params_cifar100_M": "cifar100",
    "params_imagenet16_M": "ImageNet16-120",
}
REQUIRED = tuple(
    f"{ds}_{split}_acc"
    for ds in ("cifar10", "cifar100", "imagenet16")
    for split in ("valid", "test")
)
_TRAIN_SETS = ("cifar10-valid", "cifar10", "cifar100", "ImageNet16-120")

NATS_META = "meta.pickle.pbz2"
_FORMATS = (
    "a NAS-Bench-201 .pth file (NAS-Bench-201-v1_0-e61699.pth or NAS-Bench-201-v1_1-096897.pth), "
    "a NATS-Bench topology folder (NATS-tss-v1_0-3ffb9-simple, holding meta.pickle.pbz2) or "
    "the NATS-Bench topology file NATS-tss-v1_0-3ffb9.pickle.pbz2"
)
_WHERE = (
    "Get it from github D-X-Y/NAS-Bench-201 (NAS-Bench-201-v1_1-096897.pth) or "
    "github D-X-Y/NATS-Bench (NATS-tss-v1_0-3ffb9-simple)."
)


class NotAnNB201Source(CollmNasError, ValueError):
    """A source file of the wrong kind or size for the converter."""


class MissingConverterPackage(CollmNasError, ImportError, ValueError):
    """The official API package needed to read the source is not installed."""


def convert_nb201(
    source: Path,
    target: Path,
    *,
    expected_cells: int | None = NB201_CELLS,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Read `source` through its official API and write the NB201 table to `target`.

    Returns the number of rows written. `expected_cells` is the number of architectures the source
    must hold (None accepts any number; only tests should need that). `progress(done, total)` is
    called every 250 architectures and at the end. Raises `DataFileError` for a missing or
    unreadable source, `NotAnNB201Source` (a ValueError) for a source of the wrong kind or size, and
    `MissingConverterPackage` (an ImportError and a ValueError) when the API package is missing.
    """
    source = Path(source).expanduser()
    target = Path(target).expanduser()
    kind, path = detect_format(source)
    api = _open_api(kind, path)
    total = len(api)
    if expected_cells is not None and total != expected_cells:
        raise NotAnNB201Source(
            f"{source} holds {total} architectures, expected {expected_cells} (all NAS-Bench-201 "
            f"cells): it is not the complete topology benchmark. {_WHERE}"
        )
    if total == 0:
        raise NotAnNB201Source(f"{source} holds no architectures")
    rows = []
    for index in range(total):
        rows.append(_row(api, index, source))
        if progress and ((index + 1) % 250 == 0 or index + 1 == total):
            progress(index + 1, total)
    seen: dict[str, int] = {}
    for row in rows:
        if row["arch_str"] in seen:
            raise NotAnNB201Source(
                f"{source}: architectures {seen[row['arch_str']]} and {row['arch_index']} are the "
                f"same cell {row['arch_str']}"
            )
        seen[row["arch_str"]] = row["arch_index"]
    _write_atomic(target, rows)
    _forget_cached_tables()
    return len(rows)


def detect_format(source: Path) -> tuple[str, Path]:
    """('nb201', file) | ('nats-file', file) | ('nats-dir', folder), or one clear error."""
    if not source.exists():
        raise DataFileError(f"{source} does not exist. Give {_FORMATS}. {_WHERE}")
    if source.is_dir():
        if (source / NATS_META).is_file():
            return "nats-dir", source
        raise NotAnNB201Source(
            f"{source} is a folder without {NATS_META}, so it is not a NATS-Bench topology "
            f"archive. Give {_FORMATS}."
        )
    if source.name == NATS_META:  # the meta file of an archive folder: read the folder
        return "nats-dir", source.parent
    try:
        with open(source, "rb") as fh:
            head = fh.read(8)
    except OSError as err:
        raise DataFileError(f"cannot read {source}: {err}") from None
    if head.startswith(b"BZh"):
        return "nats-file", source
    # torch.save: a zip archive (torch >= 1.6) or a legacy pickle (protocol 2+ starts with 0x80).
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return "nb201", source
    raise NotAnNB201Source(
        f"{source} is not a file format this converter knows (neither a torch .pth nor a bz2 "
        f"pickle). Give {_FORMATS}."
    )


def _open_api(kind: str, path: Path) -> Any:
    if kind == "nb201":
        try:
            from nas_201_api import NASBench201API
        except ImportError as err:
            raise MissingConverterPackage(
                f"reading {path.name} needs the official NAS-Bench-201 API: "
                f"pip install nas-bench-201  (or: pip install 'collm-nas[convert]'); {err}"
            ) from None
        data = _load_torch_file(path)
        if not isinstance(data, dict):
            raise NotAnNB201Source(
                f"{path} is a torch file but not a NAS-Bench-201 benchmark (it holds a "
                f"{type(data).__name__}, not a dict). Give {_FORMATS}."
            )
        try:
            # The API deep-copies a dict it is given; the loaded one is ours alone, so skip that.
            return NASBench201API(_NoCopyDict(data), verbose=False)
        except (AssertionError, KeyError, TypeError, ValueError, AttributeError) as err:
            raise NotAnNB201Source(
                f"{path} is a torch file but not a NAS-Bench-201 benchmark ({_describe(err)}). "
                f"Give {_FORMATS}."
            ) from None

    try:
        import nats_bench
    except ImportError as err:
        raise MissingConverterPackage(
            f"reading {path.name} needs the official NATS-Bench API: "
            f"pip install nats_bench  (or: pip install 'collm-nas[convert]'); {err}"
        ) from None
    try:
        return nats_bench.create(str(path), "tss", fast_mode=kind == "nats-dir", verbose=False)
    except (pickle.UnpicklingError, EOFError, OSError) as err:
        raise DataFileError(
            f"{path} could not be read (truncated or damaged?): {_describe(err)}"
        ) from None
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError) as err:
        raise NotAnNB201Source(
            f"{path} is not a NATS-Bench topology benchmark ({_describe(err)}). Give {_FORMATS}."
        ) from None


def _row(api: Any, index: int, source: Path) -> dict[str, Any]:
    from collm_nas.spaces import IllegalArchitecture, get_space

    raw = api[index]
    space = get_space("nb201")
    try:
        arch_str = space.key(space.parse(raw))
    except IllegalArchitecture as err:
        raise NotAnNB201Source(
            f"{source}: architecture {index} is not a NAS-Bench-201 cell ({err}); is this the "
            "topology (tss) benchmark and not the size (sss) one?"
        ) from None
    row: dict[str, Any] = {"arch_index": index, "arch_str": arch_str}
    infos: dict[str, dict] = {}
    try:
        for train_set in _TRAIN_SETS:
            infos[train_set] = api.get_more_info(index, train_set, hp=HP, is_random=False)
        results = api.arch2infos_dict[index][HP]
        for column, train_set in _PARAM_COLUMNS.items():
            row[column] = results.get_compute_costs(train_set)["params"]
        seeds = [len(results.get_dataset_seeds(train_set)) for train_set in _TRAIN_SETS]
    except Exception as err:  # noqa: BLE001 - the APIs raise anything from KeyError to assert
        raise DataFileError(
            f"{source}: architecture {index} ({arch_str}) lacks its {HP}-epoch results: "
            f"{_describe(err)}"
        ) from None
    for column, (train_set, key) in _INFO_COLUMNS.items():
        row[column] = infos[train_set].get(key)
    try:  # a NATS "-full" archive carries trained weights: keep at most one arch's in memory
        api.clear_params(index)
    except Exception:  # noqa: BLE001 - freeing memory is optional
        pass
    row["n_seeds_200ep"] = min(seeds)
    row["unique_str"] = unique_str(arch_str)
    for column in REQUIRED:
        value = row[column]
        if value is None or not math.isfinite(float(value)):
            raise DataFileError(
                f"{source}: architecture {index} ({arch_str}) has no {column} "
                f"({_INFO_COLUMNS[column][0]} {_INFO_COLUMNS[column][1]}, {HP} epochs)"
            )
    return row


def unique_str(arch_str: str) -> str:
    """NATS' isomorphism-class string of a cell (its `to_unique_str(consider_zero=True)`).

    Each node is written as the sorted '+'-join of its inputs: `#` for a `none` edge or an input
    that is exactly `#`, the input itself for `skip_connect`, `(input)@op` otherwise.
    """
    nodes = ["0"]
    for node in arch_str.split("+"):
        terms = []
        for edge in filter(None, node.split("|")):
            op, src = edge.split("~")
            value = nodes[int(src)]
            if op == "none" or value == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(value)
            else:
                terms.append(f"({value})@{op}")
        nodes.append("+".join(sorted(terms)))
    return nodes[-1]


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    value = float(value)
    return f"{value:.6f}" if math.isfinite(value) else ""


def _write_atomic(target: Path, rows: list[dict[str, Any]]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow([_format(row[column]) for column in COLUMNS])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _forget_cached_tables() -> None:
    """A table read earlier in this process may be the file just replaced."""
    try:
        from collm_nas.tools.evaluators.benchmark import read_nb201_table
    except ImportError:
        return
    read_nb201_table.cache_clear()


class _NoCopyDict(dict):
    """A dict that `copy.deepcopy` returns as is (the benchmark dict is large and used once)."""

    def __deepcopy__(self, memo: dict) -> _NoCopyDict:
        return self


# What a NAS-Bench-201 .pth may reference: containers, numpy scalars/arrays, tensors.
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"),
    ("collections", "defaultdict"),
    ("_codecs", "encode"),  # bytes under pickle protocol 2 (numpy scalars)
    *(
        (module, name)
        for module in ("builtins", "__builtin__")
        for name in (
            "set",
            "frozenset",
            "list",
            "dict",
            "tuple",
            "int",
            "float",
            "str",
            "bool",
            "complex",
            "bytes",
            "bytearray",
        )
    ),
    *(
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("scalar", "_reconstruct")
    ),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch", "Tensor"),
    ("torch", "Size"),
    ("torch.nn.parameter", "Parameter"),
}
TRUST_ENV = "COLLM_NAS_TRUST_PICKLE"


class _DataOnlyUnpickler(pickle.Unpickler):
    """pickle's fast unpickler, refusing every global outside `_SAFE_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused global {module}.{name}")


def _data_only_pickle_module() -> Any:
    module = types.ModuleType("collm_nas_data_only_pickle")
    module.Unpickler = _DataOnlyUnpickler
    module.load = lambda fh, **kwargs: _DataOnlyUnpickler(fh, **kwargs).load()
    return module


def _load_torch_file(path: Path) -> Any:
    """torch.load through a data-only unpickler.

    torch's own `weights_only=True` loader refuses the numpy scalars these files hold and, being
    written in Python, is ~10x slower than pickle's C unpickler (hours for the 4.7 GB v1_1 file).
    Set COLLM_NAS_TRUST_PICKLE=1 to load a file you trust with the full unpickler.
    """
    import torch

    trusted = os.environ.get(TRUST_ENV, "").lower() in ("1", "true", "yes", "y")
    module = pickle if trusted else _data_only_pickle_module()
    try:
        return torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=module)
    except pickle.UnpicklingError as err:
        text = str(err)
        if text.startswith("refused global"):
            raise DataFileError(
                f"{path} holds Python objects beyond plain data ({text}), so it is not the "
                f"official NAS-Bench-201 file. If you trust it, rerun with {TRUST_ENV}=1."
            ) from None
        raise DataFileError(f"{path} is damaged or not a torch file: {_describe(err)}") from None
    except RuntimeError as err:
        if "pickle_module" in str(err):  # TORCH_FORCE_WEIGHTS_ONLY_LOAD=1 forbids our loader
            raise DataFileError(
                f"cannot read {path} while TORCH_FORCE_WEIGHTS_ONLY_LOAD is set; unset it"
            ) from None
        raise DataFileError(
            f"{path} could not be read (truncated or damaged?): {_describe(err)}"
        ) from None
    except (EOFError, OSError, ValueError, TypeError, AttributeError, KeyError, ImportError) as err:
        raise DataFileError(
            f"{path} could not be read (truncated or damaged?): {_describe(err)}"
        ) from None


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {_last_line(text)}" if text else type(err).__name__


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else text
