"""TrainingReport -> tables (the step by stage, operator or module; checkpointing side by side) and JSON."""

from __future__ import annotations

from typing import Any

from resnet_cli.analysis.mac_rules import CONV_LINEAR_OPS
from resnet_cli.analysis.training import OPTIMIZER_STATE_BUFFERS, BatchFit, TrainingReport
from resnet_cli.render.flops import coverage_json, human
from resnet_cli.render.table import Column, TableData, format_cell, request_json, scaled
from resnet_cli.units import MIB, format_bytes, saved_percent, share_percent

BACKWARD_CONVENTION = (
    "backward: conv + linear convention, as torch's FlopCounterMode / 2: each conv and matrix product costs its "
    "forward MACs once for its input's gradient (when that input requires grad) and once for its weight's (when "
    "that weight requires grad)."
)
SAVED_MEASURED = (
    "saved: every tensor autograd keeps for backward, measured on meta with saved_tensors_hooks, each memory block "
    "once (views share their base), parameters and buffers excluded."
)
LEFT_OUT = (
    "not counted: activation gradients in flight during backward (a few feature maps: the real peak can exceed the "
    "total by them), allocator caching and fragmentation, cuDNN/oneDNN workspaces, the CUDA context, the loss's own "
    "tensors."
)
GRADIENTS_HELD = (
    "gradients are counted as held for the whole step (zero_grad(set_to_none=False), gradient accumulation); with "
    "set_to_none=True they are made while saved tensors are freed."
)
CHECKPOINT_NOTE = (
    "checkpointing (torch.utils.checkpoint, non-reentrant): a segment keeps only its input; backward recomputes the "
    "segments last to first, up to the last tensor each saved, so the peak is the largest of what is kept at the end "
    "of forward and, for each segment, what is still kept before it plus its interior."
)
OPTIMIZER_STATE = {"sgd": "none", "sgd-momentum": "momentum", "adam": "Adam moments", "adamw": "AdamW moments"}


def training_tables(report: TrainingReport, by: str = "stage", depth: int | None = None) -> list[TableData]:
    """The step broken down by `by` (modules down to `depth`) with totals, memory and notes; then checkpointing
    side by side."""
    breakdown = {"operator": _by_operator, "module": _by_module}.get(by, _by_stage)
    label, columns, rows, styles = breakdown(report, depth)
    settings = report.settings
    amp = f", AMP {settings.amp}" if settings.amp else ""
    tables = [
        TableData(
            title=f"{report.request.label}  input {format_cell(report.request.input_shape)}  training step {label} "
            f"({settings.optimizer}, {report.memory.dtype}{amp})",
            columns=columns,
            rows=rows,
            footer=_footer(report),
            notes=_notes(report),
            row_styles=styles,
        )
    ]
    if len(report.checkpoints) > 1:
        tables.append(_checkpoint_table(report))
    return tables


_SAVED_MIB = Column("Saved MiB", "right", fmt=scaled(MIB, 2), csv_header="Saved bytes")


def _by_stage(report: TrainingReport, depth: int | None) -> tuple[str, list[Column], list[list[Any]], list[str | None]]:
    total = report.memory.saved_bytes
    columns = [
        Column("Stage"),
        Column("Fwd MACs (conv+lin)", "right"),
        Column("Bwd MACs (conv+lin)", "right"),
        _SAVED_MIB,
        Column("% saved", "right", fmt=scaled(1, 1)),
    ]
    rows = [
        [s.name, s.forward_macs_conv_linear, s.backward_macs, s.saved_bytes, share_percent(s.saved_bytes, total)]
        for s in report.stages
    ]  # fmt: skip
    return "by stage", columns, rows, []


def _by_operator(report: TrainingReport, depth: int | None) -> tuple[str, list[Column], list[list[Any]], list[str | None]]:
    forward = report.forward.by_operator
    backward = report.backward.by_operator
    names = sorted({*forward, *backward}, key=lambda op: -(forward.get(op, 0) + backward.get(op, 0)))
    columns = [Column("Operator"), Column("Fwd MACs", "right"), Column("Bwd MACs", "right"), Column("In conv+linear")]
    rows = [[op, forward.get(op, 0), backward.get(op, 0) if op in CONV_LINEAR_OPS else None, op in CONV_LINEAR_OPS]
            for op in names]  # fmt: skip
    return "by operator", columns, rows, []


def _by_module(report: TrainingReport, depth: int | None) -> tuple[str, list[Column], list[list[Any]], list[str | None]]:
    columns = [
        Column("Layer"),
        Column("Fwd MACs (conv+lin)", "right"),
        Column("Bwd MACs (conv+lin)", "right"),
        _SAVED_MIB,
    ]
    shown = [m for m in report.modules if depth is None or report.module_depths[m.name] <= depth]
    rows = [
        ["  " * (report.module_depths[m.name] - 1) + m.name, m.forward_macs_conv_linear, m.backward_macs, m.saved_bytes]
        for m in shown
    ]  # fmt: skip
    styles = ["bold" if report.module_depths[m.name] == 1 else None for m in shown]
    return "by module", columns, rows, styles


def _footer(report: TrainingReport) -> list[tuple[str, str]]:
    forward, backward, memory = report.forward, report.backward, report.memory
    conv_linear = forward.conv_linear_macs
    step = report.step_macs
    if report.frozen_params:
        trainable = f"{report.trainable_params:,} trainable, {report.frozen_params:,} frozen"
    else:
        trainable = "all trainable"
    lines = [
        ("Params", f"{forward.params:,} ({trainable})"),
        ("Forward MACs (fvcore)", f"{forward.macs:,} ({_short(forward.macs)}; BN in train mode)"),
        ("Forward MACs (conv+lin)", f"{conv_linear:,} ({_short(conv_linear)})"),
        ("Backward MACs (conv+lin)", f"{backward.macs:,} ({_short(backward.macs)})"),
        ("  input / weight grads", f"{_short(backward.input_grad_macs)} / {_short(backward.weight_grad_macs)}"),
        ("Step MACs (conv+lin)", f"{step:,} ({_ratio(step, conv_linear)} forward)"),
        ("Step FLOPs (conv+lin)", f"{2 * step:,} ({_short(2 * step)})"),
        ("Parameters", f"{format_bytes(memory.param_bytes)} {memory.dtype}, buffers {format_bytes(memory.buffer_bytes)}"),
        ("Gradients", format_bytes(memory.grad_bytes)),
        ("Optimizer state", f"{format_bytes(memory.optimizer_state_bytes)} ({memory.optimizer}: "
                            f"{OPTIMIZER_STATE[memory.optimizer]})"),
        ("Saved for backward", _saved_text(report)),
    ]  # fmt: skip
    if memory.checkpoint != "none":
        chosen = next(c for c in report.checkpoints if c.choice == memory.checkpoint)
        lines.append((f"Peak saved, {memory.checkpoint}s",
                      f"{format_bytes(memory.peak_saved_bytes)} (kept after forward {format_bytes(chosen.kept_bytes)}; "
                      f"recomputed at the peak {format_bytes(chosen.recompute_bytes)})"))  # fmt: skip
    lines.append(("Training step memory", f"{format_bytes(memory.total_bytes)} (params, buffers, grads, state, saved)"))
    if report.fit is not None:
        lines.append((f"Largest batch, {format_bytes(report.fit.budget_bytes)}", _fit_text(report.fit)))
    lines.append(("Operators counted", forward.coverage))
    return lines


def _short(value: int) -> str:
    """1,234,567,890 -> '1.23 G'; small counts as they are."""
    return human(value, "").strip()


def _saved_text(report: TrainingReport) -> str:
    memory = report.memory
    if memory.input_bytes:
        parts = [f"input {format_bytes(memory.input_bytes)}"]
    else:  # AMP casts the batch, or a frozen stem needs none: the caller still holds it
        parts = [f"batch of {format_bytes(memory.batch_bytes)} not saved"]
    if memory.weight_copy_bytes:
        parts.append(f"AMP weight copies {format_bytes(memory.weight_copy_bytes)}")
    return f"{format_bytes(memory.saved_bytes)} ({', '.join(parts)})"


def _fit_text(fit: BatchFit) -> str:
    if fit.batch == 0:
        return f"none: batch 1 needs {fit.bytes_at_next:,} B"
    if fit.bytes_at_next is None:
        return f"{fit.batch:,} or more (the largest batch searched; {format_bytes(fit.bytes_at_batch or 0)})"
    return f"{fit.batch:,} ({fit.bytes_at_batch:,} B; {fit.batch + 1:,} needs {fit.bytes_at_next:,} B)"


def _ratio(step: int, forward: int) -> str:
    return f"{step / forward:.3f} x" if forward else "n/a x"


def _notes(report: TrainingReport) -> list[str]:
    notes = [BACKWARD_CONVENTION, _why_not_three(report)]
    if report.backward.not_counted:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(report.backward.not_counted.items()))
        notes.append(f"backward not counted (not conv or matrix products): {listed}.")
    notes += [SAVED_MEASURED, LEFT_OUT, GRADIENTS_HELD]
    if report.fit is not None:
        notes.append(
            "fit: saved bytes are linear in the batch (per-sample activations plus per-channel statistics): the line "
            f"through two measured batches predicted the third ({report.fit.checks[0][0]:,}) to the byte, "
            f"{format_bytes(report.fit.per_sample_bytes)} per sample; the answer is measured at its batch and the next."
        )
    return notes + report.notes


def _why_not_three(report: TrainingReport) -> str:
    """Why step / forward is not exactly 3: the layers that compute no input or no weight gradient."""
    forward = report.forward.conv_linear_macs
    if not forward:
        return "step / forward: no conv or linear layers."
    missing_input = forward - report.backward.input_grad_macs
    missing_weight = forward - report.backward.weight_grad_macs
    parts = []
    if missing_input:
        parts.append(f"{human(missing_input, 'MACs')} of layers compute no input gradient (the first layer: the image "
                     f"needs none{'; frozen layers before the first trainable one' if report.frozen else ''})")  # fmt: skip
    if missing_weight:
        parts.append(f"{human(missing_weight, 'MACs')} of layers compute no weight gradient (frozen)")
    ratio = (forward + report.backward.macs) / forward
    if not parts:
        return f"step / forward = {ratio:.3f}: every layer computes both gradients."
    return f"step / forward = {ratio:.3f}, not 3: " + "; ".join(parts) + "."


def _checkpoint_table(report: TrainingReport) -> TableData:
    step = report.step_macs
    none = next(c for c in report.checkpoints if c.choice == "none")
    columns = [
        Column("Checkpoint"),
        Column("Kept MiB", "right", fmt=scaled(MIB, 2), csv_header="Kept bytes"),
        Column("Recompute MiB", "right", fmt=scaled(MIB, 2), csv_header="Recompute bytes"),
        Column("Peak MiB", "right", fmt=scaled(MIB, 2), csv_header="Peak bytes"),
        Column("Saved %", "right", fmt=scaled(1, 1)),
        Column("Extra GMACs", "right", fmt=scaled(1e9, 2), csv_header="Extra MACs"),
        Column("Added %", "right", fmt=scaled(1, 1)),
    ]
    rows = []
    for cost in report.checkpoints:
        saved = saved_percent(cost.peak_saved_bytes, none.peak_saved_bytes) if cost is not none else None
        rows.append([
            f"{cost.choice} x{cost.segments}" if cost.segments else cost.choice, cost.kept_bytes,
            cost.recompute_bytes, cost.peak_saved_bytes, saved, cost.extra_macs_conv_linear,
            share_percent(cost.extra_macs_conv_linear, step) if cost is not none else None,
        ])  # fmt: skip
    return TableData(
        title="Gradient checkpointing side by side (--checkpoint)",
        columns=columns,
        rows=rows,
        notes=[CHECKPOINT_NOTE, "x N: segments; Saved %: peak saved bytes below none's; Extra GMACs: forward conv + "
                                "linear MACs run again (10^9); Added %: their share of the step's."],  # fmt: skip
        row_styles=["bold" if c.choice == report.memory.checkpoint else None for c in report.checkpoints],
    )


def training_json(report: TrainingReport) -> dict[str, Any]:
    """The `flops --mode train --format json` object."""
    forward, backward, memory, settings = report.forward, report.backward, report.memory, report.settings
    return {
        **request_json(report.request),
        "mode": "train",
        "settings": {
            "optimizer": settings.optimizer,
            "optimizer_state_buffers": OPTIMIZER_STATE_BUFFERS[settings.optimizer],
            "amp": settings.amp,
            "checkpoint": settings.checkpoint,
            "freeze": report.frozen,
        },
        **coverage_json(forward),
        "totals": {
            "params": forward.params,
            "trainable_params": report.trainable_params,
            "frozen_params": report.frozen_params,
            "forward_macs": forward.macs,
            "forward_macs_conv_linear": forward.conv_linear_macs,
            "backward_macs_conv_linear": backward.macs,
            "backward_input_grad_macs": backward.input_grad_macs,
            "backward_weight_grad_macs": backward.weight_grad_macs,
            "step_macs_conv_linear": report.step_macs,
            "step_flops_conv_linear": 2 * report.step_macs,
            "step_to_forward": report.step_macs / forward.conv_linear_macs if forward.conv_linear_macs else None,
        },
        "backward_not_counted": dict(sorted(backward.not_counted.items())),
        "memory": {
            **{k: v for k, v in memory.__dict__.items()},
            "state_bytes": memory.state_bytes,
            "total_bytes": memory.total_bytes,
        },
        "checkpointing": [{**c.__dict__, "peak_saved_bytes": c.peak_saved_bytes} for c in report.checkpoints],
        "by_operator": {  # backward_macs: null where the conv + linear convention does not count the backward
            op: {"forward_macs": forward.by_operator.get(op, 0),
                 "backward_macs": backward.by_operator.get(op, 0) if op in CONV_LINEAR_OPS else None}
            for op in sorted({*forward.by_operator, *backward.by_operator})
        },  # fmt: skip
        "by_stage": {s.name: _row_json(s) for s in report.stages},
        "by_module": {m.name: _row_json(m) for m in report.modules},
        "fit": None if report.fit is None else {
            **{k: v for k, v in report.fit.__dict__.items() if k != "checks"},
            "checks": [{"batch": b, "line_bytes": line, "measured_bytes": measured} for b, line, measured in report.fit.checks],
        },  # fmt: skip
        "notes": _notes(report),
    }


def _row_json(row: Any) -> dict[str, int]:
    return {
        "forward_macs_conv_linear": row.forward_macs_conv_linear,
        "backward_macs_conv_linear": row.backward_macs,
        "saved_bytes": row.saved_bytes,
    }
