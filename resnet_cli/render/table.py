"""A format-neutral table (TableData) and its renderings: rich, Markdown, CSV, plus JSON output."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from resnet_cli.units import shape_text

FORMATS = ("table", "json", "csv", "markdown")


@dataclass
class Column:
    """One column: header text (units included) and alignment; `fmt` gives the human text of its raw values (table,
    Markdown) and `csv_header` names the raw values' unit where it differs from the header's ("MACs" under
    "MACs (M)"). A tuple of CSV headers splits the column in CSV: each raw value is then a tuple of that many
    values ("RF/stride" showing 7/2 is "RF (px)" 7 and "Stride (px)" 2)."""

    header: str
    justify: str = "left"  # "left" | "right"
    style: str | None = None
    min_width: int | None = None  # keeps short multi-line cells from being folded on narrow terminals
    max_width: int | None = None  # folds long cells, to leave room for the other columns
    optional: bool = False  # left out of the table format when the table would not fit otherwise (bars)
    fmt: Callable[[Any], str] | None = None
    csv_header: str | tuple[str, ...] | None = None

    @property
    def csv_headers(self) -> tuple[str, ...]:
        header = self.csv_header or self.header
        return header if isinstance(header, tuple) else (header,)


@dataclass(frozen=True)
class Shown:
    """One cell: the raw value CSV writes and the text table and Markdown show, for a cell whose display differs
    from what format_cell makes of its value (a row of bytes in a column of counts)."""

    value: Any
    text: str


def scaled(divisor: float, digits: int) -> Callable[[Any], str]:
    """A Column.fmt showing a raw number divided and rounded: scaled(1e6, 2) shows 11,689,512 as '11.69', and 640 as
    '<0.01', never as the 0.00 of a true zero."""
    smallest = f"<{10**-digits:.{digits}f}"

    def show(value: Any) -> str:
        rounded = round(value / divisor, digits)
        return smallest if value and not rounded else format_cell(rounded)

    return show


@dataclass
class TableData:
    """Rows of raw values (ints stay ints) with headers, title and lines shown under the table."""

    title: str
    columns: list[Column]
    rows: list[list[Any]]
    footer: list[tuple[str, str]] = field(default_factory=list)  # (label, value) lines after the table
    notes: list[str] = field(default_factory=list)
    row_styles: list[str | None] = field(default_factory=list)  # per-row rich style for the table format
    csv_totals: list[list[Any]] = field(default_factory=list)  # rows only CSV has (the footer's totals), after `rows`

    def __post_init__(self) -> None:
        """Rows keep raw values; a column's `fmt` pairs each with its text (Shown) for table and Markdown."""
        formats = [c.fmt for c in self.columns]
        if any(formats):
            self.rows = [[_formatted(v, f) for v, f in zip(row, formats, strict=False)] + row[len(formats):]
                         for row in self.rows]  # fmt: skip


def _formatted(value: Any, fmt: Callable[[Any], str] | None) -> Any:
    if fmt is None or value is None or isinstance(value, (Shown, Text, str)):
        return value
    return Shown(value, fmt(value))


def request_json(request: Any) -> dict[str, Any]:
    """The header of every command's JSON: which model (a preset's spec, or the user's reference and factory
    arguments), on which input, device and dtype."""
    return {**model_json(request), "input_shape": list(request.input_shape), "device": request.device,
            "dtype": request.dtype}  # fmt: skip


def model_json(request: Any) -> dict[str, Any]:
    """Which model: its name and a preset's spec, or the user's factory arguments (request_json's first keys)."""
    spec = getattr(request, "spec", None)
    if spec is not None:
        return {"model": request.name, "spec": spec.to_dict()}
    return {"model": request.name, "factory_kwargs": {key: repr(value) for key, value in request.kwargs}}


def format_cell(value: Any) -> str:
    """Human form of one cell: thousands separators for ints, shapes as 1x64x56x56."""
    if value is None:
        return ""
    if isinstance(value, Shown):
        return value.text
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
    """A rich Table with its footer and notes beneath (no line ends in spaces); no table when there are no rows."""
    # The title goes above the table, not in it, so a narrow table does not wrap it.
    parts: list[RenderableType] = [Text(data.title, style="bold")] if data.title else []
    if data.rows:
        parts.append(_FittedTable(data))
    if data.footer:
        width = max(len(label) for label, _ in data.footer)
        lines = "\n".join(f"{label:<{width}}  {value}" for label, value in data.footer)
        parts.append(Text("\n" + lines if data.rows else lines))
    parts.extend(Text(note, style="dim") for note in data.notes)
    return without_trailing_spaces(Group(*parts))


class _FittedTable:
    """The rich Table of `data`, narrowed step by step until it fits the width: two spaces between columns, then
    one, then without its optional columns, then names without their indentation (a name is the full dotted path
    anyway). Past that the text columns other than the name fold (names still unindented), then the name too. Numbers never wrap or lose a
    digit (no `1,219,58` over `4`): a table whose numbers alone are wider than the terminal is printed wider."""

    def __init__(self, data: TableData) -> None:
        self.data = data

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width, unbounded = options.max_width, options.update_width(_UNBOUNDED)
        optional = any(col.optional for col in self.data.columns)
        steps = [_Layout(2), _Layout(1), *([_Layout(1, optional=False)] if optional else [])]
        steps.append(_Layout(1, optional=not optional, indent=False))
        for layout in steps:
            table = _rich_table(self.data, layout)
            if Measurement.get(console, unbounded, table).maximum <= width:
                yield table
                return
        for layout in (steps[-1], _Layout(1, optional=not optional, indent=False, name_whole=False)):
            needed = _narrowest(self.data, layout)
            if needed <= width:
                yield _rich_table(self.data, layout)
                return
        yield from console.render(_rich_table(self.data, layout), options.update_width(needed))

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, _rich_table(self.data, _Layout(2)))


@dataclass(frozen=True)
class _Layout:
    """How a table is laid out: spaces between columns, with the optional columns, with indented names, with
    names that never wrap."""

    gap: int
    optional: bool = True
    indent: bool = True
    name_whole: bool = True


_UNBOUNDED = 1_000_000
_NUMBER = re.compile(r"<?[-+]?[0-9][0-9,]*(\.[0-9]+)?( ?%)?")
_FOLDED = 4  # the narrowest a folding text column gets before the table is printed wider instead


def _cells(data: TableData, layout: _Layout) -> tuple[list[int], list[list[Any]]]:
    """The kept columns' indices and the rows' cells as the table shows them."""
    kept = [i for i, col in enumerate(data.columns) if layout.optional or not col.optional]
    rows = []
    for row in data.rows:
        cells = [cell if isinstance(cell, Text) else format_cell(cell) for cell in row]
        if not layout.indent and cells and isinstance(cells[0], str):
            cells[0] = cells[0].lstrip(" ")
        rows.append([cells[j] for j in kept if j < len(cells)])
    return kept, rows


def _whole(data: TableData, layout: _Layout, kept: list[int], rows: list[list[Any]]) -> list[bool]:
    """Per kept column: never wraps (numbers; the name while `name_whole`)."""
    whole = []
    for position in range(len(kept)):
        texts = [str(row[position]) for row in rows if position < len(row)]
        numeric = any(texts) and all(_NUMBER.fullmatch(text) for text in texts if text)
        whole.append(numeric or (position == 0 and layout.name_whole))
    return whole


def _narrowest(data: TableData, layout: _Layout) -> int:
    """The narrowest width `layout` reaches with its whole columns whole and the others folded to _FOLDED."""
    kept, rows = _cells(data, layout)
    widths = []
    for position, whole in enumerate(_whole(data, layout, kept, rows)):
        column = data.columns[kept[position]]
        longest = max((cell_len(str(row[position])) for row in rows if position < len(row)), default=0)
        longest = max(longest, cell_len(column.header)) if whole else _FOLDED
        widths.append(max(longest, column.min_width or 0))
    return sum(widths) + layout.gap * (len(widths) - 1)


def _rich_table(data: TableData, layout: _Layout) -> Table:
    kept, rows = _cells(data, layout)
    table = Table(box=box.SIMPLE_HEAD, padding=(0, layout.gap - 1, 0, 0), pad_edge=False, show_edge=False)
    for index, whole in zip(kept, _whole(data, layout, kept, rows), strict=True):
        col = data.columns[index]
        table.add_column(col.header, justify=col.justify, style=col.style, overflow="fold", no_wrap=whole,
                         min_width=col.min_width, max_width=col.max_width)  # fmt: skip
    for i, row in enumerate(rows):
        table.add_row(*row, style=data.row_styles[i] if i < len(data.row_styles) else None)
    return table


def without_trailing_spaces(renderable: RenderableType) -> RenderableType:
    """`renderable` with the spaces rich pads cells with cut from the end of every line (piped output included)."""
    return _LineEndsStripped(renderable)


class _LineEndsStripped:
    """Renders its renderable line by line and drops the spaces at the end of each line."""

    def __init__(self, renderable: RenderableType) -> None:
        self.renderable = renderable

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # split, not cropped: a table wider than the terminal (numbers are never cut) keeps its whole lines
        for line in Segment.split_lines(console.render(self.renderable, options)):
            while line and not line[-1].control and not line[-1].text.rstrip(" "):
                line.pop()
            if line and not line[-1].control:
                last = line[-1]
                line[-1] = Segment(last.text.rstrip(" "), last.style)
            yield from line
            yield Segment.line()

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.renderable)


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
    """CSV of the rows and the totals with raw values: counts and bytes as integers, ratios and percents as floats, no
    thousands separators, units in the headers; shapes as 1x64x56x56."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([header for c in data.columns for header in c.csv_headers])
    widths = [len(c.csv_headers) for c in data.columns]
    for row in [*data.rows, *data.csv_totals]:
        writer.writerow([raw for v, width in zip(row, widths, strict=False) for raw in _raw_values(v, width)])
    return buffer.getvalue()


def _raw_values(value: Any, width: int) -> list[Any]:
    """The CSV cells of one table cell: one raw value, or `width` of them for a split column."""
    if width == 1:
        return [_raw(value)]
    values = value.value if isinstance(value, Shown) else None
    return [_raw(v) for v in values] if isinstance(values, tuple) else [""] * width


def one_line(text: str) -> str:
    """A cell stacked over several lines for the terminal, as one line for CSV and Markdown."""
    return " ".join(text.split("\n"))


def _raw(value: Any) -> Any:
    if isinstance(value, Shown):
        return _raw(value.value)
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
            console.print(to_rich(t), crop=False)  # lines are fitted by to_rich; never cut a number
