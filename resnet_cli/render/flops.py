"""FlopsReport -> tables (by operator, stage or module) and JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text

from resnet_cli.analysis.counting import MacCount
from resnet_cli.analysis.flops_report import FlopsReport
from resnet_cli.analysis.mac_rules import CONV_LINEAR_OPS, OPERATOR_FORMULAS
from resnet_cli.render.summary import (
    ZERO_COST,
    fusion_footer,
    fusion_json,
    fusion_notes,
    layer_json,
    layer_label,
    zero_note,
)
from resnet_cli.render.table import Column, TableData, format_cell, request_json
from resnet_cli.units import format_bytes, share_percent

BREAKDOWNS = ("stage", "operator", "module")
BAR_WIDTH = 10
_EIGHTHS = " ▏▎▍▌▋▊▉"

LEGEND = "MAC = one multiply-accumulate; FLOPs = 2 x MACs."
FVCORE_CONVENTION = "fvcore: conv, linear/matmul, norms (BN 2/element), adaptive avg pool (1/element)."
CONV_LINEAR_CONVENTION = "conv+linear: He et al. 2015 Table 1, torchvision's GFLOPS, FlopCounterMode / 2."
ACTS_CONVENTION = ("acts: output elements of every conv, linear and matrix product (Radosavovic et al. 2020; "
                   "fvcore's ActivationCountAnalysis); a count, not the memory above.")
ENGINES = {
    "fast": "counter: fast (fvcore's rules on the traced aten operators, meta tensors)",
    "fvcore": "counter: fvcore (FlopCountAnalysis on real CPU tensors)",
}
FUSED = " (BN fused)"


def human(value: int, unit: str) -> str:
    """1,234,567,890 -> '1.23 G' + unit (decimal prefixes, as papers quote MACs and FLOPs)."""
    for scale, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {prefix}{unit}"
    return f"{value} {unit}"


def bar(fraction: float, width: int = BAR_WIDTH) -> Text:
    """A horizontal bar of `width` cells filled to `fraction`, in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, rest = divmod(eighths, 8)
    return Text("█" * full + (_EIGHTHS[rest] if rest else ""), style="cyan")


Breakdown = tuple[str, list[Column], list[list[Any]], list[str | None]]  # label, columns, rows, row styles


def flops_table(report: FlopsReport, by: str = "stage", bars: bool = True) -> TableData:
    """The breakdown chosen by `by` (stage, operator or module), with totals, memory and the legend beneath."""
    total = report.count.macs
    percent = Column("% MACs", "right", fmt=lambda value: f"{value:.1f}")
    share_columns = [percent, *([Column("", style="cyan", optional=True)] if bars else [])]

    def share(macs: int) -> list[Any]:
        return [share_percent(macs, total), *([bar(macs / total if total else 0.0)] if bars else [])]

    breakdown = {"operator": _by_operator, "module": _by_module}.get(by, _by_stage)
    label, columns, rows, styles = breakdown(report, share_columns, share)
    request = report.request
    return TableData(
        title=f"{request.label}  input {format_cell(request.input_shape)}  {label}{FUSED if report.fusion else ''}",
        columns=columns,
        rows=rows,
        footer=_footer(report),
        notes=_notes(report, by),
        row_styles=styles,
    )


def _by_operator(report: FlopsReport, share_columns: list[Column], share: Callable[[int], list[Any]]) -> Breakdown:
    columns = [Column("Operator"), Column("MACs", "right"), *share_columns, Column("In conv+linear")]
    ops = sorted(report.count.by_operator.items(), key=lambda item: -item[1])
    return "MACs by operator", columns, [[op, macs, *share(macs), op in CONV_LINEAR_OPS] for op, macs in ops], []


def _by_module(report: FlopsReport, share_columns: list[Column], share: Callable[[int], list[Any]]) -> Breakdown:
    columns = [Column("Layer"), Column("Type"), Column("Output shape"), Column("MACs", "right"), *share_columns]
    rows = [[layer_label(r), r.type, r.output_shape, r.macs, *share(r.macs or 0)] for r in report.layers]
    depth = "all levels" if report.max_depth is None else f"depth <= {report.max_depth}"
    return f"MACs by module, {depth}", columns, rows, ["bold" if r.depth == 1 else None for r in report.layers]


def _by_stage(report: FlopsReport, share_columns: list[Column], share: Callable[[int], list[Any]]) -> Breakdown:
    columns = [
        Column("Stage"),
        Column("Output shape"),
        Column("Params", "right"),
        Column("MACs", "right"),
        *share_columns,
        Column("Conv+lin MACs", "right"),
    ]
    rows = [[s.name, s.output_shape, s.params, s.macs, *share(s.macs), s.macs_conv_linear] for s in report.stages]
    return "MACs by stage", columns, rows, []


def _footer(report: FlopsReport) -> list[tuple[str, str]]:
    count, memory = report.count, report.memory
    conv_linear = count.conv_linear_macs
    return [
        ("Params", f"{count.params:,}"),
        ("MACs (fvcore)", f"{count.macs:,}  ({human(count.macs, 'MACs')})"),
        ("FLOPs (fvcore)", f"{count.flops:,}  ({human(count.flops, 'FLOPs')})"),
        ("MACs (conv + linear)", f"{conv_linear:,}  ({human(conv_linear, 'MACs')})"),
        ("FLOPs (conv + linear)", f"{2 * conv_linear:,}  ({human(2 * conv_linear, 'FLOPs')})"),
        ("Activations (acts)", f"{count.acts:,}  ({human(count.acts, '').strip()})"),
        ("Parameter memory", f"{format_bytes(memory.param_bytes)} ({memory.dtype})"),
        ("Forward activations", f"{format_bytes(memory.activation_bytes)} (input {format_bytes(memory.input_bytes)})"),
        ("Training step", "measured with --mode train (docs/training.md)"),
        ("Operators counted", count.coverage),
        *([fusion_footer(report.fusion)] if report.fusion is not None else []),
    ]


def _notes(report: FlopsReport, by: str) -> list[str]:
    zero = zero_note(report.count.zero_by_convention)
    notes = [LEGEND, FVCORE_CONVENTION, CONV_LINEAR_CONVENTION, ACTS_CONVENTION, zero]
    if by == "operator":
        notes += [f"{op}: {OPERATOR_FORMULAS[op]}" for op in report.count.by_operator if op in OPERATOR_FORMULAS]
    notes.append(ENGINES.get(report.count.engine, f"counter: {report.count.engine}"))
    return notes + (fusion_notes(report.fusion) if report.fusion is not None else []) + report.notes


def coverage_json(count: MacCount) -> dict[str, Any]:
    """What was counted, counted as 0 on purpose, or not counted (no rule), as JSON."""
    return {
        "coverage": "complete" if count.complete else "partial",
        "not_counted": dict(sorted(count.uncounted.items())),
        "zero_by_convention": dict(sorted(count.zero_by_convention.items())),
    }


def flops_json(report: FlopsReport) -> dict[str, Any]:
    """The `flops --format json` object: totals in both conventions, per operator, stage and module."""
    request, count = report.request, report.count
    conv_linear = count.conv_linear_macs
    return {
        **request_json(request),
        "mode": "infer",
        "counter": count.engine,
        **coverage_json(count),
        "totals": {
            "params": count.params,
            "macs": count.macs,
            "flops": count.flops,
            "macs_conv_linear": conv_linear,
            "flops_conv_linear": 2 * conv_linear,
            "acts": count.acts,
        },
        "conventions": {
            "macs": FVCORE_CONVENTION,
            "macs_conv_linear": CONV_LINEAR_CONVENTION,
            "acts": ACTS_CONVENTION,
            "flops": LEGEND,
            "not_counted": ZERO_COST,
        },
        "by_operator": dict(sorted(count.by_operator.items(), key=lambda item: -item[1])),
        "by_stage": {
            s.name: {
                "params": s.params,
                "macs": s.macs,
                "macs_conv_linear": s.macs_conv_linear,
                "output_shape": list(s.output_shape) if s.output_shape else None,
            }
            for s in report.stages
        },
        "memory": dict(report.memory.__dict__),
        "layers": [layer_json(r) for r in report.layers],
        "notes": report.notes,
        **({"fusion": fusion_json(report.fusion)} if report.fusion is not None else {}),
    }
