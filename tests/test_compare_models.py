"""`compare` with the user's own models: is my ResNet-50 the real one? Verdicts, first divergence, state_dict, blocks.

Expected values come from outside the code under test: torchvision's published parameter counts, the known
difference between ResNet v1 (stride on the first 1x1) and v1.5 (stride on the 3x3), and closed forms.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_runner import run, run_json

from resnet_cli.analysis.compare import split_user_operand

REPO = Path(__file__).resolve().parent.parent
TV = "tests/models/torchvision_resnet.py:"
RESNET50_PARAMS = 25_557_032  # torchvision's published figure
# resnet50's state_dict: 53 convs (weight), 53 BNs (weight, bias, running_mean, running_var, num_batches_tracked), fc
RESNET50_KEYS = 53 + 53 * 5 + 2
STEM_KEYS = 1 + 5  # conv1.weight and bn1's five entries: the only keys outside the stages and the classifier


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # corpus files are named relative to the repository, as the docs name them


def verdict(*operands: str) -> dict:
    return run_json("compare", *operands, "--depth", "1")["architecture"]


@pytest.fixture(scope="module")
def stride_on_1x1() -> dict:
    return run_json("compare", TV + "resnet50_stride_on_1x1", "resnet50")


# ---------------------------------------------------------------- the three corpus cases


def test_torchvision_resnet50_is_identical_to_the_preset():
    data = run_json("compare", TV + "resnet50", "resnet50", "--depth", "1")
    arch = data["architecture"]
    assert (arch["verdict"], arch["text"], arch["divergence"]) == ("identical", "identical architecture", None)
    assert arch["state_dict"]["loads"] and arch["state_dict"]["keys"] == RESNET50_KEYS
    assert [net["params"] for net in data["networks"]] == [RESNET50_PARAMS] * 2
    assert data["networks"][0]["macs"] == data["networks"][1]["macs"]


def test_renamed_resnet50_is_the_same_architecture_with_different_names():
    arch = verdict(TV + "resnet50_renamed", "resnet50")
    assert (arch["verdict"], arch["text"], arch["divergence"]) == ("renamed", "same architecture, different names", None)
    fit = arch["state_dict"]
    assert len(fit["missing"]) == len(fit["unexpected"]) == RESNET50_KEYS - STEM_KEYS
    assert fit["shape_mismatch"] == []
    assert "stage1.0.conv1.weight" in fit["missing"] and "layer1.0.conv1.weight" in fit["unexpected"]
    assert "head.weight" in fit["missing"] and "fc.weight" in fit["unexpected"]


def test_stride_on_the_first_1x1_differs_where_the_first_stride_2_block_strides(stride_on_1x1):
    arch = stride_on_1x1["architecture"]
    # layer1 has stride 1 in both versions; layer2.0 is the first block whose stride moved from the 3x3 to the 1x1
    assert arch["text"] == "different: layer2.0.conv1: stride 2 vs 1"
    assert arch["divergence"]["differences"] == [{"what": "stride", "a": 2, "b": 1}]
    assert arch["divergence"]["a"]["attributes"]["kernel"] == [1, 1]
    assert arch["divergence"]["in_shortcut_of"] is None
    # same parameter shapes, so the reference's weights load: only the arithmetic differs
    assert arch["state_dict"]["loads"]
    assert [net["params"] for net in stride_on_1x1["networks"]] == [RESNET50_PARAMS] * 2


def test_stride_on_1x1_saves_the_first_1x1_and_its_bn_at_full_resolution_in_each_first_block(stride_on_1x1):
    v1, v15 = ({blk["name"]: blk["macs"] for s in net["stages"] for blk in s["per_block"] or []}
               for net in stride_on_1x1["networks"])  # fmt: skip
    for block, in_ch, width, size in (("layer2.0", 256, 128, 56), ("layer3.0", 512, 256, 28), ("layer4.0", 1024, 512, 14)):
        # v1.5 runs conv1 (in x width per pixel) and bn1 (2 per element) on the S x S input, v1 on (S/2) x (S/2)
        assert v15[block] - v1[block] == (in_ch * width + 2 * width) * (size**2 - (size // 2) ** 2)
    assert {name for name in v1 if v1[name] != v15[name]} == {"layer2.0", "layer3.0", "layer4.0"}


def test_the_papers_bottleneck_is_identical_to_the_preset_with_stride_on_1x1():
    assert verdict(TV + "resnet50_stride_on_1x1", "resnet50[stride-on=1x1]")["verdict"] == "identical"


# ---------------------------------------------------------------- user vs user, factory arguments, shortcuts


def test_user_vs_user_resnet18_and_resnet34_diverge_where_resnet18s_layer1_ends():
    data = run_json("compare", TV + "resnet18", TV + "resnet34", "--depth", "1")
    assert [net["params"] for net in data["networks"]] == [11_689_512, 21_797_672]  # torchvision's figures
    # resnet18 has 2 blocks in layer1, resnet34 3: the 3rd block's conv1 meets layer2's strided, wider conv1
    text = data["architecture"]["text"]
    assert text == "different: layer2.0.conv1 vs layer1.2.conv1: stride 2 vs 1, out_channels 128 vs 64"


def test_user_vs_user_by_file_and_by_module_path():
    assert verdict("tests.models.torchvision_resnet:resnet50_renamed", TV + "resnet50")["verdict"] == "renamed"
    assert verdict("tests.models.torchvision_resnet:resnet18", TV + "resnet18")["verdict"] == "identical"


def test_factory_arguments_in_brackets_build_the_user_model():
    data = run_json("compare", TV + "resnet50[num_classes=10]", "resnet50", "--depth", "1")
    a, _ = data["networks"]
    assert a["factory_kwargs"] == {"num_classes": "10"}
    assert a["params"] == RESNET50_PARAMS - 2048 * (1000 - 10) - (1000 - 10)
    arch = data["architecture"]
    assert arch["text"] == "different: fc: out_features 10 vs 1000"
    assert arch["state_dict"]["shape_mismatch"] == [
        {"key": "fc.weight", "a": [10, 2048], "b": [1000, 2048]},
        {"key": "fc.bias", "a": [10], "b": [1000]},
    ]
    assert verdict(TV + "resnet50[num_classes=10]", "resnet50[num-classes=10]")["verdict"] == "identical"


def test_a_divergence_in_a_shortcut_names_the_block_that_projects():
    arch = verdict("resnet50[avg-down]", "resnet50")
    # ResNet-D pools (stride 2), then a stride-1 1x1 conv; layer1.0's shortcut has stride 1, so no pool, and matches
    assert arch["text"] == (
        "different: layer2.0.downsample.1 vs layer2.0.downsample.0: stride 1 vs 2 (in the shortcut, where layer2.0 projects)"
    )
    assert arch["divergence"]["in_shortcut_of"] == "layer2.0"


def test_a_block_that_calls_its_shortcut_first_matches_one_that_calls_it_last():
    # timm-style features_only: `shortcut = self.downsample(x)` before conv1, and no avgpool or fc after layer4
    arch = verdict("tests/models/features_only.py:resnet18_features", "resnet18")
    assert arch["text"] == "different: fc: A has no more layers, B has Linear"
    assert arch["layers_compared"] == [40, 41]  # 20 convs + 20 BNs, in the same order; the preset adds fc
    assert arch["state_dict"]["unexpected"] == ["fc.weight", "fc.bias"] and arch["state_dict"]["missing"] == []


def test_a_user_model_runs_on_the_presets_input_unless_input_is_given():
    data = run_json("compare", "tests/models/cifar_option_a.py:resnet20", "resnet20", "--depth", "1")
    assert [net["input_shape"] for net in data["networks"]] == [[1, 3, 32, 32]] * 2
    assert [net["params"] for net in data["networks"]] == [269_722] * 2  # akamaster's published figure
    given = run_json("compare", "tests/models/cifar_option_a.py:resnet20", "resnet20", "--input", "1x3x64x64")
    assert [net["input_shape"] for net in given["networks"]] == [[1, 3, 64, 64]] * 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my.py:net", ("my.py:net", [])),
        ("my.py:net[num_classes=10]", ("my.py:net", ["num_classes=10"])),
        ("pkg.mod:net[layers=(2, 2), name='a,b', width=64]", ("pkg.mod:net", ["layers=(2, 2)", "name='a,b'", "width=64"])),
        ("my.py:net[widths=[64,128]]", ("my.py:net", ["widths=[64,128]"])),
    ],
)
def test_split_user_operand_keeps_commas_inside_values(text, expected):
    assert split_user_operand(text) == expected


# ---------------------------------------------------------------- per block, formats, timing


def test_blocks_are_each_stages_children_and_sum_to_the_stage(stride_on_1x1):
    for net in stride_on_1x1["networks"]:
        stages = [s for s in net["stages"] if s["per_block"] is not None]
        assert [len(s["per_block"]) for s in stages] == [3, 4, 6, 3]
        assert [blk["name"] for blk in stages[0]["per_block"]] == ["layer1.0", "layer1.1", "layer1.2"]
        for stage in stages:
            assert sum(blk["params"] for blk in stage["per_block"]) == stage["params"]
            assert sum(blk["macs"] for blk in stage["per_block"]) == stage["macs"]
            assert stage["per_block"][-1]["output_shape"] == stage["output_shape"]
        assert net["device"] == "meta"  # counted without allocating weights


def test_renamed_stages_and_blocks_are_paired_by_position_and_named_on_each_side():
    result = run("compare", TV + "resnet50_renamed", "resnet50")
    assert result.exit_code == 0, result.output
    rows = [line.split()[:2] for line in result.stdout.splitlines()]
    assert rows[rows.index(["stage1", "A"]) + 1] == ["layer1", "B"]
    assert rows[rows.index(["stage4.2", "A"]) + 1] == ["layer4.2", "B"]
    assert "verdict                same architecture, different names" in result.stdout


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_user_model_comparison_in_csv_and_markdown(fmt):
    result = run("compare", TV + "resnet50_stride_on_1x1", "resnet50", "--format", fmt)
    assert result.exit_code == 0, result.output
    if fmt == "csv":
        assert result.stdout.splitlines()[0] == "stage,,output,blocks,params,params B/A,MACs,MACs B/A"
        assert "  layer2.0,A,512x28x28,,379392,,297443328," in result.stdout
    else:
        assert "- verdict: different: layer2.0.conv1: stride 2 vs 1" in result.stdout


def test_time_measures_a_user_model_against_the_preset(one_thread):
    data = run_json("compare", TV + "resnet18", "resnet18", "--time", "--input", "1x3x32x32", "--depth", "1",
                    "--runs", "3")  # fmt: skip
    mine, reference = data["networks"]
    assert mine["latency_ms"] > 0 and reference["latency_ms"] > 0
    assert data["ratios"]["latency"] == pytest.approx(reference["latency_ms"] / mine["latency_ms"])
    result = run("compare", TV + "resnet18", "resnet18", "--time", "--input", "1x3x32x32", "--depth", "1", "--runs", "3")
    assert re.search(r"A runs at \d+% of B's speed", result.stdout)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("operand", "message"),
    [
        (TV + "nope", "has no attribute 'nope'"),
        ("tests/models/missing.py:net", "no such file"),
        ("tests.models.missing_module:net", "no module named"),
        (TV + "resnet50[depth=7]", "raised TypeError"),
        (TV + "torch", "is a module, not an nn.Module"),
        ("tests/models/jit_submodule.py:scripted_block_resnet", "is a TorchScript module"),
        (TV + "resnet50[num_classes]", "is not key=value"),
        (TV + "resnet50[num_classes=10", "write factory arguments in brackets"),
        ("docs/examples/residual_add.py:small_resnet", "resnet-cli debug-shapes"),
    ],
)
def test_bad_user_model_exits_2_with_one_line(operand, message):
    result = run("compare", operand, "resnet18")
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


def test_a_forward_failure_names_the_operand():
    result = run("compare", "resnet18", "docs/examples/residual_add.py:small_resnet")
    assert result.stderr.startswith("Error: docs/examples/residual_add.py:small_resnet: ")
    assert "the forward pass fails in layer2.0" in result.stderr


def test_forward_code_outside_layers_is_compared_as_operators(tmp_path):
    """No residual add in one block, or SiLU for ReLU: the layers are the same, what forward computes is not."""
    source = (Path("tests/models/torchvision_resnet.py")).read_text()
    assert "        out += identity\n" in source and "nn.ReLU(inplace=True)" in source
    (tmp_path / "no_add.py").write_text(source.replace("        out += identity\n", "", 1))
    (tmp_path / "silu.py").write_text(source.replace("nn.ReLU(inplace=True)", "nn.SiLU(inplace=True)"))
    no_add = verdict(f"{tmp_path / 'no_add.py'}:resnet18", "resnet18")
    assert no_add["verdict"] == "different"
    assert no_add["text"] == "different: layer1.0: aten.add -> 1x64x56x56 calls 0 vs 1"
    silu = verdict(f"{tmp_path / 'silu.py'}:resnet18", "resnet18")
    assert silu["text"].startswith("different: conv1 vs relu: ") or silu["text"].startswith("different: relu: ")
    assert "aten.silu" in silu["text"] and "aten.relu" in silu["text"]


def test_functional_pooling_matches_a_pooling_module(tmp_path):
    source = (Path("tests/models/torchvision_resnet.py")).read_text()
    stem = "        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))\n"
    assert stem in source
    functional = source.replace(stem, "        x = F.max_pool2d(self.relu(self.bn1(self.conv1(x))), 3, 2, 1)\n", 1)
    (tmp_path / "fpool.py").write_text("import torch.nn.functional as F\n" + functional)
    assert verdict(f"{tmp_path / 'fpool.py'}:resnet18", "resnet18")["verdict"] == "identical"
    smaller = functional.replace("F.max_pool2d(self.relu(self.bn1(self.conv1(x))), 3, 2, 1)", "F.max_pool2d(self.relu(self.bn1(self.conv1(x))), 2)")
    (tmp_path / "fpool2.py").write_text("import torch.nn.functional as F\n" + smaller)
    assert verdict(f"{tmp_path / 'fpool2.py'}:resnet18", "resnet18")["text"].startswith("different: F.max_pool2d vs maxpool: ")


NO_PARAMETERS = '''
import torch.nn.functional as F
from torch import nn


class Pooling(nn.Module):
    def forward(self, x):
        return F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1)
'''


def test_a_model_without_parameters_compares_without_dividing_by_zero(tmp_path):
    (tmp_path / "pool.py").write_text(NO_PARAMETERS)
    data = run_json("compare", f"{tmp_path / 'pool.py'}:Pooling", "resnet18", "--depth", "1")
    assert data["ratios"]["params"] is None and data["networks"][0]["params"] == 0
    assert data["architecture"]["verdict"] == "different"
