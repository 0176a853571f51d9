"""He et al. Table 1 (ArchTable) -> table data, JSON and bar-chart panels."""

from __future__ import annotations

import textwrap
from typing import Any

from resnet_cli.analysis.arch_table import HEAD_ROW, POOL_ROW, ArchTable
from resnet_cli.render.plots import BarPanel
from resnet_cli.render.table import Column, Shown, TableData
from resnet_cli.units import giga, shape_text

PARAMS_ROW, GMACS_ROW, RF_ROW = "params", "MACs x10^9", "RF / stride"
PAPER_GMACS = "1.8, 3.6, 3.8, 7.6, 11.3 x10^9 for resnet18/34/50/101/152"


def stacked_cell(text: str, width: int = 10) -> str:
    """'[1x1, 64; 3x3, 64] x 3' as one layer a line, like the paper's brackets; others break at the last comma."""
    if not (text.startswith("[") and "] x " in text):
        return "\n".join(textwrap.wrap(text, width=max(width, 8), break_long_words=False))
    inner, blocks = text[1:].rsplit("] x ", 1)
    lines = [f"{layer};" for layer in inner.split("; ")]
    lines[0], lines[-1] = "[" + lines[0], lines[-1][:-1] + "]"
    return "\n".join([*lines, f"x {blocks}"])


def _cell_width(column: Any) -> int:
    """Width of the longest layer line in a model's stacked cells."""
    lines = [line for row, cell in column.cells.items() if cell.startswith("[") for line in stacked_cell(cell).split("\n")]
    return max((len(line) for line in lines), default=8)


def output_size_cell(table: ArchTable, row: str) -> str:
    """The row's output size; models that disagree (e.g. cifar next to imagenet nets) are joined by ' / '."""
    sizes = [shape_text(c.output_sizes[row]) for c in table.columns if row in c.output_sizes and c.cells.get(row)]
    return " / ".join(dict.fromkeys(sizes))


def arch_table_data(table: ArchTable) -> TableData:
    """Rows conv1, max pool, conv2_x.., average pool + fc, then params and MACs; one column per model."""
    rows: list[list[Any]] = []
    for row in table.rows:
        rows.append([row.replace(" + ", "\n+ "), output_size_cell(table, row), *(stacked_cell(c.cells.get(row, ""), _cell_width(c)) for c in table.columns)])
    rows.append([PARAMS_ROW, "", *(Shown(c.params, f"{c.params / 1e6:.2f} M") for c in table.columns)])
    rows.append([Shown("MACs (conv + linear)", GMACS_ROW), "",
                 *(Shown(c.macs_conv_linear, giga(c.macs_conv_linear, small_to_three_digits=True)) for c in table.columns)])
    rows.append([RF_ROW, "", *(f"{c.receptive_field} / {c.output_stride}" if c.receptive_field else "unknown"
                               for c in table.columns)])  # fmt: skip
    inputs = " / ".join(dict.fromkeys(shape_text(c.request.input_shape) for c in table.columns))
    placements = sorted({c.downsample_on for c in table.columns if c.downsample_on})
    stride_note = "Downsampling: stride 2 in the first block of every stage after the first" + (
        f"; bottleneck stride on the {' and '.join(placements)} conv (3x3: torchvision / ResNet v1.5; "
        "1x1: the paper, --stride-on 1x1)."
        if placements
        else "."
    )
    return TableData(
        title=f"Architectures (He et al. 2015, Table 1)  input {inputs}",
        columns=[Column("layer"), Column("output"), *(Column(c.label, min_width=_cell_width(c)) for c in table.columns)],
        rows=rows,
        notes=[
            "Cells are read from the built modules: [kernel, output channels; ...] x blocks; C = groups, "
            "d = dilation, fc, [r, c] = squeeze-excitation.",
            stride_note,
            f"MACs count conv + linear only, the convention of the paper's FLOPs row (multiply-adds: {PAPER_GMACS}, "
            "which --stride-on 1x1 reproduces); exact counts in --format json.",
            "RF / stride: theoretical receptive field of the last feature map (pixels) and output stride; per row in "
            "--format json (docs/receptive-field.md).",
        ],
        row_styles=[None] * len(table.rows) + ["bold"] * 3,
    )


def arch_table_json(table: ArchTable) -> dict[str, Any]:
    """The `table --format json` object."""
    return {
        "rows": table.rows,
        "models": [
            {
                "label": c.label,
                "spec": c.request.spec.to_dict(),
                "input_shape": list(c.request.input_shape),
                "cells": {row: c.cells.get(row, "") for row in table.rows},
                "output_sizes": {row: list(size) for row, size in c.output_sizes.items() if c.cells.get(row)},
                "params": c.params,
                "macs": c.macs,
                "macs_conv_linear": c.macs_conv_linear,
                "row_params": c.row_params,
                "row_macs_conv_linear": c.row_macs,
                "receptive_field": c.receptive_field,
                "output_stride": c.output_stride,
                "row_receptive_fields": c.row_receptive_fields,
            }
            for c in table.columns
        ],
    }


def arch_table_panels(table: ArchTable) -> list[BarPanel]:
    """Params and conv + linear MACs of each model, stacked by row (stage)."""
    rows = [r for r in table.rows if r != POOL_ROW]
    models = [c.label for c in table.columns]
    label = {HEAD_ROW: "avg pool + fc"}
    return [
        BarPanel("Parameters", "parameters", models,
                 {label.get(r, r): [c.row_params.get(r, 0) for c in table.columns] for r in rows}, stacked=True),
        BarPanel("MACs (conv + linear)", "MACs", models,
                 {label.get(r, r): [c.row_macs.get(r, 0) for c in table.columns] for r in rows}, stacked=True),
    ]  # fmt: skip
