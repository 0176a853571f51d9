"""debug-shapes: every diagnosis on a broken model from docs/examples, the healthy tree, hooks removed, exit codes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cli_runner
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from typer.testing import Result

from resnet_cli import build_model
from resnet_cli.analysis.diagnosis import debug_shapes
from resnet_cli.spec import ResNetSpec

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "docs" / "examples"


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # examples are named relative to the repository, as the docs name them


def run(*args: str, width: int = 100) -> Result:
    return cli_runner.run("debug-shapes", *args, env={"COLUMNS": str(width), "NO_COLOR": "1"})


def problem(*args: str, device: str = "meta") -> dict:
    result = run(*args, "--device", device, "--format", "json")
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is False
    return report["problem"]


def small(name: str) -> str:
    return f"docs/examples/{name}.py:small_resnet"


def bottleneck(name: str) -> str:
    return f"docs/examples/{name}.py:bottleneck_resnet"


# --- one test per diagnosis, each on a broken model of docs/examples ------------------------------------------


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_residual_add_mismatch_names_both_shapes_and_the_projection(device):
    found = problem(small("residual_add"), "--input", "1x3x32x32", device=device)
    assert found["kind"] == "residual_add_mismatch"
    assert (found["module"], found["type"]) == ("layer2.0", "BasicBlock")
    assert (found["file"], found["line"]) == ("docs/examples/residual_add.py", 22)
    assert found["code"].startswith("out = out + x")
    assert "1x32x16x16" in found["diagnosis"] and "1x16x32x32" in found["diagnosis"]
    assert "nn.Conv2d(16, 32, kernel_size=1, stride=2, bias=False), nn.BatchNorm2d(32)" in found["fix"]
    assert found["input_shapes"] == [[1, 16, 32, 32]]
    assert [c["name"] for c in found["children"]][-1] == "layer2.0.bn2"


def test_expansion_mismatch_names_the_block_and_its_output_channels():
    found = problem(bottleneck("expansion_mismatch"), "--input", "1x3x64x64")
    assert found["kind"] == "expansion_mismatch"
    assert found["module"] == "layer1.1.conv1"
    assert "layer1.0 (Bottleneck) outputs 256 channels" in found["diagnosis"]
    # two blocks of one stage: the fix is the stage builder's in-channels, not a literal for layer1.1.conv1 alone
    assert "the stage builder gives every block after the first the wrong input channels" in found["fix"]
    assert "planes x expansion = 256" in found["fix"] and "not 64" in found["fix"]
    assert found["line"] == 28


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_conv_with_wrong_channels_names_the_module_that_made_them(device):
    found = problem(small("conv_channels"), "--input", "1x3x32x32", device=device)
    assert found["kind"] == "conv_channels"
    assert found["module"] == "layer2.0.conv2"
    assert "expects 16 input channels but receives 1x32x16x16 from layer2.0.relu (ReLU)" in found["diagnosis"]
    assert "set by layer2.0.conv1 (Conv2d) Conv2d(16, 32, 3, stride=2, padding=1, bias=False)" in found["diagnosis"]
    # conv1 and conv2 are built in the same __init__: the fix is conv2's constructor, with conv1's output expression
    assert "BasicBlock.__init__ (docs/examples/conv_channels.py:15)" in found["fix"]
    assert "to `self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)`" in found["fix"]
    # a failing leaf is shown among the earlier children of its block
    assert found["context"] == "layer2.0"
    assert [c["name"] for c in found["children"]] == ["layer2.0.conv1", "layer2.0.bn1", "layer2.0.relu"]


def test_classifier_mismatch_gives_the_right_in_features():
    found = problem(bottleneck("classifier_mismatch"), "--input", "1x3x64x64")
    assert found["kind"] == "classifier_mismatch"
    assert (found["module"], found["type"]) == ("fc", "Linear")
    assert "expects 128 features but receives 1x512" in found["diagnosis"]
    assert "layer2.1 (Bottleneck), outputs 512 channels" in found["diagnosis"]
    assert found["fix"] == "Use nn.Linear(512, 10) for fc."


def test_classifier_on_an_unpooled_map_says_to_pool_first():
    class Unpooled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(x), 1))

    report = debug_shapes(Unpooled(), torch.randn(1, 3, 4, 4))
    assert report.diagnosis.kind == "classifier_mismatch"
    assert "128 = 8 x 4 x 4" in report.diagnosis.summary
    assert "nn.AdaptiveAvgPool2d(1)" in report.diagnosis.fix and "nn.Linear(8, 10)" in report.diagnosis.fix


def test_missing_attribute_points_at_the_line_and_proposes_the_shortcut():
    found = problem(small("missing_attribute"), "--input", "1x3x32x32")
    assert found["kind"] == "missing_attribute"
    assert (found["module"], found["type"]) == ("layer1.0", "SEBlock")
    assert found["error"] == "AttributeError: 'SEBlock' object has no attribute 'downsample'"
    assert found["code"] == "if self.downsample is not None:"
    assert "SEBlock.__init__ never sets it" in found["diagnosis"]
    assert "self.downsample: nn.Identity()" in found["fix"] and "so this one is nn.Identity()" in found["fix"]


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_dtype_mismatch_between_parameters_and_input(device):
    # meta kernels let float32 x float64 through F.linear; debug-shapes checks it as a real device would
    found = problem(small("dtype_mismatch"), "--input", "1x3x32x32", device=device)
    assert found["kind"] == "dtype_mismatch"
    assert found["module"] == "fc"
    assert "holds float64 parameters but receives a float32 input" in found["diagnosis"]
    assert ".double()" in found["fix"]


def test_input_dtype_differs_from_the_model():
    found = problem(small("healthy_resnet"), "--input", "1x3x32x32", "--dtype", "float16", device="cpu")
    assert found["kind"] == "dtype_mismatch"
    assert found["module"] == "conv1"


def test_device_mismatch_from_a_plain_tensor_attribute():
    found = problem("docs/examples/device_mismatch.py:model", "--input", "1x3x32x32")
    assert found["kind"] == "device_mismatch"
    assert (found["module"], found["type"]) == ("normalize", "Normalize")
    assert "self.mean, self.std" in found["diagnosis"]
    assert "self.register_buffer('mean', ...)" in found["fix"]


def test_input_too_small_names_the_layer_and_the_smallest_input():
    found = problem(small("too_small"), "--input", "1x3x16x16")
    assert found["kind"] == "input_too_small"
    assert (found["module"], found["type"]) == ("avgpool", "AvgPool2d")
    assert "receives 1x64x4x4" in found["diagnosis"]
    assert "at least 29x29 (--input 1x3x29x29)" in found["fix"]
    assert "nn.AdaptiveAvgPool2d(1)" in found["fix"]
    assert run(small("too_small"), "--input", "1x3x29x29").exit_code == 0
    assert run(small("too_small"), "--input", "1x3x28x28").exit_code == 1


def test_unrecognised_error_still_reports_location_and_shapes():
    class Reshapes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)

        def forward(self, x):
            return self.conv(x).view(-1, 7)

    report = debug_shapes(Reshapes(), torch.randn(1, 3, 5, 5))
    assert report.diagnosis.kind == "unrecognised"
    assert report.failing.type == "Reshapes" and report.location.code == "return self.conv(x).view(-1, 7)"
    assert [c.output_shape for c in report.children] == [(1, 8, 5, 5)]


class _Bottleneck(nn.Module):
    """A torchvision-style bottleneck whose shortcut can be built wrong: `short_in` / `short_out` channels."""

    def __init__(self, in_ch: int, planes: int, stride: int, short_in: int, short_out: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.downsample = nn.Sequential(nn.Conv2d(short_in, short_out, 1, stride=stride, bias=False),
                                        nn.BatchNorm2d(short_out))  # fmt: skip

    def forward(self, x):
        out = self.conv3(self.conv2(self.conv1(x)))
        identity = self.downsample(x)
        out += identity
        return out


def test_projection_with_the_wrong_output_channels_is_named():
    stage = nn.Sequential(_Bottleneck(64, 64, 1, 64, 256), _Bottleneck(256, 128, 2, 256, 128))
    report = debug_shapes(stage, torch.randn(1, 64, 16, 16))
    assert report.diagnosis.kind == "residual_add_mismatch"
    assert report.failing.name == "1"
    assert "the shortcut 1.downsample gives 1x128x8x8" in report.diagnosis.summary
    assert "main branch (ending in 1.conv3) gives 1x512x8x8" in report.diagnosis.summary
    assert "nn.Conv2d(256, 512, kernel_size=1, stride=2, bias=False), nn.BatchNorm2d(512)" in report.diagnosis.fix


def test_shortcut_conv_fed_a_blocks_output_is_an_expansion_mismatch():
    with torch.device("meta"):
        stage = nn.Sequential(_Bottleneck(64, 64, 1, 64, 256), _Bottleneck(256, 128, 2, 128, 512))
    report = debug_shapes(stage, torch.empty(1, 64, 16, 16, device="meta"))
    assert report.diagnosis.kind == "expansion_mismatch"
    assert report.failing.name == "1.downsample.0"
    assert "0 (_Bottleneck) outputs 256 channels" in report.diagnosis.summary


def test_attribute_error_on_a_tensor_is_not_a_missing_module_attribute():
    class Typo(nn.Module):
        def forward(self, x):
            return x.shapee

    report = debug_shapes(Typo(), torch.randn(1, 3, 4, 4))
    assert report.diagnosis.kind == "unrecognised"
    assert report.error == "AttributeError: 'Tensor' object has no attribute 'shapee'"


def test_forward_that_reads_values_is_sent_to_the_cpu():
    class ReadsValues(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            scale = self.conv(x).abs().max().item()
            return x / scale

    with torch.device("meta"):
        model = ReadsValues()
    report = debug_shapes(model, torch.empty(1, 3, 4, 4, device="meta"))
    assert report.diagnosis.kind == "needs_real_tensors"
    assert "--device cpu" in report.diagnosis.fix
    assert debug_shapes(ReadsValues(), torch.randn(1, 3, 4, 4)).ok


# --- the healthy tree ---------------------------------------------------------------------------------------


def test_healthy_model_shows_the_tree_and_no_shape_problems():
    result = run(small("healthy_resnet"), "--input", "1x3x32x32", width=200)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1] == "no shape problems"
    assert any("layer2.0 BasicBlock  1x16x32x32 -> 1x32x16x16  channels 16->32, spatial 32x32->16x16" in line
               and "[residual: downsample]" in line for line in lines)  # fmt: skip
    assert any("layer1.0 BasicBlock" in line and "[residual: identity]" in line for line in lines)
    assert any("fc Linear  1x64 -> 1x10  features 64->10" in line for line in lines)


def test_default_model_is_resnet50_with_its_16_residual_blocks():
    result = run("--input", "1x3x224x224", "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["message"] == "no shape problems"
    blocks = [layer for layer in report["layers"] if layer["residual"]]
    assert len(blocks) == 16
    first = blocks[0]
    assert first["name"] == "layer1.0" and first["residual"]["shortcut_from"] == "layer1.0.downsample"
    assert first["residual"]["main"] == first["residual"]["shortcut"] == [1, 256, 56, 56]
    assert blocks[1]["residual"]["shortcut_from"] is None  # identity shortcut


@settings(max_examples=12, deadline=None)
@given(
    block=st.sampled_from(["basic", "bottleneck"]),
    layers=st.lists(st.integers(1, 2), min_size=1, max_size=4),
    shortcut=st.sampled_from(["A", "B", "C"]),
    se=st.booleans(),
    stem=st.sampled_from(["imagenet", "deep", "cifar"]),
    preact=st.booleans(),
)
def test_every_built_block_is_marked_residual(block, layers, shortcut, se, stem, preact):
    spec = ResNetSpec(block=block, layers=tuple(layers), widths=tuple(16 * 2**i for i in range(len(layers))),
                      shortcut=shortcut, se=se, stem=stem, preact=preact)  # fmt: skip
    model = build_model(spec, device="meta")
    report = debug_shapes(model, torch.empty(1, 3, 64, 64, device="meta"))
    assert report.ok
    marked = [r.name for r in report.records if "residual" in r.extra]
    assert marked == [f"layer{s + 1}.{b}" for s, n in enumerate(layers) for b in range(n)]


def test_residual_without_a_named_shortcut_is_recognised():
    class Both(nn.Module):  # shortcut(x) + body(x): the cheaper branch is the shortcut
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.ReLU())
            self.skip = nn.Conv2d(4, 8, 1)

        def forward(self, x):
            return self.skip(x) + self.body(x)

    class Inline(nn.Module):  # x + f(x)
        def __init__(self) -> None:
            super().__init__()
            self.f = nn.Conv2d(4, 4, 3, padding=1)

        def forward(self, x):
            return x + self.f(x)

    x = torch.empty(1, 4, 8, 8, device="meta")
    both = debug_shapes(Both(), x).records[0].extra["residual"]
    assert (both["shortcut_from"], both["main_from"]) == ("skip", "body")
    inline = debug_shapes(Inline(), x).records[0].extra["residual"]
    assert (inline["shortcut_from"], inline["main_from"]) == (None, "f")


def test_depth_limits_the_tree():
    shallow = run("resnet18", "--depth", "1").stdout
    assert "layer1 Sequential" in shallow and "layer1.0" not in shallow
    assert "layer1.0 BasicBlock" in run("resnet18", "--depth", "2").stdout
    assert run("resnet18", "--depth", "-1").exit_code == 2


def test_markdown_carries_the_diagnosis_and_csv_the_rows():
    markdown = run(small("residual_add"), "--input", "1x3x32x32", "--format", "markdown")
    assert markdown.exit_code == 1
    assert "Problem: residual add mismatch" in markdown.stdout
    assert "Fix: Give layer2.0 (BasicBlock) a projection shortcut" in markdown.stdout
    csv = run(small("residual_add"), "--input", "1x3x32x32", "--format", "csv")
    assert csv.exit_code == 1
    assert 'layer2.0,BasicBlock,1x16x32x32,(failed),,residual: identity' in csv.stdout.splitlines()


def test_broken_table_report_has_every_part():
    out = run(small("residual_add"), "--input", "1x3x32x32").stdout
    for label in ("Problem", "Module", "Inside", "Code", "Error", "Shapes", "Diagnosis", "Fix"):
        assert re.search(rf"^{label} ", out, re.M), label
    assert "docs/examples/residual_add.py:22 in forward" in out


# --- the model is left as it was found ----------------------------------------------------------------------


def _state(model: nn.Module) -> tuple:
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        {m: m.training for m in model.modules()},
        [(len(m._forward_hooks), len(m._forward_pre_hooks)) for m in model.modules()],
        {p.device.type for p in model.parameters()},
    )


def _assert_unchanged(model: nn.Module, before: tuple) -> None:
    state, modes, hooks, devices = _state(model)
    assert state.keys() == before[0].keys()
    assert all(torch.equal(state[k], before[0][k]) for k in state)
    assert modes == before[1]
    assert hooks == before[2] and all(h == (0, 0) for h in hooks)
    assert devices == before[3] == {"cpu"}


@pytest.mark.parametrize(
    "example", ["healthy_resnet", "residual_add", "conv_channels", "missing_attribute", "dtype_mismatch"]
)
def test_model_is_unchanged_after_success_and_failure(example):
    import runpy

    model = runpy.run_path(str(EXAMPLES / f"{example}.py"))["small_resnet"]()
    model.train()
    model.layer1.eval()  # a mixed mode must come back as it was
    before = _state(model)
    report = debug_shapes(model, torch.randn(2, 3, 32, 32))
    assert report.ok is (example == "healthy_resnet")
    _assert_unchanged(model, before)


def test_user_hooks_survive():
    model = build_model("resnet18")
    handle = model.layer1.register_forward_hook(lambda *a: None)
    debug_shapes(model, torch.randn(1, 3, 32, 32))
    assert list(model.layer1._forward_hooks) == [handle.id]
    assert all(not m._forward_pre_hooks for m in model.modules())


# --- exit codes and errors at the boundary ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["docs/examples/nope.py:small_resnet"], "no such file docs/examples/nope.py"),
        ([small("healthy_resnet").replace("small_resnet", "big_resnet")], "has no attribute 'big_resnet'"),
        (["resnet18", "--input", "1x4x32x32"], "--input 1x4x32x32 has 4 channels"),
        ([small("healthy_resnet"), "--layers", "2,2"], "--layers changes a preset"),
        (["resnet18", "--arg", "num_classes=3"], "MODEL 'resnet18' is a preset"),
        ([small("healthy_resnet"), "--arg", "num_classes"], "write key=value"),
        ([small("healthy_resnet"), "--arg", "depth=3"], "got an unexpected keyword argument 'depth'"),
    ],
)
def test_boundary_errors_exit_2_with_one_line(args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert result.stderr.startswith("Error: ") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_exit_codes_0_1_2():
    assert run(small("healthy_resnet")).exit_code == 0
    assert run(small("residual_add")).exit_code == 1
    assert run("docs/examples/missing.py:f").exit_code == 2


EXITS_IN_FORWARD = '''
import sys

from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        sys.exit(3)


def build():
    return nn.Sequential(nn.Conv2d(3, 3, 1), Block())
'''


@pytest.fixture
def exits_in_forward(tmp_path: Path) -> str:
    path = tmp_path / "exits_in_forward.py"
    path.write_text(EXITS_IN_FORWARD)
    return f"{path}:build"


def test_sys_exit_in_forward_is_a_finding_exit_1(exits_in_forward):
    found = problem(exits_in_forward, "--input", "1x3x8x8")
    assert (found["kind"], found["module"], found["type"]) == ("sys_exit", "1", "Block")
    assert found["error"] == "ForwardExit: called sys.exit(3)"
    assert found["file"].endswith("exits_in_forward.py") and found["line"] == 13


@pytest.mark.parametrize("command", [["summary"], ["flops"], ["compare", "resnet18"]])
def test_sys_exit_in_forward_elsewhere_is_one_line_exit_2(exits_in_forward, command):
    result = cli_runner.run(*command, exits_in_forward, "--input", "1x3x8x8")
    assert result.exit_code == 2, result.output
    assert "called sys.exit(3)" in cli_runner.one_error_line(result)
