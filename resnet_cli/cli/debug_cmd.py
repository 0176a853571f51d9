"""`debug-shapes`: parse options, call the diagnosis, hand the report to render; exit 1 when the model breaks."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import typer

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.depth import check_depth
from resnet_cli.cli.options import FormatOption, OutputOption, PlotOption, check_plot, with_model_request, write_plot
from resnet_cli.errors import UserError


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
    output: OutputOption = None,
) -> None:
    """Run one forward pass with hooks: every module's shapes, or where and why it breaks and what to change.

    Exit 0 with "no shape problems", 1 when the model breaks, 2 when it cannot be built (bad flag, file, factory).
    """
    from resnet_cli.analysis.diagnosis import debug_request
    from resnet_cli.render.debug import debug_json, debug_table, report_renderable
    from resnet_cli.render.table import emit

    check_depth(depth, 0, "0 = model only, 1 = stages, 2 = blocks, 3 = layers")
    if sizes is not None:
        _scan_sizes(request, sizes, depth, format, output)
        return
    report = debug_request(request)
    console = stdout(output)
    if format == "table":
        console.print(report_renderable(report, depth))
    else:
        emit(console, format, debug_table(report, depth), debug_json(report, request))
    if not report.ok:
        raise typer.Exit(1)


def _scan_sizes(request: Any, text: str, depth: int | None, format: str, output: str | None) -> None:
    """`debug-shapes --sizes`: the ranges of sizes that run; exit 1 when some do not."""
    from resnet_cli.analysis.diagnosis.sizes import scan_request
    from resnet_cli.errors import UserError
    from resnet_cli.render.debug import sizes_json, sizes_table
    from resnet_cli.render.table import emit
    from resnet_cli.spec import parse_sizes

    if depth is not None:
        raise UserError("--depth shapes the tree of one input; drop it with --sizes, which reports one row per range")
    scan = scan_request(request, parse_sizes(text))
    emit(stdout(output), format, sizes_table(scan), sizes_json(scan, request))
    if not scan.ok:
        raise typer.Exit(1)


@app.command("debug-training")
@with_model_request(default_device="cpu", user_models=True)
def debug_training(
    request: Any,
    loss: Annotated[
        Literal["ce", "mse"],
        typer.Option(help="ce: cross-entropy against random labels (N x classes logits); mse: against a random target."),
    ] = "ce",
    seed: Annotated[int, typer.Option(help="Seeds the model's initialisation, the input and the targets.")] = 0,
    depth: Annotated[
        Optional[int], typer.Option(help="1: a row per stage; 2: per block too. \\[default: 1]", show_default=False)
    ] = None,
    plot: PlotOption = None,
    format: FormatOption = "table",
    output: OutputOption = None,
) -> None:
    """Run one real training step at initialisation with hooks: why the model will not train, and the fix.

    Without --input: a batch of 8 at the model's natural size. Exit 0 with "no training problems found", 1 with
    findings (each with evidence, why and the fix), 2 when it cannot run (bad flag, file, or a step too large).
    """
    from resnet_cli.analysis.train_diagnosis import debug_training_request
    from resnet_cli.render.debug_training import (
        debug_training_json,
        findings_table,
        report_renderable,
        scale_panels,
        scale_table,
    )
    from resnet_cli.render.table import emit

    check_plot(plot)
    check_depth(depth, 1, "1 = stages, 2 = stages and blocks")
    if depth is not None and depth > 2:
        raise UserError(f"--depth {depth}: debug-training shows stages (1) and blocks (2); use 1 or 2")
    if not 0 <= seed < 2**63:
        raise UserError(f"--seed {seed} must be between 0 and 2**63 - 1")
    report = debug_training_request(request, loss=loss, seed=seed)
    console = stdout(output)
    if format == "table":
        console.print(report_renderable(report, depth or 1))
    else:
        emit(console, format, [scale_table(report, depth or 1), findings_table(report)], debug_training_json(report, request))
    if plot is not None:
        write_plot(plot, f"{report.model}: scale per layer at initialisation", scale_panels(report))
    if not report.ok:
        raise typer.Exit(1)
