"""README and docs examples are real output: every ```console block starting with `$ resnet-cli` is re-run.

Regenerate them after an intended change with `python -m pytest tests/test_readme.py --overwrite`.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnet_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GOLDEN_FILES = [README, ROOT / "docs" / "flops.md", ROOT / "docs" / "summary.md"]
BLOCK = re.compile(r"```console\n\$ resnet-cli (?P<args>[^\n]*)\n(?P<output>.*?)```", re.S)
WIDTH = "100"


def run_example(args: str) -> str:
    result = CliRunner().invoke(app, shlex.split(args), env={"COLUMNS": WIDTH, "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return "\n".join(line.rstrip() for line in result.stdout.splitlines()) + "\n"


def examples(path: Path = README) -> list[str]:
    return [m["args"] for m in BLOCK.finditer(path.read_text())]


def test_readme_has_examples():
    assert "summary resnet50 --depth 1" in examples()


def test_docs_show_a_user_model_example():
    for path in GOLDEN_FILES[1:]:
        assert any("tests/models/" in args for args in examples(path)), path


@pytest.mark.parametrize(
    ("path", "args"),
    [(path, args) for path in GOLDEN_FILES for args in examples(path)],
    ids=[f"{path.name}: {args}" for path in GOLDEN_FILES for args in examples(path)],
)
def test_readme_example_is_real_output(path, args, overwrite):
    text = path.read_text()
    match = next(m for m in BLOCK.finditer(text) if m["args"] == args)
    actual = run_example(args)
    if overwrite:
        path.write_text(text[: match.start("output")] + actual + text[match.end("output") :])
        return
    assert match["output"] == actual
