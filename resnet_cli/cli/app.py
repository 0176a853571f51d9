"""The Typer application and its single error boundary."""

from __future__ import annotations

import gc
import sys
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from resnet_cli.errors import UserError
from resnet_cli.units import first_line


class OneLineErrorGroup(TyperGroup):
    """Turns usage errors and UserErrors into one line on stderr with exit code 2."""

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


class TorchCommand(TyperCommand):
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


class ResNetTyper(typer.Typer):
    """Typer whose commands default to `TorchCommand`."""

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or TorchCommand, **kwargs)


app = ResNetTyper(
    cls=OneLineErrorGroup,
    name="resnet-cli",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(ctx: typer.Context) -> None:
    """Build any ResNet variant from flags and inspect it: shapes, params, MACs, memory."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


def stdout() -> Console:
    """The console results are written to (honours NO_COLOR and the terminal width)."""
    return Console(highlight=False, emoji=False)


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
