"""debug-shapes' diagnoses as rules: the order of RULES, each rule on the failures it recognises and on others,
and rules that change nothing (the zero-size rule names its layer in the diagnosis instead of re-pointing)."""

from __future__ import annotations

import copy
import dataclasses
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from resnet_cli.analysis import diagnosis
from resnet_cli.analysis.diagnosis import RULES, SILENT_RULES, FailureContext, debug_shapes, prose
from resnet_cli.analysis.diagnosis.rules import diagnose, unrecognised
from resnet_cli.render.debug import _KIND_TITLES

ORDER = [
    "sys_exit",
    "input_too_small",
    "missing_attribute",
    "needs_real_tensors",
    "dtype_mismatch",
    "device_mismatch",
    "norm_channels",
    "cat_mismatch",
    "split_width",
    "expansion_mismatch",
    "conv_channels",
    "layer_features",
    "input_size",
    "classifier_mismatch",
    "residual_add_mismatch",
    "unrecognised",
]
SILENT_ORDER = ["broadcast_residual", "batch_changed", "tensor_without_device"]


# --- one small failing model per diagnosis ----------------------------------------------------------------------


class ExitsInForward(nn.Module):
    def forward(self, x):
        sys.exit(3)


class ReadsMissing(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return self.conv(x) + self.downsample(x)


class ReadsValues(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return x / self.conv(x).abs().max().item()


class PlainTensorAttribute(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mean = torch.zeros(1, 3, 1, 1)  # not a buffer: model.to() leaves it on the CPU

    def forward(self, x):
        return x - self.mean


class Block(nn.Module):
    """x + body(x), whose body may change the channels: a residual block for the watcher to mark."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.body = nn.Conv2d(in_ch, out_ch, 3, padding=1)

    def forward(self, x):
        return x + self.body(x)


class Reshapes(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x):
        return self.conv(x).view(-1, 7)


def _cpu(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.randn(shape)


def _meta(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.empty(shape, device="meta")


Case = tuple[Callable[[], nn.Module], torch.Tensor]
CASES: dict[str, Case] = {
    "sys_exit": (lambda: nn.Sequential(nn.Conv2d(3, 3, 1), ExitsInForward()), _cpu((1, 3, 4, 4))),
    "input_too_small": (lambda: nn.Sequential(nn.Conv2d(3, 4, 7)), _cpu((1, 3, 4, 4))),
    "missing_attribute": (ReadsMissing, _cpu((1, 3, 4, 4))),
    "needs_real_tensors": (lambda: ReadsValues().to("meta"), _meta((1, 3, 4, 4))),
    "dtype_mismatch": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(48, 2).double()), _cpu((1, 3, 4, 4))),
    "device_mismatch": (PlainTensorAttribute, _meta((1, 3, 4, 4))),
    "expansion_mismatch": (lambda: nn.Sequential(Block(4, 4), nn.Conv2d(8, 8, 1)), _cpu((1, 4, 4, 4))),
    "conv_channels": (lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(8, 8, 1)), _cpu((1, 3, 4, 4))),
    "classifier_mismatch": (lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.Flatten(), nn.Linear(4, 2)), _cpu((1, 3, 4, 4))),
    "residual_add_mismatch": (lambda: nn.Sequential(Block(4, 8)), _cpu((1, 4, 4, 4))),
    "unrecognised": (Reshapes, _cpu((1, 3, 5, 5))),
}
# Which rules answer each failure: its own, the general conv_channels after the specific expansion_mismatch,
# and the fallback.
ANSWERING = {kind: [kind, "unrecognised"] for kind in CASES}
ANSWERING["expansion_mismatch"] = ["expansion_mismatch", "conv_channels", "unrecognised"]
ANSWERING["unrecognised"] = ["unrecognised"]


def _context(kind: str, search: bool = False) -> FailureContext:
    build, inputs = CASES[kind]
    model = build()
    trace = diagnosis._trace(model, inputs)
    assert not trace.ok, kind
    return FailureContext.of(model, inputs, trace, search=search, retrace=diagnosis._trace)


def _snapshot(ctx: FailureContext) -> tuple:
    """What a rule could change: the records (and observers' extras), the context's fields, the model."""
    return (
        copy.deepcopy(ctx.trace.records),
        [getattr(ctx, f.name) for f in dataclasses.fields(ctx) if f.name not in ("trace", "model", "inputs")],
        {k: v.clone() for k, v in ctx.model.state_dict().items()},
        {name: (m.training, len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in ctx.model.named_modules()},
    )


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same place and shape, and the same values where there are values (meta tensors have none)."""
    same_kind = (a.device, a.dtype, a.shape) == (b.device, b.dtype, b.shape)
    return same_kind and (a.is_meta or torch.equal(a, b))


def _assert_same(before: tuple, after: tuple) -> None:
    assert after[0] == before[0]
    assert after[1] == before[1]
    assert after[2].keys() == before[2].keys() and all(_same(after[2][k], before[2][k]) for k in before[2])
    assert after[3] == before[3]


# --- the tests ------------------------------------------------------------------------------------------------


def test_rules_are_tried_in_the_documented_order():
    assert [rule.__name__ for rule in RULES] == ORDER
    assert [rule.__name__ for rule in SILENT_RULES] == SILENT_ORDER


def test_every_diagnosis_kind_has_a_title():
    kinds = set(re.findall(r'Diagnosis\(\s*"(\w+)"', Path(prose.__file__).read_text()))
    assert kinds == set(_KIND_TITLES), kinds ^ set(_KIND_TITLES)


@pytest.mark.parametrize("kind", list(CASES))
def test_each_failure_is_diagnosed_by_its_own_rule(kind):
    assert diagnose(_context(kind)).kind == kind


@pytest.mark.parametrize("kind", list(CASES))
def test_rules_answer_none_on_failures_they_do_not_recognise(kind):
    ctx = _context(kind)
    answering = [rule.__name__ for rule in RULES if rule(ctx) is not None]
    assert answering == ANSWERING[kind]


def test_the_first_rule_that_answers_wins():
    ctx = _context("residual_add_mismatch")
    assert diagnose(ctx, (unrecognised, *RULES)).kind == "unrecognised"
    assert diagnose(ctx).kind == "residual_add_mismatch"


@pytest.mark.parametrize("kind", list(CASES))
def test_rules_change_nothing(kind):
    ctx = _context(kind, search=True)  # the smallest-input search runs too, on a meta copy
    before = _snapshot(ctx)
    for rule in RULES:
        rule(ctx)
    _assert_same(before, _snapshot(ctx))


def test_the_context_is_frozen():
    ctx = _context("unrecognised")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.failing = None  # type: ignore[misc]


def test_the_zero_size_rule_names_the_empty_layer_without_re_pointing_the_context():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d((0, 2)), nn.Flatten())
    inputs = torch.randn(1, 3, 4, 4)
    ctx = FailureContext.of(model, inputs, diagnosis._trace(model, inputs), search=False, retrace=diagnosis._trace)
    before = _snapshot(ctx)
    assert ctx.failing is not None and ctx.failing.name == ""  # the pass stopped in the model's own call
    found = RULES[1](ctx)
    assert found is not None and found.kind == "input_too_small"
    assert found.about is not None and (found.about.name, found.about.type) == ("1", "AdaptiveAvgPool2d")
    assert "1 (AdaptiveAvgPool2d) turns 1x4x4x4 into 1x4x0x2" in found.summary
    _assert_same(before, _snapshot(ctx))
    assert ctx.failing.name == ""
    report = debug_shapes(model, inputs)
    assert report.failing is not None and report.failing.name == "1"  # debug_shapes reports the empty layer
    assert report.context is not None and report.context.name == ""
