"""The SPOS ShuffleNet space: parsing, the official FLOPs/params, additive cost, the supernet and
the official checkpoint layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from collm_nas.spaces import IllegalArchitecture
from collm_nas.spaces.shufflenet import (
    CHOICES,
    OFFICIAL_ARCH,
    PRESETS,
    ShuffleNetSpace,
    ShuffleNetSupernet,
    ShuffleNetV2,
    count_conv_linear,
    path_of,
)
from collm_nas.tools.supernet_train import CheckpointError, load_official_state

SPACE = ShuffleNetSpace()
OFFICIAL_KEY = "".join(map(str, OFFICIAL_ARCH))
# Tensor names and shapes of the official supernet (src/Supernet/network.py of
# megvii-model/SinglePathOneShot at 224 px), written out from its definition.
OFFICIAL_SHAPES = {
    "first_conv.0.weight": (16, 3, 3, 3),
    "features.0.0.branch_main.0.weight": (32, 16, 1, 1),
    "features.0.0.branch_main.3.weight": (32, 1, 3, 3),
    "features.0.0.branch_main.5.weight": (48, 32, 1, 1),
    "features.0.0.branch_proj.0.weight": (16, 1, 3, 3),
    "features.0.0.branch_proj.2.weight": (16, 16, 1, 1),
    "features.0.2.branch_main.3.weight": (32, 1, 7, 7),
    "features.0.3.branch_main.12.weight": (48, 32, 1, 1),
    "features.1.1.branch_main.0.weight": (32, 32, 1, 1),
    "features.4.3.branch_main.2.weight": (80, 64, 1, 1),
    "features.19.3.branch_main.13.running_var": (320,),
    "conv_last.0.weight": (1024, 640, 1, 1),
    "classifier.0.weight": (1000, 1024),
}


def test_the_official_architecture_has_the_published_flops_and_params():
    arch = SPACE.parse(OFFICIAL_KEY)
    mflops, mparams = SPACE.count_cost(arch, "imagenet")
    assert abs(mflops - 323) / 323 < 0.02 and abs(mparams - 3.5) / 3.5 < 0.02
    whole = count_conv_linear(SPACE.build(arch, "imagenet"), (1, 3, 224, 224))
    assert (whole[0] / 1e6, whole[1] / 1e6) == pytest.approx((mflops, mparams))


@pytest.mark.parametrize("dataset", ["fashion-mnist", "cifar10"])
def test_cost_from_block_counts_equals_the_whole_network(dataset):
    rng = np.random.default_rng(1)
    for _ in range(3):
        arch = SPACE.sample(rng)
        whole = count_conv_linear(SPACE.build(arch, dataset), SPACE.input_shape(arch, dataset))
        assert SPACE.count_cost(arch, dataset) == pytest.approx((whole[0] / 1e6, whole[1] / 1e6))


def test_every_written_form_reads_as_the_same_path():
    arch = SPACE.parse(OFFICIAL_KEY)
    names = [CHOICES[i] for i in OFFICIAL_ARCH]
    forms = [list(OFFICIAL_ARCH), names, {"path": list(OFFICIAL_ARCH)}, json.dumps(names),
             {f"block_{i}": n for i, n in enumerate(names)}, [str(i) for i in OFFICIAL_ARCH],
             SPACE.key(arch)]
    assert all(SPACE.key(SPACE.parse(form)) == OFFICIAL_KEY for form in forms)
    assert path_of(arch) == OFFICIAL_ARCH


@pytest.mark.parametrize("bad, words", [
    ([0] * 19, "has 20 values"),
    ([0] * 19 + [4], "block_19 = 4 is not allowed"),
    ("0123", "missing"),
    ([0] * 19 + ["conv9x9"], "'conv9x9' is not allowed"),
    ([None] * 20, "a unit is a name or an index"),
])
def test_bad_paths_get_a_reason(bad, words):
    with pytest.raises(IllegalArchitecture, match=words):
        SPACE.parse(bad)


def test_mutate_changes_one_block_and_sample_covers_the_choices():
    rng = np.random.default_rng(0)
    arch = SPACE.sample(rng)
    child = SPACE.mutate(arch, rng)
    assert sum(a != b for a, b in zip(path_of(arch), path_of(child), strict=True)) == 1
    assert {c for _ in range(10) for c in path_of(SPACE.sample(rng))} == {0, 1, 2, 3}


def test_a_path_of_the_supernet_is_the_stand_alone_network_with_its_weights():
    preset = PRESETS["fashion-mnist"].scaled(0.5)
    torch.manual_seed(0)
    supernet = ShuffleNetSupernet(preset).eval()
    for m in supernet.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    path = (3, 0, 1, 2) * 5
    single = ShuffleNetV2(path, preset).eval()
    state = supernet.state_dict()
    mapped = {}
    for name in single.state_dict():
        if name.startswith("features."):
            _, block, rest = name.split(".", 2)
            source = f"features.{block}.{path[int(block)]}.{rest}"
        else:
            source = name
        mapped[name] = state.get(source, single.state_dict()[name])  # affine weights: 1 and 0
    single.load_state_dict(mapped)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(supernet(x, path), single(x), atol=1e-5)
    with pytest.raises(ValueError, match="20 choices"):
        supernet(x, path[:5])


def test_the_official_checkpoint_layout_loads(tmp_path):
    supernet = ShuffleNetSupernet(PRESETS["imagenet"])
    own = supernet.state_dict()
    for name, shape in OFFICIAL_SHAPES.items():
        assert tuple(own[name].shape) == shape, name
    torch.manual_seed(1)
    official = {"module." + k: torch.randn_like(v.float()).to(v.dtype) for k, v in own.items()
                if not k.endswith("num_batches_tracked")}
    torch.save({"state_dict": official}, tmp_path / "checkpoint-150000.pth.tar")
    load_official_state(supernet, tmp_path / "checkpoint-150000.pth.tar")
    assert torch.equal(supernet.state_dict()["classifier.0.weight"],
                       official["module.classifier.0.weight"])
    del official["module.conv_last.0.weight"]
    official["module.features.0.0.branch_main.0.weight"] = torch.zeros(8, 16, 1, 1)
    torch.save({"state_dict": official}, tmp_path / "bad.pth.tar")
    with pytest.raises(CheckpointError, match="1 tensors missing.*1 of the wrong shape"):
        load_official_state(supernet, tmp_path / "bad.pth.tar")
