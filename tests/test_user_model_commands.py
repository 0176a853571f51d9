"""Your own model in summary and flops: by file path and by module path, --ops, --strict, and clean refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_runner import one_error_line, run, run_json

TESTS = Path(__file__).parent
TORCHVISION_50 = "tests/models/torchvision_resnet.py:resnet50"
OPTION_A = "tests/models/cifar_option_a.py:resnet20"
PARTIAL_MODEL = '''
import torch
from torch import nn


class Scores(nn.Module):
    """A head that scores with torch.baddbmm: multiply-accumulates for which fvcore has no rule."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        x = self.conv(x).flatten(2)
        return torch.baddbmm(x[:, :, :8], x, x.transpose(1, 2))
'''


def test_summary_of_a_torchvision_style_file_equals_the_preset():
    mine = run_json("summary", TORCHVISION_50, "--depth", "1")
    preset = run_json("summary", "resnet50", "--depth", "1")
    assert mine["model"] == TORCHVISION_50 and "spec" not in mine and mine["factory_kwargs"] == {}
    assert mine["totals"]["params"] == 25_557_032  # torchvision's published figure
    assert mine["totals"]["macs"] == preset["totals"]["macs"] == 4_111_512_576
    # torchvision flattens with torch.flatten, resnet-cli with an nn.Flatten module: every other layer matches
    assert [(r["name"], r["output_shape"]) for r in mine["layers"]] == [
        (r["name"], r["output_shape"]) for r in preset["layers"] if r["name"] != "flatten"
    ]


def test_flops_by_module_path_with_factory_arguments(monkeypatch, one_thread):
    monkeypatch.syspath_prepend(str(TESTS))
    fast = run_json("flops", "models.torchvision_resnet:resnet18", "--arg", "num_classes=10", "--by", "operator")
    reference = run_json(
        "flops", "models.torchvision_resnet:resnet18", "--arg", "num_classes=10", "--counter", "fvcore"
    )
    assert fast["totals"]["params"] == 11_689_512 - 990 * (512 + 1)  # 1000 -> 10 classes: 990 fewer weight rows + biases
    assert fast["by_operator"] == reference["by_operator"]
    assert fast["by_operator"]["linear"] == 512 * 10
    assert fast["coverage"] == "complete" and fast["not_counted"] == {}


def test_flops_stages_of_a_user_model_are_stem_stages_head():
    data = run_json("flops", OPTION_A, "--input", "1x3x32x32")
    assert list(data["by_stage"]) == ["stem", "layer1", "layer2", "layer3", "head"]
    assert sum(s["macs"] for s in data["by_stage"].values()) == data["totals"]["macs"]
    assert sum(s["params"] for s in data["by_stage"].values()) == data["totals"]["params"] == 269_722


def test_summary_ops_lists_functional_calls_under_their_module():
    result = run("summary", OPTION_A, "--input", "1x3x32x32", "--ops", "--depth", "1")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    pool = next(line for line in lines if line.startswith("F.avg_pool2d"))
    assert "function" in pool and "1x64x1x1" in pool
    assert next(line for line in lines if line.startswith("Tensor.view")).split()[2] == "1x64"
    data = run_json("summary", OPTION_A, "--input", "1x3x32x32", "--ops", "--depth", "3")
    shortcuts = [f for f in data["functions"] if f["name"] == "Tensor.add_"]
    assert len(shortcuts) == 9 and {f["module"] for f in shortcuts} == {f"layer{s}.{b}" for s in (1, 2, 3) for b in range(3)}


def test_strict_turns_a_partial_count_into_exit_1(tmp_path):
    path = tmp_path / "scores.py"
    path.write_text(PARTIAL_MODEL)
    relaxed = run("flops", f"{path}:Scores", "--input", "1x3x8x8")
    assert relaxed.exit_code == 0, relaxed.output
    assert "partial (not counted: aten.baddbmm x1)" in relaxed.stdout
    strict = run("flops", f"{path}:Scores", "--input", "1x3x8x8", "--strict", "--format", "json")
    assert strict.exit_code == 1
    assert '"not_counted": {\n    "baddbmm": 1\n  }' in strict.stdout
    assert run("flops", OPTION_A, "--input", "1x3x32x32", "--strict").exit_code == 0


@pytest.mark.parametrize("command", ["summary", "flops"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([TORCHVISION_50, "--layers", "2,2,2,2"], "--layers changes a preset, but"),
        (["tests/models/jit_submodule.py:scripted_block_resnet"], "is a TorchScript module"),
        (["tests/models/nowhere.py:net"], "no such file"),
        (["tests/models/corpus.py:CORPUS"], "is a list, not an nn.Module"),
        (["tests/models/torchvision_resnet.py:resnet50", "--arg", "depth=7"], "raised TypeError"),
        (["resnet50", "--arg", "num_classes=10"], "but MODEL 'resnet50' is a preset"),
    ],
)
def test_bad_user_models_exit_2_in_one_line(command, args, message):
    result = run(command, *args)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)


LOOPED = "tests/models/modulelist_stages.py:looped_resnet"


@pytest.mark.parametrize("counter", ["fast", "fvcore"])
def test_stages_in_a_module_list_are_stages(counter, one_thread):
    data = run_json("flops", LOOPED, "--input", "1x3x32x32", "--counter", counter)
    assert list(data["by_stage"]) == ["stem", "stages.0", "stages.1", "stages.2", "head"]
    stages = data["by_stage"]
    assert sum(s["macs"] for s in stages.values()) == data["totals"]["macs"]
    assert sum(s["params"] for s in stages.values()) == data["totals"]["params"]
    # stage 1: two blocks of two 3x3 convs, 16 -> 16 channels on 32x32, and no projection
    assert stages["stages.0"]["macs_conv_linear"] == 2 * 2 * (3 * 3 * 16 * 16 * 32 * 32)


def test_summary_depth_follows_calls_not_names():
    data = run_json("summary", LOOPED, "--input", "1x3x32x32", "--depth", "1")
    assert [r["name"] for r in data["layers"]] == ["stem", "stem_bn", "stages.0", "stages.1", "stages.2", "head"]


@pytest.mark.parametrize("model", [LOOPED, "tests/models/functional_resnet.py:functional_resnet", OPTION_A])
def test_both_counters_give_the_same_stage_table(model, one_thread):
    fast = run_json("flops", model, "--input", "1x3x32x32")
    reference = run_json("flops", model, "--input", "1x3x32x32", "--counter", "fvcore")
    assert fast["by_stage"] == reference["by_stage"]
    assert sum(s["macs"] for s in fast["by_stage"].values()) == fast["totals"]["macs"]


SHARED = '''
from torch import nn


class Tied(nn.Module):
    """One ReLU registered in two containers, and a classifier registered twice (tied)."""

    def __init__(self):
        super().__init__()
        act = nn.ReLU()
        self.a = nn.Sequential(nn.Conv2d(3, 8, 3), act)
        self.b = nn.Sequential(nn.Conv2d(8, 8, 3), act)
        self.fc = nn.Linear(8, 10)
        self.classifier = self.fc

    def forward(self, x):
        return self.classifier(self.b(self.a(x)).mean((2, 3)))


def lazy():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(10))
'''


def test_shared_and_tied_modules_count_their_parameters_once(tmp_path):
    (tmp_path / "tied.py").write_text(SHARED)
    data = run_json("summary", f"{tmp_path / 'tied.py'}:Tied", "--input", "1x3x16x16")
    assert data["totals"]["params"] == (3 * 8 * 9 + 8) + (8 * 8 * 9 + 8) + (8 * 10 + 10)
    assert {r["name"]: r["params"] for r in data["layers"]}["a"] == 3 * 8 * 9 + 8


def test_lazy_modules_are_refused_by_name(tmp_path):
    (tmp_path / "tied.py").write_text(SHARED)
    result = run("flops", f"{tmp_path / 'tied.py'}:lazy", "--input", "1x3x16x16")
    assert result.exit_code == 2
    assert "2 (LazyLinear) has lazy parameters" in one_error_line(result)


def test_summary_by_module_path_and_flops_by_file_agree(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    by_module = run_json("summary", "models.se_resnet:se_resnet20", "--input", "1x3x32x32")
    by_file = run_json("flops", "tests/models/se_resnet.py:se_resnet20", "--input", "1x3x32x32")
    assert by_module["model"] == "models.se_resnet:se_resnet20"
    assert by_module["totals"]["params"] == by_file["totals"]["params"]
    assert by_module["totals"]["macs"] == by_file["totals"]["macs"]
    assert by_module["macs_coverage"] == by_file["coverage"] == "complete"


def test_summary_says_what_the_models_own_forward_holds_outside_every_row():
    # functional_resnet's own forward: the stem conv (16x3x3x3 = 432 weights) and its BN (16 + 16), and the
    # classifier (64x10 + 10); its MACs: the stem conv 432 x 32x32, BN 2 x 16x32x32, the adaptive avg pool over
    # 64x8x8 and the classifier 64x10 (fvcore's convention)
    params = 432 + 32 + 640 + 10
    macs = 432 * 32 * 32 + 2 * 16 * 32 * 32 + 64 * 8 * 8 + 640
    result = run("summary", str(TESTS / "models/functional_resnet.py") + ":functional_resnet", "--input",
                 "1x3x32x32", "--depth", "1", env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"In no row above: {params:,} params and {macs:,} MACs of the model's own forward" in result.stdout
    assert "In no row above" not in run("summary", "resnet18", "--depth", "1").stdout


def test_summary_names_what_counts_zero_and_never_shows_a_nonzero_count_as_zero():
    result = run("summary", "resnet20", "--depth", "1", env={"COLUMNS": "200"})
    assert "0 MACs by convention: add x9, relu_ x19," in result.stdout  # 9 blocks' adds; the stem's ReLU and 2 per block
    fc = next(line for line in result.stdout.splitlines() if line.startswith("fc "))
    assert fc.split()[-1] == "<0.01"  # 64 x 10 = 640 MACs: not 0.00


@pytest.mark.parametrize(
    "command",
    [["summary"], ["flops"], ["flops", "--mode", "train"], ["bench", "--iters", "1", "--warmup", "0"]],
    ids=["summary", "flops", "flops-train", "bench"],
)
def test_a_failing_user_model_is_named_not_the_input(command):
    # the input is fine and the model's code is broken: the line starts with the model, not with --input
    model = str(TESTS.parent / "docs/examples/missing_attribute.py") + ":small_resnet"
    result = run(command[0], model, *command[1:], "--input", "2x3x32x32")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith(f"Error: {model}: the ") and "--input" not in line, line



@pytest.mark.parametrize("reference", [":", ":factory", " :factory"])
def test_a_reference_without_a_file_or_module_says_what_to_give(reference):
    result = run("summary", reference)
    assert result.exit_code == 2
    assert one_error_line(result) == (f"Error: {reference}: no file or module before ':'; give path/to/file.py:factory "
                                      "or package.module:attr")  # fmt: skip


@pytest.mark.parametrize(
    "command",
    [["debug-shapes"], ["debug-shapes", "--sizes", "32,64"], ["debug-training", "--input", "2x3x32x32"]],
    ids=["debug-shapes", "debug-shapes-sizes", "debug-training"],
)
def test_debug_json_names_the_spec_or_the_factory_arguments_as_every_command_does(command):
    # docs/json.md: every command's JSON starts with the model and its spec (a preset) or factory_kwargs (your own)
    preset = run_json(command[0], "resnet20", "--se", *command[1:], "--format", "json")
    assert preset["spec"]["se"] is True and preset["spec"]["layers"] == [3, 3, 3] and "factory_kwargs" not in preset
    mine = run_json(command[0], OPTION_A, "--arg", "num_classes=7", *command[1:], "--format", "json")
    assert mine["factory_kwargs"] == {"num_classes": "7"} and "spec" not in mine


NESTED_CALL = '''
from torch import nn


class Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 4)  # called by the model, not by the backbone

    def forward(self, x):
        return self.conv(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()

    def forward(self, x):
        return self.backbone.fc(self.backbone(x).mean((2, 3)))
'''


def test_a_module_called_from_outside_its_parent_is_not_counted_twice(tmp_path):
    # backbone's 260 params include fc's 36: every param and MAC is in a row, so nothing is "in no row" (not -36)
    (tmp_path / "nested.py").write_text(NESTED_CALL)
    result = run("summary", str(tmp_path / "nested.py") + ":Net", "--input", "1x3x8x8", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Total params               260" in result.stdout and "In no row above" not in result.stdout
