"""ResNetSpec validation, flag parsing and the flag space as a whole."""

from __future__ import annotations

import pytest
from cli_runner import one_error_line, run, run_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resnet_cli import ResNetSpec, SpecError, build_model
from resnet_cli.spec import (
    PRESETS,
    parse_input_shape,
    parse_int_list,
    parse_model_operand,
    request_from_flags,
    resolve_spec,
)
from resnet_cli.trace import make_input, trace_model


def test_default_spec_is_resnet50():
    assert resolve_spec(None) == PRESETS["resnet50"].spec == resolve_spec("custom")


def test_flags_override_a_preset_field_by_field():
    spec = resolve_spec("resnet18", se=True, stem="deep")
    assert spec.layers == (2, 2, 2, 2) and spec.block == "basic" and spec.se and spec.stem == "deep"


def test_changing_block_resets_a_default_expansion():
    assert resolve_spec("resnet50", block="basic").block_expansion == 1
    assert resolve_spec("resnet18", block="bottleneck").block_expansion == 4
    assert resolve_spec("resnet18", block="bottleneck", expansion=2).block_expansion == 2


def test_layers_without_widths_extend_the_preset_widths():
    assert request_from_flags(None, layers="2,2,2,2,2").spec.widths == (64, 128, 256, 512, 1024)
    assert request_from_flags("resnet20", layers="1,1").spec.widths == (16, 32)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1x3x224x224", (1, 3, 224, 224)), ("3x224x224", (1, 3, 224, 224)), ("224", (1, 3, 224, 224)),
     ("8x3x32x64", (8, 3, 32, 64))],
)  # fmt: skip
def test_input_shape_forms(text, expected):
    assert parse_input_shape(text, ResNetSpec()) == expected


def test_default_input_follows_the_stem():
    assert parse_input_shape(None, PRESETS["resnet20"].spec) == (1, 3, 32, 32)
    assert parse_input_shape(None, ResNetSpec(in_channels=1)) == (1, 1, 224, 224)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (dict(layers="3,4,x"), r"--layers 3,4,x: 'x' is not an integer"),
        (dict(layers="0,1"), r"--layers 0,1: stage 1 has 0 blocks"),
        (dict(layers="3,4,6", widths="64,128"), r"--widths 64,128 has 2 values but --layers 3,4,6 has 3 stages"),
        (dict(groups=3, width_per_group=4, widths="24,48,96,192"), r"--groups 3 --width-per-group 4: stage 1 width 24 gives 1.5 channels per group"),
        (dict(block="basic", groups=32), r"--groups 32 needs --block bottleneck"),
        (dict(block="basic", width_per_group=128), r"--width-per-group 128 needs --block bottleneck"),
        (dict(se_ratio=0), r"--se-ratio 0 must be an integer >= 1"),
        (dict(drop_path=1.5), r"--drop-path 1.5 must be in \[0, 1\)"),
        (dict(input="1x3x224"), r"--input 1x3x224: the model needs a 4-D NxCxHxW input"),
        (dict(input="0x3x224x224"), r"--input 0x3x224x224: N=0"),
        (dict(input="1x3x224x224x2"), r"--input 1x3x224x224x2 has 5 dimensions"),
        (dict(input="big"), r"--input 'big' is not a shape"),
        (dict(input="1x4x224x224"), r"--input 1x4x224x224 has 4 channels but the model takes 3"),
        (dict(dilate_stages="1"), r"--dilate-stages 1: stage 1 cannot be dilated; valid stages are 2..4"),
        (dict(expansion=0), r"--expansion 0 must be a positive integer"),
        (dict(num_classes=0), r"--num-classes 0 must be a positive integer"),
        (dict(width_per_group=1, groups=64, widths="32,64,128,256"), r"stage 1 width 32 gives 0.5 channels per group"),
    ],
)
def test_impossible_flags_name_the_flag(flags, message):
    with pytest.raises(SpecError, match=message):
        request_from_flags(None, **flags)


def test_unknown_model_lists_valid_names():
    with pytest.raises(SpecError, match=r"unknown model 'resnet51'; valid: resnet18, .*custom"):
        resolve_spec("resnet51")


def test_parse_int_list_tolerates_spaces():
    assert parse_int_list("--layers", " 3, 4,6 ,3") == (3, 4, 6, 3)


def test_spec_to_dict_resolves_expansion():
    data = PRESETS["resnet18"].spec.to_dict()
    assert data["expansion"] == 1 and data["layers"] == [2, 2, 2, 2]


# ---- the flag space: every spec that validates builds a model that runs --------------------

small_specs = st.fixed_dictionaries(
    {
        "block": st.sampled_from(["basic", "bottleneck"]),
        "layers": st.lists(st.integers(1, 2), min_size=1, max_size=4).map(tuple),
        "expansion": st.one_of(st.none(), st.integers(1, 4)),
        "groups": st.sampled_from([1, 2, 4]),
        "width_per_group": st.sampled_from([16, 32, 64]),
        "stem": st.sampled_from(["imagenet", "deep", "cifar"]),
        "stride_on": st.sampled_from(["3x3", "1x1"]),
        "shortcut": st.sampled_from(["A", "B", "C"]),
        "avg_down": st.booleans(),
        "se": st.booleans(),
        "se_ratio": st.sampled_from([1, 4, 16]),
        "drop_path": st.sampled_from([0.0, 0.1]),
        "num_classes": st.integers(1, 20),
        "in_channels": st.integers(1, 4),
        "dilate_last": st.booleans(),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fields=small_specs, size=st.integers(1, 40), batch=st.integers(1, 3))
def test_every_valid_spec_builds_and_runs(fields, size, batch):
    fields = dict(fields)
    n = len(fields["layers"])
    fields["widths"] = tuple(8 * 2**i for i in range(n))
    fields["dilate_stages"] = (n,) if fields.pop("dilate_last") and n >= 2 else ()
    try:
        spec = ResNetSpec(**fields)
    except SpecError as exc:
        assert str(exc).startswith("--"), exc  # every rejection names its flag
        return
    model = build_model(spec, device="meta")
    trace = trace_model(model, make_input((batch, spec.in_channels, size, size)))
    assert trace.ok, trace.error
    assert trace.records[0].output_shape == (batch, spec.num_classes)


def test_label_names_the_preset_and_the_changed_fields():
    assert request_from_flags("resnet50").label == "resnet50"
    assert request_from_flags("resnet18", se=True, stem="deep").label == "resnet18[stem=deep,se=true]"


@settings(max_examples=60, deadline=None)
@given(
    model=st.sampled_from(["resnet18", "resnet50", "resnet20", "resnext50_32x4d"]),
    se=st.one_of(st.none(), st.booleans()),
    layers=st.one_of(st.none(), st.sampled_from(["1,1,1", "2,2,2,2", "3,4,6,3"])),
    stride_on=st.one_of(st.none(), st.sampled_from(["3x3", "1x1"])),
    shortcut=st.one_of(st.none(), st.sampled_from(["A", "B", "C"])),
    drop_path=st.one_of(st.none(), st.sampled_from([0.0, 0.05])),
)
def test_label_round_trips_through_the_operand_syntax(model, **flags):
    from resnet_cli.spec import parse_model_operand

    try:
        request = request_from_flags(model, **flags)
    except SpecError:
        return
    name, parsed = parse_model_operand(request.label)
    assert name == model and request_from_flags(name, **parsed).spec == request.spec


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "100000"], "--layers 100000: 100,000 blocks in all is above the limit of 2,000"),
        (["--layers", "1000000000000"], "blocks in all is above the limit of 2,000"),
        (["--layers", ",".join(["1"] * 17)], "17 stages is above the limit of 16"),
        (["--num-classes", "100000000000000000000"], "--num-classes 100000000000000000000 is above the limit of 1,000,000"),
        (["--groups", "9223372036854775808"], "--groups 9223372036854775808 is above the limit of 4,096"),
        (["--widths", "1000000000000,128,256,512"], "width 1000000000000 is above the limit of 65,536"),
        (["--widths", "65536,1,1,1", "--expansion", "4"], "width 65536 x expansion 4 = 262,144 channels is above"),
        (["--groups", "64", "--width-per-group", "4096"], "2,097,152 inner channels is above the limit of 65,536"),
        (["--input", "1x3x1000000000000x1000000000000"], "H=1000000000000 is above the limit of 1,048,576"),
        (["--input", "1024x4096x1024x1024"], "4,398,046,511,104 elements is above the limit of 1,099,511,627,776"),
        (["--in-channels", "100000"], "--in-channels 100000 is above the limit of 4,096"),
        (["--device", "cpu", "--input", "1x3x100000x100000"], "GiB, more than the"),
        (["--device", "cpu", "--num-classes", "1000000", "--widths", "65536,128,256,512", "--expansion", "1"],
         "use --device meta"),
    ],
)  # fmt: skip
def test_every_size_is_bounded_before_anything_is_built(args, message):
    result = run("summary", "resnet50", "--depth", "0", *args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "basic", "bottleneck", "--channels", "100000", "--time"], "--channels 100000 is above the limit"),
        (["compare", "bottleneck", "basic", "--width-per-group", "2147483648"], "--width-per-group 2147483648 is above"),
        (["compare", "resnet50[layers=1000000]", "resnet50"], "1,000,000 blocks in all is above the limit"),
        (["bench", "resnet18", "--threads", "100000", "--input", "1x3x8x8"], "--threads 100000 is above the limit of"),
        (["table", "--layers", "1000000000000"], "blocks in all is above the limit of 2,000"),
    ],
)
def test_sizes_in_other_commands_are_bounded(args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --- --width-factor ------------------------------------------------------------------------------------------------


def test_a_width_factor_of_one_half_is_resnet50_at_half_width():
    half = build_model("resnet50", width_factor=0.5, device="meta").state_dict()
    widths = build_model("resnet50", widths=(32, 64, 128, 256), device="meta").state_dict()
    assert {k: v.shape for k, v in half.items()} == {k: v.shape for k, v in widths.items()}


def test_widths_are_rounded_down():
    # int(64 x 0.3) = 19, int(128 x 0.3) = 38, int(256 x 0.3) = 76, int(512 x 0.3) = 153
    assert resolve_spec("resnet18", width_factor=0.3).stage_widths == (19, 38, 76, 153)
    assert resolve_spec("resnet20", width_factor=2.5).stage_widths == (40, 80, 160)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--width-factor", "0"], "--width-factor 0.0 must be a number above 0"),
        (["--width-factor", "-1"], "--width-factor -1.0 must be a number above 0"),
        (["--width-factor", "0.01"], "stage 1 width 64 x 0.01 = 0.64 rounds down to 0 channels"),
        (["--width-factor", "5000"], "--width-factor 5000 is above the limit of 1,024"),
        # resnext50_32x4d at 0.3: stage 1 has int(64 x 0.3) = 19 planes, 19 x 4 / 64 channels per group
        (["resnext50_32x4d", "--width-factor", "0.3"], "stage 1 width 19 (64 x --width-factor 0.3) gives 1.1875"),
    ],
)
def test_bad_width_factors_exit_2_in_one_line(args, message):
    result = run("summary", *args)
    assert result.exit_code == 2
    assert message in one_error_line(result)


def test_width_factor_works_in_operands_and_sweeps():
    name, flags = parse_model_operand("resnet50[width-factor=0.5]")
    assert request_from_flags(name, **flags).spec.stage_widths == (32, 64, 128, 256)
    assert request_from_flags(name, **flags).label == "resnet50[width-factor=0.5]"
    data = run_json("sweep", "resnet18", "--vary", "width-factor=0.5,1")
    params = {v["values"]["width-factor"]: v["params"] for v in data["variants"]}
    half = sum(p.numel() for p in build_model("resnet18", widths=(32, 64, 128, 256), device="meta").parameters())
    assert params == {"1": 11_689_512, "0.5": half}
