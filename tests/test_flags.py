"""Every build flag on every surface: each ResNetSpec field is declared once and every surface must take it.

The expected values below are written out by hand: a new ResNetSpec field fails these tests until it has a
value here, and then fails again if any surface (the CLI options, compare operands, sweep --vary, the label,
docs/spec.md) does not take it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import typer
from cli_runner import one_error_line, run, run_json

from resnet_cli.analysis.sweep import parse_vary
from resnet_cli.cli import app
from resnet_cli.spec import BUILD_FLAGS, ResNetSpec, parse_model_operand, request_from_flags

DOCS = Path(__file__).resolve().parents[1] / "docs" / "spec.md"

# One non-default value per field, all valid together on resnet18: (CLI text, value in the spec).
CHANGED = {
    "block": ("bottleneck", "bottleneck"),
    "layers": ("2,2", (2, 2)),
    "widths": ("32,64", (32, 64)),
    "width_factor": ("0.5", 0.5),
    "expansion": ("2", 2),
    "groups": ("2", 2),
    "width_per_group": ("32", 32),
    "stem": ("deep", "deep"),
    "stride_on": ("1x1", "1x1"),
    "stem_channels": ("24", 24),
    "shortcut": ("C", "C"),
    "avg_down": ("true", True),
    "se": ("true", True),
    "se_ratio": ("8", 8),
    "dilate_stages": ("2", (2,)),
    "drop_path": ("0.1", 0.1),
    "preact": ("true", True),
    "block_dropout": ("0.3", 0.3),
    "zero_init_residual": ("true", True),
    "num_classes": ("10", 10),
    "in_channels": ("1", 1),
}
EXPECTED_SPEC = ResNetSpec(**{name: value for name, (_, value) in CHANGED.items()})
CHOICES = {"block": ("basic", "bottleneck"), "stem": ("imagenet", "deep", "cifar"), "stride_on": ("3x3", "1x1"),
           "shortcut": ("A", "B", "C")}  # fmt: skip
# Commands whose MODEL takes the build flags as options, and `table`, which takes them for every row.
COMMANDS = ["summary", "flops", "debug-shapes", "bench", "sweep", "table"]


def _cli_args() -> list[str]:
    args = []
    for name, (text, _) in CHANGED.items():
        flag = BUILD_FLAGS[name]
        if flag.kind == "bool":
            args.append(flag.option)
        else:
            args += [flag.option, text]
    return args


def test_every_spec_field_is_a_build_flag_with_help():
    fields = [f.name for f in dataclasses.fields(ResNetSpec)]
    assert list(BUILD_FLAGS) == fields
    assert set(CHANGED) == set(fields), "give the new field a value in CHANGED"
    for flag in BUILD_FLAGS.values():
        assert flag.help.endswith("."), flag
        assert flag.choices == CHOICES.get(flag.field, ()), flag


def test_the_cli_sets_every_field():
    data = run_json("summary", "resnet18", *_cli_args(), "--depth", "0")
    assert data["spec"] == EXPECTED_SPEC.to_dict()


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_every_build_flag(command):
    params = typer.main.get_command(app).commands[command].params
    options = {option for param in params for option in [*param.opts, *param.secondary_opts]}
    for flag in BUILD_FLAGS.values():
        assert flag.option in options, (command, flag.option)
        if flag.kind == "bool":
            assert f"--no-{flag.name}" in options, (command, flag.option)


@pytest.mark.parametrize("name", sorted(CHOICES))
def test_the_cli_refuses_a_value_outside_the_choices(name):
    result = run("summary", BUILD_FLAGS[name].option, "nonsense")
    assert result.exit_code == 2
    for choice in CHOICES[name]:
        assert choice in result.output


def test_a_compare_operand_sets_every_field():
    text = "resnet18[" + ",".join(f"{BUILD_FLAGS[n].name}={t}" for n, (t, _) in CHANGED.items()) + "]"
    name, flags = parse_model_operand(text)
    assert name == "resnet18"
    assert request_from_flags(name, **flags).spec == EXPECTED_SPEC


@pytest.mark.parametrize("name", list(CHANGED))
def test_sweep_varies_every_field(name):
    flag = BUILD_FLAGS[name]
    vary = parse_vary(f"{flag.name}={CHANGED[name][0]}")
    assert vary.flag is flag and len(vary.values) == 1
    flags = {n: BUILD_FLAGS[n].parse(text) for n, (text, _) in CHANGED.items()}
    assert request_from_flags("resnet18", **{**flags, name: vary.values[0]}).spec == EXPECTED_SPEC


def test_the_label_names_every_changed_field_and_reads_back():
    request = request_from_flags("resnet18", **{n: v for n, (_, v) in CHANGED.items() if n not in
                                                ("layers", "widths", "dilate_stages")},
                                 layers="2,2", widths="32,64", dilate_stages="2")  # fmt: skip
    assert request.spec == EXPECTED_SPEC
    for flag in BUILD_FLAGS.values():
        assert f"{flag.name}=" in request.label, flag.name
    name, flags = parse_model_operand(request.label)
    assert request_from_flags(name, **flags).spec == EXPECTED_SPEC


def test_an_unknown_operand_flag_lists_the_build_flags():
    result = run("compare", "resnet50[colour=red]", "resnet34")
    line = one_error_line(result)
    assert result.exit_code == 2
    assert all(flag.name in line for flag in BUILD_FLAGS.values())


def _docs_flag_cells() -> list[str]:
    """First cells of the flag table in docs/spec.md."""
    text = DOCS.read_text()
    table = text[text.index("| flag | meaning | default |"):].split("\n\n")[0].splitlines()[2:]
    return [row.split(" | ")[0].lstrip("| ") for row in table]


def test_docs_spec_table_lists_every_build_flag_and_no_other():
    cells = _docs_flag_cells()
    documented = {option for cell in cells for option in re.findall(r"--[a-z-]+", cell)}
    run_options = {"--input", "--weights", "--device", "--dtype"}
    assert documented - run_options == {flag.option for flag in BUILD_FLAGS.values()}
    for flag in BUILD_FLAGS.values():
        if flag.choices:
            cell = next(c for c in cells if f"`{flag.option} " in c)
            choices = "\\|".join(flag.choices)  # a pipe inside a Markdown table cell is escaped
            assert cell == f"`{flag.option} {choices}`", cell
