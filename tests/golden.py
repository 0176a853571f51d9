"""The docs' console blocks as golden tests: every one in README.md and docs/*.md is run again and compared.

A console block is a fenced block (```console) whose first line is a `$ ` command: a terminal transcript, each
command followed by what it printed. The commands it may hold, run from the repository root:

- `$ resnet-cli ARGS`: in process (cli_runner.run) at WIDTH columns without colour; it shows stdout, then stderr, as
  a terminal does, trailing spaces stripped.
- `$ resnet-cli ARGS > FILE`: the same with stdout dropped (no file is written): it shows stderr alone.
- `$ echo $?`: the exit code of the command before it.
- `$ cat FILE`: a file of the repository (the docs' example files live in docs/examples/).

An output whose last line is `...` is elided: the lines before it are compared, the rest (if any) is not.

Exit codes: a command that raises (a traceback) fails, whatever the block shows. A command followed by `$ echo $?`
is held to the code shown; any other must exit 0, or 2 with one `Error: ...` line on stderr (which its output
shows), or 1 from a FINDINGS command (the report is its output).

Measurements: MEASURED commands print figures of the machine they ran on; their output is compared as words with
every number and bench's machine lines masked (a number's length moves table columns and the line breaks of
wrapped notes). Since only the layout is compared, `bench` runs with at most CHEAP_STEPS warm-up and timed steps
and CHEAP_BATCH's batch, and test_docs.py compares on one thread: on this shared 2-core machine the docs' bench
blocks take 60 s (quiet) to 210 s (busy) as written and 16 s this way.

`python -m pytest tests/test_docs.py --overwrite` rewrites every block from real runs of its commands as written
(bench included, on torch's own threads), keeping each `...` after as many lines as before, whether or not the
run prints more: bench's last note (`Noisy: ...`) comes only when the machine was busy.
"""

from __future__ import annotations

import functools
import re
import shlex
import traceback
from dataclasses import dataclass
from pathlib import Path

from cli_runner import run
from typer.testing import Result

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
WIDTH = 100  # the terminal width of every console block in the docs (README.md says so)
ELIDED = "..."
FINDINGS = {"debug-shapes", "debug-training"}  # exit 1: a problem found, which the report shows
MEASURED = {
    "bench": "timings and resident-set growth of this machine, its CPU's name and thread count",
    "debug-training": "activation and gradient RMS of a real step: floats whose last digits differ between CPUs",
}
CHEAP_STEPS = 2  # at most, for --iters and --warmup: 1 would print "1 timed step" where the block says "steps"
CHEAP_BATCH = {"infer": 1, "train": 2}  # at most; batch norm trains on no fewer than 2
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>.*)\n(?P<body>(?:.*\n)*?)(?P=indent)```$", re.M)
NUMBER = re.compile(r"(?<![\w.])\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")  # not the digits of a name: layer1, bfloat16
RULE = re.compile(r"─+")
MACHINE = re.compile(r"^(Device|CPU threads|torch) .*")  # bench's footer: what it ran on


@dataclass(frozen=True)
class Step:
    command: str  # after the `$ `
    shown: tuple[str, ...]  # the lines the block shows after it


@dataclass(frozen=True)
class Block:
    page: Path
    index: int  # the page's n-th console block
    lines: range  # the page's line numbers (from 1) of the block's body
    info: str
    steps: tuple[Step, ...]

    @property
    def name(self) -> str:
        """The page and the block's first resnet-cli command, as a test id."""
        commands = [step.command for step in self.steps]
        first = next((c for c in commands if c.startswith("resnet-cli ")), commands[0])
        return f"{self.page.name}: {first.removeprefix('resnet-cli ')}"


def _console_matches(text: str) -> list[re.Match[str]]:
    return [m for m in FENCE.finditer(text) if m["body"].startswith(m["indent"] + "$ ")]


def console_blocks(page: Path) -> list[Block]:
    """The console blocks of `page`, in order."""
    text = page.read_text()
    blocks = []
    for index, match in enumerate(_console_matches(text)):
        body = [line.removeprefix(match["indent"]) for line in match["body"].splitlines()]
        steps: list[tuple[str, list[str]]] = []
        for line in body:
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                steps[-1][1].append(line)
        first = text.count("\n", 0, match.start("body")) + 1
        lines = range(first, first + len(body))
        blocks.append(Block(page, index, lines, match["info"], tuple(Step(c, tuple(s)) for c, s in steps)))
    return blocks


@functools.cache
def _run(args: tuple[str, ...]) -> Result:
    """`resnet-cli ARGS` at the docs' width without colour; a command that several pages show runs once."""
    return run(*args, env={"COLUMNS": str(WIDTH), "NO_COLOR": "1"})


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def _cheap(args: list[str]) -> list[str]:
    """`bench ARGS` with at most CHEAP_STEPS steps and CHEAP_BATCH's batch; any other command as it is."""
    if args[0] != "bench":
        return args
    args = list(args)
    for option in ("--iters", "--warmup"):
        if option in args:
            at = args.index(option) + 1
            args[at] = str(min(int(args[at]), CHEAP_STEPS))
        else:
            args += [option, str(CHEAP_STEPS)]  # fewer than the defaults, 20 and 3, and as plural
    if "--input" in args:
        at = args.index("--input") + 1
        batch, _, chw = args[at].partition("x")
        if chw.count("x") == 2:
            mode = args[args.index("--mode") + 1] if "--mode" in args else "infer"
            args[at] = f"{min(int(batch), CHEAP_BATCH[mode])}x{chw}"
    return args


def _exit_is_expected(subcommand: str, result: Result) -> bool:
    if result.exit_code == 2:
        errors = result.stderr.strip().splitlines()
        return len(errors) == 1 and errors[0].startswith("Error: ")
    return result.exit_code == 0 or (result.exit_code == 1 and subcommand in FINDINGS)


def replay(block: Block, as_written: bool = False) -> list[list[str]]:
    """What each step of `block` shows when run now; `as_written` runs bench as written, not `_cheap`."""
    shown: list[list[str]] = []
    exit_code = None
    for i, step in enumerate(block.steps):
        words = shlex.split(step.command)
        if words[0] == "resnet-cli":
            to_file = len(words) > 3 and words[-2] == ">"
            args = words[1:-2] if to_file else words[1:]
            result = _run(tuple(args if as_written else _cheap(args)))
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                raise AssertionError(f"`$ {step.command}` crashed:\n{''.join(traceback.format_exception(*result.exc_info))}")
            echoed = i + 1 < len(block.steps) and block.steps[i + 1].command == "echo $?"
            assert echoed or _exit_is_expected(args[0], result), (
                f"`$ {step.command}` exited {result.exit_code} (show it with `$ echo $?`):\n{result.output}"
            )
            exit_code = result.exit_code
            shown.append(_lines(result.stderr if to_file else result.stdout + result.stderr))
        elif words == ["echo", "$?"] and exit_code is not None:
            shown.append([str(exit_code)])
        elif words[0] == "cat" and len(words) == 2:
            shown.append(_lines((REPO / words[1]).read_text()))
        else:
            raise AssertionError(
                f"{block.name}: `$ {step.command}` is not `resnet-cli ARGS [> FILE]`, `echo $?` after a command, "
                f"or `cat FILE`"
            )
    return shown


def _measured(command: str) -> bool:
    words = shlex.split(command)
    return len(words) > 1 and words[0] == "resnet-cli" and words[1] in MEASURED


def masked(lines: list[str]) -> list[str]:
    """The words of `lines` with every number and the machine's footer lines masked, and table rules folded."""
    return NUMBER.sub("#", RULE.sub("─", " ".join(MACHINE.sub(r"\1 #", line) for line in lines))).split()


def _comparable(block: Block, outputs: list[list[str]]) -> str:
    text = []
    for step, lines in zip(block.steps, outputs, strict=True):
        if step.shown[-1:] == (ELIDED,):
            lines = lines[: len(step.shown) - 1]
        text.append(f"$ {step.command}")
        text += masked(lines) if _measured(step.command) else lines
    return "\n".join(text)


def rewrite(block: Block) -> None:
    """Rewrite `block` in its page from real runs of its commands as written."""
    outputs = replay(block, as_written=True)
    text = block.page.read_text()
    match = _console_matches(text)[block.index]
    body = []
    for step, lines in zip(block.steps, outputs, strict=True):
        if step.shown[-1:] == (ELIDED,):
            lines = [*lines[: len(step.shown) - 1], ELIDED]
        body += [f"$ {step.command}", *lines]
    indented = "".join(f"{match['indent']}{line}\n" if line else "\n" for line in body)
    block.page.write_text(text[: match.start("body")] + indented + text[match.end("body") :])


def compared(block: Block) -> tuple[str, str]:
    """What `block` shows and what its commands print now, as compared: elisions cut, measured numbers masked."""
    return _comparable(block, [list(step.shown) for step in block.steps]), _comparable(block, replay(block))
