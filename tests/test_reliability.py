"""The promises of docs/reliability.md: exit codes, one-line errors, bounded work, for generated and targeted input."""

from __future__ import annotations

import json

import pytest
import torch
from cli_runner import one_error_line, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from resnet_cli.analysis import diagnosis
from resnet_cli.render.table import SCHEMA_VERSION
from resnet_cli.trace import make_input

ALWAYS_TOO_SMALL = '''
import torch.nn.functional as F
from torch import nn


class Fixed(nn.Module):
    """Pools by a fixed 64x64 window after a stride-32 conv: too small for any input under 2017x2017."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=32, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(F.avg_pool2d(self.conv(x), 64).flatten(1))
'''


def test_the_smallest_input_is_searched_on_meta_for_a_model_on_cpu(tmp_path, monkeypatch):
    (tmp_path / "fixed.py").write_text(ALWAYS_TOO_SMALL)
    traced = []
    original = diagnosis._trace

    def recording(model: nn.Module, inputs: torch.Tensor):
        traced.append((inputs.device.type, next(model.parameters()).device.type, tuple(inputs.shape)))
        return original(model, inputs)

    monkeypatch.setattr(diagnosis, "_trace", recording)
    result = run("debug-shapes", f"{tmp_path / 'fixed.py'}:Fixed", "--device", "cpu", "--input", "1x3x32x32")
    assert result.exit_code == 1
    assert "at least 2017x2017" in result.stdout.replace("\n", " ")  # 32 x 63 + 1: the closed form of the pool
    assert traced[0] == ("cpu", "cpu", (1, 3, 32, 32))  # the user's own pass, for real
    assert len(traced) > 5 and all(entry[:2] == ("meta", "meta") for entry in traced[1:])


def test_a_colon_name_in_an_error_is_not_an_emoji():
    result = run("summary", "mymodels.zoo:cat")
    assert result.exit_code == 2
    assert "mymodels.zoo:cat" in one_error_line(result)


def test_an_empty_model_name_is_refused():
    result = run("summary", "")
    assert result.exit_code == 2
    assert "MODEL '' is empty" in one_error_line(result)


def test_the_users_model_is_not_given_a_meta_input_by_the_search():
    model = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    before = [p.clone() for p in model.parameters()]
    report = diagnosis.debug_shapes(model, make_input((1, 3, 2, 2), "cpu"), smallest_input_search=True)
    assert not report.ok and all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.device.type == "cpu" for p in model.parameters())


# Generated command lines: every command, flags drawn from valid and invalid values. Small inputs and the meta
# device keep each run short; `bench` runs one tiny step on the CPU.
COMMANDS = ["list", "summary", "flops", "compare", "table", "debug-shapes", "bench", "sweep"]
MODELS = ["resnet18", "resnet20", "custom", "nope", "", "tests/models/cifar_option_a.py:resnet20",
          "tests/models/missing.py:net", "tests/models/corpus.py:CORPUS", "resnet18[se=true]", "x:y:z"]  # fmt: skip
FLAG_VALUES = {
    "--layers": ["2,2", "0", "1000000000000", "a,b", ""],
    "--widths": ["8,16", "-1,2", "1000000000000,1"],
    "--groups": ["2", "0", "9223372036854775808"],
    "--num-classes": ["10", "0", "100000000000000000000"],
    "--input": ["1x3x32x32", "32", "0x3x32x32", "1x3x1000000000000x1", "axb", "1x3x2x2"],
    "--depth": ["0", "1", "-1", "99"],
    "--format": ["table", "json", "csv", "markdown", "yaml"],
    "--device": ["meta", "cpu", "cuda", "tpu"],
    "--dtype": ["float32", "bfloat16", "int8"],
    "--weights": ["", "/nonexistent.pt", "README.md"],
    "--se": [None],
    "--stem": ["cifar", "deep", "round"],
}
OPTIONS = list(FLAG_VALUES)


@st.composite
def command_lines(draw) -> list[str]:
    command = draw(st.sampled_from(COMMANDS))
    argv = [command]
    if command in ("summary", "flops", "debug-shapes", "bench"):
        argv.append(draw(st.sampled_from(MODELS)))
    elif command == "compare":
        argv += draw(st.lists(st.sampled_from(MODELS + ["basic", "bottleneck"]), min_size=2, max_size=2))
    elif command == "sweep":
        argv += ["resnet20", "--vary", draw(st.sampled_from(["se=off,on", "layers=1,1,1/1000000,1,1", "nope=1"]))]
    for flag in draw(st.lists(st.sampled_from(OPTIONS), max_size=3, unique=True)):
        value = draw(st.sampled_from(FLAG_VALUES[flag]))
        argv += [flag] if value is None else [flag, value]
    if command == "bench":
        argv += ["--iters", "1", "--warmup", "0", "--threads", "1"]
        if "--input" not in argv:
            argv += ["--input", "1x3x8x8"]
    return argv


@settings(max_examples=int(__import__("os").environ.get("ARGV_EXAMPLES", "60")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=command_lines())
def test_generated_command_lines_keep_the_promises(argv):
    result = run(*argv)
    text = result.output + (result.stderr or "")
    assert "Traceback" not in text, (argv, text)
    assert result.exit_code in (0, 1, 2), (argv, result.exit_code, text)
    if result.exit_code == 2:
        assert one_error_line(result)


def test_an_allocation_failure_anywhere_is_one_line(monkeypatch):
    """Where the size is not known in advance (a timing batch, a user's forward), the allocator's error becomes one
    line at the CLI's boundary (simulated: a real one would ask this machine for hundreds of GB)."""
    from resnet_cli.analysis import compare

    def fail(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory: you tried "
                           "to allocate 602112000000 bytes.\nmore lines")  # fmt: skip

    monkeypatch.setattr(compare, "median_latencies_ms", fail)
    result = run("compare", "resnet18", "resnet50", "--time", "--batch", "1000000")
    assert result.exit_code == 2
    assert one_error_line(result).startswith("Error: cannot allocate memory ([enforce fail at alloc_cpu.cpp:127]")


def test_other_runtime_errors_are_not_disguised_as_memory_errors(monkeypatch):
    from resnet_cli.analysis import compare

    def fail(*args, **kwargs):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr(compare, "median_latencies_ms", fail)
    result = run("compare", "resnet18", "resnet50", "--time")
    assert result.exit_code != 0 and "cannot allocate" not in (result.stderr or "")


EXITS_ON_REAL_TENSORS = '''
import sys

from torch import nn


class Exiter(nn.Module):
    """Traces on meta, then calls sys.exit(3) when it runs for real."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if not x.is_meta:
            sys.exit(3)
        return self.conv(x)
'''


def test_sys_exit_in_a_timed_forward_is_one_line_not_the_exit_code(tmp_path):
    (tmp_path / "exiter.py").write_text(EXITS_ON_REAL_TENSORS)
    model = f"{tmp_path / 'exiter.py'}:Exiter"
    bench = run("bench", model, "--input", "1x3x8x8", "--iters", "1", "--warmup", "0")
    assert bench.exit_code == 2 and "called sys.exit(3)" in one_error_line(bench)
    timed = run("compare", model, model, "--time", "--input", "1x3x8x8", "--depth", "1")
    assert timed.exit_code == 2 and "--time: A's forward pass fails on cpu: called sys.exit(3)" in one_error_line(timed)


def test_empty_operands_and_paths_are_refused_everywhere():
    compared = run("compare", "", "resnet18")
    assert compared.exit_code == 2 and "operand '' is empty" in one_error_line(compared)
    swept = run("sweep", "resnet20", "--vary", "se=off,on", "--weights", "")
    assert swept.exit_code == 2 and "--weights does not apply to sweep" in one_error_line(swept)


@pytest.mark.parametrize(
    "argv",
    [["list"], ["summary", "resnet20"], ["flops", "resnet20"], ["compare", "basic", "bottleneck"], ["table"],
     ["compare", "resnet20", "resnet32", "--depth", "1"], ["debug-shapes", "resnet20"],
     ["bench", "resnet20", "--iters", "1", "--warmup", "0", "--threads", "1"], ["sweep", "resnet20", "--vary", "se=off,on"]],
    ids=lambda argv: " ".join(argv[:2]),
)  # fmt: skip
def test_every_json_document_starts_with_its_schema_version(argv, request):
    # `list` counts every preset: its run is shared with the other tests that read it
    result = request.getfixturevalue("preset_list") if argv == ["list"] else run(*argv, "--format", "json")
    assert result.exit_code == 0, result.output
    assert next(iter(json.loads(result.stdout))) == "schema_version"
    assert json.loads(result.stdout)["schema_version"] == SCHEMA_VERSION == 3


def test_one_name_per_quantity_in_the_json():
    swept = json.loads(run("sweep", "resnet20", "--vary", "se=off,on", "--format", "json").stdout)
    table = json.loads(run("table", "resnet18", "--format", "json").stdout)
    assert {"macs", "macs_conv_linear"} <= set(swept["variants"][0]) and "conv_linear_macs" not in swept["variants"][0]
    assert table["models"][0]["macs"] == 1_819_065_856 and "macs_fvcore" not in table["models"][0]  # docs/flops.md
