"""debug-shapes on the failures of real-world ResNet code: each pattern on a broken model of docs/examples, healthy
SE, pre-activation, WRN and option-A models marked residual block by block, silent problems, --sizes, and the
hints for --weights and for building user models."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from cli_runner import one_error_line, run

from resnet_cli.model import build_model

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # examples are named relative to the repository, as the docs name them


def debug(*args: str, exit_code: int = 1) -> dict:
    result = run("debug-shapes", *args, "--format", "json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)


def problem(*args: str) -> dict:
    report = debug(*args)
    assert report["ok"] is False
    return report["problem"]


# --- failures it recognises, each with the fix at the cause -------------------------------------------------------


def test_batchnorm_built_for_other_channels_is_fixed_at_the_constructor():
    found = problem("docs/examples/bn_channels.py:preact_resnet", "--input", "1x3x32x32")
    assert (found["kind"], found["module"], found["type"]) == ("norm_channels", "layer2.0.bn2", "BatchNorm2d")
    assert "built for 16 channels" in found["diagnosis"] and "from layer2.0.conv1 (Conv2d)" in found["diagnosis"]
    assert "PreActBlock.__init__ (docs/examples/bn_channels.py:16)" in found["fix"]
    assert "`self.bn2 = nn.BatchNorm2d(in_planes)` to `self.bn2 = nn.BatchNorm2d(planes)`" in found["fix"]


def test_cat_of_differently_rounded_branches_names_both_operands_and_the_pool():
    found = problem("docs/examples/cat_mismatch.py:two_branch_net", "--input", "1x3x32x32")
    assert (found["kind"], found["module"]) == ("cat_mismatch", "reduce1")
    assert "1x16x16x16 from reduce1.conv (Sequential); 1x16x17x17 from reduce1.proj (Conv2d)" in found["diagnosis"]
    # closed form: MaxPool2d(3, 2, 1, ceil_mode=True) on 32 gives ceil(31 / 2) + 1 = 17; floor mode 15 + 1 = 16
    assert "reduce1.pool (MaxPool2d) rounds up with ceil_mode=True: 32x32 -> 17x17" in found["diagnosis"]
    assert found["fix"].startswith("Make reduce1.pool round like the other branch: ceil_mode=False gives 16x16")


def test_a_floor_mode_avg_down_shortcut_is_an_input_size_problem_not_a_missing_projection():
    assert debug("docs/examples/avg_down_floor.py:resnet_d", exit_code=0)["ok"]  # 224: every map stays even
    found = problem("docs/examples/avg_down_floor.py:resnet_d", "--input", "1x3x240x240")
    assert (found["kind"], found["module"]) == ("residual_add_mismatch", "layer4.0")
    # 240 / 16 = 15 enters layer4.0: the 3x3/2 conv gives 8, AvgPool2d(2) gives 7
    assert "1x128x8x8 but the shortcut gives 1x128x7x7" in found["diagnosis"]
    assert "multiples of 32 keep every such map even (224x224 and 256x256 run)" in found["diagnosis"]
    assert "ceil_mode=True on layer4.0.downsample.0" in found["fix"] and "Conv2d" not in found["fix"]


def test_a_residual_add_that_only_runs_by_broadcasting_is_a_finding():
    # at 48x48 layer4.0 receives 3x3: the main branch's 3x3/2 conv gives 2x2, AvgPool2d(2) gives 1x1, and the 1x1
    # shortcut broadcasts over the 2x2 map: no error is raised, the result is wrong
    found = problem("docs/examples/avg_down_floor.py:resnet_d", "--input", "1x3x48x48")
    assert (found["kind"], found["module"]) == ("residual_add_mismatch", "layer4.0")
    assert "runs only by broadcasting" in found["diagnosis"] and "1x128x2x2 but the shortcut gives 1x128x1x1" in found["diagnosis"]
    assert "ceil_mode=True on layer4.0.downsample.0" in found["fix"]
    report = debug("docs/examples/avg_down_floor.py:resnet_d", "--sizes", "48,64")
    assert [(r["size"], r["ok"]) for r in report["sizes"]] == [([48, 48], False), ([64, 64], True)]


def test_an_option_a_shortcut_with_the_wrong_pad_is_fixed_at_the_pad():
    found = problem("docs/examples/option_a_pad.py:resnet20", "--input", "1x3x32x32")
    assert (found["kind"], found["module"]) == ("residual_add_mismatch", "layer2.0")
    assert "pads 16 + 16 channels onto the input's 16, where 16 are needed to reach 32" in found["diagnosis"]
    assert "Pad 8 channels on each side (planes // 4 for planes = 32)" in found["fix"]
    assert "docs/examples/option_a_pad.py:31" in found["fix"] and "Conv2d" not in found["fix"]


def test_a_cifar_head_at_the_default_input_asks_for_the_size_it_was_written_for():
    found = problem("docs/examples/cifar_head.py:cifar_resnet")  # no --input: 1x3x224x224
    assert (found["kind"], found["module"]) == ("input_size", "linear")
    assert "It runs at 32x32 (of the square sizes tried)" in found["diagnosis"]
    # 224 -> 56x56 after two stride-2 blocks; avg_pool2d(8) leaves 7x7: 64 x 7 x 7 = 3136 features
    assert "F.avg_pool2d pools a fixed 8x8 window" in found["diagnosis"] and "3136 = 64 x 7x7" in found["diagnosis"]
    assert "a CIFAR stem" in found["diagnosis"]
    assert "--input 1x3x32x32" in found["fix"] and "nn.Linear(3136" not in found["fix"]
    assert debug("docs/examples/cifar_head.py:cifar_resnet", "--input", "1x3x32x32", exit_code=0)["ok"]


def test_without_the_default_input_no_cifar_hint_is_given():
    found = problem("docs/examples/cifar_head.py:cifar_resnet", "--input", "1x3x64x64")
    assert found["kind"] == "input_size" and "CIFAR" not in found["diagnosis"]


def test_a_wrong_split_width_is_fixed_at_the_split():
    found = problem("docs/examples/split_width.py:res2net", "--input", "1x3x32x32")
    assert (found["kind"], found["module"]) == ("split_width", "layer1.0.convs.0")
    # width = 64 * 26 // 64 = 26, conv1 gives 26 x 4 = 104 channels; split by planes // scale = 16
    assert "a 16-channel piece of 104 channels that torch.split at docs/examples/split_width.py:34" in found["diagnosis"]
    assert "Split into pieces of 26 channels (104 = 4 x 26)" in found["fix"]


def test_a_mistake_shared_by_every_se_points_at_the_shared_expression_and_is_not_a_classifier():
    found = problem("docs/examples/se_ratio.py:se_resnet", "--input", "1x3x32x32")
    assert (found["kind"], found["module"]) == ("layer_features", "layer1.0.se.fc2")
    assert "classifier" not in found["diagnosis"].lower()
    assert "from layer1.0.se.fc1 (Linear)" in found["diagnosis"]
    assert "SqueezeExcite.__init__ (docs/examples/se_ratio.py:16)" in found["fix"]
    assert "`self.fc2 = nn.Linear(channels // reduction, channels)`" in found["fix"]
    assert "Every SqueezeExcite is built by this line" in found["fix"]


# --- silent problems: the pass runs, the result is wrong ----------------------------------------------------------


def test_a_batch_size_changed_by_a_view_is_a_finding():
    found = problem("docs/examples/cifar_head.py:cifar_resnet_view", "--input", "1x3x64x64")
    assert found["kind"] == "batch_changed"
    assert (found["file"], found["line"]) == ("docs/examples/cifar_head.py", 44)
    # 64 -> 16x16 map, avg_pool2d(8) -> 2x2: 1x64x2x2 viewed as (-1, 64) is 4x64
    assert "returns 4x10 for a batch of 1" in found["diagnosis"] and "1x64x2x2 into 4x64" in found["diagnosis"]
    assert "x.view(x.size(0), -1)" in found["fix"] and "--input 1x3x32x32" in found["fix"]


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_tensor_made_in_forward_without_a_device_is_a_finding_on_every_device(device):
    found = problem("docs/examples/device_factory.py:scaled_resnet", "--input", "1x3x32x32", "--device", device)
    assert (found["kind"], found["module"]) == ("tensor_without_device", "layer1.0")
    assert (found["file"], found["line"]) == ("docs/examples/device_factory.py", 18)
    assert "torch.ones(...) and no device=" in found["diagnosis"] and "2 such calls" in found["diagnosis"]
    assert "device=x.device" in found["fix"]


def test_a_tensor_made_with_a_device_is_not_flagged(tmp_path):
    path = tmp_path / "ok.py"
    path.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Scaled(nn.Module):
            def forward(self, x):
                return x * torch.ones(x.shape[1], 1, 1, device=x.device) + torch.zeros_like(x)
    """))
    assert debug(f"{path}:Scaled", "--input", "1x3x8x8", exit_code=0)["ok"]


# --- residual blocks recognised by data flow, on healthy real-world models ----------------------------------------


def _marked(reference: str) -> list[tuple[str, str | None]]:
    report = debug(reference, "--input", "1x3x32x32", exit_code=0)
    return [(layer["name"], layer["residual"]["shortcut_from"]) for layer in report["layers"] if layer["residual"]]


def _stages(prefix: str, blocks: int, stages: int, projection: str, first_projected: int = 2) -> list:
    """The expected marks: every block of every stage, a projection in the first block of stages >= `first_projected`."""
    return [(f"{prefix.format(s)}.{b}", f"{prefix.format(s)}.{b}.{projection}" if b == 0 and s >= first_projected else None)
            for s in range(1, stages + 1) for b in range(blocks)]  # fmt: skip


@pytest.mark.parametrize("factory", ["inline_se_resnet", "inline_se_resnet_expand_as"])
def test_se_blocks_that_scale_functionally_are_marked(factory):
    assert _marked(f"tests/models/se_functional.py:{factory}") == _stages("layer{}", 2, 3, "shortcut")


def test_every_pre_activation_block_is_marked_with_its_projection():
    assert _marked("tests/models/preact_resnet.py:PreActResNet18") == _stages("layer{}", 2, 4, "shortcut")


def test_every_wide_resnet_block_is_marked_with_its_projection():
    # WRN-16-4: widths 16 -> 64 already in block1, so every group's first block projects
    assert _marked("tests/models/wide_resnet.py:wrn_16_4") == _stages("block{}.layer", 2, 3, "convShortcut", 1)


def test_every_option_a_block_is_marked_with_its_lambda_shortcut():
    assert _marked("tests/models/cifar_option_a.py:resnet20") == _stages("layer{}", 3, 3, "shortcut")


def test_every_se_resnet_block_is_marked():
    assert _marked("tests/models/se_resnet.py:se_resnet18") == _stages("layer{}", 2, 4, "downsample")


# --- which input sizes are safe -------------------------------------------------------------------------------------


def test_sizes_report_the_ranges_that_run_and_why_the_others_fail():
    report = debug("docs/examples/avg_down_floor.py:resnet_d", "--sizes", "192..256:16")
    # 192, 224, 256 are multiples of 32; 208 and 240 give an odd map (13, 15) at layer4.0
    assert [(r["first"], r["ok"], r["module"]) for r in report["ranges"]] == [
        ([192, 192], True, None), ([208, 208], False, "layer4.0"), ([224, 224], True, None),
        ([240, 240], False, "layer4.0"), ([256, 256], True, None),
    ]  # fmt: skip
    assert {r["kind"] for r in report["ranges"] if not r["ok"]} == {"residual_add_mismatch"}


def test_sizes_group_consecutive_sizes_with_one_outcome():
    report = debug("docs/examples/cifar_head.py:cifar_resnet", "--sizes", "26..30,58..62")
    # the last map is ceil(n / 4); avg_pool2d(8) leaves 1x1 (64 features) for maps of 8..15: n = 29..60. Each
    # failing range gets the diagnosis one --input of its first size would: the model expects another size
    outcomes = [(r["first"][0], r["last"][0], r["count"], r["ok"], r["kind"]) for r in report["ranges"]]
    assert outcomes == [(26, 28, 3, False, "input_too_small"), (29, 30, 2, True, None), (58, 60, 3, True, None),
                        (61, 62, 2, False, "input_size")]  # fmt: skip
    too_small = report["ranges"][0]
    assert "F.avg_pool2d with a fixed 8x8 window" in too_small["diagnosis"]
    assert "at least 29x29" in too_small["fix"] and "F.adaptive_avg_pool2d(x, 1)" in too_small["fix"]
    assert len(report["sizes"]) == 10


def test_every_size_of_a_preset_runs_as_its_spec_says():
    # resnet-cli's ResNets pad every conv and pool, and --avg-down pools with ceil_mode=True: any size >= 1 runs
    report = debug("resnet18", "--avg-down", "--sizes", "1..40", exit_code=0)
    assert report["ok"] and [(r["first"], r["last"]) for r in report["ranges"]] == [([1, 1], [40, 40])]


def test_sizes_take_lists_and_rectangles():
    report = debug("resnet18", "--sizes", "224x240,33,17x9", exit_code=0)
    assert [s["size"] for s in report["sizes"]] == [[224, 240], [33, 33], [17, 9]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "1..5000"], "--sizes 1..5000 gives 5,000 sizes; at most 1,000"),
        (["--sizes", "a..b"], "--sizes 'a..b' is not a list of sizes"),
        (["--sizes", "64..32"], "A <= B"),
        (["--sizes", "0,32"], "every side must be at least 1"),
        (["--sizes", "32", "--depth", "1"], "drop it with --sizes"),
    ],
)
def test_bad_sizes_are_refused_in_one_line(args, message):
    result = run("debug-shapes", "resnet18", *args)
    assert result.exit_code == 2
    assert message in one_error_line(result)


# --- weights and user code -----------------------------------------------------------------------------------------


def test_weights_for_other_classes_name_the_flag_that_fits(tmp_path):
    path = tmp_path / "r18_10.pt"
    torch.save(build_model("resnet18", num_classes=10, device="meta").to_empty(device="cpu").state_dict(), path)
    line = one_error_line(run("summary", "resnet18", "--weights", str(path)))
    assert line.endswith("the file has 10 classes: add --num-classes 10")
    grey = tmp_path / "r18_grey.pt"
    torch.save(build_model("resnet18", in_channels=1, device="meta").to_empty(device="cpu").state_dict(), grey)
    assert one_error_line(run("summary", "resnet18", "--weights", str(grey))).endswith(
        "the file has 1-channel inputs: add --in-channels 1"
    )


def test_weights_for_a_user_model_name_the_factory_argument(tmp_path):
    import sys

    sys.path.insert(0, str(REPO / "tests" / "models"))
    try:
        from cifar_option_a import resnet20
    finally:
        sys.path.pop(0)
    path = tmp_path / "r20_100.pt"
    torch.save(resnet20(num_classes=100).state_dict(), path)
    line = one_error_line(run("summary", "tests/models/cifar_option_a.py:resnet20", "--weights", str(path)))
    assert line.endswith("the file has 100 classes: add --arg num_classes=100")


def test_a_factory_failing_for_other_reasons_is_not_called_again(tmp_path):
    calls = tmp_path / "calls.txt"
    path = tmp_path / "download.py"
    path.write_text(textwrap.dedent(f"""
        def resnet(pretrained=False):
            with open({str(calls)!r}, "a") as f:
                f.write("call\\n")
            raise ConnectionError("cannot download weights: no network")
    """))
    result = run("summary", f"{path}:resnet")
    assert "ConnectionError: cannot download weights" in one_error_line(result)
    assert calls.read_text().count("call") == 1


def test_a_factory_that_needs_real_tensors_is_built_on_the_cpu(tmp_path):
    path = tmp_path / "values.py"
    path.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        def net():
            scale = torch.ones(1)
            width = int(scale.item()) * 8  # a value: fails on meta
            return nn.Conv2d(3, width, 3)
    """))
    assert run("summary", f"{path}:net", "--input", "1x3x8x8").exit_code == 0


def test_a_file_with_relative_imports_is_pointed_at_its_package(tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "blocks.py").write_text("from torch import nn\n\ndef block():\n    return nn.Conv2d(3, 8, 3)\n")
    (package / "net.py").write_text("from .blocks import block\n\ndef net():\n    return block()\n")
    monkeypatch.chdir(tmp_path)
    line = one_error_line(run("summary", "mypkg/net.py:net"))
    assert "load it as part of its package: mypkg.net:net" in line
    assert run("summary", "mypkg.net:net", "--input", "1x3x8x8").exit_code == 0


# --- fixes at the cause for mistakes repeated by a class or a builder ----------------------------------------------

PREACT_CONDITION = """
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.conv2 = nn.Conv2d(planes, self.expansion * planes, 3, stride=stride, padding=1, bias=False)
        if stride != 1:
            self.shortcut = nn.Conv2d(in_planes, self.expansion * planes, 1, stride=stride, bias=False)

    def forward(self, x):
        shortcut = self.shortcut(x) if hasattr(self, "shortcut") else x
        return self.conv2(F.relu(self.conv1(x))) + shortcut


def net():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), Block(16, 16), Block(64, 32, 2))
"""

WRN_STRIDE = """
from torch import nn


class Block(nn.Module):
    def __init__(self, in_planes, out_planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, padding=1, bias=False)
        self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=1, bias=False)

    def forward(self, x):
        return self.conv2(self.conv1(x)) + self.convShortcut(x)


def net():
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), Block(16, 32, 2), Block(32, 64, 2))
"""


def _model(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(text))
    return f"{tmp_path / name}.py:net"


def test_a_projection_built_under_too_narrow_a_condition_is_fixed_at_the_condition(tmp_path):
    found = problem(_model(tmp_path, "preact_condition", PREACT_CONDITION), "--input", "1x3x16x16")
    assert (found["kind"], found["module"]) == ("residual_add_mismatch", "1")
    # block 1 goes 16 -> 64 channels at stride 1: `if stride != 1` leaves it without self.shortcut, block 2 has one
    assert "Other Block blocks (2) have a projection (self.shortcut)" in found["diagnosis"]
    assert "`if stride != 1 or in_planes != self.expansion * planes:`" in found["fix"]


def test_a_projection_with_the_wrong_stride_is_fixed_with_the_main_branch_stride(tmp_path):
    found = problem(_model(tmp_path, "wrn_stride", WRN_STRIDE), "--input", "1x3x16x16")
    assert (found["kind"], found["module"]) == ("residual_add_mismatch", "1")
    assert "built with stride 1, while conv1 in the same block strides by 2" in found["diagnosis"]
    assert "build the projection's conv with `stride=stride`, as conv1 is built" in found["fix"]
    assert "nn.Sequential" not in found["fix"]  # no new design: the projection is fixed where it is built


def test_stack_of_branches_of_other_widths_suggests_cat(tmp_path):
    path = _model(tmp_path, "stack", """
        import torch
        from torch import nn

        class TwoPath(nn.Module):
            def __init__(self):
                super().__init__()
                self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 48, 3, padding=1)

            def forward(self, x):
                return torch.stack([self.a(x), self.b(x)], 1)

        def net():
            return TwoPath()
    """)
    found = problem(path, "--input", "1x3x8x8")
    assert found["kind"] == "cat_mismatch" and "stacks tensors that must have one shape" in found["diagnosis"]
    assert "torch.cat([...], dim=1), which gives 1x64x8x8" in found["fix"]


def test_a_conv_after_a_sum_of_split_pieces_is_not_blamed_on_the_split(tmp_path):
    path = _model(tmp_path, "split_sum", """
        import torch
        import torch.nn.functional as F
        from torch import nn

        class SplitAttention(nn.Module):
            def __init__(self, channels=32, radix=2):
                super().__init__()
                self.conv = nn.Conv2d(3, channels * radix, 3, padding=1)
                self.fc1 = nn.Conv2d(channels * radix, 8, 1)  # receives `channels` after the sum of the pieces

            def forward(self, x):
                pieces = torch.split(self.conv(x), 32, 1)
                return self.fc1(F.adaptive_avg_pool2d(sum(pieces), 1))

        def net():
            return SplitAttention()
    """)
    found = problem(path, "--input", "1x3x8x8")
    assert found["kind"] == "conv_channels"
    assert "change `self.fc1 = nn.Conv2d(channels * radix, 8, 1)` to `self.fc1 = nn.Conv2d(32, 8, 1)`" in found["fix"]


def test_chunk_is_fixed_with_a_number_of_pieces(tmp_path):
    path = _model(tmp_path, "chunk", """
        import torch
        from torch import nn

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = nn.Conv2d(3, 24, 1)
                self.convs = nn.ModuleList(nn.Conv2d(6, 6, 3, padding=1) for _ in range(4))

            def forward(self, x):
                pieces = torch.chunk(self.conv1(x), 6, 1)  # 6 pieces of 4, where the convs take 6 channels
                return torch.cat([conv(p) for conv, p in zip(self.convs, pieces)], 1)

        def net():
            return Block()
    """)
    found = problem(path, "--input", "1x3x8x8")
    assert found["kind"] == "split_width"
    assert "Cut the 24 channels into 4 pieces of 6 in the torch.chunk call" in found["fix"]


def test_a_classifier_fed_a_pooled_unflattened_map_is_told_to_flatten(tmp_path):
    path = _model(tmp_path, "no_flatten", """
        from torch import nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 16, 3)
                self.avgpool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(16, 10)

            def forward(self, x):
                return self.fc(self.avgpool(self.conv(x)))

        def net():
            return Net()
    """)
    found = problem(path, "--input", "1x3x8x8")
    assert found["kind"] == "classifier_mismatch" and "pooled to 1x1 but not flattened" in found["diagnosis"]
    assert "torch.flatten(x, 1)" in found["fix"] and "in_features 16 is then right" in found["fix"]


def test_a_pool_without_padding_beside_padded_convs_is_given_padding(tmp_path):
    path = _model(tmp_path, "unpadded", """
        import torch
        from torch import nn

        class Block(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3, padding=1)
                self.pool = nn.AvgPool2d(3, stride=1)  # Res2Net's stage pool has padding=1

            def forward(self, x):
                return torch.cat([self.conv(x), self.pool(x)], 1)

        def net():
            return Block()
    """)
    found = problem(path, "--input", "1x3x16x16")
    assert found["kind"] == "cat_mismatch"
    # closed form: AvgPool2d(3, 1) gives 16 - 3 + 1 = 14; with padding 1, 16
    assert "pool (AvgPool2d) has no padding: it shrinks 16x16 to 14x14" in found["diagnosis"]
    assert found["fix"] == "Give pool padding=1 (kernel 3): it then gives 16x16."


def test_an_se_layer_built_for_another_width_is_fixed_where_the_block_builds_it(tmp_path):
    path = _model(tmp_path, "se_width", """
        from torch import nn

        class SE(nn.Module):
            def __init__(self, channels, reduction=4):
                super().__init__()
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(),
                                        nn.Linear(channels // reduction, channels), nn.Sigmoid())

            def forward(self, x):
                return x * self.fc(self.pool(x).flatten(1))[:, :, None, None]

        class Bottleneck(nn.Module):
            def __init__(self, planes):
                super().__init__()
                self.conv1 = nn.Conv2d(planes * 4, planes, 1)
                self.conv2 = nn.Conv2d(planes, planes * 4, 1)
                self.se = SE(planes)  # applied to planes * 4 channels

            def forward(self, x):
                return self.se(self.conv2(self.conv1(x))) + x

        def net():
            return Bottleneck(8)
    """)
    found = problem(path, "--input", "1x32x8x8")
    assert (found["kind"], found["module"]) == ("layer_features", "se.fc.0")
    assert "first layer of se (SE), which receives 1x32x8x8 from conv2 (Conv2d) but was built for 8" in found["diagnosis"]
    assert "`self.se = SE(planes)` must get the size that builds conv2 (`nn.Conv2d(planes, planes * 4, 1)`" in found["fix"]


def test_a_functional_pool_that_rounds_the_other_way_is_found_too(tmp_path):
    # the same mistake as docs/examples/cat_mismatch.py, with F.max_pool2d in forward instead of nn.MaxPool2d
    path = _model(tmp_path, "functional_pool", """
        import torch
        import torch.nn.functional as F
        from torch import nn

        class Reduction(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)

            def forward(self, x):
                return torch.cat([self.conv(x), F.max_pool2d(x, 3, 2, 1, ceil_mode=True)], 1)

        def net():
            return Reduction()
    """)
    found = problem(path, "--input", "1x3x32x32")
    assert found["kind"] == "cat_mismatch"
    # closed form: ceil((32 + 2 - 3) / 2) + 1 = 17 with ceil_mode, 16 without, as the strided conv gives
    assert "F.max_pool2d in the model (Reduction) rounds up with ceil_mode=True: 32x32 -> 17x17" in found["diagnosis"]
    assert found["fix"] == "Make F.max_pool2d in the model (Reduction) round like the other branch: ceil_mode=False gives 16x16."
