"""The Typer application and its single error boundary."""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup, TyperOption

from resnet_cli.errors import UserError
from resnet_cli.units import first_line

LONGEST_INLINE_CHOICES = 16  # `<meta|cpu|cuda>` stays as it is; `<table|json|csv|markdown>` becomes `<format>`


@contextmanager
def _help_page_view(command: Any, ctx: typer.Context) -> Iterator[None]:
    """While the help page is drawn, its options read well in 80 columns: flags show no `<bool>` (they take no
    value), an on/off pair shows its names one above the other (`--zero-init-residual` over
    `--no-zero-init-residual`) instead of being cut, and long choices show as `<name>` with the values listed in the
    help text instead of being split mid-word."""
    options = [p for p in command.get_params(ctx) if isinstance(p, TyperOption)]
    saved = [(p, p.metavar, p.opts, p.secondary_opts, p.help) for p in options]
    for param in options:
        if param.is_flag:
            param.metavar = ""
            if param.secondary_opts:
                param.opts, param.secondary_opts = ["\n".join([*param.opts, *param.secondary_opts])], []
        elif param.metavar is None and param.type_descriptor.is_choice:
            if len(param.display_type(ctx)) > LONGEST_INLINE_CHOICES:
                choices = ", ".join(str(choice) for choice in param.type_descriptor.choices or ())
                param.metavar = f"<{max(param.opts, key=len).lstrip('-')}>"
                param.help = f"{param.help or ''} \\[choices: {choices}]".lstrip()
    try:
        yield
    finally:
        for param, metavar, opts, secondary_opts, text in saved:
            param.metavar, param.opts, param.secondary_opts, param.help = metavar, opts, secondary_opts, text


class OneLineErrorGroup(TyperGroup):
    """Turns usage errors and UserErrors into one line on stderr with exit code 2."""

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        with _help_page_view(self, ctx):
            super().format_help(ctx, formatter)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except typer.TyperException as exc:  # Typer's usage errors: bad option, bad choice, missing value
            _error_line(exc.format_message().replace("Value error, ", ""))
            sys.exit(exc.exit_code)
        except UserError as exc:
            _error_line(str(exc))
            sys.exit(2)
        except (MemoryError, RuntimeError) as exc:  # out of memory where the size was not known in advance
            if not _is_allocation_failure(exc):
                raise
            _error_line(
                f"cannot allocate memory ({first_line(exc)}); use --device meta (nothing is allocated), a smaller "
                f"--input, or a smaller model"
            )
            sys.exit(2)
        except typer.Abort:
            _error_line("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _is_allocation_failure(exc: BaseException) -> bool:
    """MemoryError, torch.OutOfMemoryError, or an allocator's RuntimeError ('can't allocate memory', 'out of
    memory')."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc).lower()
    return "allocate" in text and ("memory" in text or "bytes" in text) or "out of memory" in text


def _error_line(message: str) -> None:
    # soft_wrap keeps the message on one line whatever the terminal width
    Console(stderr=True, soft_wrap=True, highlight=False, emoji=False).print(f"Error: {message}", markup=False)


_collector_paused = False  # main() turned automatic garbage collection off until a command starts


class HelpPageCommand(TyperCommand):
    """A command whose help page reads well in 80 columns (see `_help_page_view`)."""

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        with _help_page_view(self, ctx):
            super().format_help(ctx, formatter)

    def invoke(self, ctx: typer.Context) -> Any:
        _format_from_output_suffix(self, ctx)
        return super().invoke(ctx)


class TorchCommand(HelpPageCommand):
    """A command whose body needs torch (all of ours): in the `resnet-cli` process, torch is imported once the
    arguments parsed, and the garbage collector is told to leave what imports created alone (see `main`)."""

    def invoke(self, ctx: typer.Context) -> Any:
        global _collector_paused
        if _collector_paused:  # set by main() only: in-process callers keep their collector as it is
            import torch  # noqa: F401

            gc.freeze()
            gc.enable()
            _collector_paused = False
        return super().invoke(ctx)


SUFFIX_FORMATS = {".json": "json", ".csv": "csv", ".md": "markdown", ".yaml": "yaml", ".yml": "yaml"}


def _format_from_output_suffix(command: Any, ctx: typer.Context) -> None:
    """`-o report.json` without --format writes JSON (and .csv CSV, .md Markdown, .yaml YAML): the file's name
    says what it holds. A --format given on the command line wins."""
    output = ctx.params.get("output")
    source = ctx.get_parameter_source("format") if "format" in ctx.params else None
    if not output or getattr(source, "name", None) != "DEFAULT":
        return
    wanted = SUFFIX_FORMATS.get(os.path.splitext(output)[1].lower())
    formats = next((p for p in command.params if p.name == "format"), None)
    choices = getattr(getattr(formats, "type_descriptor", None), "choices", None) or ()
    if wanted in choices:
        ctx.params["format"] = wanted


class ResNetTyper(typer.Typer):
    """Typer whose commands default to `TorchCommand`."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        # a command that never needs torch (cls=TyperCommand) still gets the 80-column help page
        return super().command(*args, cls=HelpPageCommand if cls is TyperCommand else cls or TorchCommand, **kwargs)


app = ResNetTyper(
    cls=OneLineErrorGroup,
    name="resnet-cli",
    invoke_without_command=True,
    add_completion=True,  # --install-completion and --show-completion (bash, zsh, fish, PowerShell)
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"resnet-cli {version('resnet-cli')}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        Optional[bool],
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version and exit."),
    ] = None,
) -> None:
    """Build any ResNet variant from flags and inspect it: shapes, params, MACs, memory."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


def stdout(output: str | None = None) -> Console:
    """The console results are written to (honours NO_COLOR and the terminal width): stdout, or the --output file,
    created at the first write so that a command that fails before its result leaves none."""
    if output is None:
        return Console(highlight=False, emoji=False)
    return Console(file=_OutputFile(output), highlight=False, emoji=False)


class _OutputFile:
    """A text file opened for each write (the first truncates it); a failure to write is one UserError line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.written = False

    def write(self, text: str) -> int:
        try:
            with open(self.path, "a" if self.written else "w", encoding="utf-8") as file:
                file.write(text)
        except OSError as exc:
            raise UserError(f"--output {self.path}: cannot write the file ({exc.strerror or exc})") from None
        self.written = True
        return len(text)

    def flush(self) -> None:
        pass


def main() -> None:
    """Entry point of the `resnet-cli` script."""
    # `import torch` creates about 250,000 long-lived objects, and every full collection walks them all:
    # about 0.2 s of collections during a run and 0.4 s at interpreter shutdown. So the collector is off
    # while modules are imported, TorchCommand freezes what they created (moves it out of the collector's
    # sight) and turns it back on for the command's own work, and the same freeze before exit leaves it all
    # to the OS.
    global _collector_paused
    gc.disable()
    _collector_paused = True
    try:
        app()
    finally:
        gc.freeze()
