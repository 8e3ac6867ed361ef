"""The OFA MobileNetV3 space, its OFA-convention FLOPs, the OFA accuracy predictor and the
supernet evaluator. The supernet is randomly initialised here (the official weights and ImageNet
are not available); tests needing the `ofa` package skip without it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from collm_nas.spaces import IllegalArchitecture, get_space, space_names
from collm_nas.spaces.base import SearchSpace
from collm_nas.spaces.mobilenet import MobileNetArch, active_blocks
from collm_nas.tools.data import DataFileError

# Published / OFA-printed references (see scripts/verify_predictor.py for the sources).
OFA_TUTORIAL_NOTE10 = {  # OFA tutorial notebook: predicted 81.71 %, measured 76.9 % (ImageNet val)
    "r": 192, "d": [2, 2, 3, 4, 3],
    "ks": [5, 3, 3, 3, 5, 3, 3, 3, 7, 7, 3, 3, 5, 5, 7, 3, 3, 3, 5, 3],
    "e": [3, 3, 3, 3, 4, 4, 3, 3, 6, 3, 4, 3, 4, 4, 4, 3, 6, 6, 6, 3],
}
OFA_FLOPS_595M = {  # ofa_specialized flops@595M_top1@80.0_finetune@75 (run at 236 px): 595M, 9.1M
    "r": 224, "d": [3, 4, 4, 4, 4],
    "ks": [3, 5, 3, 3, 5, 5, 3, 5, 7, 5, 3, 5, 3, 5, 7, 3, 3, 3, 5, 3],
    "e": [3, 4, 3, 3, 4, 4, 6, 3, 6, 6, 3, 4, 6, 6, 6, 4, 6, 6, 6, 3],
}
# Predictions printed by a run of OFA's own predictor (CompOFA fork of the OFA tutorial).
PRINTED_PREDICTIONS = [
    (78.25909852981567, {"r": 160, "d": [2, 2, 3, 3, 3],
                         "ks": [5, 3, 7, 7, 5, 3, 3, 3, 5, 3, 5, 7, 3, 5, 5, 3, 3, 3, 3, 5],
                         "e": [3] * 8 + [4] * 12}),
    (80.28315901756287, {"r": 192, "d": [2, 2, 3, 3, 3],
                         "ks": [3, 3, 7, 7, 7, 3, 5, 3, 5, 3, 7, 3, 7, 5, 3, 5, 3, 3, 3, 5],
                         "e": [3] * 8 + [4] * 12}),
    (84.4395101070404, {"r": 224, "d": [3, 4, 4, 4, 4],
                        "ks": [5, 5, 5, 5, 3, 5, 3, 3, 5, 5, 5, 7, 7, 7, 3, 5, 3, 3, 5, 5],
                        "e": [4] * 4 + [6] * 16}),
]
BIGGEST = {"r": 224, "d": [4] * 5, "ks": [7] * 20, "e": [6] * 20}
SMALLEST = {"r": 160, "d": [2] * 5, "ks": [3] * 20, "e": [3] * 20}
# (arch, MFLOPs, M params) from ofa.utils.count_net_flops on the built subnet.
FLOPS_PINS = [
    (BIGGEST, 843.101056, 10.701632),
    (SMALLEST, 100.320888, 4.602456),
    (OFA_TUTORIAL_NOTE10, 264.00864, 7.71188),
    (OFA_FLOPS_595M, 512.861696, 9.135928),
]

needs_ofa = pytest.mark.skipif(
    importlib.util.find_spec("ofa") is None, reason="needs the `ofa` extra"
)


@pytest.fixture(scope="module")
def space():
    return get_space("mobilenet")


def arch_with(base: dict, **changes) -> dict:
    arch = json.loads(json.dumps(base))
    arch.update(changes)
    return arch


# --- the space -----------------------------------------------------------------------------


def test_registered_with_46_categorical_dimensions(space):
    assert "mobilenet" in space_names() and space.name == "mobilenet"
    dims = space.dimensions
    assert len(dims) == 46 and list(dims)[:2] == ["r", "d_0"]
    arch = space.parse(OFA_TUTORIAL_NOTE10)
    assert space.from_genes(space.genes(arch)) == arch
    assert space.encode(arch).shape == (5 + 15 + 60 + 60,)


def test_inactive_genes_do_not_change_key_or_encoding(space):
    arch = space.parse(OFA_TUTORIAL_NOTE10)  # stage 1 uses blocks 0-1 only
    ks, e = list(arch.ks), list(arch.e)
    ks[2], ks[3], e[3], e[19] = 7, 5, 6, 4  # all inactive (d = [2, 2, 3, 4, 3])
    other = space.parse(arch_with(OFA_TUTORIAL_NOTE10, ks=ks, e=e))
    assert other != arch
    assert space.key(other) == space.key(arch)
    assert np.array_equal(space.encode(other), space.encode(arch))
    ks[1] = 7  # active
    changed = space.parse(arch_with(OFA_TUTORIAL_NOTE10, ks=ks))
    assert space.key(changed) != space.key(arch)
    assert space.key(arch) == "r192_d22343_ks53--/53--/773-/5573/335-_e33--/44--/634-/4443/666-"


def test_mutation_always_changes_the_network(space):
    rng = np.random.default_rng(0)
    for _ in range(300):
        arch = space.sample(rng)
        assert space.key(space.mutate(arch, rng)) != space.key(arch)
        # the contract's generic mutate (retries until the key changes) works here too
        assert space.key(SearchSpace.mutate(space, arch, rng)) != space.key(arch)


def test_parse_accepts_the_paper_form_and_round_trips(space):
    paper = arch_with(OFA_TUTORIAL_NOTE10, r=[192])
    arch = space.parse(paper)
    assert isinstance(arch, MobileNetArch) and arch.r == 192
    assert space.parse(arch.model_dump()) == arch
    assert space.parse(json.dumps(paper)) == arch
    assert space.parse(str(paper)) == arch  # Python-literal text with single quotes
    assert space.parse("```json\n" + json.dumps(paper) + "\n```") == arch
    assert space.key(space.parse(space.key(arch))) == space.key(arch)
    assert space.parse({"architecture": paper}) == arch
    assert space.parse(list(space.genes(arch))) == arch
    assert space.parse(arch_with(OFA_TUTORIAL_NOTE10, r="192")) == arch


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"d": [3, 3, 3, 3]}, "d must have 5 values"),
        ({"ks": [3] * 19}, "ks must have 20 values"),
        ({"e": [3] * 21}, "e must have 20 values"),
        ({"ks": [3] * 7 + [4] + [3] * 12}, "ks[7] = 4 is not an allowed kernel size"),
        ({"e": [3] * 19 + [5]}, "e[19] = 5 is not an allowed expand ratio"),
        ({"d": [2, 3, 5, 4, 1]}, "d[2] = 5 is not an allowed stage depth"),
        ({"r": 200}, "r = 200 is not an allowed resolution; allowed: 160, 176, 192, 208, 224"),
        ({"r": [208, 224]}, "r must be one resolution"),
        ({"d": "33334"}, "d must be a list of 5 integers"),
        ({"d": [True, 3, 3, 3, 3]}, "d[0] = True"),
        ({"width": 1.2}, "unknown field(s) ['width']"),
    ],
)
def test_illegal_architectures_name_the_field_and_index(space, changes, reason):
    with pytest.raises(IllegalArchitecture) as err:
        space.parse(arch_with(OFA_TUTORIAL_NOTE10, **changes))
    assert reason in err.value.reason


def test_every_problem_is_reported_at_once(space):
    bad = {"r": 100, "d": [3, 3, 3, 3, 9], "ks": [3] * 20}
    with pytest.raises(IllegalArchitecture, match=r"missing field\(s\) \['e'\]"):
        space.parse(bad)
    with pytest.raises(IllegalArchitecture) as err:
        space.parse(dict(bad, e=[3] * 20))
    assert "r = 100" in err.value.reason and "d[4] = 9" in err.value.reason
    with pytest.raises(IllegalArchitecture, match="not a MobileNetV3 architecture"):
        space.parse("a network with big kernels")


def test_schema_is_a_usable_llm_output_schema(space):
    schema = space.Arch.model_json_schema()
    props = schema["properties"]
    assert set(schema["required"]) == {"r", "d", "ks", "e"}
    assert props["r"]["enum"] == [160, 176, 192, 208, 224]
    assert props["d"]["minItems"] == props["d"]["maxItems"] == 5
    assert props["ks"]["items"]["enum"] == [3, 5, 7] and props["ks"]["maxItems"] == 20
    assert props["e"]["items"]["enum"] == [3, 4, 6] and props["e"]["minItems"] == 20
    text = space.describe()
    for needle in ("d[i]", "4*i + j", "160, 176, 192, 208, 224", "ignored"):
        assert needle in text


def test_active_blocks():
    assert active_blocks([2, 3, 4, 2, 3]) == [0, 1, 4, 5, 6, 8, 9, 10, 11, 12, 13, 16, 17, 18]


# --- networks and FLOPs (OFA convention) ----------------------------------------------------


@needs_ofa
@pytest.mark.parametrize("arch, flops_m, params_m", FLOPS_PINS)
def test_flops_follow_the_ofa_counter(space, arch, flops_m, params_m):
    cost = space.count_cost(space.parse(arch), "imagenet")
    assert cost == pytest.approx((flops_m, params_m), abs=1e-4)


@needs_ofa
def test_published_specialised_net_flops(space):
    # OFA publishes 595M MACs / 9.1M params for this subnet, evaluated at 236 px.
    flops_m, params_m = space.cost_at_resolution(space.parse(OFA_FLOPS_595M), 236)
    assert flops_m == pytest.approx(595.0, abs=0.5)
    assert params_m == pytest.approx(9.1, abs=0.05)


@needs_ofa
def test_built_subnet_matches_torch_multiply_accumulates(space):
    """OFA's convention is conv + linear multiply-accumulates only: torch's own counter, with
    none of the project's extra formulas (BN, ReLU, pooling), must give the same number."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    arch = space.parse(SMALLEST)
    model = space.build(arch, "imagenet").eval()
    assert space.input_shape(arch, "imagenet") == (1, 3, 160, 160)
    mode = FlopCounterMode(display=False)
    with torch.no_grad(), mode:
        model(torch.zeros(space.input_shape(arch, "imagenet")))
    flops_m, params_m = space.count_cost(arch)
    assert mode.get_total_flops() / 2e6 == pytest.approx(flops_m, abs=1e-3)  # OFA sums in float32
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params_m, abs=1e-9)
    with pytest.raises(ValueError, match="unknown dataset 'cifar10' for mobilenet"):
        space.build(arch, "cifar10")


# --- the predictor -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def predictor():
    from collm_nas.tools.evaluators.predictor import OFAPredictorEvaluator

    return OFAPredictorEvaluator()


def test_predictor_reproduces_ofas_printed_predictions(predictor, space):
    metrics = predictor.evaluate(OFA_TUTORIAL_NOTE10)
    assert metrics.predicted and metrics.valid_acc == metrics.test_acc
    assert metrics.valid_acc == pytest.approx(81.71, abs=0.005)  # as printed by OFA's notebook
    for accuracy, arch in PRINTED_PREDICTIONS:
        assert predictor.evaluate(space.parse(arch)).valid_acc == pytest.approx(accuracy, abs=1e-4)
    # pins of this encoding + weights on the space's extremes
    assert predictor.predict([BIGGEST, SMALLEST]) == pytest.approx(
        [83.59277844429016, 75.3118634223938], abs=1e-4
    )


def test_predictor_ignores_inactive_blocks(predictor):
    ks = list(OFA_TUTORIAL_NOTE10["ks"])
    ks[2] = ks[3] = 7
    assert predictor.evaluate(arch_with(OFA_TUTORIAL_NOTE10, ks=ks)) == predictor.evaluate(
        OFA_TUTORIAL_NOTE10
    )


@needs_ofa
def test_encoding_equals_ofa_spec2feats(space):
    import ofa
    from collm_nas.tools.evaluators.predictor import predictor_features

    # The tutorial package's __init__ imports extras (gdown); load the one module directly.
    path = Path(ofa.__file__).parent / "tutorial" / "accuracy_predictor.py"
    spec = importlib.util.spec_from_file_location("_ofa_accuracy_predictor", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(3)
    for _ in range(50):
        arch = space.sample(rng)
        theirs = module.AccuracyPredictor.spec2feats(list(arch.ks), list(arch.e), arch.d, arch.r)
        assert torch.equal(predictor_features(arch), theirs)


def test_missing_predictor_names_every_path_tried(tmp_path, monkeypatch):
    from collm_nas.tools import data
    from collm_nas.tools.evaluators.predictor import OFAPredictorEvaluator

    monkeypatch.setenv("COLLM_NAS_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(data, "user_data_dir", lambda: tmp_path / "cache")
    with pytest.raises(DataFileError) as err:
        OFAPredictorEvaluator(tmp_path / "explicit")
    text = str(err.value)
    for place in ("explicit", "env", "cache"):
        assert str(tmp_path / place) in text
    assert "acc_predictor.pth" in text and "han-cai/files" in text


def test_a_file_that_is_not_the_predictor_is_rejected(tmp_path):
    from collm_nas.tools.evaluators.predictor import OFAPredictorEvaluator

    wrong = torch.nn.Sequential(torch.nn.Linear(100, 400), torch.nn.ReLU(), torch.nn.Linear(400, 1))
    torch.save(wrong.state_dict(), tmp_path / "wrong.pth")
    with pytest.raises(DataFileError) as err:
        OFAPredictorEvaluator(tmp_path / "wrong.pth")
    assert "not OFA's MobileNetV3 accuracy predictor" in str(err.value)
    assert "0.weight has shape (400, 100), expected (400, 128)" in str(err.value)
    assert "missing keys ['4.weight'" in str(err.value)
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(DataFileError, match="could not be read"):
        OFAPredictorEvaluator(tmp_path / "text.pth")


def test_factory_and_baselines_run_on_the_predictor(space):
    from collm_nas.evals.baselines import BASELINES
    from collm_nas.tools.coordinator import Ledger
    from collm_nas.tools.evaluators import make_evaluator

    assert space.evaluators == ("predictor", "supernet")
    evaluator = make_evaluator("mobilenet", "imagenet", "predictor")
    assert evaluator.kind == "predictor"
    with pytest.raises(ValueError, match="choose one of"):
        make_evaluator("mobilenet", "imagenet", "benchmark")
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'"):
        make_evaluator("mobilenet", "cifar10", "predictor")
    for name, method in BASELINES.items():
        ledger = Ledger(space, evaluator, "valid", budget=15)
        method(ledger, np.random.default_rng(0))
        assert len(ledger.records) == 15, name
        assert all(r["predicted"] for r in ledger.records)


# --- the supernet evaluator ----------------------------------------------------------------


def make_image_folder(root: Path, classes: int = 4, per_class: int = 3) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (36 + 4 * c, 44, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{i}.JPEG")
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    pytest.importorskip("torchvision")
    return make_image_folder(tmp_path_factory.mktemp("imagenet") / "val")


@pytest.fixture(scope="module")
def random_supernet():
    pytest.importorskip("ofa")
    from collm_nas.spaces.mobilenet import new_ofa_supernet

    torch.manual_seed(0)
    return new_ofa_supernet()


@needs_ofa
def test_supernet_pipeline_recalibrates_bn_and_measures_top1(image_folder, random_supernet):
    from collm_nas.tools.evaluators.supernet import OFASupernetEvaluator

    evaluator = OFASupernetEvaluator(
        image_folder, supernet=random_supernet, calib_images=6, batch_size=12,
        allow_fewer_classes=True,
    )
    raw = evaluator.subnet(SMALLEST)
    calibrated = evaluator.calibrated_subnet(SMALLEST)
    bn_raw, bn_new = raw.first_conv.bn, calibrated.first_conv.bn
    assert torch.all(bn_raw.running_mean == 0) and torch.all(bn_raw.running_var == 1)
    assert not torch.allclose(bn_new.running_mean, bn_raw.running_mean)
    assert not torch.allclose(bn_new.running_var, bn_raw.running_var)
    assert bn_new.momentum == bn_raw.momentum and not calibrated.training
    metrics = evaluator.evaluate(SMALLEST)
    assert not metrics.predicted and 0.0 <= metrics.valid_acc == metrics.test_acc <= 100.0
    assert evaluator.evaluate(SMALLEST) is metrics  # cached by key
    # the supernet itself is left untouched
    assert torch.all(random_supernet.first_conv.bn.running_mean == 0)


def test_recalibration_uses_the_batch_statistics():
    from collm_nas.tools.supernet_eval import recalibrate_batchnorm

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 5, 3), torch.nn.BatchNorm2d(5, momentum=0.1))
    images = torch.randn(8, 3, 10, 10)
    batches = [(images[:4], None), (images[4:], None)]
    assert recalibrate_batchnorm(model, batches) == 8
    with torch.no_grad():
        out = model[0](images)
    per_batch = [out[:4].mean((0, 2, 3)), out[4:].mean((0, 2, 3))]
    assert torch.allclose(model[1].running_mean, (per_batch[0] + per_batch[1]) / 2, atol=1e-5)
    assert model[1].momentum == 0.1 and not model.training


@needs_ofa
def test_checkpoint_of_another_supernet_is_rejected(tmp_path, random_supernet):
    from collm_nas.spaces.mobilenet import new_ofa_supernet
    from collm_nas.tools.evaluators.supernet import SupernetCheckpointError, load_supernet_checkpoint
    from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

    w10 = OFAMobileNetV3(ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4],
                         width_mult=1.0)
    torch.save({"state_dict": w10.state_dict()}, tmp_path / "w1.0.pth")
    with pytest.raises(SupernetCheckpointError) as err:
        load_supernet_checkpoint(new_ofa_supernet(), tmp_path / "w1.0.pth")
    assert "not a checkpoint of the OFA supernet ofa_mbv3_d234_e346_k357_w1.2" in str(err.value)
    assert "of the wrong shape" in str(err.value)
    # the right supernet, saved with the older OFA naming, loads
    old_names = {
        k.replace("blocks.1.conv.", "blocks.1.mobile_inverted_conv.").replace(".bn.bn.", ".bn."): v
        for k, v in random_supernet.state_dict().items() if "num_batches_tracked" not in k
    }
    torch.save({"state_dict": old_names}, tmp_path / "w1.2.pth")
    target = new_ofa_supernet()
    load_supernet_checkpoint(target, tmp_path / "w1.2.pth")
    for name, tensor in random_supernet.state_dict().items():
        assert torch.equal(target.state_dict()[name], tensor), name
    partial = dict(list(old_names.items())[:-4])
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(SupernetCheckpointError, match="supernet tensors missing"):
        load_supernet_checkpoint(target, tmp_path / "partial.pth")


@needs_ofa
def test_validation_folder_layout_errors(tmp_path, image_folder, random_supernet):
    from collm_nas.tools.evaluators.supernet import OFASupernetEvaluator
    from collm_nas.tools.supernet_eval import ImageFolderLayoutError

    def make(folder, **kwargs):
        return OFASupernetEvaluator(folder, supernet=random_supernet, **kwargs)

    with pytest.raises(ImageFolderLayoutError, match="does not exist"):
        make(tmp_path / "missing")
    flat = tmp_path / "flat"
    flat.mkdir()
    for image in (image_folder / "n00000000").iterdir():
        (flat / image.name).write_bytes(image.read_bytes())
    with pytest.raises(ImageFolderLayoutError, match=r"no class subfolders \(it holds 3 images"):
        make(flat)
    with pytest.raises(ImageFolderLayoutError, match="has 4 class folders.*allow_fewer_classes"):
        make(image_folder)
    with pytest.raises(ValueError, match="needs the supernet checkpoint"):
        OFASupernetEvaluator(image_folder, allow_fewer_classes=True)
