"""`--output FILE` / `-o FILE`: every command that prints a result writes the same bytes to the file instead, and a
path that cannot be written stops with one line (exit 2) before any work."""

from __future__ import annotations

import json
import os
import re

import pytest

from tests.cli_runner import one_error_line, run

# One cheap invocation of each command that prints a result (deterministic: bench is checked apart).
COMMANDS = {
    "list": ["list"],
    "summary": ["summary", "resnet18", "--depth", "1"],
    "flops": ["flops", "resnet18"],
    "flops-train": ["flops", "resnet18", "--mode", "train", "--checkpoint", "block"],
    "compare-blocks": ["compare", "basic", "bottleneck"],
    "compare-networks": ["compare", "resnet18", "resnet34", "--depth", "1"],
    "table": ["table", "resnet18", "resnet20"],
    "debug-shapes": ["debug-shapes", "resnet18", "--depth", "1"],
    "debug-shapes-sizes": ["debug-shapes", "resnet18", "--sizes", "32,224"],
    "debug-training": ["debug-training", "resnet20", "--input", "4x3x32x32"],
    "sweep": ["sweep", "resnet18", "--vary", "se=off,on"],
}


@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("name", COMMANDS)
def test_output_file_has_the_bytes_stdout_would(name, fmt, tmp_path):
    args = [*COMMANDS[name], "--format", fmt]
    printed = run(*args)
    assert printed.exit_code in (0, 1), printed.output
    path = tmp_path / f"result.{fmt}"
    written = run(*args, "-o", str(path))
    assert written.exit_code == printed.exit_code, written.output
    assert written.stdout == ""
    assert _untimed(path.read_text(encoding="utf-8")) == _untimed(printed.stdout)


def _untimed(text: str) -> str:
    """The text with the sweep's wall-clock seconds (which differ between two runs) blanked."""
    return re.sub(r'("\w*seconds": )[-+.\deE]+', r"\1 0", text)


@pytest.mark.parametrize("args", [["resnet50", "--se"], ["resnet50", "--format", "json"], ["resnet18", "--to", "timm"]])
def test_spec_writes_what_it_prints(args, tmp_path):
    path = tmp_path / "spec.out"
    written = run("spec", *args, "-o", str(path))
    assert written.exit_code == 0 and written.stdout == ""
    assert path.read_text(encoding="utf-8") == run("spec", *args).stdout


def test_output_takes_the_table_format_too(tmp_path):
    path = tmp_path / "summary.txt"
    result = run("summary", "resnet18", "--depth", "0", "--output", str(path))
    assert result.exit_code == 0 and result.stdout == ""
    assert "Total params" in path.read_text(encoding="utf-8")


def test_bench_writes_its_json_to_the_file(tmp_path):
    path = tmp_path / "bench.json"
    result = run("bench", "resnet18", "--input", "1x3x32x32", "--iters", "2", "--warmup", "1", "--threads", "1",
                 "--format", "json", "-o", str(path))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert json.loads(path.read_text(encoding="utf-8"))["rows"][0]["label"] == "baseline"


def test_over_budget_still_writes_the_result_and_says_so_on_stderr(tmp_path):
    path = tmp_path / "summary.json"
    result = run("summary", "resnet18", "--max-params", "1M", "--format", "json", "-o", str(path))
    assert result.exit_code == 1 and result.stdout == ""
    assert "Budget exceeded" in result.stderr
    assert json.loads(path.read_text(encoding="utf-8"))["totals"]["params"] == 11_689_512


def test_output_replaces_an_existing_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text("old contents that are longer than nothing\n" * 100, encoding="utf-8")
    assert run("spec", "resnet18", "-f", "json", "-o", str(path)).exit_code == 0
    assert path.read_text(encoding="utf-8") == run("spec", "resnet18", "-f", "json").stdout


def test_a_usage_error_leaves_no_file(tmp_path):
    path = tmp_path / "summary.json"
    result = run("summary", "no-such-model", "-o", str(path))
    assert result.exit_code == 2
    assert not path.exists()


def test_an_existing_file_is_left_as_it_was_by_a_usage_error(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text("kept\n", encoding="utf-8")
    assert run("summary", "resnet18", "--depth", "-3", "-o", str(path)).exit_code == 2
    assert path.read_text(encoding="utf-8") == "kept\n"


def test_missing_folder_is_one_line(tmp_path):
    result = run("list", "-o", str(tmp_path / "nowhere" / "list.json"))
    assert result.exit_code == 2 and result.stdout == ""
    assert one_error_line(result) == f"Error: --output {tmp_path / 'nowhere' / 'list.json'}: folder " \
                                     f"{tmp_path / 'nowhere'} does not exist"


def test_a_folder_is_one_line(tmp_path):
    result = run("flops", "resnet18", "--output", str(tmp_path))
    assert result.exit_code == 2
    assert "--output" in one_error_line(result) and "is a folder" in result.stderr


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_no_permission_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = run("table", "resnet18", "-o", str(locked / "table.csv"))
    finally:
        locked.chmod(0o700)
    assert result.exit_code == 2
    assert "--output" in one_error_line(result) and "cannot write" in result.stderr


def test_the_check_comes_before_any_work(tmp_path, monkeypatch):
    import resnet_cli.analysis.summary as summary

    def never(*args, **kwargs):
        raise AssertionError("summarize ran before --output was checked")

    monkeypatch.setattr(summary, "summarize", never)
    result = run("summary", "resnet18", "-o", str(tmp_path / "missing" / "s.json"))
    assert result.exit_code == 2 and "--output" in one_error_line(result)


@pytest.mark.parametrize(
    ("command", "name", "starts"),
    [
        (["summary", "resnet18", "--depth", "0"], "report.json", '{\n  "schema_version": 3,'),
        (["flops", "resnet18"], "report.csv", "Stage,Output shape,Params,MACs,% MACs,Conv+lin MACs\n"),
        (["flops", "resnet18"], "report.md", "**resnet18  input 1x3x224x224  MACs by stage**\n"),
        (["spec", "resnet18"], "resnet18.json", '{\n  "model": "resnet18",'),
        (["summary", "resnet18", "--depth", "0"], "report.txt", "resnet18  input 1x3x224x224  (totals only"),
        (["summary", "resnet18", "--depth", "0", "-f", "table"], "report.json", "resnet18  input 1x3x224x224"),
    ],
    ids=["json", "csv", "markdown", "spec-json", "txt-is-table", "format-given-wins"],
)
def test_output_suffix_picks_the_format_unless_format_is_given(tmp_path, command, name, starts):
    path = tmp_path / name
    assert run(*command, "-o", str(path)).exit_code == 0
    assert path.read_text(encoding="utf-8").startswith(starts)
