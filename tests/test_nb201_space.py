import numpy as np
import pytest
from collm_nas.spaces import IllegalArchitecture, get_space

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


def test_string_round_trip(space):
    assert space.key(space.parse(RESNET)) == RESNET


def test_list_and_dict_forms_give_the_same_key(space):
    ops = ["nor_conv_3x3", "none", "nor_conv_3x3", "skip_connect", "none", "skip_connect"]
    edges = ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    assert space.key(space.parse(ops)) == RESNET
    assert space.key(space.parse(dict(zip(edges, ops)))) == RESNET
    named = dict(zip(space.dimensions, ops))
    assert space.key(space.parse(named)) == RESNET
    assert space.key(space.parse({"arch": RESNET})) == RESNET


@pytest.mark.parametrize(
    "bad, words",
    [
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown operation 'conv_5x5'"),
        ("|none~0|+|none~0|none~1|", "found 3 edges"),
        (["none"] * 5, "exactly 6 edges, got 5"),
        ({"edge_1_0": "none"}, "missing edges"),
        (42, "cannot read"),
        ("hello", "not a NAS-Bench-201 cell string"),
    ],
)
def test_illegal_inputs_carry_a_reason(space, bad, words):
    with pytest.raises(IllegalArchitecture) as err:
        space.parse(bad)
    assert words in err.value.reason


def test_sample_mutate_encode(space):
    rng = np.random.default_rng(0)
    keys = {space.key(space.sample(rng)) for _ in range(300)}
    assert len(keys) > 280  # 15,625 cells: few collisions
    arch = space.parse(RESNET)
    for _ in range(50):
        child = space.mutate(arch, rng)
        diff = sum(a != b for a, b in zip(space.genes(arch), space.genes(child)))
        assert diff == 1
    code = space.encode(arch)
    assert code.shape == (30,) and code.sum() == 6


def test_build_runs_forward_with_right_output(space):
    import torch

    arch = space.parse(RESNET)
    for dataset, classes, size in (("cifar10", 10, 32), ("cifar100", 100, 32), ("imagenet16", 120, 16)):
        model = space.build(arch, dataset).eval()
        assert space.input_shape(arch, dataset) == (1, 3, size, size)
        with torch.no_grad():
            out = model(torch.zeros(2, 3, size, size))
        assert out.shape == (2, classes)
    with pytest.raises(ValueError, match="unknown dataset"):
        space.build(arch, "mnist")


def test_describe_names_every_operation(space):
    text = space.describe()
    for op in space.dimensions["edge_1_0"]:
        assert op in text
