"""`list` and `summary`: parse options, call one analysis function, hand the result to render."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.depth import check_depth
from resnet_cli.cli.options import FormatOption, OutputOption, say_over_budget, with_budgets, with_model_request


@app.command("list")
def list_presets(format: FormatOption = "table", output: OutputOption = None) -> None:
    """All presets with block type, layers, params and MACs at their default input."""
    from resnet_cli.analysis.catalog import preset_catalog
    from resnet_cli.render.catalog import catalog_json, catalog_table
    from resnet_cli.render.table import emit

    rows = preset_catalog()
    emit(stdout(output), format, catalog_table(rows), catalog_json(rows))


@app.command()
@with_model_request(user_models=True)
@with_budgets
def summary(
    request: Any,
    budgets: list,
    depth: Annotated[
        Optional[int], typer.Option(help="Deepest level shown: 0 totals only, 1 stages, 2 blocks, 3 layers. \\[default: all]")
    ] = None,
    ops: Annotated[
        bool, typer.Option("--ops", help="Also list the torch calls each module's forward makes itself (F.avg_pool2d, x.view, out + x).")
    ] = False,
    rf: Annotated[
        bool, typer.Option("--rf", help="Also each layer's theoretical receptive field and effective stride, and the output stride.")
    ] = False,
    fuse_bn: Annotated[
        bool, typer.Option("--fuse-bn", help="The inference model with each BatchNorm folded into the conv before it.")
    ] = False,
    format: FormatOption = "table",
    output: OutputOption = None,
) -> None:
    """Per-layer table from forward hooks: output shapes, params, MACs, memory; your own model too.

    Exit 0, or 1 when a --max-* budget is exceeded (one line each on stderr, after the output).
    """
    from resnet_cli.analysis.summary import summarize
    from resnet_cli.render.summary import summary_json, summary_table
    from resnet_cli.render.table import emit

    check_depth(depth, 0, "0 = totals only, 1 = stem layers and stages, 2 = blocks, 3 = layers")
    result = summarize(request, max_depth=depth, ops=ops, rf=rf, fuse_bn=fuse_bn)
    emit(stdout(output), format, summary_table(result), summary_json(result))
    if say_over_budget(result, budgets):
        raise typer.Exit(1)
