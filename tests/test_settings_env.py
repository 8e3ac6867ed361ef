"""Settings from the environment: explicit values > $COLLM_NAS_* > defaults."""

from __future__ import annotations

import collm_nas.cli as cli
import collm_nas.graph.run as graph_run
import pytest
from collm_nas.errors import CollmNasError
from collm_nas.graph.context import SearchSettings
from typer.testing import CliRunner


def test_the_environment_overrides_a_default(monkeypatch):
    monkeypatch.setenv("COLLM_NAS_BUDGET", "33")
    monkeypatch.setenv("COLLM_NAS_SOURCES", '["neighbours"]')
    monkeypatch.setenv("COLLM_NAS_NAVIGATOR_LLM__BACKEND", "fake")
    monkeypatch.setenv("COLLM_NAS_NAVIGATOR_LLM__TEMPERATURE", "0.1")
    settings = SearchSettings()
    assert settings.budget == 33 and settings.sources == ["neighbours"]
    assert settings.navigator_llm.backend == "fake" and settings.navigator_llm.temperature == 0.1
    assert settings.generator_llm.backend == "local"  # the other role keeps its defaults


def test_explicit_arguments_override_the_environment(monkeypatch):
    monkeypatch.setenv("COLLM_NAS_BUDGET", "33")
    monkeypatch.setenv("COLLM_NAS_NAVIGATOR_LLM__BACKEND", "fake")
    settings = SearchSettings(budget=12, navigator_llm={"temperature": 0.2})
    assert settings.budget == 12
    # an explicit field of a role merges with the environment's other fields of that role
    assert settings.navigator_llm.backend == "fake" and settings.navigator_llm.temperature == 0.2


def test_the_data_folder_variable_fills_data_path(monkeypatch, tmp_path):
    monkeypatch.setenv("COLLM_NAS_DATA", str(tmp_path))
    assert SearchSettings().data_path == str(tmp_path)
    assert SearchSettings(data_path="elsewhere.csv").data_path == "elsewhere.csv"
    monkeypatch.setenv("DATA_PATH", "/not/ours")  # only our prefix is read
    monkeypatch.delenv("COLLM_NAS_DATA")
    assert SearchSettings().data_path is None


class _Captured(CollmNasError):
    pass


@pytest.fixture
def captured_settings(monkeypatch):
    """The settings `collm-nas search` would run with (the run itself is skipped)."""
    seen = []

    def capture(settings, **kwargs):
        seen.append(settings)
        raise _Captured("captured")

    monkeypatch.setattr(graph_run, "run_search", capture)
    return seen


def test_cli_options_override_the_environment_and_untyped_ones_leave_it(monkeypatch, captured_settings):
    monkeypatch.setenv("COLLM_NAS_BUDGET", "33")
    monkeypatch.setenv("COLLM_NAS_CANDIDATES", "7")
    monkeypatch.setenv("COLLM_NAS_GENERATOR_LLM__TEMPERATURE", "0.1")
    result = CliRunner().invoke(cli.app, ["search", "--llm", "none", "--budget", "12", "--dataset", "cifar100"])
    assert "captured" in result.output, result.output
    [settings] = captured_settings
    assert settings.budget == 12 and settings.dataset == "cifar100"  # typed: the CLI wins
    assert settings.candidates == 7 and settings.generator_llm.temperature == 0.1  # untyped: env
    assert settings.iterations == 20  # neither: the default
    assert settings.mode == "collm-nollm"  # --llm none typed: its mode


def test_a_typed_llm_option_keeps_the_environment_for_the_rest_of_the_role(monkeypatch, captured_settings):
    monkeypatch.setenv("COLLM_NAS_NAVIGATOR_LLM__MAX_TOKENS", "512")
    CliRunner().invoke(cli.app, ["search", "--llm", "local", "--temperature", "0.3",
                                 "--generator-llm", "fake"])
    [settings] = captured_settings
    assert settings.navigator_llm.temperature == 0.3 and settings.navigator_llm.max_tokens == 512
    assert settings.generator_llm.backend == "fake" and settings.generator_llm.temperature == 0.3


def test_a_bad_environment_value_is_one_clear_line(monkeypatch, captured_settings):
    monkeypatch.setenv("COLLM_NAS_BUDGET", "lots")
    result = CliRunner().invoke(cli.app, ["search", "--llm", "none"])
    assert result.exit_code == 2 and not captured_settings
    [line] = result.output.strip().splitlines()
    assert line.startswith("error: invalid SearchSettings: budget ($COLLM_NAS_BUDGET): ")
    assert "valid integer" in line and "'lots'" in line


def test_cli_evaluator_options_reach_the_settings(captured_settings, monkeypatch):
    monkeypatch.setattr(cli, "check_search_inputs", lambda settings: None)  # options of no evaluator here
    args = ["search", "--llm", "none", "--evaluator-option", "device=cuda", "--evaluator-option", "calib_images=500"]
    result = CliRunner().invoke(cli.app, args)
    assert "captured" in result.output, result.output
    assert captured_settings[0].evaluator_options == {"device": "cuda", "calib_images": 500}


def test_an_option_the_evaluator_does_not_take_is_one_line_before_the_run(captured_settings):
    result = CliRunner().invoke(cli.app, ["search", "--llm", "none", "--evaluator-option", "calib_images=500"])
    assert result.exit_code == 2 and not captured_settings
    assert result.output.strip() == ("error: evaluator 'benchmark' takes no option calib_images; "
                                     "it takes none")
