"""README examples are real output: every ```console block starting with `$ resnet-cli` is re-run.

Regenerate them after an intended change with `python -m pytest tests/test_readme.py --overwrite`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnet_cli.cli import app

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"```console\n\$ resnet-cli (?P<args>[^\n]*)\n(?P<output>.*?)```", re.S)
WIDTH = "100"


def run_example(args: str) -> str:
    result = CliRunner().invoke(app, shlex.split(args), env={"COLUMNS": WIDTH, "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in result.stdout.splitlines()) + "\n"


def examples() -> list[str]:
    return [m["args"] for m in BLOCK.finditer(README.read_text())]


def test_readme_has_examples():
    assert "summary resnet50 --depth 1" in examples()


@pytest.mark.parametrize("args", examples())
def test_readme_example_is_real_output(args, overwrite):
    text = README.read_text()
    match = next(m for m in BLOCK.finditer(text) if m["args"] == args)
    actual = run_example(args)
    if overwrite:
        README.write_text(text[: match.start("output")] + actual + text[match.end("output") :])
        return
    assert match["output"] == actual
