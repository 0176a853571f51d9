"""Specs as files: `--spec FILE` (YAML or JSON) on every command that takes a model, and `resnet-cli spec`, whose
output --spec reads back unchanged, with `--to torchvision|timm`.

The expected constructor calls are written out by hand from the libraries' documented signatures:
torchvision.models.resnet50(*, weights=None, progress=True, **kwargs) passing **kwargs to
torchvision.models.resnet.ResNet(block, layers, num_classes=1000, zero_init_residual=False, groups=1,
width_per_group=64, replace_stride_with_dilation=None, norm_layer=None) (pytorch.org/vision/stable/models/resnet.html);
timm.models.resnet.ResNet(block, layers, num_classes=1000, in_chans=3, output_stride=32, ..., cardinality=1,
base_width=64, stem_width=64, stem_type='', ..., avg_down=False, channels=(64, 128, 256, 512), ...,
drop_path_rate=0., ..., zero_init_last=True, block_args=None) and its registered models (resnet50d:
stem_width=32, stem_type='deep', avg_down=True; seresnet50: block_args=dict(attn_layer='se'); ...) in
huggingface/pytorch-image-models timm/models/resnet.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from cli_runner import one_error_line, run, run_json
from hypothesis import HealthCheck, given, settings
from spec_strategies import valid_specs
from test_flags import CHANGED, EXPECTED_SPEC

from resnet_cli.cli import app
from resnet_cli.errors import SpecError
from resnet_cli.render.spec_text import spec_json, spec_yaml
from resnet_cli.spec import (
    BUILD_FLAGS,
    PRESETS,
    ResNetSpec,
    parse_spec_text,
    request_with_spec_file,
    spec_document,
)

MODEL_COMMANDS = ["summary", "flops", "debug-shapes", "debug-training", "bench", "sweep", "table", "spec"]


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _loaded(text: str, name: str, model: str | None = None) -> ResNetSpec:
    return request_with_spec_file(parse_spec_text(text, name), model).spec


# --- round trips ---------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(spec=valid_specs())
def test_a_drawn_spec_reads_back_unchanged_from_yaml_and_json(spec):
    document = spec_document("custom", spec)
    assert _loaded(spec_yaml(document), "drawn.yaml") == spec
    assert _loaded(spec_json(document), "drawn.json") == spec


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_reads_back_unchanged_with_its_name(name):
    spec_file = parse_spec_text(spec_yaml(spec_document(name, PRESETS[name].spec)), "preset.yaml")
    request = request_with_spec_file(spec_file, None)
    assert request.name == name and request.label == name
    assert request.spec == PRESETS[name].spec


@pytest.mark.parametrize(
    "args, fmt",
    [
        (["resnet18"], "yaml"),
        (["wrn16_8", "--block-dropout", "0.3"], "yaml"),
        (["resnet50", "--se", "--stem", "deep", "--layers", "2,2", "--width-factor", "0.5"], "json"),
        (["resnext50_32x4d", "--dilate-stages", "3,4", "--num-classes", "10", "--expansion", "2"], "yaml"),
    ],
)
def test_the_printed_spec_builds_the_same_model(tmp_path, args, fmt):
    printed = run("spec", *args, "--format", fmt)
    assert printed.exit_code == 0, printed.output
    path = _write(tmp_path, f"printed.{fmt}", printed.stdout)
    direct = run_json("summary", *args, "--depth", "0")
    from_file = run_json("summary", "--spec", path, "--depth", "0")
    assert from_file["model"] == direct["model"] and from_file["spec"] == direct["spec"]
    assert from_file["totals"] == direct["totals"]


def test_the_printed_spec_lists_every_field_with_model_first():
    data = json.loads(run("spec", "resnet34", "--se", "--format", "json").stdout)
    assert list(data) == ["model", *BUILD_FLAGS]
    assert data["model"] == "resnet34" and data["block"] == "basic" and data["layers"] == [3, 4, 6, 3]
    assert data["se"] is True and data["expansion"] is None and data["dilate_stages"] == []


def test_the_yaml_spec_is_one_field_per_line_with_lists_in_brackets():
    lines = run("spec", "resnet18").stdout.splitlines()
    assert lines[:3] == ["model: resnet18", "block: basic", "layers: [2, 2, 2, 2]"]
    assert "dilate_stages: []" in lines and "expansion: null" in lines and "se: false" in lines
    assert len(lines) == 1 + len(BUILD_FLAGS)


# --- reading a file ------------------------------------------------------------------------------------------------


def test_a_file_sets_every_field():
    document = {"model": "resnet18", **{name: list(v) if isinstance(v, tuple) else v for name, (_, v) in CHANGED.items()}}
    assert _loaded(json.dumps(document), "every.json") == EXPECTED_SPEC


def test_a_file_takes_flag_spellings_and_flag_text():
    text = "model: resnet18\n" + "".join(f"{BUILD_FLAGS[n].name}: '{t}'\n" for n, (t, _) in CHANGED.items())
    assert _loaded(text, "text.yaml") == EXPECTED_SPEC


def test_a_partial_file_changes_only_its_fields_over_the_model_argument():
    spec = _loaded("se: true\nlayers: [2, 2, 2]\n", "partial.yaml", model="resnet18")
    assert spec == ResNetSpec(block="basic", layers=(2, 2, 2), widths=(64, 128, 256), se=True)


def test_without_a_model_a_file_is_over_resnet50():
    assert _loaded("{}", "empty-mapping.json") == PRESETS["resnet50"].spec


def test_a_new_block_without_expansion_gets_its_own():
    assert _loaded("block: basic\nexpansion: null\n", "basic.yaml").block_expansion == 1


def test_flags_given_beside_the_file_override_it(tmp_path):
    path = _write(tmp_path, "over.yaml", "model: resnet50\nse: true\nnum_classes: 10\nlayers: [2, 2, 2, 2]\n")
    spec = run_json("summary", "--spec", path, "--num-classes", "5", "--no-se", "--depth", "0")["spec"]
    assert (spec["num_classes"], spec["se"], spec["layers"], spec["block"]) == (5, False, [2, 2, 2, 2], "bottleneck")


def test_model_argument_and_file_model_must_agree(tmp_path):
    path = _write(tmp_path, "m.yaml", "model: resnet50\n")
    assert run_json("summary", "resnet50", "--spec", path, "--depth", "0")["model"] == "resnet50"
    result = run("summary", "resnet18", "--spec", path)
    assert result.exit_code == 2
    assert one_error_line(result) == (
        f"Error: MODEL resnet18 and --spec {path} (model: resnet50) name different presets; give one of them"
    )


def test_an_unknown_model_argument_is_not_blamed_on_the_file(tmp_path):
    path = _write(tmp_path, "s.yaml", "se: true\n")
    line = one_error_line(run("summary", "resnet9", "--spec", path))
    assert line.startswith("Error: unknown model 'resnet9'")


@pytest.mark.parametrize(
    "text, message",
    [
        ("layrs: [3]\n", "key 'layrs' is not a spec field; valid: model, block, layers, widths,"),
        ("layers: [3, x]\n", 'layers: "x" in [3, "x"] is not an integer; give a list of integers such as [3, 4, 6, 3]'),
        ("layers: []\n", "layers: [] is empty; give a list of integers such as [3, 4, 6, 3]"),
        ("layers: '3,x'\n", "layers: 3,x: 'x' is not an integer"),
        ("groups: 2.5\n", "groups: '2.5' is not an integer"),
        ("groups: [1, 2]\n", "groups: a list is not an integer"),
        ("se: maybe\n", "se: 'maybe' is not on or off"),
        ("block: {a: 1}\n", "block: a mapping is not one of basic, bottleneck"),
        ("block: null\n", "block: null (an empty value) is not one of basic, bottleneck"),
        ("stem: tiny\n", "stem: 'tiny' is not one of imagenet, deep, cifar"),
        ("width_per_group: 4\nwidth-per-group: 8\n", "width_per_group is given twice"),
        ("model: resnet9\n", "unknown model 'resnet9'"),
        ("model: [resnet50]\n", 'model: ["resnet50"] is not a preset name'),
        ("model: resnet18\ngroups: 32\n", "--groups 32 needs --block bottleneck"),
        ("- se\n", "holds a list, not a mapping of spec fields"),
        ("layers: [\n", "is not valid YAML: line 2, column 1: "),
        ("", "is empty; write spec fields such as `layers: [3, 4, 6, 3]`"),
    ],
)
def test_a_bad_file_is_one_line_naming_the_file_and_key(tmp_path, text, message):
    path = _write(tmp_path, "bad.yaml", text)
    result = run("summary", "--spec", path)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert line.startswith(f"Error: --spec {path}") and message in line, line


def test_bad_json_names_line_and_column(tmp_path):
    path = _write(tmp_path, "bad.json", '{"se": tru}')
    assert one_error_line(run("flops", "--spec", path)) == f"Error: --spec {path} is not valid JSON: line 1, column 8: Expecting value"


def test_a_missing_file_or_a_directory_is_refused(tmp_path):
    assert one_error_line(run("summary", "--spec", str(tmp_path / "nope.yaml"))).endswith("nope.yaml: no such file")
    assert "is a directory" in one_error_line(run("summary", "--spec", str(tmp_path)))


def test_yaml_without_pyyaml_is_one_line_and_json_still_reads(monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` raises ImportError
    with pytest.raises(SpecError, match=r"^--spec s.yaml: reading YAML needs PyYAML \(pip install pyyaml\)$"):
        parse_spec_text("se: true\n", "s.yaml")
    assert parse_spec_text('{"se": true}', "s.json").fields == {"se": True}


def test_your_own_model_refuses_a_spec_file(tmp_path):
    path = _write(tmp_path, "s.yaml", "se: true\n")
    line = one_error_line(run("summary", "my_net.py:build", "--spec", path))
    assert line == (f"Error: --spec {path} describes a preset's spec, but my_net.py:build is your own model; change "
                    f"it in your code or pass it to the factory with --arg key=value")  # fmt: skip


# --- every command -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", MODEL_COMMANDS)
def test_every_command_that_takes_a_model_takes_a_spec_file(command):
    params = typer.main.get_command(app).commands[command].params
    assert "--spec" in {option for param in params for option in param.opts}


def test_spec_takes_every_build_flag_and_no_run_option():
    params = typer.main.get_command(app).commands["spec"].params
    options = {option for param in params for option in [*param.opts, *param.secondary_opts]}
    assert {flag.option for flag in BUILD_FLAGS.values()} <= options
    assert not {"--input", "--device", "--dtype", "--weights"} & options


def test_flops_and_sweep_read_the_file(tmp_path):
    path = _write(tmp_path, "se.yaml", "model: resnet18\nse: true\n")
    flops = run_json("flops", "--spec", path)
    assert flops["model"] == "resnet18" and flops["spec"]["se"] is True
    sweep = run_json("sweep", "--spec", path, "--vary", "num-classes=10,100")
    assert sweep["base"] == "resnet18" and sweep["base_spec"]["se"] is True and len(sweep["variants"]) == 2


def test_table_applies_a_partial_file_to_every_model_and_refuses_a_model_line(tmp_path):
    partial = _write(tmp_path, "partial.yaml", "num_classes: 10\n")
    columns = run_json("table", "resnet18", "resnet34", "--spec", partial)["models"]
    assert [c["spec"]["num_classes"] for c in columns] == [10, 10]
    whole = _write(tmp_path, "whole.yaml", "model: resnet50\n")
    assert one_error_line(run("table", "--spec", whole)) == (
        f"Error: --spec {whole} names model: resnet50, but this command applies the file's fields to every MODEL it "
        f"takes; remove the model: line"
    )


def test_spec_reads_a_partial_file_and_prints_it_whole(tmp_path):
    path = _write(tmp_path, "p.yaml", "model: resnet18\nse: on\n")
    data = json.loads(run("spec", "--spec", path, "--format", "json").stdout)
    assert data["model"] == "resnet18" and data["se"] is True and len(data) == 1 + len(BUILD_FLAGS)


def test_spec_never_imports_torch():
    code = ("import sys\nfrom resnet_cli.cli import app\n"
            "try:\n    app(['spec', 'resnet50', '--to', 'timm'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "print('torch' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['timm.create_model("resnet50", num_classes=1000, zero_init_last=False)', "False"]


# --- --to torchvision | timm ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["resnet50"], "torchvision.models.resnet50(num_classes=1000, zero_init_residual=False)"),
        (["resnet18", "--stride-on", "1x1"], "torchvision.models.resnet18(num_classes=1000, zero_init_residual=False)"),
        (["resnext101_64x4d", "--num-classes", "10", "--zero-init-residual"],
         "torchvision.models.resnext101_64x4d(num_classes=10, zero_init_residual=True)"),
        (["wide_resnet50_2", "--dilate-stages", "3,4"],
         "torchvision.models.wide_resnet50_2(num_classes=1000, zero_init_residual=False, "
         "replace_stride_with_dilation=[False, True, True])"),
        (["custom", "--layers", "2,2,2,2", "--groups", "4", "--width-per-group", "32"],
         "torchvision.models.resnet.ResNet(torchvision.models.resnet.Bottleneck, [2, 2, 2, 2], num_classes=1000, "
         "zero_init_residual=False, groups=4, width_per_group=32)"),
        (["resnet34", "--layers", "1,1,1,1"],
         "torchvision.models.resnet.ResNet(torchvision.models.resnet.BasicBlock, [1, 1, 1, 1], num_classes=1000, "
         "zero_init_residual=False)"),
        (["resnet50", "--se", "--stem", "deep"],
         "no torchvision equivalent: stem=deep (the 7x7 stem only), se=true (no squeeze-excitation)"),
        (["resnet50", "--stride-on", "1x1", "--shortcut", "C", "--avg-down", "--drop-path", "0.1"],
         "no torchvision equivalent: stride-on=1x1 (the stride is on the 3x3 conv (ResNet v1.5)), shortcut=C "
         "(projection shortcuts only where the shape changes: B), avg-down=true (no average-pool shortcut), "
         "drop-path=0.1 (no stochastic depth)"),
        (["resnet18", "--dilate-stages", "4", "--in-channels", "1"],
         "no torchvision equivalent: dilate-stages=4 (its BasicBlock refuses dilation), in-channels=1 "
         "(3 input channels only)"),
        (["resnet50", "--width-factor", "2", "--expansion", "2"],
         "no torchvision equivalent: width-factor=2.0 (planes 64, 128, 256, 512 only), expansion=2 "
         "(a bottleneck block expands by 4)"),
        (["resnet20"],
         "no torchvision equivalent: layers=3,3,3 (4 stages only), widths=16,32,64 (planes 64, 128, 256, 512 only), "
         "stem=cifar (the 7x7 stem only), shortcut=A (projection shortcuts only where the shape changes: B)"),
    ],
)
def test_to_torchvision(args, expected):
    result = run("spec", *args, "--to", "torchvision")
    assert result.exit_code == 0, result.output
    assert result.stdout == expected + "\n"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["resnet50"], 'timm.create_model("resnet50", num_classes=1000, zero_init_last=False)'),
        (["resnet50", "--stem", "deep", "--avg-down"], 'timm.create_model("resnet50d", num_classes=1000, zero_init_last=False)'),
        (["resnet101", "--stem", "deep"], 'timm.create_model("resnet101c", num_classes=1000, zero_init_last=False)'),
        (["resnet152", "--stem", "deep", "--stem-channels", "128"],
         'timm.create_model("resnet152s", num_classes=1000, zero_init_last=False)'),
        (["resnet50", "--se", "--zero-init-residual"], 'timm.create_model("seresnet50", num_classes=1000, zero_init_last=True)'),
        (["resnext50_32x4d", "--stem", "deep", "--avg-down", "--num-classes", "10"],
         'timm.create_model("resnext50d_32x4d", num_classes=10, zero_init_last=False)'),
        (["resnext101_32x8d", "--se", "--stem", "deep", "--avg-down", "--drop-path", "0.2"],
         'timm.create_model("seresnext101d_32x8d", num_classes=1000, drop_path_rate=0.2, zero_init_last=False)'),
        (["resnet101", "--dilate-stages", "4"],
         'timm.create_model("resnet101", num_classes=1000, output_stride=16, zero_init_last=False)'),
        (["wide_resnet50_2", "--in-channels", "1"],
         'timm.create_model("wide_resnet50_2", num_classes=1000, in_chans=1, zero_init_last=False)'),
        (["resnet50", "--se", "--se-ratio", "8", "--dilate-stages", "3,4"],
         "timm.models.resnet.ResNet(block=timm.models.resnet.Bottleneck, layers=[3, 4, 6, 3], "
         "block_args=dict(attn_layer=functools.partial(timm.layers.SEModule, rd_ratio=1 / 8)), num_classes=1000, "
         "output_stride=8, zero_init_last=False)"),
        (["resnet50", "--widths", "32,64,128,256", "--stem-channels", "64", "--groups", "2", "--width-per-group", "32",
          "--stem", "imagenet"],
         "timm.models.resnet.ResNet(block=timm.models.resnet.Bottleneck, layers=[3, 4, 6, 3], "
         "channels=[32, 64, 128, 256], cardinality=2, base_width=32, num_classes=1000, zero_init_last=False)"),
        (["resnet18", "--layers", "1,1,1,1", "--stem", "deep", "--stem-channels", "48", "--avg-down"],
         "timm.models.resnet.ResNet(block=timm.models.resnet.BasicBlock, layers=[1, 1, 1, 1], stem_width=24, "
         'stem_type="deep", avg_down=True, num_classes=1000, zero_init_last=False)'),
        (["resnet18", "--se"],
         "no timm equivalent: se=true (its SE widths are rounded to multiples of 8: 64 / 16 = 4)"),
        (["resnet50", "--widths", "32,64,128,256"],
         "no timm equivalent: widths=32,64,128,256 (the 7x7 stem has 64 channels, this one 32)"),
        (["resnet50", "--stem", "deep", "--stem-channels", "33"],
         "no timm equivalent: stem-channels=33 (the deep stem's width is even, this one 33)"),
        (["resnet50", "--stem", "deep", "--avg-down", "--dilate-stages", "3,4"],
         "no timm equivalent: avg-down=true (in a dilated stage its shortcut pools 2x2 at stride 1)"),
        (["resnet50", "--dilate-stages", "2"],
         "no timm equivalent: dilate-stages=2 (dilates stage 4 (output_stride=16) or stages 3,4 (8) only)"),
        (["resnet34", "--dilate-stages", "4"],
         "no timm equivalent: dilate-stages=4 (its BasicBlock dilates a stage's first block differently)"),
        (["wrn16_8"],
         "no timm equivalent: layers=2,2,2 (4 stages only), stem=cifar (the 7x7 and deep stems only), "
         "preact=true (post-activation blocks only)"),
        (["resnet50", "--block-dropout", "0.3", "--stride-on", "1x1"],
         "no timm equivalent: stride-on=1x1 (the stride is on the 3x3 conv (ResNet v1.5)), "
         "block-dropout=0.3 (no dropout inside blocks)"),
    ],
)
def test_to_timm(args, expected):
    result = run("spec", *args, "--to", "timm")
    assert result.exit_code == 0, result.output
    assert result.stdout == expected + "\n"


def test_to_with_a_format_is_refused():
    result = run("spec", "resnet50", "--to", "timm", "--format", "json")
    assert result.exit_code == 2
    assert one_error_line(result) == (
        "Error: --format json writes the spec; --to timm prints a Python call instead: give one"
    )
