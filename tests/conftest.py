"""Shared fixtures. Tests of control flow use the in-memory `synthetic` NB201 evaluator; tests of
the real benchmark data read it through $COLLM_NAS_DATA."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch/llama_cpp load (see cli.py)
from pathlib import Path

import pytest
from collm_nas.tools.evaluators import register_evaluator
from nb201_synthetic import KIND, synthetic_evaluator

register_evaluator(KIND, synthetic_evaluator)  # unit tests of control flow use it, not the data file

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config):
    if not os.environ.get("COLLM_NAS_DATA") and SHARED_DATA.is_dir():
        os.environ["COLLM_NAS_DATA"] = str(SHARED_DATA)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("COLLM_NAS_DATA", SHARED_DATA))
    if not (path / "nb201.csv").is_file():
        pytest.fail(f"benchmark data not found in {path}; set COLLM_NAS_DATA to ../shared/data")
    return path
