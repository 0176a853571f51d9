"""ShapeReport -> a rich tree of shapes and, for a broken model, the where / why / fix report; JSON and tables."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from resnet_cli.analysis.diagnosis import ShapeReport
from resnet_cli.analysis.diagnosis.sizes import SizeRange, SizeResult, SizeScan
from resnet_cli.render.summary import function_json, layer_json
from resnet_cli.render.table import Column, TableData, format_cell, model_json, without_trailing_spaces
from resnet_cli.trace import FunctionRecord, LayerRecord, in_call_order
from resnet_cli.units import shape_text

NO_PROBLEMS = "no shape problems"
_KIND_TITLES = {
    "residual_add_mismatch": "residual add mismatch",
    "expansion_mismatch": "expansion mismatch",
    "conv_channels": "conv receives the wrong number of channels",
    "classifier_mismatch": "classifier mismatch",
    "missing_attribute": "attribute used in forward but never set in __init__",
    "dtype_mismatch": "dtype mismatch",
    "device_mismatch": "device mismatch",
    "input_too_small": "input too small",
    "needs_real_tensors": "forward reads tensor values (not a shape problem)",
    "sys_exit": "forward calls sys.exit() (not a shape problem)",
    "unrecognised": "unrecognised error",
    "norm_channels": "norm layer built for other channels",
    "layer_features": "linear layer receives the wrong number of features",
    "cat_mismatch": "joined tensors differ in size",
    "split_width": "split gives pieces of the wrong width",
    "input_size": "the model expects another input size",
    "batch_changed": "batch size changes inside the model (runs, but wrong)",
    "tensor_without_device": "tensor created in forward without a device (fails on CUDA)",
}


def report_renderable(report: ShapeReport, max_depth: int | None = None) -> RenderableType:
    """The `table` format: the shape tree, then 'no shape problems' or the failure report."""
    parts: list[RenderableType] = [Text(_title(report), style="bold"), shape_tree(report, max_depth)]
    if report.ok:
        parts.append(Text(NO_PROBLEMS, style="bold green"))
    else:
        parts.append(Text(""))
        parts.append(failure_renderable(report))
    return without_trailing_spaces(Group(*parts))


def shape_tree(report: ShapeReport, max_depth: int | None = None) -> Tree:
    """Every module call as a tree: input -> output shapes, channel/spatial changes, residual blocks marked."""
    root_record = report.records[0] if report.records else None
    root = Tree(_node_label(root_record) if root_record else Text(report.model), guide_style="dim")
    nodes: dict[int, Tree] = {root_record.order: root} if root_record else {}
    for row in in_call_order(report.records[1:], report.functions):
        if isinstance(row, FunctionRecord):
            if row.module in nodes and (max_depth is None or row.depth <= max_depth):
                nodes[row.module].add(_function_label(row))
            continue
        if not _shown(row, max_depth) or row.parent not in nodes:
            continue
        nodes[row.order] = nodes[row.parent].add(_node_label(row, failing=row is report.failing))
    return root


def failure_renderable(report: ShapeReport) -> RenderableType:
    """Where it broke, the error as raised, the shapes around it, the diagnosis and the fix."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    failing, location, diagnosis = report.failing, report.location, report.diagnosis
    grid.add_row("Problem", Text(_KIND_TITLES.get(diagnosis.kind, diagnosis.kind), style="bold red"))
    if failing is not None:
        grid.add_row("Module", f"{failing.name or '(model)'} ({failing.type})")
        path = _path(report)
        if len(path) > 1:
            grid.add_row("Inside", " > ".join(path[:-1]))
    if location is not None:
        grid.add_row("Code", f"{location.file}:{location.line} in {location.function}")
        grid.add_row("", Text(location.code, style="cyan"))
    if report.error:
        grid.add_row("Error", Text(report.error, style="red"))
    grid.add_row("Shapes", shapes_table(report))
    grid.add_row("Diagnosis", diagnosis.summary)
    grid.add_row("Fix", Text(diagnosis.fix, style="green"))
    return grid


def shapes_table(report: ShapeReport) -> Table:
    """What entered the failing module and what each of its finished children produced."""
    table = Table.grid(padding=(0, 2))
    # A narrow terminal wraps the widest column first (a list of shapes between two shapes), and cuts nothing with '…'.
    for _ in range(3):
        table.add_column(overflow="fold")
    failing = report.failing
    if failing is None:
        table.add_row("input", _shapes(tuple(report.input_shape)))
        return table
    context = report.context or failing
    table.add_row(Text(f"entered {context.name or context.type}"), _shapes(context.input_shapes), "")
    own = [f for f in report.functions if f.module == context.order]
    for child in in_call_order(report.children, [f for f in own if f.finished]):
        if isinstance(child, FunctionRecord):
            table.add_row(Text(f"  {child.name}", style="italic"), _shapes(child.output_shapes), _change_text(child))
        else:
            table.add_row(f"  {child.name} ({child.type})", _shapes(child.output_shapes), _change_text(child))
    broken = next((f for f in reversed(own) if not f.finished), None)
    if broken is not None and context is failing:  # one operand a line, so the shape column stays narrow
        shapes = [format_cell(s) for s in broken.input_shapes] or ["(no tensors)"]
        for i, shape in enumerate(shapes):
            label = Text(f"  {broken.name} received" if i == 0 else "", style="bold red")
            table.add_row(label, shape, Text("failed here", style="red") if i == len(shapes) - 1 else "")
    if context is not failing:
        table.add_row(Text(f"  {failing.name} ({failing.type}) received", style="bold red"),
                      _shapes(failing.input_shapes), Text("failed here", style="red"))
    elif failing.finished and failing.output_shape is not None:
        table.add_row(Text(f"left {failing.name}"), _shapes(failing.output_shapes), "")
    return table


def debug_json(report: ShapeReport, request: Any = None) -> dict[str, Any]:
    """The `debug-shapes --format json` object: the same report as data, after the model's name and spec (or
    factory arguments) when the request is given."""
    problem = None
    if not report.ok:
        failing, location, diagnosis = report.failing, report.location, report.diagnosis
        problem = {
            "kind": diagnosis.kind,
            "module": failing.name if failing else None,
            "type": failing.type if failing else None,
            "inside": _path(report)[:-1],
            "file": location.file if location else None,
            "line": location.line if location else None,
            "function": location.function if location else None,
            "code": location.code if location else None,
            "error": report.error,
            "input_shapes": [list(s) for s in failing.input_shapes] if failing else [list(report.input_shape)],
            "context": report.context.name if report.context else None,
            "context_input_shapes": [list(s) for s in report.context.input_shapes] if report.context else None,
            "children": [
                {"name": c.name, "type": c.type, "output_shapes": [list(s) for s in c.output_shapes]}
                for c in report.children
            ],
            "diagnosis": diagnosis.summary,
            "fix": diagnosis.fix,
        }
    return {
        **(model_json(request) if request is not None else {}),
        "model": report.model,
        "input_shape": list(report.input_shape),
        "device": report.device,
        "dtype": report.dtype,
        "ok": report.ok,
        "message": NO_PROBLEMS if report.ok else None,
        "problem": problem,
        "layers": [_traced_layer_json(r) for r in report.records],
        "functions": [{**function_json(f), "change": _change_text(f).plain or None} for f in report.functions],
    }


def debug_table(report: ShapeReport, max_depth: int | None = None) -> TableData:
    """Per-call rows for csv/markdown, with the verdict (or diagnosis and fix) as notes."""
    rows = [
        [r.name or "(model)", r.type, _first(r.input_shapes), _first(r.output_shapes) if r.finished else "(failed)",
         _change_text(r).plain, _residual_text(r)]
        for r in report.records
        if r.depth == 0 or _shown(r, max_depth)
    ]  # fmt: skip
    if report.ok:
        notes = [NO_PROBLEMS]
    else:
        location = report.location
        notes = [f"Problem: {_KIND_TITLES.get(report.diagnosis.kind, report.diagnosis.kind)}"]
        if report.failing is not None:
            notes.append(f"Module: {report.failing.name or '(model)'} ({report.failing.type})")
        if location is not None:
            notes.append(f"Code: {location.file}:{location.line}: {location.code}")
        notes += [f"Error: {report.error}", f"Diagnosis: {report.diagnosis.summary}", f"Fix: {report.diagnosis.fix}"]
    return TableData(
        title=_title(report),
        columns=[Column("Layer"), Column("Type"), Column("Input"), Column("Output"), Column("Change"),
                 Column("Residual")],  # fmt: skip
        rows=rows,
        notes=notes,
    )


def _title(report: ShapeReport) -> str:
    return (
        f"debug-shapes {report.model}  input {format_cell(report.input_shape)}  "
        f"(device {report.device}, {report.dtype})"
    )


def _shown(record: LayerRecord, max_depth: int | None) -> bool:
    return not record.is_disabled_option and (max_depth is None or record.depth <= max_depth)


def _node_label(record: LayerRecord, failing: bool = False) -> Text:
    label = Text()
    # The tree shows the nesting, so leaves need only their own name; containers keep the full path to search for.
    name = (record.name.rsplit(".", 1)[-1] if record.is_leaf else record.name) or record.type
    suffix = f" (call {record.call_index + 1})" if record.call_index else ""
    label.append(name + suffix, style="bold red" if failing or not record.finished else "bold" if record.depth == 1 else "")
    if record.name:
        label.append(f" {record.type}", style="dim")
    label.append(f"  {_first(record.input_shapes)} -> ")
    if record.finished:
        label.append(_first(record.output_shapes))
    else:
        label.append("failed", style="bold red")
    change = _change_text(record)
    if change.plain:
        label.append("  ")
        label.append_text(change)
    residual = _residual_text(record)
    if residual:
        label.append(f"  [{residual}]", style="green")
    return label


def _function_label(function: FunctionRecord) -> Text:
    label = Text(function.name, style="italic")
    label.append(f"  {_shapes(function.input_shapes[:2])} -> ", style="dim")
    label.append(_first(function.output_shapes) if function.finished else "failed", style="dim" if function.finished else "bold red")
    change = _change_text(function)
    if change.plain:
        label.append("  ")
        label.append_text(change)
    return label


def _change_text(record: LayerRecord | FunctionRecord) -> Text:
    text = Text()
    if not record.finished or not record.input_shapes or not record.output_shapes:
        return text
    before, after = record.input_shapes[0], record.output_shapes[0]
    if len(before) >= 2 and len(after) >= 2 and before[1] != after[1] and len(before) == len(after):
        text.append(f"{'features' if len(after) == 2 else 'channels'} {before[1]}->{after[1]}", style="yellow")
    if len(before) >= 3 and len(after) >= 3 and before[2:] != after[2:]:
        if text.plain:
            text.append(", ")
        text.append(f"spatial {format_cell(before[2:])}->{format_cell(after[2:])}", style="cyan")
    return text


def _residual_text(record: LayerRecord) -> str:
    residual = record.extra.get("residual")
    if not residual:
        return ""
    shortcut = residual["shortcut_from"]
    if not shortcut:
        return "residual: identity"
    prefix = record.name + "."
    return f"residual: {shortcut.removeprefix(prefix) if record.name else shortcut}"


def _path(report: ShapeReport) -> list[str]:
    """The calls that enclose the failing one, outermost first, ending with it."""
    if report.failing is None:
        return []
    by_order = {r.order: r for r in report.records}
    chain, record = [], report.failing
    while record is not None:
        chain.append(f"{record.name} ({record.type})" if record.name else record.type)
        record = by_order.get(record.parent) if record.parent is not None else None
    return chain[::-1]


def _first(shapes: tuple) -> str:
    return format_cell(shapes[0]) if shapes else ""


def _shapes(shapes: tuple) -> str:
    return ", ".join(format_cell(s) for s in shapes) if shapes else "(no tensors)"


def _traced_layer_json(record: LayerRecord) -> dict[str, Any]:
    return {
        **layer_json(record, every_tensor=True),
        "change": _change_text(record).plain or None,
        "residual": _residual_json(record.extra.get("residual")),
    }


def _residual_json(residual: dict[str, Any] | None) -> dict[str, Any] | None:
    if residual is None:
        return None
    return {
        "main": list(residual["main"]),
        "main_from": residual["main_from"],
        "shortcut": list(residual["shortcut"]),
        "shortcut_from": residual["shortcut_from"],
    }


def sizes_table(scan: SizeScan) -> TableData:
    """`debug-shapes --sizes`: one row per range of consecutive sizes with one outcome, the findings as notes."""
    rows, styles, notes, seen = [], [], [], set()
    for r in scan.ranges:
        result = r.result
        where = f"{result.module or '(model)'} ({result.type})" if result.module is not None else ""
        rows.append([_range_text(r), r.count, "runs" if result.ok else "fails", where,
                     "" if result.ok else _KIND_TITLES.get(result.kind or "", result.kind)])  # fmt: skip
        styles.append(None if result.ok else "red")
        if not result.ok and result.outcome not in seen:
            seen.add(result.outcome)
            notes.append(f"{_range_text(r)}: {result.summary} Fix: {result.fix}")
    running = sum(1 for result in scan.results if result.ok)
    return TableData(
        title=f"debug-shapes {scan.model}  sizes ({scan.batch}x{scan.channels}xHxW, meta, {scan.dtype})",
        columns=[Column("input HxW"), Column("sizes", "right"), Column("result"), Column("where"), Column("problem")],
        rows=rows,
        footer=[("runs at", f"{running} of {len(scan.results)} sizes")],
        notes=notes,
        row_styles=styles,
    )


def sizes_json(scan: SizeScan, request: Any = None) -> dict[str, Any]:
    """The `debug-shapes --sizes --format json` object: every size's result and the ranges (after the model's name
    and spec, or factory arguments, when the request is given)."""
    def result_json(result: SizeResult) -> dict[str, Any]:
        return {"size": list(result.size), "ok": result.ok, "module": result.module, "type": result.type,
                "kind": result.kind, "diagnosis": result.summary, "fix": result.fix}  # fmt: skip

    return {
        **(model_json(request) if request is not None else {}),
        "model": scan.model,
        "batch": scan.batch,
        "channels": scan.channels,
        "dtype": scan.dtype,
        "ok": scan.ok,
        "ranges": [{"first": list(r.first), "last": list(r.last), "count": r.count, **result_json(r.result)}
                   for r in scan.ranges],  # fmt: skip
        "sizes": [result_json(result) for result in scan.results],
    }


def _range_text(r: SizeRange) -> str:
    first, last = shape_text(r.first), shape_text(r.last)
    if r.count == 1:
        return first
    step = (r.last[0] - r.first[0]) // (r.count - 1)
    return f"{first} .. {last}" + (f" step {step}" if step > 1 else "")
