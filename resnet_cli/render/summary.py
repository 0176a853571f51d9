"""ModelSummary -> table data and JSON."""

from __future__ import annotations

from typing import Any

from resnet_cli.analysis.fusion import FusionResult
from resnet_cli.analysis.mac_rules import DATA_MOVEMENT
from resnet_cli.analysis.receptive_field import UNKNOWN, Field, ReceptiveFields
from resnet_cli.analysis.summary import ModelSummary
from resnet_cli.render.table import Column, Shown, TableData, format_cell, request_json, scaled
from resnet_cli.trace import FunctionRecord, LayerRecord
from resnet_cli.units import format_bytes

ZERO_COST = "ReLU, max/avg pool, residual add, SE multiply, mean: 0 MACs in both conventions."


def layer_label(record: LayerRecord) -> str:
    """Dotted path indented by depth; repeated calls of one module are marked."""
    suffix = f" (call {record.call_index + 1})" if record.call_index else ""
    return "  " * (record.depth - 1) + record.name + suffix


def _stage_style(row: LayerRecord | FunctionRecord) -> str | None:
    if isinstance(row, FunctionRecord):
        return "italic"
    return "bold" if row.depth == 1 else None


def summary_table(summary: ModelSummary) -> TableData:
    """Per-layer rows and the totals lines under them."""
    request, totals = summary.request, summary.totals
    columns = [Column("Layer"), Column("Type"), Column("Output shape"), Column("Params", "right")]
    extra_keys = [k for k in summary.columns if k not in ("name", "type", "output_shape", "params")]
    columns += [Column(_EXTRA_HEADERS.get(k, k), "right", **_EXTRA_FORMATS.get(k, {})) for k in extra_keys]
    fields = summary.fields
    if fields is not None:
        columns += [Column("RF/stride", "right", min_width=9, csv_header=("RF (px)", "Stride (px)"))]
    rows = [
        [_label(r), _type(r), _output_shape(r), getattr(r, "params", None),
         *(getattr(r, k, None) for k in extra_keys),
         *((_field_cell(fields.of(r) if isinstance(r, LayerRecord) else None),) if fields is not None else ())]
        for r in summary.rows()
    ]  # fmt: skip
    depth = {None: "all levels", 0: "totals only"}.get(summary.max_depth, f"depth <= {summary.max_depth}")
    fused = ", BN fused" if summary.fusion is not None else ""
    title = f"{request.label}  input {format_cell(request.input_shape)}  ({depth}, device {request.device}{fused})"
    footer = [
        ("Total params", f"{totals.params:,}"),
        ("Trainable params", f"{totals.trainable_params:,}"),
        ("Non-trainable params", f"{totals.params - totals.trainable_params:,}"),
        ("Parameter memory", f"{format_bytes(totals.param_bytes)} ({request.dtype})"),
        ("Input memory", format_bytes(totals.input_bytes)),
        ("Forward activation memory", format_bytes(totals.activation_bytes)),
        ("MACs (fvcore)", f"{totals.macs:,}  (FLOPs = 2 x MACs = {2 * totals.macs:,})"),
        ("Activations (acts)", f"{totals.acts:,}  (conv and linear output elements)"),
        *(_field_footer(fields) if fields is not None else []),
        *([fusion_footer(summary.fusion)] if summary.fusion is not None else []),
    ]
    return TableData(
        title=title,
        columns=columns,
        rows=rows,
        footer=footer,
        notes=[
            "Activations: each new tensor, once; views and in-place results: 0.",
            "MACs: fvcore convention, as `resnet-cli flops` (which shows conv + linear too).",
            zero_note(summary.zero_by_convention),
            *([_outside_note(summary)] if summary.max_depth != 0 and any(summary.outside_rows) else []),
            *([] if summary.coverage == "complete" else [f"MACs are {summary.coverage}."]),
            *(["Type function: a torch call made in a module's own forward (--ops)."] if summary.functions else []),
            *([RF_NOTE] if fields is not None else []),
            *(fusion_notes(summary.fusion) if summary.fusion is not None else []),
        ],
        row_styles=[_stage_style(r) for r in summary.rows()],
        csv_totals=[["total", "", None, totals.params, *(getattr(totals, k, None) for k in extra_keys),
                     *(("",) if fields is not None else ())]],  # fmt: skip
    )


RF_NOTE = ("RF/stride: theoretical receptive field in input pixels (max over paths at residual adds) and effective "
           "stride (jump); global: after a global pooling (see docs/receptive-field.md).")


def zero_note(zero_by_convention: dict[str, int]) -> str:
    """Which operators ran and count 0 MACs by the convention, by name and calls; data movement summed up."""
    arithmetic = sorted((op, n) for op, n in zero_by_convention.items() if op not in DATA_MOVEMENT)
    movement = sum(n for op, n in zero_by_convention.items() if op in DATA_MOVEMENT)
    parts = [f"{op} x{n}" for op, n in arithmetic]
    if movement:
        parts.append(f"{movement} view/copy/allocation calls")
    return f"0 MACs by convention: {', '.join(parts)}." if parts else ZERO_COST


def _outside_note(summary: ModelSummary) -> str:
    params, macs = summary.outside_rows
    return (f"In no row above: {params:,} params and {macs:,} MACs of the model's own forward (its own parameters "
            "and torch calls, --ops lists them) or of modules never called.")  # fmt: skip


def _field_cell(found: Field | None) -> Shown | None:
    """'435/32' (receptive field / effective stride; '435x427' when not square), 'global/32', '?' past an operator
    not followed, nothing for no map; CSV gets the two values apart (435 and 32, 'global', '?')."""
    if found is None:
        return None
    if found is UNKNOWN:
        return Shown(("?", "?"), "?")
    rf, stride = "global" if found.whole else _pair(found.rf), _pair(found.jump)
    return Shown((rf, stride), f"{rf}/{stride}")


def _pair(pair: tuple[int, int]) -> int | str:
    """One number for a square pair, HxW (as shapes are written) otherwise."""
    return pair[0] if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _field_footer(fields: ReceptiveFields) -> list[tuple[str, str]]:
    backbone = fields.backbone
    if backbone is None:
        rf = "unknown (an operator was not followed)"
    else:
        rf = "global (after an SE gate or other global pooling)" if backbone.whole else f"{_pair(backbone.rf)} px (last feature map)"
    lines = [("Receptive field", rf),
             ("Output stride", str(fields.output_stride) if fields.output_stride else "unknown")]  # fmt: skip
    if fields.unknown_ops:
        lines.append(("Not followed", ", ".join(f"aten.{k} x{v}" for k, v in fields.unknown_ops.items())))
    return lines


def field_json(found: Field | None) -> dict[str, Any]:
    """A call's receptive field and effective stride as JSON keys."""
    if found is None or found is UNKNOWN:
        return {"receptive_field": None, "effective_stride": None, "receptive_field_known": found is None}
    return {"receptive_field": "global" if found.whole else list(found.rf), "effective_stride": list(found.jump),
            "receptive_field_known": True}  # fmt: skip


def _label(row: LayerRecord | FunctionRecord) -> str:
    if isinstance(row, FunctionRecord):
        return "  " * (row.depth - 1) + row.name
    return layer_label(row)


def _type(row: LayerRecord | FunctionRecord) -> str:
    return "function" if isinstance(row, FunctionRecord) else row.type


def _output_shape(row: LayerRecord | FunctionRecord) -> Any:
    return row.output_shapes[0] if row.output_shapes else None


_EXTRA_HEADERS = {"macs": "MACs (M)"}
# Millions keep the table within 80 columns; CSV and JSON keep exact counts.
_EXTRA_FORMATS: dict[str, dict[str, Any]] = {"macs": {"fmt": scaled(1e6, 2), "csv_header": "MACs"}}


def summary_json(summary: ModelSummary) -> dict[str, Any]:
    """The `summary --format json` object."""
    return {
        **request_json(summary.request),
        "totals": summary.totals.as_dict(),
        "macs_coverage": summary.coverage,
        "layers": [{**layer_json(r), **(field_json(summary.fields.of(r)) if summary.fields else {})}
                   for r in summary.layers],  # fmt: skip
        **(_fields_json(summary.fields) if summary.fields else {}),
        **({"functions": [function_json(f) for f in summary.functions]} if summary.functions else {}),
        **({"fusion": fusion_json(summary.fusion)} if summary.fusion is not None else {}),
    }


FUSION_NOTE = (
    "--fuse-bn: each BatchNorm whose input only a convolution reads is folded into it with its running statistics, "
    "W' = W x gamma / sqrt(var + eps), b' = (b - mean) x gamma / sqrt(var + eps) + beta: the inference model, equal "
    "to the original in eval mode only (in training, BatchNorm uses each batch's statistics)."
)
LISTED = 6  # batch norms left for one reason: named up to this many, beyond that the first three and a count


def fusion_footer(fusion: FusionResult) -> tuple[str, str]:
    """The footer line: how many BatchNorms were folded and left, and the parameters before and after."""
    return (
        "BatchNorms fused",
        f"{len(fusion.fused)} folded, {len(fusion.left)} left; params {fusion.params_before:,} -> {fusion.params_after:,}",
    )


def fusion_notes(fusion: FusionResult) -> list[str]:
    """What fusion does, and the batch norms left as they are: by name with the reason, or counted by reason."""
    left = left_note(fusion)
    return [FUSION_NOTE, *([left] if left else [])]


def left_note(fusion: FusionResult) -> str | None:
    """The batch norms fusion left as they are, grouped by reason."""
    if not fusion.left:
        return None
    by_reason: dict[str, list[str]] = {}
    for left in fusion.left:
        by_reason.setdefault(left.reason, []).append(left.name)
    groups = [f"{_names(names)}: {reason}" for reason, names in by_reason.items()]
    return f"Left as they are ({len(fusion.left)}): {'; '.join(groups)}."


def _names(names: list[str]) -> str:
    return ", ".join(names) if len(names) <= LISTED else f"{', '.join(names[:3])} and {len(names) - 3} more"


def fusion_json(fusion: FusionResult) -> dict[str, Any]:
    """The `fusion` object: the pairs folded, the batch norms left (with the reason) and params before and after."""
    return {
        "fused": [{"conv": p.conv, "bn": p.bn, "channels": p.channels, "bias_added": p.bias_added} for p in fusion.fused],
        "left": [{"name": left.name, "reason": left.reason} for left in fusion.left],
        "params_before": fusion.params_before,
        "params_after": fusion.params_after,
    }


def _fields_json(fields: ReceptiveFields) -> dict[str, Any]:
    backbone = fields.backbone
    rf = None if backbone is None else "global" if backbone.whole else list(backbone.rf)
    return {"receptive_field": rf, "output_stride": fields.output_stride,
            "receptive_field_not_followed": dict(fields.unknown_ops)}  # fmt: skip


def function_json(function: FunctionRecord) -> dict[str, Any]:
    """One functional call as JSON: where it ran, whether it finished, its shapes and (once counted) MACs."""
    return {
        "name": function.name,
        "module": function.module_name,
        "depth": function.depth,
        "finished": function.finished,
        "input_shapes": [list(s) for s in function.input_shapes],
        "output_shapes": [list(s) for s in function.output_shapes],
        **({"macs": function.macs} if function.macs is not None else {}),
    }


def layer_json(record: LayerRecord, *, every_tensor: bool = False) -> dict[str, Any]:
    """One module call as JSON, shapes as lists. By default (summary, flops) the first input and output shape,
    params, output bytes and, once counted, MACs; with `every_tensor` (debug-shapes) whether it finished and every
    input and output shape and dtype."""
    head = {"name": record.name, "type": record.type, "depth": record.depth, "call_index": record.call_index}
    if every_tensor:
        return {
            **head,
            "finished": record.finished,
            "input_shapes": [list(s) for s in record.input_shapes],
            "output_shapes": [list(s) for s in record.output_shapes],
            "input_dtypes": list(record.input_dtypes),
            "output_dtypes": list(record.output_dtypes),
        }
    return {
        **head,
        "is_leaf": record.is_leaf,
        "input_shape": list(record.input_shapes[0]) if record.input_shapes else None,
        "output_shape": list(record.output_shape) if record.output_shape else None,
        "params": record.params,
        "trainable_params": record.trainable_params,
        "output_bytes": record.output_bytes,
        **({"macs": record.macs, "macs_conv_linear": record.macs_conv_linear} if record.macs is not None else {}),
        **record.extra,
    }
