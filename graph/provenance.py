"""Provenance of result files: the code, packages, model and command that made them.

Every bench JSON and run folder records `provenance(...)` automatically, so a result can be traced
to a commit without notes typed by hand. It lives beside the graph (not in `evals/`) because run
folders (graph/run.py) record it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

from collm_nas.agents.llm import LLMSettings
from collm_nas.agents.model_store import MODELS

PACKAGES = ("torch", "langgraph", "langchain-core", "llama-cpp-python")
PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the repository root is the package
RESULTS = "results"  # the repository's folder of result files; inputs are cited inside it
ENV_PREFIX = "COLLM_NAS_"
SECRET_WORDS = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


def provenance(
    command: str | None = None,
    llms: Mapping[str, LLMSettings] | None = None,
    inputs: Iterable[str | Path] = (),
) -> dict[str, Any]:
    """What made a result: `command` (default: this process's command line), the git state of
    the package, package versions, the LLMs by role (with the local model file's sha256) and,
    for merged results, the input files cited by path with their own provenance."""
    record: dict[str, Any] = {
        "command": command or command_line(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git": git_state(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "environment": settings_variables(),
        "llms": {role: llm_fingerprint(settings) for role, settings in (llms or {}).items()},
    }
    cited = [{"path": cite(path), "provenance": provenance_of(path)} for path in inputs]
    if cited:
        record["inputs"] = cited
    return record


def settings_variables() -> dict[str, str]:
    """The `COLLM_NAS_*` variables, less any that could hold a secret (an API key is named by
    `api_key_env` and may have been given our prefix)."""
    return {name: value for name, value in sorted(os.environ.items())
            if name.startswith(ENV_PREFIX) and not SECRET_WORDS.search(name)}


def command_line() -> str:
    """This process's command line, with the console script's name for the CLI."""
    program = Path(sys.argv[0]).name
    if program in ("collm-nas", "cli.py", "__main__.py"):
        program = "collm-nas"
    return shlex.join([program, *sys.argv[1:]])


def git_state() -> dict[str, Any] | None:
    """Commit and dirty flag of the repository the package lives in; None when installed from a
    wheel. Result files do not make the tree dirty: they are outputs, not code."""
    try:
        top = _git("rev-parse", "--show-toplevel")
        if Path(top).resolve() != PACKAGE_ROOT:
            return None  # the package sits inside someone else's repository
        changes = _git("status", "--porcelain", "--", ".", f":(exclude){RESULTS}")
        return {"commit": _git("rev-parse", "HEAD"), "dirty": bool(changes)}
    except (OSError, subprocess.CalledProcessError):
        return None


def _git(*args: str) -> str:
    done = subprocess.run(["git", "-C", str(PACKAGE_ROOT), *args], capture_output=True, text=True,
                          check=True, timeout=30)
    return done.stdout.strip()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def llm_fingerprint(settings: LLMSettings) -> dict[str, Any]:
    """Backend, model and endpoint of one role; for the embedded backend also the model file's
    sha256 (a bundled model's is the one the model store checked when it assembled the file)."""
    fingerprint: dict[str, Any] = {"backend": settings.backend, "model": settings.model}
    if settings.base_url:
        fingerprint["base_url"] = settings.base_url
    if settings.backend == "local":
        bundled = MODELS.get(settings.model)
        fingerprint["sha256"] = bundled.sha256 if bundled else _user_model_sha256(settings.model)
    return fingerprint


def _user_model_sha256(path: str) -> str | None:
    file = Path(path).expanduser()
    if not file.is_file():
        return None
    stat = file.stat()
    return _file_sha256(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    """Hashed once per process and file version (size and mtime are part of the cache key)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(8 * 1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def results_dir() -> Path:
    """The repository's results folder (the working directory's when installed from a wheel)."""
    return (PACKAGE_ROOT if git_state() is not None else Path.cwd()) / RESULTS


def cite(path: str | Path) -> str:
    """`results/<path inside it>` for a file in the results folder, else the path as given."""
    try:
        inside = Path(path).resolve().relative_to(results_dir().resolve())
    except ValueError:
        return str(path)
    return f"{RESULTS}/{inside.as_posix()}"


def provenance_of(path: str | Path) -> dict[str, Any] | None:
    """The provenance block of a result JSON; None for files written before it was recorded."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data.get("provenance") if isinstance(data, dict) else None


def inputs_markdown(inputs: Iterable[str | Path]) -> str:
    """The input files of a merged result as a markdown list: path in results/ and, where the
    file recorded it, the commit that made it."""
    lines = ["Inputs:", ""]
    for path in inputs:
        git = (provenance_of(path) or {}).get("git")
        made = f" (commit {git['commit'][:12]}{', dirty' if git['dirty'] else ''})" if git else ""
        lines.append(f"- `{cite(path)}`{made}")
    return "\n".join(lines) + "\n"


def summary_line(record: Mapping[str, Any]) -> str:
    """One markdown line naming the commit and the main versions, for a result's header."""
    git = record.get("git")
    commit = f"commit {git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}" if git else "no git"
    versions = [f"{name} {version}" for name, version in record["packages"].items() if version]
    models = [f"{role}: {llm['backend']} {llm['model']}" for role, llm in record["llms"].items()]
    return " · ".join([commit, f"python {record['python']}", *versions, *models])
