"""Forward memory figures for one small model, computed by hand (the training step: tests/test_training.py)."""

from __future__ import annotations

import pytest
import torch
from cli_runner import run_json

from resnet_cli.analysis.flops_report import flops_report
from resnet_cli.analysis.memory import forward_memory
from resnet_cli.errors import UserError
from resnet_cli.spec import request_from_flags
from resnet_cli.trace import trace_model


def resnet20_by_hand() -> tuple[int, int]:
    """Parameters and forward activation elements of resnet20 (shortcut A) at 1x3x32x32."""
    conv3x3 = lambda c_in, c_out: 9 * c_in * c_out  # noqa: E731
    bn = lambda c: 2 * c  # noqa: E731
    params = conv3x3(3, 16) + bn(16) + 64 * 10 + 10  # stem conv, stem BN, fc
    for c_in, c in ((16, 16), (16, 32), (32, 64)):  # three stages of three basic blocks
        params += conv3x3(c_in, c) + conv3x3(c, c) + 2 * bn(c)  # first block: option A adds no parameters
        params += 2 * (2 * conv3x3(c, c) + 2 * bn(c))
    # Distinct tensors made in the forward pass: in-place ReLUs, Identity and Flatten (a view) add none.
    activations = 2 * 16 * 32 * 32  # stem conv and BN
    for c, hw, first_pads in ((16, 32, False), (32, 16, True), (64, 8, True)):
        per_block = 5 * c * hw * hw  # conv1, bn1, conv2, bn2, residual sum
        activations += 3 * per_block + (c * hw * hw if first_pads else 0)  # option A's zero-padded shortcut
    activations += 64 + 10  # pooled features, logits
    return params, activations


def test_resnet20_memory_matches_the_hand_count():
    params, activations = resnet20_by_hand()
    assert params == 269_722
    memory = flops_report(request_from_flags("resnet20")).memory
    assert memory.param_bytes == 4 * params
    assert memory.input_bytes == 4 * 3 * 32 * 32
    assert memory.activation_bytes == 4 * activations


def test_half_precision_halves_everything():
    params, activations = resnet20_by_hand()
    memory = flops_report(request_from_flags("resnet20", dtype="bfloat16")).memory
    assert (memory.param_bytes, memory.input_bytes, memory.activation_bytes) == (2 * params, 2 * 3 * 32 * 32, 2 * activations)


def test_batch_scales_activations_not_parameters():
    one = flops_report(request_from_flags("resnet20")).memory
    eight = flops_report(request_from_flags("resnet20", input="8x3x32x32")).memory
    assert eight.param_bytes == one.param_bytes
    assert eight.activation_bytes == 8 * one.activation_bytes


def test_unknown_dtype_is_a_user_error():
    model = torch.nn.Linear(2, 2)
    inputs = torch.zeros(1, 2)
    with pytest.raises(UserError, match=r"--dtype 'int8' is not one of float32, float16, bfloat16"):
        forward_memory(model, inputs, trace_model(model, inputs), dtype="int8")


COMPLEX_MODEL = """
import torch
from torch import nn


class Spectral(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1, bias=False)

    def forward(self, x):
        return torch.fft.fft2(self.conv(x)).real
"""


def test_summary_and_flops_give_the_same_bytes_each_tensor_in_its_own_dtype(tmp_path):
    # conv output 4x8x8 float32 (4 B), its FFT 4x8x8 complex64 (8 B), the real part a view (0 B)
    (tmp_path / "spectral.py").write_text(COMPLEX_MODEL)
    args = (str(tmp_path / "spectral.py") + ":Spectral", "--input", "1x3x8x8", "--format", "json")
    summary, flops = run_json("summary", *args)["totals"], run_json("flops", *args)["memory"]
    assert summary["activation_bytes"] == flops["activation_bytes"] == 4 * 8 * 8 * (4 + 8)
    assert summary["param_bytes"] == flops["param_bytes"] == 4 * 3 * 4


def test_real_tensors_give_the_same_figures_as_meta():
    meta = flops_report(request_from_flags("resnet20", se=True, input="2x3x32x32")).memory
    cpu = flops_report(request_from_flags("resnet20", se=True, input="2x3x32x32", device="cpu")).memory
    assert cpu == meta
