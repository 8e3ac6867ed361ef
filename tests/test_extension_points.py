"""Spaces and evaluators are found by name through entry points (ours included), with one clear
error for an unknown or broken plugin; the space contract's facts and cost hooks."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import ClassVar

import pytest
from collm_nas.errors import CollmNasError
from collm_nas.spaces import (
    SPACES,
    IllegalArchitecture,
    PluginLoadError,
    SearchSpace,
    UnknownDataset,
    UnknownSpace,
    get_space,
    register_space,
    resolve_dataset,
    space_facts,
    space_names,
)
from collm_nas.spaces.nb201 import NB201Space
from collm_nas.tools.cost import CostCounter
from collm_nas.tools.evaluators import WrongSpace, evaluator_kinds, make_evaluator
from collm_nas.tools.evaluators.benchmark import NB201Benchmark
from pydantic import BaseModel
from torch import nn


class TinyArch(BaseModel):
    width: int
    act: str


class TinySpace(SearchSpace):
    """Only what the contract requires; genes, keys and parsing are the generic defaults."""

    name = "tiny"
    Arch: ClassVar[type[BaseModel]] = TinyArch
    datasets = ("dots", "lines")
    evaluators = ("benchmark",)

    @property
    def dimensions(self):
        return {"width": (4, 8), "act": ("relu", "tanh")}

    def build(self, arch, dataset):
        act = nn.ReLU() if arch.act == "relu" else nn.Tanh()
        return nn.Sequential(nn.Flatten(), nn.Linear(4, arch.width), act, nn.Linear(arch.width, 2))

    def input_shape(self, arch, dataset):
        return (1, 4)

    def describe(self):
        return "a tiny space"


@pytest.fixture
def registered():
    """Register spaces for one test, then forget them."""
    names = []

    def add(name, factory):
        names.append(name)
        register_space(name, factory)

    yield add
    for name in names:
        SPACES.unregister(name)
    get_space.cache_clear()


def test_our_spaces_and_evaluators_are_registered_as_entry_points():
    assert {"nb201", "mobilenet"} <= {p.name for p in entry_points(group="collm_nas.spaces")}
    kinds = {p.name for p in entry_points(group="collm_nas.evaluators")}
    assert {"benchmark", "predictor", "supernet"} <= kinds
    assert {"nb201", "mobilenet"} <= set(space_names())
    assert {"benchmark", "predictor", "supernet"} <= set(evaluator_kinds())


def test_unknown_space_error_lists_installed_spaces():
    with pytest.raises(UnknownSpace, match="unknown search space 'nb301'; installed: .*mobilenet.*nb201"):
        get_space("nb301")
    assert issubclass(UnknownSpace, CollmNasError) and issubclass(UnknownSpace, ValueError)


def test_broken_plugin_error_names_its_entry_point(tmp_path, monkeypatch):
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[collm_nas.spaces]\nbroken = no_such_module_xyz:Space\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "broken" in space_names()
    with pytest.raises(PluginLoadError, match=r"'broken' \(entry point broken = no_such_module_xyz:Space"):
        get_space("broken")
    assert "error" in space_facts("broken")  # the listing shows it instead of failing


def test_a_space_that_declares_no_datasets_is_refused(registered):
    class NoData(TinySpace):
        datasets = ()

    registered("nodata", NoData)
    with pytest.raises(PluginLoadError, match="declares no datasets"):
        get_space("nodata")


def test_registered_space_uses_the_generic_genes_keys_and_parsing(registered):
    registered("tiny", TinySpace)
    space = get_space("tiny")
    arch = space.parse({"width": 8, "act": "tanh"})
    assert space.key(arch) == "width=8,act=tanh"
    assert space.parse(space.key(arch)) == arch == space.parse('{"width": 8, "act": "tanh"}')
    assert space.parse([8, "tanh"]) == arch and space.genes(arch) == (8, "tanh")
    assert space.parse({"width": "8", "act": "tanh"}) == arch  # as an LLM may write it
    with pytest.raises(IllegalArchitecture, match="width = 5 is not allowed; choose one of 4, 8"):
        space.parse({"width": 5, "act": "relu"})
    with pytest.raises(IllegalArchitecture, match=r"missing \['act'\], unknown \['depth'\]"):
        space.parse({"width": 4, "depth": 2})


def test_cost_hooks_default_to_counting_the_built_network(registered):
    registered("tiny", TinySpace)
    space = get_space("tiny")
    arch = space.parse([8, "relu"])
    assert space.count_cost(arch, "dots") is None and space.cost_is_additive() is False
    cost = CostCounter(space, "dots")(arch)
    assert cost.params_m * 1e6 == (4 * 8 + 8) + (8 * 2 + 2)


def test_a_space_with_its_own_count_is_counted_its_way():
    class Published(NB201Space):
        def count_cost(self, arch, dataset):
            return 12.5, 0.25

    cost = CostCounter(Published(), "cifar10")(get_space("nb201").parse("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))
    assert (cost.flops_m, cost.params_m) == (12.5, 0.25)


def test_space_default_dataset_applies_when_none_is_named():
    assert resolve_dataset("mobilenet", None) == "imagenet"
    assert resolve_dataset("nb201", None) == "cifar10"
    assert resolve_dataset("nb201", "cifar100") == "cifar100"
    with pytest.raises(UnknownDataset, match="unknown dataset 'imagenet' for nb201; choose one of cifar10, cifar100, imagenet16"):
        resolve_dataset("nb201", "imagenet")


def test_evaluator_defaults_come_from_the_space():
    evaluator = make_evaluator("nb201", None)
    assert isinstance(evaluator, NB201Benchmark)
    assert (evaluator.kind, evaluator.dataset) == ("benchmark", "cifar10")


def test_unknown_evaluator_kind_lists_the_spaces_own_and_the_installed_ones():
    with pytest.raises(CollmNasError, match="unknown evaluator 'oracle'; nb201 has benchmark, supernet, installed: .*predictor"):
        make_evaluator("nb201", "cifar10", "oracle")


def test_evaluator_of_another_space_is_refused_naming_the_spaces_own():
    with pytest.raises(WrongSpace, match="evaluator 'predictor' is not available for nb201; choose one of benchmark"):
        make_evaluator("nb201", "cifar10", "predictor")


def test_space_facts_show_datasets_evaluators_constraints_and_defaults():
    facts = space_facts("mobilenet")
    assert facts["datasets"] == ["imagenet"] and facts["default_dataset"] == "imagenet"
    assert facts["evaluators"] == ["predictor", "supernet"] and facts["default_evaluator"] == "predictor"
    assert facts["cost_kinds"] == ["flops", "params", "latency"]
    assert space_facts("nb201")["cost_kinds"] == ["flops", "params"]



def test_an_llm_backend_plugs_in_by_name_and_an_unknown_one_lists_the_installed():
    from collm_nas.agents.fake import ScriptedChatModel
    from collm_nas.agents.llm import LLM_BACKENDS, LLMSettings, make_chat_model, register_llm_backend

    assert {"local", "openai", "vllm", "fake"} <= set(LLM_BACKENDS.names())  # our entry points
    made = []

    def echo(settings, seed):
        made.append(settings.model)
        return ScriptedChatModel(script=["hello"], seed=seed or 0)

    register_llm_backend("echo", echo)
    try:
        model = make_chat_model(LLMSettings(backend="echo", model="mine"))
        assert made == ["mine"] and model.invoke("hi").content == "hello"
    finally:
        LLM_BACKENDS.unregister("echo")
    with pytest.raises(ValueError, match="unknown LLM backend 'nope'; installed: .*fake.*local"):
        LLMSettings(backend="nope")
