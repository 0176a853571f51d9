"""`bench` and `sweep`: parse options, call one analysis function, hand the result to render."""

# No `from __future__ import annotations`: with_model_request re-evaluates string annotations in
# options.py's namespace, where this module's names (BENCH, ...) do not exist.
from typing import Annotated, Literal, Optional

import typer

from resnet_cli.cli.app import app, stdout
from resnet_cli.cli.options import FormatOption, with_model_request
from resnet_cli.spec import ModelRequest

BENCH = "Benchmark"
SWEEP = "Sweep"


@app.command()
@with_model_request(default_device="cpu")
def bench(
    request: ModelRequest,
    mode: Annotated[
        Literal["infer", "train"],
        typer.Option(help="infer: forward pass; train: forward + backward + SGD step.", rich_help_panel=BENCH),
    ] = "infer",
    iters: Annotated[int, typer.Option(help="Timed steps per configuration.", rich_help_panel=BENCH)] = 20,
    warmup: Annotated[int, typer.Option(help="Untimed steps before timing.", rich_help_panel=BENCH)] = 3,
    channels_last: Annotated[
        bool, typer.Option("--channels-last", help="NHWC memory format for weights and input.", rich_help_panel=BENCH)
    ] = False,
    amp: Annotated[
        Optional[Literal["bf16", "fp16"]],
        typer.Option(help="Autocast to this dtype (mixed precision).", rich_help_panel=BENCH),
    ] = None,
    compile_model: Annotated[
        bool, typer.Option("--compile", help="torch.compile the model (first step compiles).", rich_help_panel=BENCH)
    ] = False,
    threads: Annotated[
        Optional[int], typer.Option(help="CPU intra-op threads. [default: torch's]", rich_help_panel=BENCH)
    ] = None,
    grid: Annotated[
        bool,
        typer.Option(
            "--grid", help="Time the baseline and each enabled knob as rows, with speedups.", rich_help_panel=BENCH
        ),
    ] = False,
    format: FormatOption = "table",
) -> None:
    """Time the model on this machine: latency percentiles, throughput and peak memory."""
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
    )
    with progress_bar(enabled=format == "table") as progress:
        report = run_bench(request, settings, grid=grid, progress=progress)
    emit(stdout(), format, bench_table(report), bench_json(report))
