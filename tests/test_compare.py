"""`compare`: BasicBlock vs Bottleneck figures, network comparisons, MODEL[flag=value,...] operands, errors.

User models as operands: tests/test_compare_models.py.
"""

from __future__ import annotations

import math

import pytest
from cli_runner import run, run_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnet_cli import build_model
from resnet_cli.analysis.compare import BlockSetup, build_block, compare_blocks
from resnet_cli.analysis.counting import count_macs, count_module
from resnet_cli.errors import SpecError
from resnet_cli.render.compare import block_arithmetic
from resnet_cli.spec import parse_model_operand
from resnet_cli.trace import make_input


@pytest.fixture(scope="module")
def blocks_256() -> dict:
    return run_json("compare", "basic", "bottleneck", "--channels", "256")


@pytest.fixture(scope="module")
def resnet34_vs_50() -> dict:
    return run_json("compare", "resnet34", "resnet50")


# ---------------------------------------------------------------- blocks


def test_basic_vs_bottleneck_macs_per_pixel_are_the_papers_arithmetic(blocks_256):
    basic, bottleneck = blocks_256["blocks"]
    assert basic["macs_per_output_pixel"] == 3 * 3 * 256 * 256 * 2 == 1_179_648
    assert bottleneck["macs_per_output_pixel"] == 1 * 1 * 256 * 64 + 3 * 3 * 64 * 64 + 1 * 1 * 64 * 256 == 69_632
    assert basic["arithmetic"] == "3x3x256x256 x 2"
    assert bottleneck["arithmetic"] == "1x1x256x64 + 3x3x64x64 + 1x1x64x256"
    assert round(blocks_256["saved_percent"]["conv_macs"], 1) == 94.1


def test_basic_vs_bottleneck_params(blocks_256):
    basic, bottleneck = blocks_256["blocks"]
    # conv weights plus BN weight and bias: 2 x 3x3x256x256 + 2 x 2 x 256; 256x64 + 9x64x64 + 64x256 + 2 x (64+64+256)
    assert basic["params"] == 1_180_672
    assert bottleneck["params"] == 70_400
    assert [layer["params"] for layer in bottleneck["layers"]] == [16_384, 36_864, 16_384]


def test_block_macs_at_spatial_are_per_pixel_times_pixels(blocks_256):
    for block in blocks_256["blocks"]:
        assert block["conv_macs"] == block["macs_per_output_pixel"] * 56 * 56
        assert block["output_shape"] == [1, 256, 56, 56]


def test_block_counts_come_from_the_counting_engine():
    setup = BlockSetup(channels=64, spatial=8)
    cost = compare_blocks(("basic", "bottleneck"), setup).blocks[1]
    fvcore = count_module(build_block("bottleneck", setup, "cpu"), setup.input_shape, counter="fvcore")
    assert cost.conv_macs == fvcore.by_operator["conv"]
    assert cost.other_macs == {op: n for op, n in fvcore.by_operator.items() if op != "conv"}
    assert [layer.macs for layer in cost.layers] == [fvcore.by_module[layer.name] for layer in cost.layers]


def test_block_table_writes_the_arithmetic_and_what_is_held_equal():
    result = run("compare", "basic", "bottleneck", "--channels", "256")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "3x3x256x256 x 2 = 1,179,648 MACs per output pixel" in text
    assert "1x1x256x64 + 3x3x64x64 + 1x1x64x256 = 69,632 MACs per output pixel" in text
    assert "94.1%" in text
    assert "Held equal: 256 input and output channels" in text
    assert "inner width (BasicBlock 256, Bottleneck 64; a bottleneck's is C/E = 256/4)" in text


def test_stride_2_blocks_scale_the_input_side_and_add_the_projection():
    data = run_json("compare", "basic", "bottleneck", "--channels", "128", "--spatial", "16", "--stride", "2")
    basic, bottleneck = data["blocks"]
    assert basic["output_shape"] == [1, 128, 8, 8]
    assert basic["arithmetic"] == "3x3x128x128 + 3x3x128x128 + 1x1x128x128"
    assert bottleneck["arithmetic"] == "1x1x128x32 x 4 + 3x3x32x32 + 1x1x32x128 + 1x1x128x128"
    assert [layer["name"] for layer in bottleneck["layers"]][-1] == "downsample.0"


def test_grouped_se_bottleneck_shows_groups_and_se_layers():
    data = run_json("compare", "bottleneck", "se-bottleneck", "--groups", "32", "--width-per-group", "4")
    plain, se = data["blocks"]
    assert plain["layers"][1]["groups"] == 32 and plain["layers"][1]["out_channels"] == 128
    assert plain["arithmetic"] == "1x1x256x128 + 3x3x128x128/32 + 1x1x128x256"
    assert [layer["name"] for layer in se["layers"]] == ["conv1", "conv2", "conv3", "se.fc1", "se.fc2"]
    assert se["other_macs"]["adaptive_avg_pool2d"] == 256 * 56 * 56


def test_expansion_sets_the_bottleneck_inner_width():
    data = run_json("compare", "basic", "bottleneck", "--channels", "256", "--expansion", "2")
    assert data["blocks"][1]["layers"][0]["out_channels"] == 128


def test_time_measures_both_blocks_on_cpu(one_thread):
    data = run_json("compare", "basic", "bottleneck", "--channels", "32", "--spatial", "8", "--time", "--batch", "2",
                    "--runs", "3", "--warmup", "1")  # fmt: skip
    assert data["timing"] == {"device": "cpu", "batch": 2, "warmup": 1, "runs": 3}
    assert all(block["latency_ms"] > 0 for block in data["blocks"])
    assert "latency" in data["saved_percent"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.tuples(st.sampled_from(["basic", "bottleneck", "se-basic", "se-bottleneck"]), st.sampled_from(["bottleneck", "se-bottleneck"])),
    expansion=st.sampled_from([1, 2, 4]),
    width=st.sampled_from([8, 16, 32]),
    spatial=st.integers(4, 17),
    stride=st.sampled_from([1, 2]),
)
def test_written_arithmetic_equals_the_counted_macs_per_pixel(kinds, expansion, width, spatial, stride):
    setup = BlockSetup(channels=width * expansion, spatial=spatial, stride=stride, expansion=expansion)
    for cost in compare_blocks(kinds, setup).blocks:
        assert eval(block_arithmetic(cost).replace("x", "*")) == pytest.approx(cost.macs_per_pixel)  # noqa: S307
        closed_form = sum(
            math.prod(layer.kernel) * layer.in_channels // layer.groups * layer.out_channels * layer.output_pixels
            for layer in cost.layers
        )
        assert cost.conv_macs == closed_form


# ---------------------------------------------------------------- networks


def test_resnet34_vs_resnet50_totals_match_the_presets(resnet34_vs_50):
    a, b = resnet34_vs_50["networks"]
    assert (a["params"], b["params"]) == (21_797_672, 25_557_032)
    assert (a["macs"], b["macs"]) == (3_671_262_720, 4_111_512_576)
    assert b["macs_conv_linear"] == 4_089_184_256
    assert resnet34_vs_50["ratios"]["params"] == pytest.approx(25_557_032 / 21_797_672)


def test_network_stages_sum_to_the_totals(resnet34_vs_50):
    for net in resnet34_vs_50["networks"]:
        assert [s["name"] for s in net["stages"]] == ["stem", "layer1", "layer2", "layer3", "layer4", "head"]
        assert sum(s["params"] for s in net["stages"]) == net["params"]
        assert sum(s["macs"] for s in net["stages"]) == net["macs"]
        assert [s["blocks"] for s in net["stages"][1:5]] == [3, 4, 6, 3]
        assert net["stages"][4]["output_shape"][2:] == [7, 7]


def test_network_table_shows_stages_and_totals():
    result = run("compare", "resnet34", "resnet50")
    assert result.exit_code == 0, result.output
    assert "A = resnet34 vs B = resnet50" in result.stdout
    assert "25,557,032 / 21,797,672 = 1.17x" in result.stdout
    assert "4,111,512,576 / 3,671,262,720 = 1.12x" in result.stdout


def test_operand_flags_build_each_side():
    data = run_json("compare", "custom[block=basic,layers=2,2,2,2]", "resnet50[se=true,stem=deep]")
    a, b = data["networks"]
    assert a["params"] == 11_689_512  # = resnet18
    assert b["params"] == sum(p.numel() for p in build_model("resnet50", device="meta", se=True, stem="deep").parameters())
    assert b["spec"]["se"] is True and b["label"] == "resnet50[se=true,stem=deep]"


def test_resnet34_and_resnet50_diverge_at_the_first_block_conv(resnet34_vs_50):
    arch = resnet34_vs_50["architecture"]
    # a BasicBlock opens with a 3x3 conv (padding 1), a Bottleneck with a 1x1 (padding 0)
    assert arch["text"] == "different: layer1.0.conv1: kernel 3x3 vs 1x1, padding 1 vs 0"
    # resnet50's extra keys: conv3 + bn3 (1 + 5 entries) in each of 16 blocks, and layer1.0's projection shortcut
    assert len(arch["state_dict"]["unexpected"]) == 16 * 6 + 6 and arch["state_dict"]["missing"] == []


def test_a_preset_spelled_with_flags_is_identical_to_the_named_preset():
    arch = run_json("compare", "custom[block=basic,layers=2,2,2,2]", "resnet18", "--depth", "1")["architecture"]
    assert (arch["verdict"], arch["divergence"], arch["state_dict"]["loads"]) == ("identical", None, True)


def test_depth_1_leaves_out_the_blocks():
    full, stages = (run("compare", "resnet18", "resnet34", *depth).stdout for depth in ([], ["--depth", "1"]))
    assert "layer1.1" in full and "layer1.1" not in stages
    assert "Blocks are each stage's children" in " ".join(full.split())


def test_time_measures_both_networks_at_the_given_batch(one_thread):
    data = run_json("compare", "resnet20", "resnet32", "--time", "--batch", "2", "--runs", "3", "--warmup", "1")
    assert data["timing"]["batch"] == 2
    assert all(net["latency_ms"] > 0 for net in data["networks"])


def test_shared_input_applies_to_both_networks():
    data = run_json("compare", "resnet18", "resnet34", "--input", "1x3x64x64")
    assert [net["input_shape"] for net in data["networks"]] == [[1, 3, 64, 64]] * 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("resnet50", ("resnet50", {})),
        ("resnet50[se]", ("resnet50", {"se": True})),
        ("resnet50[layers=2,2,2,2, stride-on=1x1]", ("resnet50", {"layers": "2,2,2,2", "stride_on": "1x1"})),
        ("[block=basic]", ("custom", {"block": "basic"})),
        ("resnet50[drop_path=0.1,se=no]", ("resnet50", {"drop_path": 0.1, "se": False})),
    ],
)
def test_parse_model_operand(text, expected):
    assert parse_model_operand(text) == expected


@pytest.mark.parametrize(
    "text", ["resnet50[se=maybe]", "resnet50[groups=x]", "resnet50[colour=red]", "resnet50[se=true", "resnet50]["]
)
def test_bad_model_operand_is_a_spec_error(text):
    with pytest.raises(SpecError):
        parse_model_operand(text)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["basic", "resnet50"], "not one of each"),
        (["basic", "bottlenek"], "'bottlenek' is not a block (basic, bottleneck, se-basic, se-bottleneck) or a preset; "
                                 "did you mean bottleneck?"),
        (["resnet34", "resnet50", "--channels", "64"], "--channels applies to block operands"),
        (["basic", "bottleneck", "--input", "1x3x32x32"], "--input applies to networks"),
        (["basic", "bottleneck", "--stride", "3"], "--stride 3"),
        (["basic", "bottleneck", "--channels", "100", "--expansion", "3"], "divisible by 3"),
        (["basic", "bottleneck", "--channels", "0"], "--channels 0"),
        (["basic", "bottleneck", "--groups", "0"], "--groups 0"),
        (["basic", "se-basic", "--groups", "32"], "--groups applies to bottleneck blocks"),
        (["resnet50", "resnet51"], "unknown model 'resnet51'"),
        (["resnet50[colour=red]", "resnet34"], "unknown build flag 'colour'"),
        (["resnet50[layers=3,0]", "resnet34"], "stage 2 has 0 blocks"),
        (["basic", "bottleneck", "--time", "--batch", "0"], "--batch 0"),
        (["basic", "bottleneck", "--batch", "8"], "add --time"),
        (["basic", "bottleneck", "--runs", "5"], "--runs 5 sets how --time measures; add --time"),
        (["basic", "bottleneck", "--time", "--runs", "0"], "--runs"),
        (["basic", "bottleneck", "--depth", "1"], "--depth 1 applies to networks"),
        (["resnet18", "resnet34", "--depth", "3"], "--depth"),
    ],
)
def test_bad_compare_input_exits_2_with_one_line(args, message):
    result = run("compare", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


@settings(max_examples=50, deadline=None)
@given(
    flags=st.fixed_dictionaries(
        {},
        optional={
            "layers": st.lists(st.integers(1, 9), min_size=1, max_size=5).map(lambda v: ",".join(map(str, v))),
            "se": st.booleans(),
            "groups": st.integers(1, 64),
            "stem": st.sampled_from(["imagenet", "deep", "cifar"]),
            "drop_path": st.sampled_from([0.0, 0.05, 0.2]),
            "dilate_stages": st.sampled_from(["3,4", "4", ""]),
        },
    ),
    dashes=st.booleans(),
)
def test_operand_syntax_round_trips_any_flags(flags, dashes):
    def key(name: str) -> str:
        return name.replace("_", "-") if dashes else name

    text = "resnet50[" + ",".join(f"{key(k)}={str(v).lower()}" for k, v in flags.items()) + "]"
    assert parse_model_operand(text) == ("resnet50", flags)


@pytest.mark.parametrize("operands", [["basic", "bottleneck"], ["resnet18", "resnet34"]])
@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_compare_csv_and_markdown(operands, fmt):
    result = run("compare", *operands, "--format", fmt)
    assert result.exit_code == 0, result.output
    first = result.stdout.splitlines()[0]
    assert first.startswith(",BasicBlock" if operands[0] == "basic" and fmt == "csv" else ("stage," if fmt == "csv" else "**"))


def test_networks_report_acts_receptive_field_and_output_stride(one_thread):
    data = run_json("compare", "resnet18", "resnet50[dilate-stages=4]")
    a, b = data["networks"]
    # acts: fvcore's ActivationCountAnalysis, as measured for every preset in test_counting
    assert (a["acts"], b["acts"]) == (2_484_712, count_macs(build_model("resnet50", dilate_stages=(4,)),
                                                            make_input((1, 3, 224, 224), "cpu"), "fvcore").acts)
    assert data["ratios"]["acts"] == pytest.approx(b["acts"] / a["acts"])
    # resnet18: 435 at output stride 32; a dilated last stage keeps resnet50's 427 at output stride 16
    assert (a["receptive_field"], a["output_stride"], b["receptive_field"], b["output_stride"]) == ([435, 435], 32,
                                                                                                   [427, 427], 16)
    assert [(s["name"], s["receptive_field"]) for s in a["stages"]][1:] == [
        ("layer1", [43, 43]), ("layer2", [99, 99]), ("layer3", [211, 211]), ("layer4", [435, 435]), ("head", None)
    ]  # fmt: skip
