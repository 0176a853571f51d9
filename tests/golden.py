"""Golden blocks in the docs: a `$ resnet-cli ARGS` line and the output it printed, re-run and compared.

Regenerate them after an intended change with `python -m pytest TEST_FILE --overwrite` (see conftest.py).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from cli_runner import run

REPO = Path(__file__).resolve().parent.parent
CONSOLE_BLOCK = re.compile(r"```console\n\$ resnet-cli (?P<args>[^\n]*)\n(?P<output>.*?)```", re.S)
WIDTH = "100"  # the docs' blocks are 100 columns wide


def examples(path: Path, block: re.Pattern[str] = CONSOLE_BLOCK) -> list[str]:
    """The ARGS of every golden block in `path`, in order."""
    return [m["args"] for m in block.finditer(path.read_text())] if path.exists() else []


def real_output(args: str, exit_codes: tuple[int, ...] = (0,)) -> str:
    """`resnet-cli ARGS` at the docs' width without colour, trailing spaces stripped; its exit code is asserted."""
    result = run(*shlex.split(args), env={"COLUMNS": WIDTH, "NO_COLOR": "1"})
    assert result.exit_code in exit_codes, result.output
    return "\n".join(line.rstrip() for line in result.stdout.splitlines()) + "\n"


def check_block(
    path: Path, args: str, overwrite: bool, block: re.Pattern[str] = CONSOLE_BLOCK, exit_codes: tuple[int, ...] = (0,)
) -> None:
    """The block of `path` for `args` shows real output; with `overwrite`, rewrite it from a real run instead."""
    text = path.read_text()
    match = next(m for m in block.finditer(text) if m["args"] == args)
    actual = real_output(args, exit_codes)
    if overwrite:
        path.write_text(text[: match.start("output")] + actual + text[match.end("output") :])
        return
    assert match["output"] == actual
