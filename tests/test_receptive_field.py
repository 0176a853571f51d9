"""Receptive field, effective stride and output stride: published values, a closed form from the spec written here
(not the builder), the residual and cat max rule on small models, and what is not followed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch
from cli_runner import run, run_json
from hypothesis import HealthCheck, given, settings
from spec_strategies import valid_specs
from torch import nn

from resnet_cli.analysis.receptive_field import UNKNOWN, Field, receptive_fields
from resnet_cli.model import build_model
from resnet_cli.spec import PRESETS, ResNetSpec
from resnet_cli.trace import make_input, trace_model

REPO = Path(__file__).resolve().parent.parent


def closed_form(spec: ResNetSpec) -> list[tuple[int, int]]:
    """(receptive field, jump) after each stage, from the architecture as docs/spec.md describes it (Araujo et al.
    2019: r += (k_eff - 1) j, then j *= s); the main branch has the largest field of a block's paths."""
    r, j = 1, 1

    def conv(kernel: int, stride: int = 1, dilation: int = 1) -> None:
        nonlocal r, j
        r += dilation * (kernel - 1) * j
        j *= stride

    if spec.stem == "imagenet":
        conv(7, 2)
        conv(3, 2)  # max-pool 3x3/2
    elif spec.stem == "deep":
        conv(3, 2), conv(3), conv(3), conv(3, 2)
    else:
        conv(3)
    stages, dilation = [], 1
    for index, blocks in enumerate(spec.layers):
        stride, first_dilation = (1 if index == 0 else 2), dilation
        if index + 1 in spec.dilate_stages:
            dilation, stride = dilation * stride, 1
        for block in range(blocks):
            d, s = (first_dilation, stride) if block == 0 else (dilation, 1)
            if spec.block == "basic":
                conv(3, s, d), conv(3, 1, d)
            elif spec.stride_on == "1x1":
                conv(1, s), conv(3, 1, d), conv(1)
            else:
                conv(1), conv(3, s, d), conv(1)
        stages.append((r, j))
    return stages


def traced_stages(spec: ResNetSpec, size: int = 64) -> list[tuple[int, int]]:
    model = build_model(spec, device="meta")
    trace = trace_model(model, make_input((1, spec.in_channels, size, size)))
    fields = receptive_fields(trace)
    stages = [r for r in trace.records if r.depth == 1 and r.name.startswith("layer")]
    return [(fields.of(r).rf[0], fields.of(r).jump[0]) for r in stages]


@pytest.mark.parametrize(
    ("args", "rf", "stride"),
    [
        (["resnet18"], 435, 32),  # layer4's field; the published ResNet-18 value
        (["resnet50"], 427, 32),  # stride on the 3x3 (torchvision v1.5)
        (["resnet50", "--stride-on", "1x1"], 483, 32),  # the paper's placement, the published ResNet-50 v1 value
        (["resnet50", "--dilate-stages", "4"], 427, 16),  # a 3x3 dilated 2 at jump 16 sees what a 3x3 at 32 sees
        (["resnet50", "--dilate-stages", "3,4"], 427, 8),
    ],
)
def test_published_receptive_fields_and_output_strides(args, rf, stride):
    data = run_json("summary", *args, "--rf", "--depth", "1")
    assert (data["receptive_field"], data["output_stride"]) == ([rf, rf], stride)
    layer4 = next(layer for layer in data["layers"] if layer["name"] == "layer4")
    assert layer4["receptive_field"] == [rf, rf] and layer4["effective_stride"] == [stride, stride]
    assert next(layer for layer in data["layers"] if layer["name"] == "avgpool")["receptive_field"] == "global"


@pytest.mark.parametrize("name", [p for p in PRESETS if p not in ("resnet1202", "preact_resnet1001")])
def test_every_preset_matches_the_closed_form(name):
    spec = PRESETS[name].spec
    assert traced_stages(spec) == closed_form(spec)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=valid_specs())
def test_drawn_specs_match_the_closed_form(spec):
    spec = spec.replace(se=False)  # an SE gate pools globally: its block's field is the whole input
    assert traced_stages(spec) == closed_form(spec)


def test_se_makes_a_block_see_the_whole_input():
    data = run_json("summary", "resnet18", "--se", "--rf", "--depth", "2")
    assert next(layer for layer in data["layers"] if layer["name"] == "layer1.0")["receptive_field"] == "global"


def test_a_user_file_gets_the_same_fields_as_the_preset():
    mine = run_json("summary", str(REPO / "tests/models/torchvision_resnet.py") + ":resnet50", "--rf", "--depth", "1")
    preset = run_json("summary", "resnet50", "--rf", "--depth", "1")
    assert (mine["receptive_field"], mine["output_stride"]) == (preset["receptive_field"], preset["output_stride"])


class TwoPaths(nn.Module):
    """A residual add whose shortcut sees more than its main branch, and a cat of a 3x3 and a 7x7 path."""

    def __init__(self) -> None:
        super().__init__()
        self.main = nn.Conv2d(3, 8, 1)
        self.shortcut = nn.Conv2d(3, 8, 5, padding=2)
        self.small = nn.Conv2d(8, 4, 3, padding=1)
        self.large = nn.Conv2d(8, 4, 7, stride=2, padding=3)

    def forward(self, x):
        x = self.main(x) + self.shortcut(x)  # field: max(1, 5) = 5
        small = nn.functional.max_pool2d(self.small(x), 2)  # 5 + 2 = 7, then + 1 x 1 = 8, jump 2
        return torch.cat([small, self.large(x)], 1)  # max(8, 5 + 6 = 11) = 11, jump 2


def _fields(model: nn.Module, shape: tuple[int, ...] = (1, 3, 16, 16)):
    trace = trace_model(model, make_input(shape))
    fields = receptive_fields(trace)
    return trace, fields


def test_paths_meet_at_the_maximum():
    trace, fields = _fields(TwoPaths())
    by_name = {r.name: fields.of(r) for r in trace.records}
    assert by_name["shortcut"].rf == (5, 5) and by_name["main"].rf == (1, 1)
    assert by_name[""].rf == (11, 11) and by_name[""].jump == (2, 2)


def test_an_operator_not_followed_is_named_and_not_guessed():
    class Upsampling(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(nn.functional.interpolate(x, scale_factor=2))

    trace, fields = _fields(Upsampling())
    assert fields.of(trace.records[0]) is UNKNOWN
    assert list(fields.unknown_ops) == ["upsample_nearest2d"]


def test_the_table_shows_rf_and_stride_columns(tmp_path):
    result = run("summary", "resnet20", "--rf", "--depth", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[1].rstrip().endswith("RF/stride")
    # resnet20 (CIFAR): 3x3 stem, 3 blocks of two 3x3 per stage; layer3's field is 81 at jump 4
    assert any(line.startswith("layer3") and line.rstrip().endswith("81/4") for line in lines)
    assert "Output stride              4" in result.stdout


def test_the_totals_say_global_after_se_and_unknown_after_an_operator_not_followed():
    se = run_json("summary", "resnet18", "--se", "--rf", "--depth", "0")
    assert (se["receptive_field"], se["output_stride"]) == ("global", 32)
    small = run_json("summary", "resnet18", "--rf", "--depth", "0", "--input", "1x3x32x32")
    assert (small["receptive_field"], small["output_stride"]) == ([435, 435], 32)  # layer4's map is 1x1 here

    class Upsampling(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, stride=2, padding=1)

        def forward(self, x):
            return self.conv(nn.functional.interpolate(self.conv(x), scale_factor=2))

    trace, fields = _fields(Upsampling())
    assert fields.backbone is None and fields.output_stride is None


def test_every_layer_name_stays_whole_with_rf_on_80_columns():
    result = run("summary", "resnet18", "--depth", "3", "--rf")
    names = [line.split()[0] for line in result.stdout.splitlines() if line.strip().startswith("layer2.0.")]
    assert names[:4] == ["layer2.0.conv1", "layer2.0.bn1", "layer2.0.relu1", "layer2.0.dropout"] or \
        names[:3] == ["layer2.0.conv1", "layer2.0.bn1", "layer2.0.relu1"]
    assert all(line.rstrip().endswith("/8") for line in result.stdout.splitlines() if "layer2.0.conv2" in line)


def test_without_rf_the_summary_is_unchanged():
    data = run_json("summary", "resnet18", "--depth", "1")
    assert "receptive_field" not in data and "receptive_field" not in data["layers"][0]


def test_docs_worked_example_values_are_the_closed_form():
    text = (REPO / "docs" / "receptive-field.md").read_text()
    for rf, jump in closed_form(PRESETS["resnet18"].spec):
        assert f"| {rf} | {jump} |" in textwrap.dedent(text)


def test_table_has_the_receptive_field_of_every_row():
    data = run_json("table", "resnet18", "resnet50")
    for model, name in zip(data["models"], ("resnet18", "resnet50"), strict=True):
        expected = closed_form(PRESETS[name].spec)
        rows = model["row_receptive_fields"]
        assert [rows[f"conv{i + 2}_x"] for i in range(4)] == [rf for rf, _ in expected]
        assert (rows["conv1"], rows["maxpool"]) == (7, 11)  # 7x7/2, then + 2 x 2
        assert (model["receptive_field"], model["output_stride"]) == (expected[-1][0], 32)


def test_a_mean_over_channels_keeps_the_field():
    class SpatialAttention(nn.Module):  # CBAM's spatial gate: channel mean and max, a 7x7 conv, a sigmoid
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 1, 7, padding=3)

        def forward(self, x):
            pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], 1)
            return x * torch.sigmoid(self.conv(pooled))

    trace, fields = _fields(SpatialAttention())
    assert fields.of(trace.records[0]) == Field((7, 7), (1, 1), whole=False)  # the 7x7 conv, at jump 1
    assert fields.unknown_ops == {}
