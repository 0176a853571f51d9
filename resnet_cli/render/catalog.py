"""Preset catalogue -> table data and JSON."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from resnet_cli.analysis.catalog import PresetInfo
from resnet_cli.render.table import Column, TableData
from resnet_cli.units import giga


def catalog_table(rows: Sequence[PresetInfo]) -> TableData:
    """One row per preset."""
    return TableData(
        title="Presets",
        columns=[
            Column("Model"),
            Column("Block"),
            Column("Layers"),
            Column("GxW", "right"),
            Column("Input"),
            Column("Params", "right"),
            Column("GMACs", "right", fmt=giga, csv_header="MACs"),
        ],
        rows=[
            [
                *(r.name, r.block, ",".join(map(str, r.layers)), f"{r.groups}x{r.width_per_group}"),
                *(r.input_shape[2:], r.params, r.macs),
            ]
            for r in rows
        ],
        notes=[
            "GxW: groups x width per group.",
            "GMACs: 10^9 multiply-accumulates at that input (fvcore); FLOPs = 2 x MACs.",
            "--format json also has acts: conv and linear output elements (fvcore's ActivationCountAnalysis).",
            "Any preset takes build flags, e.g. `resnet-cli summary resnet50 --se --stem deep`.",
        ],
    )


def catalog_json(rows: Sequence[PresetInfo]) -> dict[str, Any]:
    """The `list --format json` object."""
    return {"presets": [dataclasses.asdict(r) | {"layers": list(r.layers), "input_shape": list(r.input_shape)} for r in rows]}
