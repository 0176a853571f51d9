"""The Typer application and its single error boundary."""

from __future__ import annotations

import sys
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from resnet_cli.errors import UserError


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
        except typer.Abort:
            _error_line("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def _error_line(message: str) -> None:
    # soft_wrap keeps the message on one line whatever the terminal width
    Console(stderr=True, soft_wrap=True, highlight=False).print(f"Error: {message}", markup=False)


app = typer.Typer(
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
    return Console(highlight=False)


def main() -> None:
    """Entry point of the `resnet-cli` script."""
    app()
