"""Budgets for CI (`--max-params`, `--max-macs`, `--max-acts`, `--max-memory` on `summary` and `flops`): exit 0
within, 1 over with one stderr line per budget after the normal output, 2 for bad values; the count parser.

Expected figures are published ones: resnet50 has 25,557,032 parameters (torchvision) and 4,111,512,576 MACs at
1x3x224x224 (fvcore's FlopCountAnalysis); resnet18 11,689,512 parameters; acts 11,114,984 for resnet50 (fvcore's
ActivationCountAnalysis).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from cli_runner import one_error_line, run, run_json
from hypothesis import given
from hypothesis import strategies as st

from resnet_cli.analysis.budgets import BUDGETS
from resnet_cli.cli import app
from resnet_cli.errors import SpecError
from resnet_cli.spec import parse_count

DOCS = Path(__file__).resolve().parents[1] / "docs"
RESNET50_PARAMS = 25_557_032
RESNET50_MACS = 4_111_512_576
RESNET50_ACTS = 11_114_984
RESNET18_PARAMS = 11_689_512
TORCHVISION_18 = "tests/models/torchvision_resnet.py:resnet18"
PARTIAL_MODEL = '''
import torch
from torch import nn


class Scores(nn.Module):
    """A conv (3 -> 8, 3x3: 224 parameters) and a head that scores with torch.baddbmm, which has no MAC rule."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        x = self.conv(x).flatten(2)
        return torch.baddbmm(x[:, :, :8], x, x.transpose(1, 2))
'''


# ---------------------------------------------------------------- the count parser


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("25M", 25_000_000),
        ("25.6M", 25_600_000),
        ("4.2G", 4_200_000_000),
        ("4.2g", 4_200_000_000),
        ("25557032", 25_557_032),
        ("25,557,032", 25_557_032),
        ("25_557_032", 25_557_032),
        ("2.5e7", 25_000_000),
        ("1E3", 1_000),
        ("4.35K", 4_350),  # exact: float arithmetic gives 4349.999...
        ("0.1K", 100),
        ("1.5T", 1_500_000_000_000),
        (" 12 M ", 12_000_000),
        ("1.9", 1),  # rounded down: a count is whole
        ("1", 1),
        ("1e18", 10**18),
    ],
)
def test_parse_count_reads_numbers_with_si_suffixes(text, count):
    assert parse_count("--max-macs", text) == count


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4.2Q", "--max-macs '4.2Q': unknown suffix 'Q'; give a number with an optional suffix: 25M, 4.2G"),
        ("4.2GiB", "--max-macs '4.2GiB': unknown suffix 'GiB'"),
        ("lots", "--max-macs 'lots' is not a count; give a number with an optional suffix"),
        ("", "--max-macs '' is not a count"),
        ("4,2G", "--max-macs '4,2G' is not a count"),  # a decimal comma is not a digit group
        ("1,00", "--max-macs '1,00' is not a count"),
        ("nan", "--max-macs 'nan' is not a count"),
        ("inf", "--max-macs 'inf' is not a count"),
        ("0", "--max-macs '0' must be between 1 and 10^18"),
        ("0.5", "--max-macs '0.5' must be between 1 and 10^18"),
        ("-5M", "--max-macs '-5M' must be between 1 and 10^18"),
        ("2e18", "--max-macs '2e18' must be between 1 and 10^18"),
        ("1e999999999", "--max-macs '1e999999999' must be between 1 and 10^18"),
    ],
)
def test_parse_count_refuses_with_one_line_naming_flag_value_and_valid_forms(text, message):
    with pytest.raises(SpecError) as error:
        parse_count("--max-macs", text)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


@given(n=st.integers(1, 10**6), suffix=st.sampled_from([("", 0), ("K", 3), ("m", 6), ("G", 9), ("t", 12)]))
def test_parse_count_scales_by_powers_of_1000(n, suffix):
    letter, power = suffix
    assert parse_count("--max-params", f"{n}{letter}") == n * 10**power


@given(n=st.integers(1, 10**18))
def test_parse_count_reads_digit_groups_and_exact_decimals(n):
    assert parse_count("--max-params", f"{n:,}") == n
    assert parse_count("--max-params", f"{n // 1000}.{n % 1000:03d}K") == n  # 25557.032K = 25,557,032


# ---------------------------------------------------------------- one declaration, every surface


@pytest.mark.parametrize("command", ["summary", "flops"])
def test_both_commands_take_every_budget(command):
    params = typer.main.get_command(app).commands[command].params
    options = {option for param in params for option in param.opts}
    assert {budget.flag for budget in BUDGETS} <= options
    assert {budget.flag for budget in BUDGETS} == {"--max-params", "--max-macs", "--max-acts", "--max-memory"}


@pytest.mark.parametrize("page", ["ci.md", "summary.md", "flops.md"])
def test_docs_name_every_budget(page):
    text = (DOCS / page).read_text()
    assert all(f"`{budget.flag}" in text for budget in BUDGETS), page


# ---------------------------------------------------------------- exit codes


@pytest.mark.parametrize("command", ["summary", "flops"])
def test_budgets_equal_to_the_published_figures_are_met(command):
    result = run(command, "resnet50", "--max-params", str(RESNET50_PARAMS), "--max-macs", "4,111,512,576",
                 "--max-acts", str(RESNET50_ACTS), "--max-memory", "16GiB")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert "25,557,032" in result.stdout  # the normal output is there


@pytest.mark.parametrize("command", ["summary", "flops"])
def test_exceeded_budgets_exit_1_with_one_line_each_after_the_output(command):
    result = run(command, "resnet50", "--max-macs", "4G", "--max-params", "25557031", "--max-acts", "12M")
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines() == [
        "Budget exceeded: params 25,557,032 > --max-params 25557031 (25,557,031)",
        "Budget exceeded: MACs 4,111,512,576 > --max-macs 4G (4,000,000,000)",
    ]
    assert "25,557,032" in result.stdout


def test_acts_budget():
    result = run("flops", "resnet50", "--max-acts", "11.1M")
    assert result.exit_code == 1
    assert result.stderr == "Budget exceeded: acts 11,114,984 > --max-acts 11.1M (11,100,000)\n"


def test_json_on_stdout_stays_parseable_when_a_budget_fails():
    result = run("flops", "resnet50", "--format", "json", "--max-macs", "4.1G")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["totals"]["macs"] == RESNET50_MACS
    assert result.stderr == "Budget exceeded: MACs 4,111,512,576 > --max-macs 4.1G (4,100,000,000)\n"


@pytest.mark.parametrize(("command", "memory"), [("summary", "totals"), ("flops", "memory")])
def test_memory_budget_bounds_parameter_plus_forward_activation_memory(command, memory):
    data = run_json(command, "resnet50")[memory]
    assert data["param_bytes"] == 4 * RESNET50_PARAMS  # float32
    total = data["param_bytes"] + data["activation_bytes"]
    limit = 4 * RESNET50_PARAMS  # parameters alone fit; with the activations, over
    result = run(command, "resnet50", "--max-memory", f"{limit}B")
    assert result.exit_code == 1
    assert result.stderr == (
        f"Budget exceeded: memory (parameters + forward activations) {total:,} B ({total / 2**20:,.2f} MiB) > "
        f"--max-memory {limit}B ({limit:,} B)\n"
    )
    assert run(command, "resnet50", "--max-memory", f"{total}B").exit_code == 0


def test_training_step_budgets_bound_the_step_memory_and_the_forward_macs():
    args = ("flops", "resnet18", "--mode", "train", "--input", "2x3x64x64")
    data = run_json(*args)
    step, forward_macs = data["memory"]["total_bytes"], data["totals"]["forward_macs"]
    assert run(*args, "--max-memory", f"{step}B", "--max-macs", str(forward_macs)).exit_code == 0
    result = run(*args, "--max-memory", "1MiB", "--max-params", "11M", "--max-macs", str(forward_macs - 1))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Budget exceeded: params {RESNET18_PARAMS:,} > --max-params 11M (11,000,000)",
        f"Budget exceeded: forward MACs {forward_macs:,} > --max-macs {forward_macs - 1} ({forward_macs - 1:,})",
        f"Budget exceeded: training step memory {step:,} B ({step / 2**20:,.2f} MiB) > --max-memory 1MiB "
        f"(1,048,576 B)",
    ]


@pytest.mark.parametrize("command", ["summary", "flops"])
def test_your_own_model_has_budgets_too(command):
    result = run(command, TORCHVISION_18, "--max-params", "11M", "--max-macs", "2G")
    assert result.exit_code == 1
    assert result.stderr == f"Budget exceeded: params {RESNET18_PARAMS:,} > --max-params 11M (11,000,000)\n"
    assert run(command, TORCHVISION_18, "--max-params", "11.7M").exit_code == 0


def test_strict_and_budgets_both_give_exit_1(tmp_path):
    path = tmp_path / "scores.py"
    path.write_text(PARTIAL_MODEL)
    model = (f"{path}:Scores", "--input", "1x3x8x8")
    over = "Budget exceeded: params 224 > --max-params 200 (200)\n"
    partial_and_over = run("flops", *model, "--strict", "--max-params", "200")
    assert (partial_and_over.exit_code, partial_and_over.stderr) == (1, over)
    partial_only = run("flops", *model, "--strict", "--max-params", "224")
    assert (partial_only.exit_code, partial_only.stderr) == (1, "")
    over_only = run("flops", *model, "--max-params", "200")
    assert (over_only.exit_code, over_only.stderr) == (1, over)
    assert run("flops", *model, "--max-params", "224").exit_code == 0


@pytest.mark.parametrize("command", ["summary", "flops"])
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-macs", "4.2Q"], "Error: --max-macs '4.2Q': unknown suffix 'Q'; give a number with an optional suffix"),
        (["--max-memory", "12XB"], "Error: --max-memory '12XB': unknown unit 'XB'; give a number and a unit: 16GiB"),
        (["--max-params", "-1"], "Error: --max-params '-1' must be between 1 and 10^18"),
        (["--max-acts", "0"], "Error: --max-acts '0' must be between 1 and 10^18"),
        (["--max-memory", "0.5B"], "Error: --max-memory '0.5B' must be between 1 B and"),
        (["--max-macs"], "Error: Option '--max-macs' requires an argument."),
    ],
)
def test_bad_budget_values_exit_2_with_one_line(command, args, message):
    result = run(command, "resnet50", *args)
    assert result.exit_code == 2
    assert one_error_line(result).startswith(message)
    assert result.stdout == ""
