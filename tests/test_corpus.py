"""The operator-level engine on real-world-style ResNet code (tests/models/): equal to fvcore per operator and per
module, conv + linear equal to torch's FlopCounterMode / 2, parameters equal to published figures."""

from __future__ import annotations

import pytest
import torch
from models.corpus import CORPUS, IMAGENET, SCRIPTED, CorpusModel
from test_counting import assert_activations_agree
from torch.utils.flop_counter import FlopCounterMode

from resnet_cli.analysis.counting import count_macs
from resnet_cli.errors import UserError
from resnet_cli.model import instantiate
from resnet_cli.trace import make_input
from resnet_cli.user_model import UserModelRequest, build_user_model

pytestmark = pytest.mark.usefixtures("one_thread")  # fvcore on CPU: see conftest.py

IDS = [m.id for m in CORPUS]


# fvcore runs the model for real: on 64x64 (layer4 still 2x2) ImageNet models call every operator and module they call
# on 224x224, with 12 times fewer pixels to compute
SMALL_IMAGENET = (1, 3, 64, 64)


def request(entry: CorpusModel, device: str = "meta", small: bool = False) -> UserModelRequest:
    shape = SMALL_IMAGENET if small and entry.input_shape == IMAGENET else entry.input_shape
    return UserModelRequest(entry.reference, entry.kwargs, shape, device=device)


def test_the_corpus_is_large_enough():
    files = {m.path for m in CORPUS}
    assert len(files) >= 12 and len(CORPUS) >= 14


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_fast_engine_equals_fvcore_per_operator_and_module(entry):
    model, inputs = instantiate(request(entry, small=True))
    fast = count_macs(model, inputs, "fast")
    on_cpu = request(entry, "cpu", small=True)
    reference = count_macs(build_user_model(on_cpu), make_input(on_cpu.input_shape, "cpu"), "fvcore")
    assert fast.by_operator == reference.by_operator
    assert fast.by_module == reference.by_module
    assert fast.by_module_and_operator == reference.by_module_and_operator
    assert fast.macs > 0 and fast.complete, fast.coverage
    assert_activations_agree(fast, reference)


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_conv_linear_equals_flop_counter_mode_halved(entry):
    model, inputs = instantiate(request(entry))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.eval()(inputs)
    assert 2 * count_macs(model, inputs, "fast").conv_linear_macs == counter.get_total_flops()


@pytest.mark.parametrize("entry", [m for m in CORPUS if m.published_params], ids=lambda m: m.id)
def test_parameters_equal_the_published_figures(entry):
    model, _ = instantiate(request(entry))
    assert sum(p.numel() for p in model.parameters()) == entry.published_params


def test_a_torchscript_submodule_is_refused_by_name():
    with pytest.raises(UserError, match=r"submodule \S+ is a TorchScript module .*without torch.jit.script"):
        instantiate(request(SCRIPTED))
