"""BenchReport -> table data and JSON, and the progress bar shown while runs are timed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from resnet_cli.analysis.bench import CROSS_ENTROPY, OUTPUT_MEAN, BenchReport, BenchRow
from resnet_cli.analysis.fusion import EPS_FACTOR, ROUNDING_FACTOR, FusionCheck
from resnet_cli.render.summary import fusion_json, left_note
from resnet_cli.render.table import Column, TableData, format_cell, request_json, scaled
from resnet_cli.units import MIB, plural
from resnet_cli.user_model import UserModelRequest

NOISY_SPREAD = 1.5  # p90 / p10 above this: the timings say more about the machine than the model


def bench_table(report: BenchReport) -> TableData:
    """One row per configuration: latency percentiles, throughput, peak memory and, in a grid, speedup."""
    grid = any(row.speedup is not None for row in report.rows)
    columns = [
        Column("Config"),
        Column("Median ms", "right", fmt=scaled(1, 3)),
        Column("p10 ms", "right", fmt=scaled(1, 3)),
        Column("p90 ms", "right", fmt=scaled(1, 3)),
        Column("img/s", "right", fmt=scaled(1, 2)),
        Column("Peak MiB", "right", fmt=scaled(MIB, 2), csv_header="Peak bytes"),
    ]
    if grid:
        columns.append(Column("Speedup", "right", fmt=scaled(1, 2)))
    rows = []
    for row in report.rows:
        cells: list[Any] = [
            row.label,
            row.median_ms,
            row.p10_ms,
            row.p90_ms,
            report.images_per_s(row),
            row.peak_memory_bytes,
        ]
        if grid:
            cells.append(row.speedup)
        rows.append(cells)
    request, settings = report.request, report.settings
    # the user's own model keeps its parameter dtypes; only the input gets --dtype
    dtype = f"{request.dtype} input" if isinstance(request, UserModelRequest) else request.dtype
    title = f"{request.label}  input {format_cell(request.input_shape)}  {settings.mode} on {request.device} ({dtype})"
    footer = [
        ("Device", report.device_name),
        ("Loop", f"{plural(settings.warmup, 'warm-up step')} (untimed), then {plural(settings.iters, 'timed step')} per row"),
        ("Step", _step_text(settings.mode, report.loss)),
    ]
    if request.device == "cpu":
        footer.append(("CPU threads", str(report.threads)))
    footer.append(("torch", report.torch_version))
    notes = [f"Latency is per batch of {report.batch_size}; img/s = batch / median latency."]
    notes.append(f"Peak memory: {_memory_text(report.memory_kind)}.")
    if report.loss == OUTPUT_MEAN:
        notes.append(
            "Train loss: the sum of the means of the model's output tensors; it returns no N x classes logits "
            "for cross-entropy."
        )
    if settings.warmup == 0:
        notes.append("With --warmup 0 peak memory covers building the model only, not a step.")
    if grid:
        notes.append(
            "Speedup = baseline median / row median (x); each row has its own model, and the timed steps "
            "take the rows in turn."
        )
    notes += fusion_notes(report)
    checkpointed = next((row.settings.checkpoint for row in report.rows if row.settings.checkpoint != "none"), None)
    if checkpointed is not None:
        notes.append(
            f"checkpoint {checkpointed}: each {checkpointed}'s forward runs under torch.utils.checkpoint "
            f"(non-reentrant), which keeps its input and recomputes the rest during backward: less memory, more time."
        )
    noisy = [row.label for row in report.rows if row.p90_ms > NOISY_SPREAD * row.p10_ms]
    if noisy:
        notes.append(
            f"Noisy: p90 is over {NOISY_SPREAD:g}x p10 in {', '.join(noisy)}; other load on the machine? "
            f"Raise --iters or run on a quiet machine before trusting small differences."
        )
    return TableData(title=title, columns=columns, rows=rows, footer=footer, notes=notes)


def fusion_notes(report: BenchReport) -> list[str]:
    """What the fused rows folded, and how far their outputs moved from the unfused model's (checked before timing)."""
    fused = [(row.label, row.fusion) for row in report.rows if row.fusion is not None]
    if not fused:
        return []
    fusion = fused[0][1].fusion
    moved = ", ".join(
        f"{check.max_abs_diff:.2g} (allowed {check.tolerance:.2g}){f' in {label}' if len(fused) > 1 else ''}"
        for label, check in fused
    )
    notes = [
        f"fuse-bn: {len(fusion.fused)} BatchNorms folded into the conv before them, {len(fusion.left)} left; "
        f"checked against the unfused model before timing, max |fused - unfused| output: {moved}.",
        f"Allowed: {ROUNDING_FACTOR} x the unfused model's own {fused[0][1].dtype} rounding error (its distance from "
        f"a float64 run) + {EPS_FACTOR} x eps x max |output|.",
    ]
    left = left_note(fusion)
    return notes + ([left] if left else [])


def _step_text(mode: str, loss: str | None) -> str:
    if mode == "infer":
        return "forward under torch.inference_mode"
    if loss in (None, CROSS_ENTROPY):
        return "forward + cross-entropy + backward + SGD step"
    return "forward + sum of output means + backward + SGD step"


def _memory_text(kind: str) -> str:
    if kind.startswith("CUDA"):
        return "CUDA allocator peak while building and warming up the row, over what was allocated before it"
    return "growth of the process's resident set while building and warming up the row (approximate)"


def bench_json(report: BenchReport) -> dict[str, Any]:
    """The `bench --format json` object."""
    settings = report.settings
    return {
        **request_json(report.request),
        "device_name": report.device_name,
        "mode": settings.mode,
        "iters": settings.iters,
        "warmup": settings.warmup,
        "threads": report.threads,
        "torch_version": report.torch_version,
        "memory_kind": report.memory_kind,
        "loss": report.loss,
        "rows": [row_json(report, row) for row in report.rows],
    }


def row_json(report: BenchReport, row: BenchRow) -> dict[str, Any]:
    """One configuration's figures; latencies in milliseconds, memory in bytes."""
    return {
        "label": row.label,
        "channels_last": row.settings.channels_last,
        "amp": row.settings.amp,
        "compile": row.settings.compile,
        "fuse_bn": row.settings.fuse_bn,
        "checkpoint": row.settings.checkpoint,
        "median_ms": row.median_ms,
        "p10_ms": row.p10_ms,
        "p90_ms": row.p90_ms,
        "images_per_s": report.images_per_s(row),
        "peak_memory_bytes": row.peak_memory_bytes,
        "speedup": row.speedup,
        "latencies_ms": row.latencies_ms,
        "fusion": None if row.fusion is None else fusion_check_json(row.fusion),
    }


def fusion_check_json(check: FusionCheck) -> dict[str, Any]:
    """A fused row's `fusion` object: what was folded and left, and the output check."""
    return {
        **fusion_json(check.fusion),
        "dtype": check.dtype,
        "max_abs_diff": check.max_abs_diff,
        "rounding_error": check.rounding_error,
        "max_abs_output": check.max_abs_output,
        "tolerance": check.tolerance,
    }


@contextmanager
def progress_bar(enabled: bool, unit: str = "steps") -> Iterator[Callable[[str, int, int], None] | None]:
    """A transient rich progress bar on stderr, one line per label; yields its update callback.

    Yields None (no bar) when not `enabled` or when stderr is not a terminal.
    """
    console = Console(stderr=True)
    if not enabled or not console.is_terminal:
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, TaskID] = {}

    def update(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=total)
        progress.update(tasks[label], completed=done)

    with progress:
        yield update
