"""The `resnet-cli` entry point, `list` and `summary` as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import pytest
import torch
from cli_runner import run, run_json

from resnet_cli import build_model
from resnet_cli.cli import app

# One option each command's help must show, so an empty help page fails too.
HELP_SHOWS = {
    None: "summary", "list": "--format", "summary": "--layers", "flops": "--counter", "compare": "--time",
    "table": "--layers", "debug-shapes": "--arg", "debug-training": "--loss", "bench": "--channels-last",
    "sweep": "--vary", "spec": "--to",
}  # fmt: skip


def test_no_help_page_imports_torch():
    """`--help` of the root and of every command is instant: none imports torch (checked after each, in one process)."""
    registered = {command.name or command.callback.__name__.replace("_", "-") for command in app.registered_commands}
    assert registered == set(HELP_SHOWS) - {None}  # a new command needs a line here
    code = (
        "import io, sys, contextlib\nfrom resnet_cli.cli import app\n"
        f"for name in {list(HELP_SHOWS)!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n            app(([name] if name else []) + ['--help'])\n        except SystemExit:\n            pass\n"
        "    print(name, 'torch' in sys.modules, repr(out.getvalue()[-20000:]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(HELP_SHOWS)
    for line, (name, shown) in zip(lines, HELP_SHOWS.items(), strict=True):
        command, imported, page = line.split(" ", 2)
        assert command == str(name) and imported == "False", line[:200]
        assert shown in page, (name, shown)


def test_python_dash_m_runs_the_cli():
    proc = subprocess.run([sys.executable, "-m", "resnet_cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "summary" in proc.stdout and "list" in proc.stdout


def test_process_entry_point_runs_commands_with_the_collector_on_and_imports_frozen():
    """main() keeps the collector off during imports; the command's own work must run with it back on."""
    script = (
        "import gc, sys\n"
        "import resnet_cli.analysis.catalog as catalog\n"
        "real = catalog.preset_catalog\n"
        "def spy():\n"
        "    print(gc.isenabled(), gc.get_freeze_count() > 100_000, 'torch' in sys.modules, file=sys.stderr)\n"
        "    return real()\n"
        "catalog.preset_catalog = spy\n"
        "sys.argv = ['resnet-cli', 'list', '--format', 'json']\n"
        "from resnet_cli.cli import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "True True True"
    assert len(json.loads(done.stdout)["presets"]) == 21


def test_in_process_callers_keep_their_collector():
    import gc

    frozen = gc.get_freeze_count()
    gc.disable()
    try:
        assert run("summary", "resnet18", "--depth", "0").exit_code == 0
        assert not gc.isenabled() and gc.get_freeze_count() == frozen
    finally:
        gc.enable()


def test_process_entry_point_help_imports_no_torch():
    argv = [sys.executable, "-X", "importtime", "-m", "resnet_cli", "flops", "--help"]
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0 and "--counter" in done.stdout
    assert not [line for line in done.stderr.splitlines() if line.rstrip().endswith("| torch")]


def test_process_entry_point_keeps_output_and_exit_codes():
    """main() freezes the garbage collector on the way out; output and exit codes must not change."""
    argv = [sys.executable, "-m", "resnet_cli", "flops", "resnet18", "--format", "json"]
    ok = subprocess.run(argv, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["totals"]["macs"] == 1_819_065_856
    bad = subprocess.run([sys.executable, "-m", "resnet_cli", "flops", "resnet9"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and bad.stderr.startswith("Error: unknown model 'resnet9'")


def test_summary_depth_1_lists_stem_stages_and_head():
    data = run_json("summary", "resnet50", "--depth", "1")
    names = [layer["name"] for layer in data["layers"]]
    assert names == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "flatten", "fc"]
    by_name = {layer["name"]: layer for layer in data["layers"]}
    assert by_name["layer4"]["output_shape"] == [1, 2048, 7, 7]
    assert by_name["layer3"]["params"] == 7_098_368


def test_summary_json_schema():
    data = run_json("summary", "resnet18", "--depth", "2")
    assert {"model", "spec", "input_shape", "totals", "layers"} <= set(data)
    assert data["model"] == "resnet18" and data["input_shape"] == [1, 3, 224, 224]
    assert data["spec"]["block"] == "basic" and data["spec"]["layers"] == [2, 2, 2, 2]
    totals = data["totals"]
    assert totals["params"] == totals["trainable_params"] == 11_689_512
    assert totals["param_bytes"] == 11_689_512 * 4
    assert totals["activation_bytes"] > 0
    for layer in data["layers"]:
        assert {"name", "type", "depth", "input_shape", "output_shape", "params"} <= set(layer)
        assert 1 <= layer["depth"] <= 2
    assert isinstance(data["layers"][0]["params"], int)


def test_summary_depth_0_shows_totals_only():
    data = run_json("summary", "resnet18", "--depth", "0")
    assert data["layers"] == [] and data["totals"]["params"] == 11_689_512
    assert "(totals only, device meta)" in run("summary", "resnet18", "--depth", "0").stdout


def test_summary_depth_columns_add_up_to_the_total():
    data = run_json("summary", "resnet34", "--depth", "1")
    assert sum(layer["params"] for layer in data["layers"]) == data["totals"]["params"]


def test_summary_default_is_custom_resnet50():
    data = run_json("summary", "--depth", "1")
    assert data["model"] == "custom" and data["totals"]["params"] == 25_557_032


def test_summary_applies_build_flags():
    data = run_json("summary", "resnet18", "--num-classes", "10", "--se", "--depth", "1")
    assert data["spec"]["se"] is True
    assert data["layers"][-1]["output_shape"] == [1, 10]


def test_summary_huge_input_on_meta_is_instant():
    data = run_json("summary", "resnet152", "--input", "256x3x1024x1024", "--depth", "1")
    assert data["layers"][-1]["output_shape"] == [256, 1000]
    assert data["totals"]["activation_bytes"] > 100 * 2**30  # far more than this machine has


def test_summary_on_cpu_runs_for_real():
    data = run_json("summary", "resnet20", "--device", "cpu", "--depth", "1")
    assert data["device"] == "cpu" and data["input_shape"] == [1, 3, 32, 32]


def test_summary_dtype_halves_parameter_memory():
    full = run_json("summary", "resnet18", "--depth", "1")["totals"]
    half = run_json("summary", "resnet18", "--depth", "1", "--dtype", "bfloat16")["totals"]
    assert half["param_bytes"] * 2 == full["param_bytes"]


def test_summary_table_fits_80_columns_and_shows_totals():
    result = run("summary", "resnet50", "--depth", "3", env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "Total params               25,557,032" in result.stdout
    assert "layer1.0.downsample" in result.stdout


def test_summary_honours_no_color():
    result = run("summary", "resnet18", "--depth", "1", env={"NO_COLOR": "1", "FORCE_COLOR": None})
    assert "\x1b[" not in result.stdout


def test_summary_csv_and_markdown():
    result = run("summary", "resnet18", "--depth", "1", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][:4] == ["Layer", "Type", "Output shape", "Params"]
    assert rows[1][:4] == ["conv1", "Conv2d", "1x64x112x112", "9408"]
    md = run("summary", "resnet18", "--depth", "1", "--format", "markdown").stdout
    assert "| conv1 | Conv2d | 1x64x112x112 | 9,408 |" in md


def test_summary_weights_load_strictly(tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(build_model("resnet18").state_dict(), path)
    assert run_json("summary", "resnet18", "--weights", str(path), "--depth", "1")["totals"]["params"] == 11_689_512
    result = run("summary", "resnet34", "--weights", str(path))
    assert result.exit_code == 2
    assert "does not fit the model: missing keys: layer1.2.conv1.weight" in result.stderr


def test_list_shows_every_preset_with_params(preset_list):
    data = json.loads(preset_list.stdout)
    by_name = {p["name"]: p for p in data["presets"]}
    assert by_name["resnet50"]["params"] == 25_557_032
    assert by_name["resnet110"]["input_shape"] == [1, 3, 32, 32]
    assert by_name["resnext101_64x4d"]["groups"] == 64
    table = run("list").stdout
    assert "wide_resnet101_2" in table and "126,886,696" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layers", "3,4,x"], "--layers 3,4,x: 'x' is not an integer"),
        (["--layers", "0,1"], "--layers 0,1: stage 1 has 0 blocks"),
        (["--layers", "3,4", "--widths", "64,128,256"], "--widths 64,128,256 has 3 values but --layers 3,4"),
        (["--groups", "3", "--width-per-group", "4", "--widths", "24,48,96,192"], "--groups 3 --width-per-group 4"),
        (["resnet18", "--groups", "32"], "--groups 32 needs --block bottleneck"),
        (["--block", "basic", "--width-per-group", "128"], "--width-per-group 128 needs --block bottleneck"),
        (["--se-ratio", "0"], "--se-ratio 0"),
        (["--drop-path", "1.5"], "--drop-path 1.5"),
        (["--input", "1x3x224"], "--input 1x3x224: the model needs a 4-D NxCxHxW input"),
        (["--input", "0x3x224x224"], "--input 0x3x224x224: N=0"),
        (["--weights", "/nonexistent/w.pt"], "--weights /nonexistent/w.pt: no such file"),
        (["--block", "triple"], "'--block'"),
        (["--device", "tpu"], "'--device'"),
        (["--depth", "-1"], "--depth -1"),
        (["resnet51"], "unknown model 'resnet51'"),
        (["--dilate-stages", "1"], "--dilate-stages 1"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message):
    result = run("summary", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_bad_weights_file_content_is_a_user_error(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_text("not a checkpoint")
    result = run("summary", "--weights", str(path))
    assert result.exit_code == 2 and "not a readable PyTorch state dict" in result.stderr


def test_cuda_device_without_gpu_is_a_user_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = run("summary", "resnet18", "--device", "cuda")
    assert result.exit_code == 2 and "--device cuda: no CUDA device" in result.stderr


def test_input_too_small_names_the_layer():
    from resnet_cli.errors import SpecError
    from resnet_cli.trace import make_input, trace_model

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5), torch.nn.Conv2d(8, 8, 5))
    trace = trace_model(model, make_input((1, 3, 7, 7)))
    with pytest.raises(SpecError, match=r"--input 1x3x7x7: the forward pass fails in 1 \(Conv2d\) on input 1x8x3x3"):
        trace.raise_for_failure()


def test_every_option_help_survives_rich_markup():
    """A literal `[default: ...]` in help must be escaped, or rich swallows it as a markup tag."""
    import typer.main

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        shown = run(name, "--help", env={"COLUMNS": "400"}).stdout
        shown = " ".join(shown.split())
        for param in command.params:
            text = getattr(param, "help", None) or ""
            if "[" in text:
                assert " ".join(text.replace("\\[", "[").split()) in shown, (name, param.name)
