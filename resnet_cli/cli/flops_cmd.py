"""`flops`: MACs and FLOPs in two conventions, per operator, stage or module, and memory."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import typer

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.depth import check_depth
from resnet_cli.cli.options import FormatOption, PlotOption, check_plot, with_model_request, write_plot
from resnet_cli.units import shape_text


@app.command()
@with_model_request(user_models=True)
def flops(
    request: Any,
    by: Annotated[
        Literal["stage", "operator", "module"],
        typer.Option(help="Breakdown: stem/layerN/head, operator, or module tree."),
    ] = "stage",
    depth: Annotated[
        Optional[int],
        typer.Option(help="With --by module: deepest level, 1 stages, 2 blocks, 3 layers. \\[default: all]"),
    ] = None,
    counter: Annotated[
        Literal["fast", "fvcore"],
        typer.Option(help="fast: fvcore's rules on the traced operators, on meta; fvcore: FlopCountAnalysis on CPU."),
    ] = "fast",
    strict: Annotated[
        bool, typer.Option("--strict", help="Exit 1 when an operator has no rule (the count is partial).")
    ] = False,
    optimizer: Annotated[
        Literal["sgd", "adam"], typer.Option(help="Optimizer state in the training memory estimate (1 or 2 buffers).")
    ] = "sgd",
    plot: PlotOption = None,
    format: FormatOption = "table",
) -> None:
    """MACs, FLOPs (= 2 x MACs) and params, fvcore and conv+linear conventions side by side, and memory.

    Exit 0, or 1 with --strict when an operator has no rule (the report says which).
    """
    from resnet_cli.analysis.flops_report import flops_report
    from resnet_cli.render.flops import flops_json, flops_table
    from resnet_cli.render.table import emit

    check_plot(plot)
    check_depth(depth, 1, "1 = stem layers and stages, 2 = blocks, 3 = layers")
    report = flops_report(request, counter=counter, optimizer=optimizer, max_depth=depth)
    emit(stdout(), format, flops_table(report, by=by, bars=format == "table"), flops_json(report))
    if plot is not None:
        from resnet_cli.render.plots import stage_panels

        write_plot(
            plot,
            f"{request.label} per stage, input {shape_text(request.input_shape)}",
            stage_panels(report.stages),
        )
    if strict and not report.count.complete:
        raise typer.Exit(1)
