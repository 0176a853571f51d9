"""Run `resnet-cli` in-process, as the tests' users would from a shell."""

from __future__ import annotations

import json
from collections.abc import Mapping

from typer.testing import CliRunner, Result

from resnet_cli.cli import app

runner = CliRunner()


def run(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    """`resnet-cli ARGS`: exit code, stdout and stderr. `env` sets variables for the run (None unsets one)."""
    return runner.invoke(app, list(args), env=env)


def run_json(*args: str) -> dict:
    """`resnet-cli ARGS --format json`, which must succeed, parsed."""
    result = run(*args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_error_line(result: Result) -> str:
    """The single `Error: ...` line a failed command must print on stderr (asserted), returned."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]
