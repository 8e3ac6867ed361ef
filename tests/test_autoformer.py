"""AutoFormer spaces: the official parameter convention, the Generator's schema, parsing, weight
entanglement, the official checkpoint layout, and stage one on tiny synthetic images (training,
the supernet evaluator, verify, autoformer-ea and a search under a parameter limit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from collm_nas.spaces import get_space
from collm_nas.spaces.autoformer import (
    PRESETS,
    PUBLISHED,
    AutoFormerNet,
    Config,
    OfficialCheckpointError,
    StandAlone,
    config_of,
    cost_of_config,
    largest,
    official_supernet,
)
from collm_nas.spaces.base import IllegalArchitecture
from collm_nas.tools.image_data import ImageSplits
from collm_nas.tools.supernet_train import Recipe, SupernetRun, load_checkpoint, train_supernet
from torch.utils.data import TensorDataset

SPACE = get_space("autoformer")
PRESET = PRESETS["autoformer"]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_subnets_have_their_published_parameter_counts(name):
    config, published_m = PUBLISHED[name]
    flops_m, params_m = cost_of_config(config, PRESETS[name])
    assert abs(params_m - published_m) / published_m < 0.02
    built = sum(p.numel() for p in StandAlone(config, PRESETS[name]).parameters())
    assert built == round(params_m * 1e6)  # the formula counts the network that is built
    space = get_space(name)
    arch = space.parse({"embed_dim": config.embed_dim, "depth": config.depth,
                        "mlp_ratios": list(config.mlp_ratios), "heads": list(config.heads)})
    assert space.count_cost(arch, "imagenet") == (flops_m, params_m)


def test_the_generator_schema_allows_only_the_presets_values():
    schema = SPACE.Arch.model_json_schema()["properties"]
    assert schema["embed_dim"]["enum"] == list(PRESET.embed_dims)
    assert schema["mlp_ratio_5"]["enum"] == list(PRESET.mlp_ratios)
    assert schema["heads_0"]["enum"] == list(PRESET.heads)
    assert len(schema) == 2 + 2 * max(PRESET.depths)


def test_every_notation_reads_as_one_key_that_ignores_unused_layers():
    key = "e56-d4-3.0x2-4.0x4-3.5x3-3.0x2"
    arch = SPACE.parse(key)
    assert SPACE.key(arch) == key and config_of(arch) == Config(56, 4, (3.0, 4.0, 3.5, 3.0), (2, 4, 3, 2))
    lists = {"embed_dim": 56, "depth": 4, "mlp_ratios": [3, 4, "3.5", 3.0], "heads": [2, 4, 3, 2]}
    fields = {"embed_dim": 56, "depth": 4, **{f"mlp_ratio_{i}": r for i, r in enumerate([3, 4, 3.5, 3])},
              **{f"heads_{i}": h for i, h in enumerate([2, 4, 3, 2])}}
    assert SPACE.key(SPACE.parse(lists)) == SPACE.key(SPACE.parse(fields)) == key
    other_tail = SPACE.from_genes([*SPACE.genes(arch)[:-2], 4, 4])  # heads of layers 4 and 5
    assert SPACE.key(other_tail) == key


@pytest.mark.parametrize("bad, reason", [
    ({"embed_dim": 50, "depth": 4, "mlp_ratios": [3] * 4, "heads": [2] * 4}, "embed_dim = 50"),
    ({"embed_dim": 48, "depth": 4, "mlp_ratios": [3] * 3, "heads": [2] * 4}, "needs 4 MLP ratios"),
    ({"embed_dim": 48, "depth": 7, "mlp_ratios": [3] * 7, "heads": [2] * 7}, "depth = 7"),
    ({"embed_dim": 48, "depth": 4, "mlp_ratios": [3, 3, 3, 2.5], "heads": [2] * 4}, "2.5"),
    ("e48-d4-3.0x2-3.0x2-3.0x2-3.0x5", "heads_3 = 5"),
])
def test_illegal_configs_are_rejected_with_a_reason(bad, reason):
    with pytest.raises(IllegalArchitecture, match=reason):
        SPACE.parse(bad)


def test_weight_entanglement_a_config_uses_only_its_slices():
    torch.manual_seed(0)
    net = AutoFormerNet(PRESET).eval()
    config = Config(48, 4, (3.0, 3.5, 4.0, 3.0), (2, 3, 4, 2))
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        before = net(x, config)
        for weight in (net.head.weight[:, 48:],  # embedding dims the config does not use
                       net.blocks[0].fc1.weight[144:],  # hidden units beyond 48 x 3.0
                       net.blocks[0].attn.qkv.weight[3 * 2 * 16:],  # rows of heads beyond the second
                       net.blocks[5].fc2.weight):  # a layer beyond the depth
            weight += torch.randn_like(weight)  # (random: a constant shift LayerNorm would hide)
        assert torch.allclose(net(x, config), before, atol=1e-6)
        own = net.blocks[0].fc1.weight[:144, :48]  # the config's own slice
        own += torch.randn_like(own)
        assert not torch.allclose(net(x, config), before, atol=1e-4)


def _official_state(preset, sizes: Config) -> dict[str, torch.Tensor]:
    """A state dict with the official AutoFormer module names and shapes (written out here, not
    taken from our network), DataParallel prefix included."""
    e, hd, table = sizes.embed_dim, preset.head_dim, 2 * preset.max_relative + 2
    state = {"patch_embed_super.proj.weight": torch.randn(e, preset.in_channels, preset.patch, preset.patch),
             "patch_embed_super.proj.bias": torch.randn(e), "cls_token": torch.randn(1, 1, e),
             "pos_embed": torch.randn(1, preset.tokens + 1, e),
             "norm.weight": torch.randn(e), "norm.bias": torch.randn(e),
             "head.weight": torch.randn(preset.classes, e), "head.bias": torch.randn(preset.classes)}
    for i in range(sizes.depth):
        qk, hidden = sizes.heads[i] * hd, sizes.hidden(i)
        for name, shape in (("attn.qkv.weight", (3 * qk, e)), ("attn.qkv.bias", (3 * qk,)),
                            ("attn.proj.weight", (e, qk)), ("attn.proj.bias", (e,)),
                            ("attn_layer_norm.weight", (e,)), ("attn_layer_norm.bias", (e,)),
                            ("ffn_layer_norm.weight", (e,)), ("ffn_layer_norm.bias", (e,)),
                            ("fc1.weight", (hidden, e)), ("fc1.bias", (hidden,)),
                            ("fc2.weight", (e, hidden)), ("fc2.bias", (e,))):
            state[f"blocks.{i}.{name}"] = torch.randn(shape)
        for which in ("k", "v"):
            for axis in ("v", "h"):
                state[f"blocks.{i}.attn.rel_pos_embed_{which}.embeddings_table_{axis}"] = torch.randn(table, hd)
    return {f"module.{k}": v for k, v in state.items()}


def test_an_official_layout_checkpoint_loads_at_its_own_sizes():
    preset = PRESETS["autoformer-tiny"]
    sizes = Config(256, 14, (4.0,) * 14, (4,) * 14)  # wider than the largest choice (240)
    state = _official_state(preset, sizes)
    model = official_supernet(preset, state)
    assert model.sizes.embed_dim == 256 and len(model.blocks) == 14
    assert torch.equal(model.blocks[3].fc1.weight, state["module.blocks.3.fc1.weight"])
    broken = {k: v for k, v in state.items() if "rel_pos_embed_v" not in k}
    with pytest.raises(OfficialCheckpointError, match="missing"):
        official_supernet(preset, broken)
    small = _official_state(preset, Config(192, 12, (4.0,) * 12, (4,) * 12))
    with pytest.raises(OfficialCheckpointError, match="smaller"):
        official_supernet(preset, small)


# --- stage one on synthetic images --------------------------------------------------------------


def _images(count: int, seed: int) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(count) % 2
    brightness = (labels.float() * 2 - 1)[:, None, None, None]
    return TensorDataset(torch.randn(count, 1, 28, 28, generator=generator) * 0.5 + brightness, labels)


@pytest.fixture(scope="module")
def splits() -> ImageSplits:
    return ImageSplits("fashion-mnist", "synthetic", _images(96, 0), _images(40, 1), _images(40, 2),
                       channels=1, resolution=28, classes=10)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, splits):
    out = tmp_path_factory.mktemp("autoformer") / "net.pt"
    torch.manual_seed(0)
    run = SupernetRun("autoformer", "fashion-mnist", PRESET, Recipe(epochs=3, batch_size=32, lr=3e-3))
    run.model = AutoFormerNet(PRESET)
    train_supernet(run, splits, out)
    return out


def test_the_supernet_trains_and_its_checkpoint_restores_it(trained, splits):
    run, _ = load_checkpoint(trained)
    assert run.space == "autoformer" and run.preset == PRESET and run.epoch == 3
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    config = largest(PRESET)
    x = splits.valid.tensors[0][:4]
    again, _ = load_checkpoint(trained)
    with torch.no_grad():
        assert torch.equal(run.model.eval()(x, config), again.model.eval()(x, config))


def test_the_evaluator_needs_no_calibration_and_verify_ranks_paths(tmp_path, trained, splits):
    from collm_nas.evals.supernet import verify
    from collm_nas.tools.evaluators.weight_sharing import WeightSharingEvaluator

    evaluator = WeightSharingEvaluator(trained, splits, calib_batches=1, batch_size=8, cache=False)
    arch = SPACE.parse("e64-d6-4.0x4-4.0x4-4.0x4-4.0x4-4.0x4-4.0x4")
    first = evaluator.evaluate(arch)
    assert 0 <= first.valid_acc <= 100 and evaluator.evaluate(arch) == first
    result = verify(evaluator, 3, Recipe(epochs=1, batch_size=32), 0, tmp_path / "alone.jsonl")
    assert result["space"] == "autoformer" and len(result["paths"]) == 3
    assert all(row["key"].startswith("e") for row in result["paths"])


def test_autoformer_evolution_and_a_search_stay_under_a_parameter_limit(tmp_path, trained):
    from collm_nas.evals.bench import METHODS, RunSpec
    from collm_nas.graph.context import SearchSettings
    from collm_nas.graph.run import run_search
    from collm_nas.tools.cost import CostLimit
    from test_image_data import write_fashion_mnist

    root = write_fashion_mnist(tmp_path / "fashion", train=10_100, test=40)
    options = {"checkpoint": str(trained), "data_root": str(root), "valid_images": 40}
    limit = 0.15  # M params: the space spans 0.088-0.308
    spec = RunSpec("autoformer-ea", "autoformer", "fashion-mnist", "valid", 0, 60,
                   CostLimit("params", limit), options={"evaluator": "supernet", "evaluator_options": options})
    result = METHODS["autoformer-ea"](spec)
    assert result.evaluations == 60
    settings = SearchSettings(space="autoformer", mode="collm-nollm", budget=12, candidates=6,
                              iterations=4, evaluator="supernet", evaluator_options=options,
                              cost_kind="params", max_cost=limit, seed=0)
    archive = run_search(settings, tmp_path / "run").archive
    assert len({r["key"] for r in archive}) == 12
    assert all(r["params_m"] <= limit for r in archive)


def test_uniform_paths_cover_every_choice():
    from collm_nas.tools.supernets import family

    rng, kind = np.random.default_rng(0), family("autoformer")
    paths = [kind.sample(PRESET, rng) for _ in range(200)]
    assert {p.embed_dim for p in paths} == set(PRESET.embed_dims)
    assert {p.depth for p in paths} == set(PRESET.depths)
    assert {h for p in paths for h in p.heads} == set(PRESET.heads)
    assert all(len(p.mlp_ratios) == len(p.heads) == p.depth for p in paths)


def test_the_train_command_trains_an_autoformer_supernet_and_refuses_what_does_not_apply(tmp_path):
    from collm_nas.cli import app
    from test_image_data import write_fashion_mnist
    from typer.testing import CliRunner

    root = write_fashion_mnist(tmp_path / "fashion", train=10_100, test=40)
    out = tmp_path / "af.pt"
    common = ["supernet", "train", "--space", "autoformer", "--data-root", str(root), "--out", str(out)]
    done = CliRunner().invoke(app, [*common, "--epochs", "1", "--train-images", "64"])
    assert done.exit_code == 0, done.output
    run, _ = load_checkpoint(out)
    assert run.space == "autoformer" and run.epoch == 1 and out.with_suffix(".png").is_file()
    wide = CliRunner().invoke(app, [*common, "--width", "0.5"])
    assert wide.exit_code == 2 and "--width applies to the shufflenet supernet only" in wide.output
    other = CliRunner().invoke(app, ["supernet", "train", "--space", "mobilenet"])
    assert other.exit_code == 2 and "built for shufflenet, nb201, autoformer" in other.output
