"""Terminal widths: the table format fits 80 columns without wrapping names, keeps numbers whole at 60, ends no line
in spaces; help pages fit 80 columns; -h, --version and shell completion."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
import typer.main
from cli_runner import run

from resnet_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
GROUP = typer.main.get_command(app)


def shown(*args: str, width: int) -> str:
    result = run(*args, env={"COLUMNS": str(width), "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.stdout


def too_long(text: str, width: int) -> list[str]:
    return [line for line in text.splitlines() if len(line) > width]


def names_whole(args: tuple[str, ...], depth: int | None, width: int) -> list[str]:
    """The layer names (from JSON) that the table at `width` does not show whole on one line."""
    text = shown(*args, width=width)
    assert too_long(text, width) == []
    words = set(text.split())
    layers = json.loads(shown(*args, "--format", "json", width=width))["layers"]
    names = [layer["name"] for layer in layers if depth is None or layer["depth"] <= depth]
    assert depth == 0 or names
    return [name for name in names if name not in words]


@pytest.mark.parametrize("depth", [None, 0, 1, 2, 3])
@pytest.mark.parametrize("extra", [(), ("--rf",)], ids=["plain", "rf"])
def test_summary_fits_80_columns_without_wrapping_a_name(depth, extra):
    args = ("summary", "resnet50", *extra, *(() if depth is None else ("--depth", str(depth))))
    assert names_whole(args, depth, 80) == []


@pytest.mark.parametrize("model", ["resnet50", "resnext50_32x4d", "preact_resnet164"])
def test_flops_by_module_fits_80_columns_without_wrapping_a_name(model):
    assert names_whole(("flops", model, "--by", "module"), None, 80) == []


def numbers_whole(args: tuple[str, ...], width: int, key: str = "params") -> list[str]:
    """The `key` counts (from JSON, with separators) that the table at `width` does not show whole."""
    text = shown(*args, width=width)
    layers = json.loads(shown(*args, "--format", "json", width=width))["layers"]
    return [f"{layer[key]:,}" for layer in layers if f"{layer[key]:,}" not in text.split()]


@pytest.mark.parametrize("width", [40, 60, 80])
@pytest.mark.parametrize("command", ["summary", "flops"])
def test_long_names_fold_and_numbers_stay_whole(command, width):
    # names longer than the terminal: the name folds, a number never loses a digit (`4,` for 4,480)
    args = (command, "tests/models/long_names.py:Net", "--input", "1x3x32x32",
            *(("--by", "module") if command == "flops" else ()))  # fmt: skip
    assert numbers_whole(args, width, "params" if command == "summary" else "macs") == []
    if width == 80:
        text = shown(*args, width=width)
        assert too_long(text, 80) == []


def test_summary_rf_at_every_level_keeps_shapes_whole_on_80_columns():
    # indentation is dropped (names are full paths) before a shape or a type folds
    args = ("summary", "resnet50", "--rf")
    text = shown(*args, width=80)
    layers = json.loads(shown(*args, "--format", "json", width=80))["layers"]
    shapes = {"x".join(map(str, layer["output_shape"])) for layer in layers}
    assert [shape for shape in shapes if shape not in text.split()] == []
    assert sum("2d" == line.strip() for line in text.splitlines()) <= 1  # at most AdaptiveAvgPool2d folds


def test_a_table_too_wide_for_the_terminal_keeps_every_model_and_number():
    models = ["resnet18", "resnet50", "wrn28_10", "preact_resnet164", "resnext101_64x4d", "wide_resnet101_2"]
    text = shown("table", *models, width=80)
    params = [f"{model['params'] / 1e6:.2f}" for model in json.loads(shown("table", *models, "--format", "json",
                                                                          width=80))["models"]]  # fmt: skip
    assert len(params) == 6 and [p for p in params if p not in text.split()] == []


def test_summary_depth_0_prints_the_totals_without_an_empty_table():
    text = shown("summary", "resnet50", "--depth", "0", width=80)
    assert "Layer" not in text and "─" not in text
    assert "Total params               25,557,032" in text


def test_flops_keeps_every_number_whole_at_60_columns():
    text = shown("flops", "resnet50", width=60)
    stages = json.loads(shown("flops", "resnet50", "--format", "json", width=60))["by_stage"]
    numbers = [f"{stage[key]:,}" for stage in stages.values() for key in ("params", "macs", "macs_conv_linear")]
    assert [n for n in numbers if n not in text.split()] == []


def test_list_keeps_every_number_whole_at_60_columns(preset_list):
    text = shown("list", width=60)
    numbers = [f"{preset['params']:,}" for preset in json.loads(preset_list.stdout)["presets"]]
    assert len(numbers) > 10 and [n for n in numbers if n not in text.split()] == []


@pytest.mark.parametrize("example", ["conv_channels.py:small_resnet", "classifier_mismatch.py:bottleneck_resnet"])
@pytest.mark.parametrize("width", [60, 80])
def test_debug_shapes_diagnosis_is_never_cut(example, width, monkeypatch):
    monkeypatch.chdir(REPO)
    result = run("debug-shapes", f"docs/examples/{example}", "--depth", "0", env={"COLUMNS": str(width)})
    assert result.exit_code == 1, result.output
    assert "…" not in result.stdout and too_long(result.stdout, width) == []


# Every command, on a small input that runs in about a second.
FAST_RUNS = {
    "list": ["list"],
    "summary": ["summary", "resnet18", "--depth", "2"],
    "flops": ["flops", "resnet18", "--by", "operator"],
    "compare": ["compare", "resnet18", "resnet34"],
    "table": ["table"],
    "debug-shapes": ["debug-shapes", "docs/examples/residual_add.py:small_resnet", "--input", "1x3x32x32"],
    "debug-training": ["debug-training", "resnet20", "--input", "2x3x32x32"],
    "bench": ["bench", "resnet20", "--device", "cpu", "--input", "1x3x32x32", "--warmup", "1", "--iters", "2"],
    "sweep": ["sweep", "resnet20", "--vary", "se=off,on"],
    "spec": ["spec", "resnet18"],
}


def test_every_command_has_a_fast_run():
    assert set(GROUP.commands) == set(FAST_RUNS)


@pytest.mark.parametrize("command", FAST_RUNS)
def test_piped_output_ends_no_line_in_spaces(command, monkeypatch):
    monkeypatch.chdir(REPO)
    result = run(*FAST_RUNS[command])
    assert result.exit_code in (0, 1), result.output
    assert [line for line in result.stdout.splitlines() if line != line.rstrip()] == []


@pytest.mark.parametrize("command", [None, *GROUP.commands])
def test_help_fits_80_columns(command):
    page = shown(*([command] if command else []), "--help", width=80)
    assert too_long(page, 80) == [] and "…" not in page and "<bool>" not in page
    params = (GROUP.commands[command] if command else GROUP).params
    names = [name for p in params if not getattr(p, "hidden", False) for name in (*p.opts, *p.secondary_opts)]
    assert [n for n in names if n.startswith("-") and not re.search(rf"(?<![\w-]){n}(?![\w-])", page)] == []
    assert re.findall(r"<[\w.-]+\|[^>\s]*(?=[\s│])", page) == []  # a <choice|list> split over two lines


@pytest.mark.parametrize("command", [None, "summary"])
def test_dash_h_is_help(command):
    args = [command] if command else []
    assert shown(*args, "-h", width=80) == shown(*args, "--help", width=80)


def test_boolean_flags_take_no_value():
    result = run("summary", "resnet18", "--se", "true", "--depth", "0")
    assert result.exit_code == 2
    assert run("summary", "resnet18", "--se", "--no-zero-init-residual", "--depth", "0").exit_code == 0


def test_version_prints_the_package_version_without_importing_torch():
    code = (
        "import sys\nfrom resnet_cli.cli import app\n"
        "try:\n    app(['--version'])\nexcept SystemExit as exit:\n    print(exit.code)\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"resnet-cli {version('resnet-cli')}", "0", "False"]


def test_shell_completion_is_offered_and_completes_choices():
    page = shown("--help", width=80)
    assert "--install-completion" in page and "--show-completion" in page
    words = {"_RESNET_CLI_COMPLETE": "complete_bash", "COMP_WORDS": "resnet-cli summary --block ", "COMP_CWORD": "3"}
    script = Path(sys.executable).parent / "resnet-cli"
    done = subprocess.run([script], capture_output=True, text=True, env={**os.environ, **words})
    assert done.stdout.split() == ["basic", "bottleneck"], done.stderr


@pytest.mark.parametrize("command", list(GROUP.commands))
def test_help_panels_have_distinct_titles(command):
    # typer draws arguments and options in separate panels: one title given to both printed it twice
    titles = re.findall(r"╭─ (.+?) ─", shown(command, "--help", width=80))
    assert len(titles) == len(set(titles)), titles
