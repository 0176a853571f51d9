"""`flops`: MACs and FLOPs in two conventions, per operator, stage or module, and memory."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import typer

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.depth import check_depth
from resnet_cli.cli.options import (
    FormatOption,
    OutputOption,
    PlotOption,
    amp_option,
    check_plot,
    say_over_budget,
    with_budgets,
    with_model_request,
    write_plot,
)
from resnet_cli.errors import UserError
from resnet_cli.units import shape_text

TRAIN = "Training step (--mode train)"


@app.command()
@with_model_request(user_models=True)
@with_budgets
def flops(
    request: Any,
    budgets: list,
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
    fuse_bn: Annotated[
        bool,
        typer.Option("--fuse-bn", help="Count the inference model with each BatchNorm folded into the conv before it."),
    ] = False,
    mode: Annotated[
        Literal["infer", "train"],
        typer.Option(help="infer: the forward pass; train: forward + backward, memory measured on meta.", rich_help_panel=TRAIN),
    ] = "infer",
    optimizer: Annotated[
        Optional[Literal["sgd", "sgd-momentum", "adam", "adamw"]],
        typer.Option(help="Optimizer state: none, 1 or 2 buffers per trainable parameter. \\[default: sgd]",
                     rich_help_panel=TRAIN, show_default=False),
    ] = None,
    amp: amp_option(TRAIN) = None,
    checkpoint: Annotated[
        Optional[Literal["none", "block", "stage"]],
        typer.Option(help="Gradient checkpointing of each block or stage (all three are compared). \\[default: none]",
                     rich_help_panel=TRAIN, show_default=False),
    ] = None,
    freeze: Annotated[
        Optional[str],
        typer.Option(help="Comma-separated modules whose parameters get no gradient: stem, layer1, layer2.0, ...",
                     rich_help_panel=TRAIN, show_default=False),
    ] = None,
    freeze_stages: Annotated[
        Optional[int],
        typer.Option(help="Freeze the stem and the first N stages (0: the stem only).", rich_help_panel=TRAIN,
                     show_default=False),
    ] = None,
    fit_memory: Annotated[
        Optional[str],
        typer.Option(help="Answer the largest batch whose training step fits this much memory: 16GiB, 12GB, ...",
                     rich_help_panel=TRAIN, show_default=False, metavar="SIZE"),
    ] = None,
    plot: PlotOption = None,
    format: FormatOption = "table",
    output: OutputOption = None,
) -> None:
    """MACs, FLOPs (= 2 x MACs) and params, fvcore and conv+linear conventions side by side, and memory.

    Exit 0, or 1 with --strict when an operator has no rule (the report says which), or when a --max-* budget is
    exceeded (one line each on stderr, after the output).
    """
    from resnet_cli.analysis.flops_report import flops_report
    from resnet_cli.render.flops import flops_json, flops_table
    from resnet_cli.render.table import emit

    check_plot(plot)
    check_depth(depth, 1, "1 = stem layers and stages, 2 = blocks, 3 = layers")
    train_options = {"--optimizer": optimizer, "--amp": amp, "--checkpoint": checkpoint, "--freeze": freeze,
                     "--freeze-stages": freeze_stages, "--fit-memory": fit_memory}  # fmt: skip
    if mode == "train":
        if counter != "fast":
            raise UserError("--counter fvcore with --mode train: fvcore does not count backward passes; use --counter fast")
        if plot is not None:
            raise UserError("--plot with --mode train: plots show the forward pass; drop --plot or use --mode infer")
        if fuse_bn:
            raise UserError("--fuse-bn with --mode train: folding BatchNorm into convs is for inference; drop one")
        _train(request, by, depth, format, strict, budgets, optimizer, amp, checkpoint, freeze, freeze_stages,
               fit_memory, output)  # fmt: skip
        return
    given = [name for name, value in train_options.items() if value is not None]
    if given:
        raise UserError(f"{given[0]} applies to the training step; add --mode train")
    report = flops_report(request, counter=counter, max_depth=depth, fuse_bn=fuse_bn)
    emit(stdout(output), format, flops_table(report, by=by, bars=format == "table"), flops_json(report))
    if plot is not None:
        from resnet_cli.render.plots import stage_panels

        write_plot(
            plot,
            f"{request.label} per stage, input {shape_text(request.input_shape)}",
            stage_panels(report.stages),
        )
    over_budget = say_over_budget(report, budgets)
    if over_budget or strict and not report.count.complete:
        raise typer.Exit(1)


def _train(
    request: Any,
    by: str,
    depth: int | None,
    format: str,
    strict: bool,
    budgets: list,
    optimizer: str | None,
    amp: str | None,
    checkpoint: str | None,
    freeze: str | None,
    freeze_stages: int | None,
    fit_memory: str | None,
    output: str | None,
) -> None:
    """`flops --mode train`: the training step's MACs and memory."""
    from resnet_cli.analysis.training import TrainSettings, training_report
    from resnet_cli.render.table import emit
    from resnet_cli.render.training import training_json, training_tables
    from resnet_cli.spec import parse_bytes

    settings = TrainSettings(
        optimizer=optimizer or "sgd",
        amp=amp,
        checkpoint=checkpoint or "none",
        freeze=tuple(freeze.split(",")) if freeze is not None else (),
        freeze_stages=freeze_stages,
        fit_memory=parse_bytes("--fit-memory", fit_memory) if fit_memory is not None else None,
    )
    if freeze is not None and not any(p.strip() for p in settings.freeze):
        raise UserError(f"--freeze {freeze!r} names no module; give comma-separated module names such as stem,layer1")
    report = training_report(request, settings)
    emit(stdout(output), format, training_tables(report, by=by, depth=depth), training_json(report))
    over_budget = say_over_budget(report, budgets)
    if over_budget or strict and not report.forward.complete:
        raise typer.Exit(1)
