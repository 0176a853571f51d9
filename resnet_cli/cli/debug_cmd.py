"""`debug-shapes`: parse options, call the diagnosis, hand the report to render; exit 1 when the model breaks."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.options import FormatOption, with_model_request


@app.command("debug-shapes")
@with_model_request(user_models=True)
def debug_shapes(
    request: Any,
    depth: Annotated[
        Optional[int], typer.Option(help="Deepest level of the shape tree: 0 model only, 1 stages, 2 blocks, 3 layers. \\[default: all]")
    ] = None,
    format: FormatOption = "table",
) -> None:
    """Run one forward pass with hooks: every module's shapes, or where and why it breaks and what to change.

    Exit 0 with "no shape problems", 1 when the model breaks, 2 when it cannot be built (bad flag, file, factory).
    """
    from resnet_cli.analysis.diagnosis import debug_request
    from resnet_cli.errors import UserError
    from resnet_cli.render.debug import debug_json, debug_table, report_renderable
    from resnet_cli.render.table import emit

    if depth is not None and depth < 0:
        raise UserError(f"--depth {depth} must be >= 0 (0 = model only, 1 = stages, 2 = blocks, 3 = layers)")
    report = debug_request(request)
    console = stdout()
    if format == "table":
        console.print(report_renderable(report, depth))
    else:
        emit(console, format, debug_table(report, depth), debug_json(report))
    if not report.ok:
        raise typer.Exit(1)
