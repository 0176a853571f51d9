"""`resnet-cli flops` as a user runs it: published counts through the JSON, conventions, formats, errors."""

from __future__ import annotations

import csv
import io
import json

import pytest
from cli_runner import one_error_line, run, run_json

# fvcore totals at 1x3x224x224; torchvision's published GFLOPS agree to two decimals.
FVCORE_MACS_AT_224 = {
    "resnet18": 1_819_065_856,
    "resnet34": 3_671_262_720,
    "resnet50": 4_111_512_576,
    "resnet101": 7_833_969_664,
    "resnet152": 11_558_835_200,
    "resnext50_32x4d": 4_259_381_248,
    "resnext101_32x8d": 16_476_534_784,
    "resnext101_64x4d": 15_522_789_376,
    "wide_resnet50_2": 11_426_922_496,
    "wide_resnet101_2": 22_795_599_872,
}


@pytest.mark.parametrize(("name", "macs"), list(FVCORE_MACS_AT_224.items()))
def test_published_fvcore_totals(name, macs):
    totals = run_json("flops", name)["totals"]
    assert totals["macs"] == macs
    assert totals["flops"] == 2 * macs


def test_resnet50_conv_linear_convention_is_kept_in_the_json():
    data = run_json("flops", "resnet50")
    assert data["totals"]["macs_conv_linear"] == 4_089_184_256
    assert data["totals"]["flops_conv_linear"] == 2 * 4_089_184_256
    assert data["by_operator"]["conv"] + data["by_operator"]["linear"] == 4_089_184_256
    assert set(data["conventions"]) == {"macs", "macs_conv_linear", "acts", "flops", "not_counted"}


def test_json_schema_and_breakdowns_add_up():
    data = run_json("flops", "resnet50")
    assert {"model", "input_shape", "totals", "by_operator", "by_stage", "layers"} <= set(data)
    assert data["model"] == "resnet50" and data["input_shape"] == [1, 3, 224, 224]
    assert data["totals"]["params"] == 25_557_032
    assert set(data["by_operator"]) == {"conv", "batch_norm", "linear", "adaptive_avg_pool2d"}
    assert sum(data["by_operator"].values()) == data["totals"]["macs"]
    assert list(data["by_stage"]) == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert sum(s["macs"] for s in data["by_stage"].values()) == data["totals"]["macs"]
    assert sum(s["macs_conv_linear"] for s in data["by_stage"].values()) == data["totals"]["macs_conv_linear"]
    assert sum(s["params"] for s in data["by_stage"].values()) == data["totals"]["params"]
    top = [layer for layer in data["layers"] if layer["depth"] == 1]
    assert sum(layer["macs"] for layer in top) == data["totals"]["macs"]
    assert data["counter"] == "fast"


def test_fvcore_counter_gives_the_same_json_counts(one_thread):
    args = ("resnet18", "--se", "--input", "2x3x64x64")
    fast, reference = run_json("flops", *args, "--counter", "fast"), run_json("flops", *args, "--counter", "fvcore")
    assert reference["counter"] == "fvcore"
    for key in ("totals", "by_operator", "by_stage"):
        assert fast[key] == reference[key]
    assert [layer["macs"] for layer in fast["layers"]] == [layer["macs"] for layer in reference["layers"]]


def test_stage_table_shows_percent_bars_units_and_the_legend():
    result = run("flops", "resnet50", env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "% MACs" in out and "Conv+lin MACs" in out and "█" in out
    assert "MAC = one multiply-accumulate; FLOPs = 2 x MACs." in out
    assert "4,111,512,576  (4.11 GMACs)" in out and "4,089,184,256  (4.09 GMACs)" in out
    layer3 = next(line for line in out.splitlines() if line.strip().startswith("layer3"))
    assert "35.7" in layer3  # the heaviest stage of resnet50


def test_operator_table_names_fvcore_operators_and_formulas():
    result = run("flops", "resnet50", "--by", "operator", env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "batch_norm" in result.stdout and "adaptive_avg_pool2d" in result.stdout
    assert "conv: N x Cout x Cin/groups x kH x kW x Hout x Wout" in result.stdout


def test_module_view_respects_depth():
    data = run_json("flops", "resnet18", "--by", "module", "--depth", "2")
    assert {layer["depth"] for layer in data["layers"]} == {1, 2}
    result = run("flops", "resnet18", "--by", "module", "--depth", "2", "--format", "csv")
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["Layer", "Type", "Output shape", "MACs", "% MACs"]
    assert any(row[0].strip() == "layer1.0" for row in rows)


def test_markdown_and_csv_have_no_bars():
    markdown = run("flops", "resnet18", "--format", "markdown").stdout
    assert markdown.startswith("**resnet18") and "| Stage |" in markdown and "█" not in markdown
    rows = list(csv.reader(io.StringIO(run("flops", "resnet18", "--format", "csv").stdout)))
    assert rows[0] == ["Stage", "Output shape", "Params", "MACs", "% MACs", "Conv+lin MACs"]
    assert [row[0] for row in rows[1:]] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
    assert sum(int(row[3]) for row in rows[1:]) == FVCORE_MACS_AT_224["resnet18"]


def test_huge_inputs_count_instantly_on_meta():
    data = run_json("flops", "resnet50", "--input", "256x3x1024x1024")
    assert data["totals"]["macs"] == 256 * run_json("flops", "resnet50", "--input", "1x3x1024x1024")["totals"]["macs"]


def test_dtype_changes_only_memory():
    base = run_json("flops", "resnet18")
    half = run_json("flops", "resnet18", "--dtype", "float16")
    assert half["totals"] == base["totals"]
    assert half["memory"]["param_bytes"] * 2 == base["memory"]["param_bytes"]
    assert half["memory"]["activation_bytes"] * 2 == base["memory"]["activation_bytes"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--by", "nonsense"], "'nonsense' is not one of 'stage', 'operator', 'module'"),
        (["--dtype", "int3"], "'int3' is not one of 'float32', 'float16', 'bfloat16'"),
        (["--counter", "magic"], "'magic' is not one of 'fast', 'fvcore'"),
        (["--optimizer", "rmsprop"], "'rmsprop' is not one of 'sgd', 'sgd-momentum', 'adam', 'adamw'"),
        (["--by", "module", "--depth", "0"], "--depth 0 must be >= 1"),
        (["--input", "1x4x224x224"], "--input 1x4x224x224 has 4 channels but the model takes 3"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    result = run("flops", "resnet50", *args)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)


def test_summary_has_a_macs_column_from_the_same_engine():
    data = run_json("summary", "resnet50", "--depth", "1")
    assert data["totals"]["macs"] == FVCORE_MACS_AT_224["resnet50"]
    assert sum(layer["macs"] for layer in data["layers"]) == FVCORE_MACS_AT_224["resnet50"]
    table = run("summary", "resnet50", "--depth", "1", env={"COLUMNS": "80"}).stdout
    assert "MACs (M)" in table and "1,468.65" in table  # layer3


def test_list_shows_macs_at_each_presets_default_input(preset_list):
    by_name = {p["name"]: p["macs"] for p in json.loads(preset_list.stdout)["presets"]}
    assert {name: by_name[name] for name in FVCORE_MACS_AT_224} == FVCORE_MACS_AT_224
    assert by_name["resnet20"] == run_json("flops", "resnet20")["totals"]["macs"]


def test_fvcore_counter_refuses_inputs_that_cannot_fit_in_memory():
    result = run("flops", "resnet50", "--counter", "fvcore", "--input", "100000x3x1024x1024")
    assert result.exit_code == 2, result.output
    assert "--counter fvcore --input 100000x3x1024x1024 would allocate" in result.stderr
    assert "use --counter fast" in result.stderr


def test_bars_fill_in_eighths_and_units_use_decimal_prefixes():
    from resnet_cli.render.flops import bar, human

    assert bar(1.0).plain == "█" * 10
    assert bar(0.05).plain == "▌"  # 0.05 x 10 cells = 4 eighths
    assert bar(0.0).plain == ""
    assert human(4_111_512_576, "MACs") == "4.11 GMACs"
    assert human(21_985_656_569_856, "MACs") == "21.99 TMACs"
    assert human(512, "MACs") == "512 MACs"


def test_acts_are_conv_and_linear_output_elements():
    data = run_json("flops", "resnet50")
    # closed form: the output elements of resnet50's 53 convs at 224x224 (stem 64x112x112; per stage, per block
    # 1x1, 3x3, 1x1 outputs, the first block's projection) plus the classifier's 1,000
    convs = 64 * 112 * 112
    size, width = 56, 64
    for stage, blocks in enumerate((3, 4, 6, 3)):
        out = width * 4
        if stage:
            size //= 2
        for block in range(blocks):
            inner_size = size * 2 if (block == 0 and stage) else size  # the first 1x1 runs before the stride
            convs += width * inner_size * inner_size + width * size * size + out * size * size
            if block == 0:
                convs += out * size * size  # projection shortcut
        width *= 2
    assert data["totals"]["acts"] == convs + 1000 == 11_114_984


def test_list_json_has_acts(preset_list):
    acts = {p["name"]: p["acts"] for p in json.loads(preset_list.stdout)["presets"]}
    assert acts["resnet50"] == 11_114_984 and acts["resnet18"] == 2_484_712  # fvcore's ActivationCountAnalysis
