"""How the command line reports errors: one line for the user's, a traceback for our bugs."""

from __future__ import annotations

import collm_nas.cli as cli
import pytest
from collm_nas.errors import CollmNasError
from typer.testing import CliRunner

REPORT = ["report", "no-such-run"]


def _failing_report(monkeypatch, error: Exception):
    def broken(run_dir):
        raise error

    monkeypatch.setattr(cli, "write_report", broken)


@pytest.mark.parametrize("bug", [ValueError("a bug of ours"), KeyError("missing_key")])
def test_a_bug_shows_its_traceback_and_exits_1(monkeypatch, bug):
    _failing_report(monkeypatch, bug)
    result = CliRunner().invoke(cli.app, REPORT)
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.output
    assert type(bug).__name__ in result.output and "in broken" in result.output


def test_a_user_error_is_one_line_with_exit_2(monkeypatch):
    _failing_report(monkeypatch, CollmNasError("the run folder is missing; pass --run-dir"))
    result = CliRunner().invoke(cli.app, REPORT)
    assert result.exit_code == 2
    assert result.output.strip() == "error: the run folder is missing; pass --run-dir"


def test_debug_shows_the_traceback_of_a_user_error_too(monkeypatch):
    _failing_report(monkeypatch, CollmNasError("the run folder is missing"))
    result = CliRunner().invoke(cli.app, ["--debug", *REPORT])
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.output
    assert result.output.strip().endswith("error: the run folder is missing")


def test_the_cli_user_error_is_a_project_error():
    assert issubclass(cli.UserError, CollmNasError)


def test_invalid_settings_are_one_readable_line():
    result = CliRunner().invoke(cli.app, ["search", "--llm", "none", "--candidates", "0"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: invalid SearchSettings: candidates: ")
    assert "greater than or equal to 1" in lines[0] and "Traceback" not in result.output


def test_a_model_validator_error_reads_without_pydantic_prefixes():
    result = CliRunner().invoke(cli.app, ["search", "--llm", "none", "--mode", "paper"])
    assert result.exit_code == 2
    assert "needs the LLM" in result.output and "Value error," not in result.output
