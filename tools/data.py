"""Finding data files: explicit path -> $COLLM_NAS_DATA -> the user cache dir.

Paths are made absolute when read: a relative `$COLLM_NAS_DATA` (the README's
`../shared/data`) is resolved once, against the folder this process started in, and written
back to the environment, so a later `chdir` and every child process (a search started from
another folder, a Ray worker) find the same files.
"""

from __future__ import annotations

import os
from pathlib import Path

from collm_nas.errors import CollmNasError
from platformdirs import user_cache_dir

DATA_ENV = "COLLM_NAS_DATA"


class DataFileError(CollmNasError, FileNotFoundError):
    """A data file is missing or unreadable; the message says where we looked and what to do."""


def absolute_data_env() -> None:
    """Replace a relative `$COLLM_NAS_DATA` with its absolute path (idempotent)."""
    value = os.environ.get(DATA_ENV)
    if value:
        os.environ[DATA_ENV] = os.path.abspath(os.path.expanduser(value))


absolute_data_env()


def user_data_dir() -> Path:
    return Path(user_cache_dir("collm-nas")) / "data"


def candidate_paths(filename: str, explicit: str | Path | None = None) -> list[Path]:
    """Where `filename` is looked for, in order."""
    paths = []
    if explicit:
        explicit = Path(os.path.abspath(Path(explicit).expanduser()))
        paths.append(explicit / filename if explicit.is_dir() else explicit)
    if os.environ.get(DATA_ENV):
        absolute_data_env()  # the variable may have been set after this module was loaded
        paths.append(Path(os.environ[DATA_ENV]) / filename)
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
