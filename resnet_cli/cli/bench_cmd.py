"""`bench` and `sweep`: parse options, call one analysis function, hand the result to render."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import Annotated, Literal, Optional

import typer

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.options import (
    FormatOption,
    OutputOption,
    amp_option,
    check_plot,
    say_plot_written,
    with_model_request,
)
from resnet_cli.errors import UserError
from resnet_cli.spec import ModelRequest
from resnet_cli.user_model import UserModelRequest

BENCH = "Benchmark"
SWEEP = "Sweep"


@app.command()
@with_model_request(default_device="cpu", user_models=True)
def bench(
    request: ModelRequest | UserModelRequest,
    mode: Annotated[
        Literal["infer", "train"],
        typer.Option(help="infer: forward pass; train: forward + backward + SGD step.", rich_help_panel=BENCH),
    ] = "infer",
    iters: Annotated[int, typer.Option(help="Timed steps per configuration.", rich_help_panel=BENCH)] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed steps before timing.", rich_help_panel=BENCH)] = 3,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="NHWC memory format for weights and input.", rich_help_panel=BENCH)
    ] = False,
    amp: amp_option(BENCH) = None,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (first step compiles).", rich_help_panel=BENCH)
    ] = False,
    threads: Annotated[
        Optional[int], typer.Option(help="CPU intra-op threads. \\[default: torch's]", rich_help_panel=BENCH)
    ] = None,
    fuse_bn: Annotated[
        bool,
        typer.Option(
            "--fuse-bn",
            help="Infer: fold each BatchNorm into the conv before it; outputs checked against the unfused model.",
            rich_help_panel=BENCH,
        ),
    ] = False,
    checkpoint: Annotated[
        Literal["none", "block", "stage"],
        typer.Option(help="Train: recompute each block's or stage's activations during backward.", rich_help_panel=BENCH),
    ] = "none",
    grid: Annotated[
        bool,
        typer.Option(
            "--grid", help="Time the baseline and each enabled knob as rows, with speedups.", rich_help_panel=BENCH
        ),
    ] = False,
    format: FormatOption = "table",
    output: OutputOption = None,
) -> None:
    """Time the model (a preset or your own) on this machine: latency percentiles, throughput and peak memory."""
    from resnet_cli.analysis.bench import BenchSettings, run_bench
    from resnet_cli.render.bench import bench_json, bench_table, progress_bar
    from resnet_cli.render.table import emit

    settings = BenchSettings(
        mode=mode,
        iters=iters,
        warmup=warmup,
        channels_last=channels_last,
        amp=amp,
        compile=compile_model,
        threads=threads,
        fuse_bn=fuse_bn,
        checkpoint=checkpoint,
    )
    with progress_bar(enabled=format == "table") as progress:
        report = run_bench(request, settings, grid=grid, progress=progress)
    emit(stdout(output), format, bench_table(report), bench_json(report))


@app.command()
@with_model_request(default_device="meta")
def sweep(
    request: ModelRequest,
    vary: Annotated[
        Optional[list[str]],
        typer.Option(
            "--vary",
            help="FLAG=v1,v2,... over a build flag; repeat to span a grid. List flags (layers, widths, "
            "dilate-stages) separate values with '/': layers=2,2,2,2/3,4,6,3.",
            show_default=False,
            rich_help_panel=SWEEP,
        ),
    ] = None,
    sort: Annotated[
        Literal["macs", "params", "acts", "memory", "order"],
        typer.Option(help="Row order (ascending); order = grid order.", rich_help_panel=SWEEP),
    ] = "macs",
    pareto: Annotated[
        str,
        typer.Option(help="The two quantities the Pareto front is taken on: two of macs, params, acts, memory.",
                     rich_help_panel=SWEEP),
    ] = "macs,params",
    workers: Annotated[
        Optional[int],
        typer.Option(help="Processes; default one per core for 48+ variants, else 1.", rich_help_panel=SWEEP),
    ] = None,
    plot: Annotated[
        Optional[str],
        typer.Option(
            help="Write a scatter of MACs vs params with the Pareto front (.png or .svg).", rich_help_panel=SWEEP
        ),
    ] = None,
    format: FormatOption = "table",
    output: OutputOption = None,
) -> None:
    """Params, MACs and activation memory of every variant in a --vary grid, counted on the meta device."""
    from rich.console import Console

    from resnet_cli.analysis.sweep import parse_pareto, parse_vary, run_sweep
    from resnet_cli.render.bench import progress_bar
    from resnet_cli.render.sweep import nothing_measured, sweep_json, sweep_table, timing_line, write_sweep_plot
    from resnet_cli.render.table import emit

    varies = [parse_vary(text) for text in vary or []]
    axes = parse_pareto(pareto)
    check_plot(plot)
    with sigterm_exits(), progress_bar(enabled=format == "table", unit="variants") as progress:
        result = run_sweep(
            request,
            varies,
            sort=sort,
            workers=workers,
            pareto=axes,
            progress=(lambda done, total: progress("measuring variants", done, total)) if progress else None,
        )
    if not result.variants:
        raise UserError(nothing_measured(result))
    emit(stdout(output), format, sweep_table(result), sweep_json(result))
    status = Console(stderr=True, highlight=False)
    if format == "table" and status.is_terminal:
        status.print(timing_line(result), markup=False, style="dim")
    if plot is not None:
        say_plot_written(write_sweep_plot(result, plot))


class _Terminated(BaseException):
    """SIGTERM, raised in the main thread; not an Exception, so nothing on the way mistakes it for a failure."""


@contextlib.contextmanager
def sigterm_exits() -> Iterator[None]:
    """Within the block, SIGTERM unwinds like Ctrl-C (the worker pool is shut down) and exits 143 (128 + 15)."""

    def terminate(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second kill must not interrupt the shutdown
        raise _Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: signals are not ours to handle
        yield
        return
    try:
        yield
    except _Terminated:
        raise typer.Exit(128 + signal.SIGTERM) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
