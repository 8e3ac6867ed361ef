"""The package installs under one import name, `collm_nas`, beside packages with generic names."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("agents", "evals", "graph", "prompts", "spaces", "tools")


def _pip(python: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "-q", *args],
                   check=True, capture_output=True, text=True)


def _wheel(source: Path, out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(out), str(source)], check=True, capture_output=True, text=True)
    return next(out.glob("*.whl"))


@pytest.fixture(scope="module")
def our_wheel(tmp_path_factory) -> Path:
    return _wheel(ROOT, tmp_path_factory.mktemp("wheel"))


def test_the_wheel_installs_everything_under_collm_nas(our_wheel):
    names = zipfile.ZipFile(our_wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"collm_nas", next(n for n in top if n.endswith(".dist-info"))}
    for package in SUBPACKAGES:
        assert f"collm_nas/{package}/__init__.py" in names
    assert "collm_nas/cli.py" in names and "collm_nas/errors.py" in names and "collm_nas/prompts/navigator_system.md" in names
    assert not any(n.startswith("collm_nas/tests/") or n.startswith("collm_nas/results/") for n in names)


def test_collm_nas_imports_beside_a_package_named_spaces(our_wheel, tmp_path):
    other = tmp_path / "other"
    (other / "spaces").mkdir(parents=True)
    (other / "spaces" / "__init__.py").write_text("WHO = 'somebody else'\n")
    (other / "pyproject.toml").write_text(
        '[project]\nname = "spaces"\nversion = "1.0"\n[tool.setuptools]\npackages = ["spaces"]\n'
    )
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    _pip(python, "install", "--no-deps", str(_wheel(other, tmp_path / "w")), str(our_wheel))
    check = (
        "import importlib.util, spaces, collm_nas\n"
        "assert spaces.WHO == 'somebody else'\n"
        f"for name in {SUBPACKAGES!r}:\n"
        "    spec = importlib.util.find_spec('collm_nas.' + name)\n"
        "    assert spec is not None and '/collm_nas/' in spec.origin, (name, spec)\n"
        "print(collm_nas.__version__)\n"
    )
    done = subprocess.run([str(python), "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0.1.0"
