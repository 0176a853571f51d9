"""The fast MAC engine against fvcore: per operator and per module, on every preset and on drawn specs."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_strategies import valid_specs
from torch import nn

from resnet_cli.analysis.counting import (
    count_macs,
    count_module,
    count_request,
    count_traced,
)
from resnet_cli.errors import UserError
from resnet_cli.model import Bottleneck, build_model
from resnet_cli.spec import PRESETS, request_from_flags
from resnet_cli.trace import make_input

pytestmark = pytest.mark.usefixtures("one_thread")  # fvcore on CPU: see conftest.py

# fvcore builds a real model, so small inputs keep the reference fast; the counts are exact at any size.
SMALL_INPUT = {"resnet1202": (1, 3, 8, 8), "preact_resnet1001": (1, 3, 8, 8)}


def small_input(name: str) -> tuple[int, ...]:
    spec = PRESETS[name].spec
    return SMALL_INPUT.get(name, (1, spec.in_channels, 32, 32))


def assert_engines_agree(model: nn.Module, shape: tuple[int, ...]) -> None:
    fast = count_macs(model, make_input(shape), "fast")
    reference = count_macs(model, make_input(shape), "fvcore")
    assert (fast.engine, reference.engine) == ("fast", "fvcore")
    assert fast.by_operator == reference.by_operator
    assert fast.by_module_and_operator == reference.by_module_and_operator
    assert fast.by_module == reference.by_module
    assert fast.macs == reference.macs > 0
    assert_activations_agree(fast, reference)


def assert_activations_agree(fast, reference) -> None:
    """Activations (output elements of conv, linear, matrix products) equal fvcore's ActivationCountAnalysis."""
    assert fast.acts_by_operator == reference.acts_by_operator
    assert {k: v for k, v in fast.acts_by_module.items() if v} == {k: v for k, v in reference.acts_by_module.items() if v}
    assert fast.acts == reference.acts > 0


@pytest.mark.parametrize("name", list(PRESETS))
def test_fast_engine_equals_fvcore_on_every_preset(name):
    assert_engines_agree(build_model(name, device="meta"), small_input(name))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(spec=valid_specs(), size=st.sampled_from([16, 24]))
def test_fast_engine_equals_fvcore_on_drawn_specs(spec, size):
    assert_engines_agree(build_model(spec, device="meta"), (2, spec.in_channels, size, size))


@pytest.mark.parametrize(
    ("conv", "shape"),
    [
        (nn.Conv2d(8, 16, 3, padding=1), (2, 8, 10, 10)),
        (nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4, bias=False), (1, 8, 15, 15)),
        (nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8), (3, 8, 9, 7)),
        (nn.Conv2d(4, 6, (1, 5), stride=(2, 1)), (1, 4, 8, 8)),
    ],
)
def test_conv_macs_follow_the_closed_formula(conv, shape):
    out = conv(torch.zeros(shape)).shape
    expected = shape[0] * out[1] * (shape[1] // conv.groups) * math.prod(conv.kernel_size) * out[2] * out[3]
    assert count_module(conv, shape, "fast").by_operator == {"conv": expected}
    assert count_module(conv, shape, "fvcore").by_operator == {"conv": expected}


@pytest.mark.parametrize(
    "layer",
    [nn.BatchNorm2d(6), nn.BatchNorm2d(6, affine=False), nn.BatchNorm2d(6, track_running_stats=False),
     nn.BatchNorm1d(6), nn.Linear(6, 5), nn.AdaptiveAvgPool2d(2)],
    ids=["bn", "bn-no-affine", "bn-batch-stats", "bn1d", "linear", "adaptive-pool"],
)  # fmt: skip
def test_leaf_layers_match_fvcore(layer):
    shape = (2, 6) if isinstance(layer, (nn.BatchNorm1d, nn.Linear)) else (2, 6, 5, 5)
    assert count_module(layer, shape, "fast").by_operator == count_module(layer, shape, "fvcore").by_operator


def test_batch_norm_in_eval_is_two_macs_per_element():
    assert count_module(nn.BatchNorm2d(6), (2, 6, 5, 5), "fast").macs == 2 * 2 * 6 * 5 * 5


def test_linear_counts_every_leading_dimension():
    assert count_module(nn.Linear(6, 5), (2, 3, 6), "fast").by_operator == count_module(
        nn.Linear(6, 5), (2, 3, 6), "fvcore"
    ).by_operator == {"linear": 2 * 3 * 6 * 5}  # fmt: skip


def test_a_single_block_counts_like_fvcore():
    block = Bottleneck(
        PRESETS["resnext50_32x4d"].spec, in_ch=256, planes=128, stride=2, dilation=1, drop_path=0.0, stage=1
    )
    fast = count_module(block, (1, 256, 28, 28), "fast")
    assert fast.by_module_and_operator == count_module(block, (1, 256, 28, 28), "fvcore").by_module_and_operator
    assert set(fast.by_module) >= {"", "conv1", "conv2", "downsample.0"}


def test_resnet50_conventions_at_224():
    count = count_request(request_from_flags("resnet50"), "fast")
    assert count.macs == 4_111_512_576
    assert count.flops == 2 * 4_111_512_576
    assert count.conv_linear_macs == 4_089_184_256
    assert count.by_operator["batch_norm"] + count.by_operator["adaptive_avg_pool2d"] == 4_111_512_576 - 4_089_184_256


def test_fast_counts_scale_exactly_with_batch_and_never_allocate():
    one = count_request(request_from_flags("resnet50", input="1x3x1024x1024"), "fast")
    many = count_request(request_from_flags("resnet50", input="256x3x1024x1024"), "fast")
    assert many.by_operator == {op: 256 * macs for op, macs in one.by_operator.items()}


class Doubler(nn.Module):
    """A module type resnet-cli has never seen, whose forward is functional."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, torch.ones(x.shape[-1], x.shape[-1], device=x.device))


def test_an_unknown_module_with_functional_code_is_counted_like_fvcore():
    model = nn.Sequential(nn.Linear(4, 4), Doubler())
    fast = count_macs(model, torch.zeros(2, 4), "fast")
    assert fast.engine == "fast"
    assert fast.by_module_and_operator == count_macs(model, torch.zeros(2, 4), "fvcore").by_module_and_operator
    assert fast.by_module["1"] == 2 * 4 * 4  # the unknown module's linear, attributed to it


class BatchedProduct(nn.Module):
    """Runs an operator with multiply-accumulates but no fvcore rule (baddbmm), twice, and a convention zero (relu)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(x)[None]
        return torch.baddbmm(x, x, x.transpose(1, 2)[..., :4]).baddbmm(x, x.transpose(1, 2)[..., :4])


def test_an_operator_without_rule_is_named_with_its_calls_and_makes_the_count_partial():
    count = count_macs(nn.Sequential(nn.Linear(4, 4), BatchedProduct()), torch.zeros(4, 4), "fast")
    assert count.uncounted == {"baddbmm": 2}
    assert count.zero_by_convention["relu"] == 1
    assert not count.complete
    assert count.coverage == "partial (not counted: aten.baddbmm x2)"


def test_every_preset_count_is_complete():
    count = count_request(request_from_flags("resnet50", se=True, shortcut="A", drop_path=0.1), "fast")
    assert count.complete and count.coverage == "complete"
    assert {"add", "relu_", "max_pool2d_with_indices", "mul", "sigmoid"} <= set(count.zero_by_convention)


def test_unknown_counter_is_a_user_error():
    with pytest.raises(UserError, match=r"--counter 'magic' is not one of fast, fvcore"):
        count_request(request_from_flags("resnet18"), "magic")


def test_fvcore_engine_leaves_the_model_mode_unchanged():
    model = build_model("resnet18", device="meta").train()
    count_macs(model, make_input((1, 3, 32, 32)), "fvcore")
    assert all(m.training for m in model.modules())


def test_before_fvcore_runs_only_when_fvcore_counts():
    calls = []
    model = nn.Sequential(nn.Linear(4, 4))
    count_traced(model, (torch.zeros(2, 4),), "fast", before_fvcore=calls.append)
    assert calls == []
    count_traced(model, (torch.zeros(2, 4),), "fvcore", before_fvcore=calls.append)
    assert len(calls) == 1 and calls[0].ok


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=valid_specs())
def test_counts_without_function_tracking_are_the_same(spec):
    """The sweep traces without FunctionRecords and names operators from torch's module classes instead."""
    model, shape = build_model(spec, device="meta"), (2, spec.in_channels, 32, 32)
    tracked = count_traced(model, (make_input(shape),), "fast")[1]
    untracked = count_traced(model, (make_input(shape),), "fast", functions=False)[1]
    assert untracked.by_module_and_operator == tracked.by_module_and_operator
    assert untracked.zero_by_convention == tracked.zero_by_convention


def test_channels_last_on_cpu_is_complete_and_equal_to_meta():
    """On CPU, adaptive pooling of a channels-last map runs as_strided_: data movement, 0 by convention."""
    model = build_model("resnet18").to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 32, 32).to(memory_format=torch.channels_last)
    on_cpu = count_macs(model, x, "fast")
    assert on_cpu.complete, on_cpu.coverage
    assert on_cpu.by_module_and_operator == count_macs(build_model("resnet18", device="meta"), make_input((1, 3, 32, 32))).by_module_and_operator
