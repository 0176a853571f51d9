"""`spec`: the full spec of a preset or flag combination as YAML or JSON (what --spec reads back), or the same network
as a torchvision or timm constructor call."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer
from typer.core import TyperCommand

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.options import OutputOption, with_model_request
from resnet_cli.errors import UserError
from resnet_cli.spec import ModelRequest

_RUN_OPTIONS = ("input", "weights", "device", "dtype")  # nothing is built or run: a spec has no input or device


@app.command("spec", cls=TyperCommand)  # builds nothing, so it never imports torch (TorchCommand would)
@with_model_request(skip=_RUN_OPTIONS)
def spec_command(
    request: ModelRequest,
    to: Annotated[Optional[Literal["torchvision", "timm"]], typer.Option(
        "--to", help="Print the torchvision or timm constructor call that builds the same network, or the fields "
                     "it has no equivalent for (exit 0 either way).", show_default=False)] = None,
    format: Annotated[Optional[Literal["yaml", "json"]], typer.Option(
        "--format", "-f", help="Output format of the spec. \\[default: yaml]", show_default=False)] = None,
    output: OutputOption = None,
) -> None:
    """Every field of a preset or flag combination as YAML or JSON, which --spec reads back unchanged."""
    from resnet_cli.render.spec_text import library_call_line, spec_json, spec_yaml
    from resnet_cli.spec import spec_document

    if to is not None:
        if format is not None:
            raise UserError(f"--format {format} writes the spec; --to {to} prints a Python call instead: give one")
        typer.echo(library_call_line(request.spec, to), file=stdout(output).file)
        return
    document = spec_document(request.name, request.spec)
    typer.echo(spec_json(document) if format == "json" else spec_yaml(document), nl=False, file=stdout(output).file)
