"""`flops`: MACs and FLOPs in two conventions, per operator, stage or module, and memory."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.options import FormatOption, PlotOption, with_model_request, write_plot
from resnet_cli.spec import ModelRequest


@app.command()
@with_model_request()
def flops(
    request: ModelRequest,
    by: Annotated[
        Literal["stage", "operator", "module"],
        typer.Option(help="Breakdown: stem/layerN/head, operator, or module tree."),
    ] = "stage",
    depth: Annotated[
        Optional[int],
        typer.Option(help="With --by module: deepest level, 1 stages, 2 blocks, 3 layers. \\[default: all]"),
    ] = None,
    counter: Annotated[
        Literal["auto", "fast", "fvcore"],
        typer.Option(
            help="fast: shapes on the meta device, exact fvcore rules; fvcore: real tensors; auto: fast if it can."
        ),
    ] = "auto",
    optimizer: Annotated[
        Literal["sgd", "adam"], typer.Option(help="Optimizer state in the training memory estimate (1 or 2 buffers).")
    ] = "sgd",
    plot: PlotOption = None,
    format: FormatOption = "table",
) -> None:
    """MACs, FLOPs (= 2 x MACs) and params, fvcore and conv+linear conventions side by side, and memory."""
    from resnet_cli.analysis.counting import flops_report
    from resnet_cli.render.flops import flops_json, flops_table
    from resnet_cli.render.table import emit

    if plot is not None:
        from resnet_cli.render.plots import check_plot_path

        check_plot_path(plot)
    report = flops_report(request, counter=counter, optimizer=optimizer, max_depth=depth)
    emit(stdout(), format, flops_table(report, by=by, bars=format == "table"), flops_json(report))
    if plot is not None:
        from resnet_cli.render.plots import stage_panels

        write_plot(
            plot,
            f"{request.label} per stage, input {'x'.join(map(str, request.input_shape))}",
            stage_panels(report.stages),
        )
