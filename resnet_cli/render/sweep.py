"""SweepResult -> table data, JSON, and a scatter of MACs against params with the Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnet_cli.analysis.sweep import SweepResult, Variant, quantity
from resnet_cli.render.plots import check_plot_path, require_matplotlib, save_figure
from resnet_cli.render.table import Column, TableData, format_cell, scaled
from resnet_cli.units import MIB

SKIPPED_SHOWN = 10


def variant_label(variant: Variant) -> str:
    """The varied values as flags: 'layers=3,4,6,3 se=on'."""
    return " ".join(f"{flag}={value}" for flag, value in variant.labels.items())


PARETO_WORDS = {"macs": "MACs", "params": "params", "acts": "acts", "memory": "activation memory"}


def sweep_table(result: SweepResult) -> TableData:
    """One row per measured variant with its varied values; skipped variants listed under the table."""
    flags = [vary.flag.name for vary in result.varies]
    columns = [
        Column("#", "right"),
        *(Column(flag) for flag in flags),
        Column("Params (M)", "right", fmt=scaled(1e6, 3), csv_header="Params"),
        Column("GMACs", "right", fmt=scaled(1e9, 3), csv_header="MACs"),
        Column("Act. MiB", "right", fmt=scaled(MIB, 2), csv_header="Act. bytes"),
        Column("Acts (M)", "right", fmt=scaled(1e6, 2), csv_header="Acts"),
        Column("Pareto"),
    ]
    rows = []
    for variant in result.variants:
        m = variant.measurement
        rows.append(
            [
                variant.index + 1,
                *(variant.labels[flag] for flag in flags),
                m.params,
                m.macs,
                m.activation_bytes,
                m.acts,
                "yes" if variant.pareto else None,
            ]
        )
    base = result.base
    title = f"sweep of {base.label}  input {format_cell(base.input_shape)}  ({base.dtype}, sorted by {result.sort})"
    measured, skipped = len(result.variants), len(result.skipped)
    footer = [("Variants", f"{measured + skipped} in the grid: {measured} measured, {skipped} skipped")]
    notes = [
        "GMACs: multiply-accumulates / 1e9, fvcore convention (conv, linear, batch norm, adaptive pool); "
        "FLOPs = 2 x MACs.",
        "Act. MiB: forward activations at the input, counted on the meta device (nothing allocated).",
        "Acts: output elements of conv and linear layers (Radosavovic et al. 2020; fvcore's ActivationCountAnalysis).",
        f"Pareto: no other variant has both fewer {PARETO_WORDS[result.pareto[0]]} and fewer "
        f"{PARETO_WORDS[result.pareto[1]]}.",
    ]
    for variant in result.skipped[:SKIPPED_SHOWN]:
        notes.append(f"skipped #{variant.index + 1} {variant_label(variant)}: {variant.skipped_reason}")
    if skipped > SKIPPED_SHOWN:
        notes.append(f"... and {skipped - SKIPPED_SHOWN} more skipped (all are listed by --format json)")
    return TableData(
        title=title,
        columns=columns,
        rows=rows,
        footer=footer,
        notes=notes,
        row_styles=["bold" if v.pareto else None for v in result.variants],
    )


def nothing_measured(result: SweepResult) -> str:
    """The one-line error for a sweep whose every variant was skipped: how many, and the first one's reason."""
    first = result.skipped[0]
    count = len(result.skipped)
    others = f" (and {count - 1} more)" if count > 1 else ""
    return (
        f"no variant could be measured: all {count} were skipped; "
        f"#{first.index + 1} {variant_label(first)}: {first.skipped_reason}{others}"
    )


def timing_line(result: SweepResult) -> str:
    """How long the sweep took, for stderr: the table itself stays the same from run to run."""
    workers = f"{result.workers} worker{'s' if result.workers > 1 else ''}"
    count = len(result.variants) + len(result.skipped)
    return f"{count} variants in {result.seconds:.1f} s on {workers}"


def sweep_json(result: SweepResult) -> dict[str, Any]:
    """The `sweep --format json` object: exact counts, skipped variants with their reasons."""
    base = result.base
    return {
        "base": base.name,
        "base_spec": base.spec.to_dict(),
        "input_shape": list(base.input_shape),
        "dtype": base.dtype,
        "vary": {vary.flag.name: list(vary.labels) for vary in result.varies},
        "sort": result.sort,
        "pareto": list(result.pareto),
        "workers": result.workers,
        "seconds": result.seconds,
        "variants": [
            {
                "index": v.index,
                "values": v.labels,
                "params": v.measurement.params,
                "macs": v.measurement.macs,
                "macs_conv_linear": v.measurement.conv_linear_macs,
                "activation_bytes": v.measurement.activation_bytes,
                "acts": v.measurement.acts,
                "pareto": v.pareto,
            }
            for v in result.variants
        ],
        "skipped": [{"index": v.index, "values": v.labels, "reason": v.skipped_reason} for v in result.skipped],
    }


# How each --pareto quantity is plotted: scale and axis label.
PLOT_AXES = {
    "macs": (1e9, "GMACs (fvcore convention; FLOPs = 2 x MACs)"),
    "params": (1e6, "Params (millions)"),
    "acts": (1e6, "Activations (millions of conv/linear output elements)"),
    "memory": (1024 * 1024, "Forward activation memory (MiB)"),
}


def write_sweep_plot(result: SweepResult, path: str | Path) -> Path:
    """Scatter of the two --pareto quantities (MACs against params by default), the front joined and labelled."""
    path = check_plot_path(path)
    plt = require_matplotlib()
    y_name, x_name = result.pareto
    (x_scale, x_label), (y_scale, y_label) = PLOT_AXES[x_name], PLOT_AXES[y_name]

    def point(v: Variant) -> tuple[float, float]:
        return quantity(v, x_name) / x_scale, quantity(v, y_name) / y_scale

    front = sorted((v for v in result.variants if v.pareto), key=lambda v: quantity(v, y_name))
    others = [v for v in result.variants if not v.pareto]
    figure, axes = plt.subplots(figsize=(8, 6))
    axes.scatter([point(v)[0] for v in others], [point(v)[1] for v in others], s=14, alpha=0.5, color="tab:gray",
                 label="variant")  # fmt: skip
    axes.plot([point(v)[0] for v in front], [point(v)[1] for v in front], marker="o", color="tab:red",
              label=f"Pareto front (fewest {PARETO_WORDS[y_name]} and {PARETO_WORDS[x_name]})")  # fmt: skip
    if len(front) <= 15:
        for v in front:
            axes.annotate(variant_label(v), point(v), fontsize=7, xytext=(4, 4), textcoords="offset points")
    base = result.base
    axes.set_title(f"sweep of {base.label} at {format_cell(base.input_shape)}: {len(result.variants)} variants")
    axes.set_xlabel(x_label)
    axes.set_ylabel(y_label)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left")
    figure.tight_layout()
    return save_figure(figure, path)
