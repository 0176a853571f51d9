"""Memory figures for one small model, computed by hand, and the estimate's arithmetic."""

from __future__ import annotations

import pytest

from resnet_cli.analysis.flops_report import flops_report
from resnet_cli.analysis.memory import estimate_memory
from resnet_cli.errors import UserError
from resnet_cli.spec import request_from_flags


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
    memory = flops_report(request_from_flags("resnet20"), optimizer="sgd").memory
    inputs = 3 * 32 * 32
    assert memory.param_bytes == memory.grad_bytes == memory.optimizer_state_bytes == 4 * params
    assert memory.input_bytes == 4 * inputs
    assert memory.activation_bytes == 4 * activations
    assert memory.saved_activation_bytes == 4 * (inputs + activations)
    assert memory.training_bytes == 4 * (3 * params + inputs + activations)


def test_adam_keeps_two_state_buffers_and_half_precision_halves_everything():
    params, activations = resnet20_by_hand()
    memory = flops_report(request_from_flags("resnet20", dtype="bfloat16"), optimizer="adam").memory
    assert memory.optimizer_state_bytes == 2 * 2 * params
    assert memory.training_bytes == 2 * (4 * params + 3 * 32 * 32 + activations)


def test_batch_scales_activations_not_parameters():
    one = flops_report(request_from_flags("resnet20")).memory
    eight = flops_report(request_from_flags("resnet20", input="8x3x32x32")).memory
    assert eight.param_bytes == one.param_bytes
    assert eight.activation_bytes == 8 * one.activation_bytes


def test_frozen_parameters_need_no_gradient_or_state():
    memory = estimate_memory(params=100, trainable_params=40, input_elements=10, activation_elements=50)
    assert (memory.param_bytes, memory.grad_bytes, memory.optimizer_state_bytes) == (400, 160, 160)
    assert memory.training_bytes == 400 + 160 + 160 + 4 * 60


def test_unknown_optimizer_is_a_user_error():
    with pytest.raises(UserError, match=r"--optimizer 'rmsprop' is not one of sgd, adam"):
        estimate_memory(params=1, trainable_params=1, input_elements=1, activation_elements=1, optimizer="rmsprop")


def test_real_tensors_give_the_same_figures_as_meta():
    meta = flops_report(request_from_flags("resnet20", se=True, input="2x3x32x32")).memory
    cpu = flops_report(request_from_flags("resnet20", se=True, input="2x3x32x32", device="cpu")).memory
    assert cpu == meta
