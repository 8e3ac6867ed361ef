"""Finding data files: explicit path -> $COLLM_NAS_DATA -> the user cache dir."""

from __future__ import annotations

import os
from pathlib import Path

from collm_nas.errors import CollmNasError
from platformdirs import user_cache_dir

DATA_ENV = "COLLM_NAS_DATA"


class DataFileError(CollmNasError, FileNotFoundError):
    """A data file is missing or unreadable; the message says where we looked and what to do."""


def user_data_dir() -> Path:
    return Path(user_cache_dir("collm-nas")) / "data"


def candidate_paths(filename: str, explicit: str | Path | None = None) -> list[Path]:
    """Where `filename` is looked for, in order."""
    paths = []
    if explicit:
        explicit = Path(explicit).expanduser()
        paths.append(explicit / filename if explicit.is_dir() else explicit)
    if os.environ.get(DATA_ENV):
        paths.append(Path(os.environ[DATA_ENV]).expanduser() / filename)
    paths.append(user_data_dir() / filename)
    return paths


def find_data_file(filename: str, explicit: str | Path | None = None, how_to_get: str = "") -> Path:
    """The first existing candidate path, or one `DataFileError` naming every path tried."""
    paths = candidate_paths(filename, explicit)
    for path in paths:
        if path.is_file():
            return path
    tried = "\n".join(f"  - {p}" for p in paths)
    raise DataFileError(
        f"{filename} not found. Looked in:\n{tried}\n"
        f"Put the file in one of these places or set {DATA_ENV} to the folder holding it."
        + (f"\n{how_to_get}" if how_to_get else "")
    )
