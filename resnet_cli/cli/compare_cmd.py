"""`compare` (two blocks or two networks side by side) and `table` (He et al. Table 1 from specs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

import typer

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.options import FormatOption, OutputOption, PlotOption, check_plot, with_build_flags, write_plot
from resnet_cli.errors import UserError
from resnet_cli.spec import request_from_flags

BLOCK = "Block operands (basic, bottleneck, se-basic, se-bottleneck)"
RUN = "Timing and output"
_TABLE_SKIPPED_FLAGS = ("weights", "device", "dtype")  # table only builds on meta and loads nothing

def _block_opt(help: str) -> Any:
    return typer.Option(help=help, rich_help_panel=BLOCK, show_default=False)


@app.command()
def compare(
    a: Annotated[str, typer.Argument(
        help="Left operand: a block (basic, bottleneck, se-basic, se-bottleneck) or a network: a preset, "
             "MODEL or 'MODEL\\[flag=value,...]' such as 'resnet50\\[se=true,stem=deep]', or your own model, "
             "path/to/file.py:factory or package.module:attr, with factory arguments as 'my.py:net\\[num_classes=10]'.",
        show_default=False)],
    b: Annotated[str, typer.Argument(
        help="Right operand, of the same kind; ratios are right / left. For networks, the reference: "
             "its state_dict is checked against the left's.", show_default=False)],
    channels: Annotated[Optional[int], _block_opt("Input and output channels of both blocks. \\[default: 256]")] = None,
    spatial: Annotated[Optional[int], _block_opt("Input feature map is S x S. \\[default: 56]")] = None,
    stride: Annotated[Optional[int], _block_opt("Stride of both blocks, 1 or 2. \\[default: 1]")] = None,
    expansion: Annotated[Optional[int], _block_opt("Bottleneck inner width = channels / E. \\[default: 4]")] = None,
    groups: Annotated[Optional[int], _block_opt("Groups of the bottleneck's 3x3 conv (ResNeXt). \\[default: 1]")] = None,
    width_per_group: Annotated[Optional[int], _block_opt(
        "Bottleneck inner width x W/64 (torchvision's width_per_group). \\[default: 64]")] = None,
    se_ratio: Annotated[Optional[int], _block_opt("SE reduction ratio of se- blocks. \\[default: 16]")] = None,
    input: Annotated[Optional[str], typer.Option(
        "--input", "-i", help="Networks: input NxCxHxW for both sides. \\[default: the preset's, 1x3x224x224 or "
                              "1x3x32x32 for cifar; your own model takes the other side's preset's, else 1x3x224x224]",
        show_default=False)] = None,
    time_: Annotated[bool, typer.Option(
        "--time", help="Also measure forward latency of both (median after warm-up).", rich_help_panel=RUN)] = False,
    batch: Annotated[Optional[int], typer.Option(
        help="Batch size for --time. \\[default: 1 for blocks, N of --input for networks]",
        rich_help_panel=RUN, show_default=False)] = None,
    device: Annotated[Literal["cpu", "cuda"], typer.Option(help="Device for --time.", rich_help_panel=RUN)] = "cpu",
    runs: Annotated[Optional[int], typer.Option(
        help="Timed forward passes of each side for --time (the median is reported). \\[default: 20]",
        min=1, max=10_000, rich_help_panel=RUN, show_default=False)] = None,
    warmup: Annotated[Optional[int], typer.Option(
        help="Untimed passes of each side before --time measures. \\[default: 3]",
        min=0, max=10_000, rich_help_panel=RUN, show_default=False)] = None,
    depth: Annotated[Optional[int], typer.Option(
        help="Networks: 1 stages only, 2 also each stage's blocks. \\[default: 2]", min=1, max=2,
        rich_help_panel=RUN, show_default=False)] = None,
    plot: PlotOption = None,
    format: FormatOption = "table",
    output: OutputOption = None,
) -> None:
    """Two blocks (params, MACs per pixel, the arithmetic, memory) or two networks (per stage and block) side by
    side; for networks, also whether they are the same architecture and B's state_dict loads into A."""
    from resnet_cli.analysis.compare import compare as compare_operands
    from resnet_cli.analysis.compare import is_block_operand
    from resnet_cli.render.compare import comparison_output
    from resnet_cli.render.table import emit

    check_plot(plot)
    setup_flags = dict(
        channels=channels, spatial=spatial, stride=stride, expansion=expansion, groups=groups,
        width_per_group=width_per_group, se_ratio=se_ratio,
    )  # fmt: skip
    if depth is not None and is_block_operand(a) and is_block_operand(b):
        raise UserError(f"--depth {depth} applies to networks; a block comparison shows every layer")
    timed = {k: v for k, v in (("runs", runs), ("warmup", warmup)) if v is not None}
    if timed and not time_:
        raise UserError(f"--{next(iter(timed))} {next(iter(timed.values()))} sets how --time measures; add --time")
    result = compare_operands((a, b), setup_flags, input, time_device=device if time_ else None, batch=batch, **timed)
    table, payload, panels, title = comparison_output(result, depth or 2)
    emit(stdout(output), format, table, payload)
    if plot is not None:
        write_plot(plot, title, panels)


@app.command("table")
@with_build_flags(skip=_TABLE_SKIPPED_FLAGS)
def arch_table(
    flags: dict[str, Any],
    models: Annotated[Optional[list[str]], typer.Argument(
        help="Presets to tabulate (default: resnet18 resnet34 resnet50 resnet101 resnet152).", show_default=False)] = None,
    plot: PlotOption = None,
    format: FormatOption = "table",
    output: OutputOption = None,
) -> None:
    """He et al. 2015 Table 1 computed from the specs: layers per stage, output sizes, params and MACs."""
    from resnet_cli.analysis.arch_table import DEFAULT_TABLE_MODELS, architecture_table
    from resnet_cli.render.arch_table import arch_table_data, arch_table_json, arch_table_panels
    from resnet_cli.render.table import emit

    check_plot(plot)
    names = models or list(DEFAULT_TABLE_MODELS)
    table = architecture_table([(name, request_from_flags(name, **flags)) for name in names])
    emit(stdout(output), format, arch_table_data(table), arch_table_json(table))
    if plot is not None:
        write_plot(plot, "Architectures (He et al. 2015, Table 1)", arch_table_panels(table))
