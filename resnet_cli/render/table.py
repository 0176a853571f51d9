"""A format-neutral table (TableData) and its renderings: rich, Markdown, CSV, plus JSON output."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from resnet_cli.units import shape_text

FORMATS = ("table", "json", "csv", "markdown")


@dataclass
class Column:
    """One column: header text (units included) and alignment."""

    header: str
    justify: str = "left"  # "left" | "right"
    style: str | None = None
    min_width: int | None = None  # keeps short multi-line cells from being folded on narrow terminals
    max_width: int | None = None  # folds long cells, to leave room for the other columns


@dataclass
class TableData:
    """Rows of raw values (ints stay ints) with headers, title and lines shown under the table."""

    title: str
    columns: list[Column]
    rows: list[list[Any]]
    footer: list[tuple[str, str]] = field(default_factory=list)  # (label, value) lines after the table
    notes: list[str] = field(default_factory=list)
    row_styles: list[str | None] = field(default_factory=list)  # per-row rich style for the table format


def request_json(request: Any) -> dict[str, Any]:
    """The header of every command's JSON: which model (a preset's spec, or the user's reference and factory
    arguments), on which input, device and dtype."""
    spec = getattr(request, "spec", None)
    head: dict[str, Any] = {"model": request.name}
    if spec is not None:
        head["spec"] = spec.to_dict()
    else:
        head["factory_kwargs"] = {key: repr(value) for key, value in request.kwargs}
    return {**head, "input_shape": list(request.input_shape), "device": request.device, "dtype": request.dtype}


def format_cell(value: Any) -> str:
    """Human form of one cell: thousands separators for ints, shapes as 1x64x56x56."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, (tuple, list)):
        return shape_text(value)
    return str(value)


def to_rich(data: TableData) -> RenderableType:
    """A rich Table with its footer and notes beneath."""
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    for col in data.columns:
        table.add_column(col.header, justify=col.justify, style=col.style, overflow="fold", min_width=col.min_width,
                         max_width=col.max_width)  # fmt: skip
    for i, row in enumerate(data.rows):
        style = data.row_styles[i] if i < len(data.row_styles) else None
        table.add_row(*(cell if isinstance(cell, Text) else format_cell(cell) for cell in row), style=style)
    # The title goes above the table, not in it, so a narrow table does not wrap it.
    parts: list[RenderableType] = [Text(data.title, style="bold"), table] if data.title else [table]
    if data.footer:
        width = max(len(label) for label, _ in data.footer)
        parts.append(Text("\n" + "\n".join(f"{label:<{width}}  {value}" for label, value in data.footer)))
    parts.extend(Text(note, style="dim") for note in data.notes)
    return Group(*parts)


def to_markdown(data: TableData) -> str:
    """A GitHub-flavoured Markdown table, with footer lines as a list."""
    def cell(v: Any) -> str:
        return one_line(format_cell(v.plain if isinstance(v, Text) else v)).replace("|", "\\|")

    lines = [f"**{data.title}**", ""] if data.title else []
    lines.append("| " + " | ".join(c.header for c in data.columns) + " |")
    lines.append("|" + "|".join("---:" if c.justify == "right" else "---" for c in data.columns) + "|")
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in data.rows)
    if data.footer:
        lines.append("")
        lines.extend(f"- {label}: {value}" for label, value in data.footer)
    for note in data.notes:  # a paragraph each, so Markdown does not run them together
        lines.extend(["", note])
    return "\n".join(lines) + "\n"


def to_csv(data: TableData) -> str:
    """CSV of the rows with raw values (no thousands separators); shapes as 1x64x56x56."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.header for c in data.columns])
    for row in data.rows:
        writer.writerow([_raw(v) for v in row])
    return buffer.getvalue()


def one_line(text: str) -> str:
    """A cell stacked over several lines for the terminal, as one line for CSV and Markdown."""
    return " ".join(text.split("\n"))


def _raw(value: Any) -> Any:
    if isinstance(value, Text):
        return one_line(value.plain)
    if isinstance(value, str):
        return one_line(value)
    if isinstance(value, (tuple, list)):
        return shape_text(value)
    if value is None:
        return ""
    return value


SCHEMA_VERSION = 3
"""Version of every command's JSON document; docs/json.md lists what changed between versions."""


def to_json(payload: Any) -> str:
    """Indented JSON with a trailing newline; an object gets `schema_version` first."""
    if isinstance(payload, dict):
        payload = {"schema_version": SCHEMA_VERSION, **payload}
    return json.dumps(payload, indent=2) + "\n"


def emit(console: Console, fmt: str, data: TableData | list[TableData], payload: Any) -> None:
    """Write one result in the chosen format: tables go through rich, the rest as plain text."""
    tables = data if isinstance(data, list) else [data]
    if fmt == "json":
        console.file.write(to_json(payload))
    elif fmt == "csv":
        console.file.write("\n".join(to_csv(t) for t in tables))
    elif fmt == "markdown":
        console.file.write("\n".join(to_markdown(t) for t in tables))
    else:
        for index, t in enumerate(tables):
            if index:
                console.print()  # a blank line between tables
            console.print(to_rich(t))
