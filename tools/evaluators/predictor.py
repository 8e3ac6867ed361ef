"""OFA's published accuracy predictor for subnets of the MobileNetV3 w1.2 supernet.

An MLP (128 -> 400 -> 400 -> 400 -> 1, ReLU) over a 128-d one-hot: kernel sizes of the 20
blocks (60), expand ratios of the 20 blocks (60) and the resolution over 8 slots (112..224 in
steps of 16); unused blocks are all zero. This is the encoding of
`ofa.tutorial.accuracy_predictor.AccuracyPredictor.spec2feats`. The MLP outputs a fraction
(about 0.75-0.84); we report percent. OFA trained it on a 10k-image holdout split of the
ImageNet *training* set, so its values run several points above official-validation accuracy
(e.g. 81.7 predicted vs 76.9 measured for the subnet in OFA's tutorial).
"""

from __future__ import annotations

from pathlib import Path

import torch
from collm_nas.spaces import SearchSpace, get_space
from collm_nas.spaces.evaluation import Evaluator, Metrics
from collm_nas.spaces.mobilenet import EXPAND_RATIOS, KERNEL_SIZES, N_BLOCKS, MobileNetSpace, active_blocks
from collm_nas.tools.data import DataFileError, find_data_file
from collm_nas.tools.evaluators import require_space
from pydantic import BaseModel
from torch import nn

PREDICTOR_FILE = "ofa/acc_predictor.pth"
PREDICTOR_RESOLUTIONS = tuple(range(112, 225, 16))  # the 8 resolution slots of the encoding
FEATURES = 2 * N_BLOCKS * 3 + len(PREDICTOR_RESOLUTIONS)  # 128
HOW_TO_GET_PREDICTOR = (
    "It is OFA's accuracy predictor, https://raw.githubusercontent.com/han-cai/files/master/"
    "ofa/acc_predictor.pth (the file the `ofa` package downloads); save it as "
    f"<data dir>/{PREDICTOR_FILE}."
)
_EXPECTED_SHAPES = {
    "0.weight": (400, FEATURES), "0.bias": (400,),
    "2.weight": (400, 400), "2.bias": (400,),
    "4.weight": (400, 400), "4.bias": (400,),
    "6.weight": (1, 400), "6.bias": (1,),
}


def predictor_mlp() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(FEATURES, 400), nn.ReLU(),
        nn.Linear(400, 400), nn.ReLU(),
        nn.Linear(400, 400), nn.ReLU(),
        nn.Linear(400, 1),
    )


def predictor_features(arch: BaseModel) -> torch.Tensor:
    """The 128-d input of OFA's predictor for a MobileNetV3 architecture."""
    features = torch.zeros(FEATURES)
    offset_e = N_BLOCKS * 3
    for block in active_blocks(arch.d):
        features[3 * block + KERNEL_SIZES.index(arch.ks[block])] = 1.0
        features[offset_e + 3 * block + EXPAND_RATIOS.index(arch.e[block])] = 1.0
    if arch.r not in PREDICTOR_RESOLUTIONS:
        raise ValueError(
            f"the OFA predictor encodes resolutions {PREDICTOR_RESOLUTIONS}, got {arch.r}"
        )
    features[2 * offset_e + PREDICTOR_RESOLUTIONS.index(arch.r)] = 1.0
    return features


def load_predictor_weights(path: str | Path | None = None) -> nn.Sequential:
    """The predictor MLP with OFA's weights, found by the data settings; clear errors if the
    file is missing or is not this predictor."""
    file = find_data_file(PREDICTOR_FILE, path, HOW_TO_GET_PREDICTOR)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise DataFileError(
            f"{file} could not be read as a torch state dict ({type(err).__name__}: {err}). "
            + HOW_TO_GET_PREDICTOR
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataFileError(
            f"{file} holds a {type(state).__name__}, not the predictor's state dict. "
            + HOW_TO_GET_PREDICTOR
        )
    problems = []
    missing = [k for k in _EXPECTED_SHAPES if k not in state]
    unexpected = [k for k in state if k not in _EXPECTED_SHAPES]
    if missing:
        problems.append(f"missing keys {missing}")
    if unexpected:
        problems.append(f"unexpected keys {unexpected[:8]}")
    for name, shape in _EXPECTED_SHAPES.items():
        tensor = state.get(name)
        if isinstance(tensor, torch.Tensor) and tuple(tensor.shape) != shape:
            problems.append(f"{name} has shape {tuple(tensor.shape)}, expected {shape}")
        elif name in state and not isinstance(tensor, torch.Tensor):
            problems.append(f"{name} is not a tensor")
    if problems:
        raise DataFileError(
            f"{file} is not OFA's MobileNetV3 accuracy predictor (an MLP 128-400-400-400-1): "
            + "; ".join(problems) + ". " + HOW_TO_GET_PREDICTOR
        )
    model = predictor_mlp()
    model.load_state_dict({k: state[k].float() for k in _EXPECTED_SHAPES})
    model.eval()
    return model


class OFAPredictorEvaluator(Evaluator):
    """Predicted ImageNet top-1 (percent) of OFA MobileNetV3 w1.2 subnets; marked `predicted`."""

    kind = "predictor"
    thread_safe = True  # a forward pass of a fixed MLP under no_grad
    cheap = True

    def __init__(self, path: str | Path | None = None):
        self.space = get_space("mobilenet")
        self.model = load_predictor_weights(path)

    @torch.no_grad()
    def predict(self, archs: list[BaseModel]) -> list[float]:
        """Predicted top-1 accuracy in percent, one per architecture (one batched pass)."""
        if not archs:
            return []
        features = torch.stack([predictor_features(self.space.parse(a)) for a in archs])
        return [100.0 * float(v) for v in self.model(features).squeeze(1)]

    def evaluate(self, arch: BaseModel) -> Metrics:
        accuracy = self.predict([arch])[0]
        return Metrics(valid_acc=accuracy, test_acc=accuracy, predicted=True)



def predictor_evaluator(
    space: SearchSpace, dataset: str, data_path: str | None = None
) -> OFAPredictorEvaluator:
    """The `predictor` evaluator kind (entry point in pyproject.toml)."""
    require_space(space, MobileNetSpace, "predictor")
    space.check_dataset(dataset)
    return OFAPredictorEvaluator(data_path)
