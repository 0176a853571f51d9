"""`debug-shapes`: parse options, call the diagnosis, hand the report to render; exit 1 when the model breaks."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.depth import check_depth
from resnet_cli.cli.options import FormatOption, with_model_request


@app.command("debug-shapes")
@with_model_request(user_models=True)
def debug_shapes(
    request: Any,
    depth: Annotated[
        Optional[int], typer.Option(help="Deepest level of the shape tree: 0 model only, 1 stages, 2 blocks, 3 layers. \\[default: all]")
    ] = None,
    sizes: Annotated[
        Optional[str],
        typer.Option(help="Try many input sizes on meta instead of one: 32..512, 32..512:16, 32,64,224 or 224x240,256x256; "
                          "reports the ranges that run and, for the others, where and why they fail."),
    ] = None,
    format: FormatOption = "table",
) -> None:
    """Run one forward pass with hooks: every module's shapes, or where and why it breaks and what to change.

    Exit 0 with "no shape problems", 1 when the model breaks, 2 when it cannot be built (bad flag, file, factory).
    """
    from resnet_cli.analysis.diagnosis import debug_request
    from resnet_cli.render.debug import debug_json, debug_table, report_renderable
    from resnet_cli.render.table import emit

    check_depth(depth, 0, "0 = model only, 1 = stages, 2 = blocks, 3 = layers")
    if sizes is not None:
        _scan_sizes(request, sizes, depth, format)
        return
    report = debug_request(request)
    console = stdout()
    if format == "table":
        console.print(report_renderable(report, depth))
    else:
        emit(console, format, debug_table(report, depth), debug_json(report))
    if not report.ok:
        raise typer.Exit(1)


def _scan_sizes(request: Any, text: str, depth: int | None, format: str) -> None:
    """`debug-shapes --sizes`: the ranges of sizes that run; exit 1 when some do not."""
    from resnet_cli.analysis.diagnosis.sizes import scan_request
    from resnet_cli.errors import UserError
    from resnet_cli.render.debug import sizes_json, sizes_table
    from resnet_cli.render.table import emit
    from resnet_cli.spec import parse_sizes

    if depth is not None:
        raise UserError("--depth shapes the tree of one input; drop it with --sizes, which reports one row per range")
    scan = scan_request(request, parse_sizes(text))
    emit(stdout(), format, sizes_table(scan), sizes_json(scan))
    if not scan.ok:
        raise typer.Exit(1)
