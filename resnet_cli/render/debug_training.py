"""TrainingDiagnosis -> the scale table and the findings (rich), tables for csv/markdown, JSON, and the plot's panels."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from resnet_cli.analysis.train_diagnosis import TrainingDiagnosis
from resnet_cli.analysis.train_diagnosis.rules import Finding
from resnet_cli.render.table import Column, TableData, model_json, to_rich, without_trailing_spaces
from resnet_cli.units import shape_text

NO_PROBLEMS = "No training problems found."
KIND_TITLES = {
    "step_failed": "the training step fails",
    "batch_norm_single_value": "batch norm over one value per channel",
    "residual_disabled": "residual connection disabled",
    "zero_weights": "weights initialised to zero",
    "init_scale": "bad initialisation scale",
    "activation_scale": "activations grow or shrink across stages",
    "no_gradient": "no gradient reaches these parameters",
    "frozen": "parameters frozen (requires_grad=False)",
    "dead_relu": "dead ReLUs",
    "saturated_gate": "saturated gates",
    "batch_norm_eval": "BatchNorm in eval mode while training",
    "zero_init_missing": "zero_init_residual asked for but not applied",
    "gradients_vanish": "vanishing gradients",
    "gradients_explode": "exploding gradients",
    "non_finite": "NaN or infinity",
}
"""A title per finding kind (tests check that every kind the rules can return has one)."""


def _title(report: TrainingDiagnosis) -> str:
    return (f"debug-training {report.model}  input {shape_text(report.input_shape)}  (device {report.device}, "
            f"seed {report.seed})")  # fmt: skip


def _scale(value: float) -> str:
    return f"{value:.3g}"


def scale_table(report: TrainingDiagnosis, depth: int = 1) -> TableData:
    """Per stage (depth 1) or also per block (depth 2): activation RMS, gradient RMS, residual branch share."""
    rows = [r for r in report.rows if r.depth <= depth]
    loss = f"{report.loss} = {report.loss_value:.4g}" if report.loss_value is not None else "not computed"
    verdict = "none found" if report.ok else f"{len(report.findings)} found (below)"
    return TableData(
        title=_title(report),
        columns=[Column("Stage" if depth == 1 else "Stage / block"), Column("Type"),
                 Column("Act RMS", "right", fmt=_scale), Column("Grad RMS", "right", fmt=_scale),
                 Column("Branch share", "right", fmt=lambda share: f"{share:.2f}")],  # fmt: skip
        rows=[["  " * (r.depth - 1) + r.name, r.type, r.output_rms, r.grad_rms, r.residual_share] for r in rows],
        footer=[("Loss", loss), ("Problems", verdict)],
        notes=[
            "Act RMS: root mean square of the output at initialisation; Grad RMS: of d loss / d output; Branch share: "
            "RMS(residual branch) / (RMS(branch) + RMS(shortcut)) at the add, mean over a stage's blocks.",
            *report.notes,
        ],
        row_styles=["bold" if r.depth == 1 else None for r in rows],
    )


def findings_table(report: TrainingDiagnosis) -> TableData:
    """One row per finding, for csv and markdown."""
    return TableData(
        title="Findings",
        columns=[Column("Problem"), Column("Modules"), Column("Evidence"), Column("Why"), Column("Fix")],
        rows=[[KIND_TITLES.get(f.kind, f.kind), ", ".join(f.modules), f.evidence, f.why, f.fix] for f in report.findings],
    )


def finding_renderable(index: int, finding: Finding) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    grid.add_row(f"{index}.", Text(KIND_TITLES.get(finding.kind, finding.kind), style="bold red"))
    grid.add_row("Evidence", finding.evidence)
    grid.add_row("Why", finding.why)
    grid.add_row("Fix", finding.fix)
    return grid


def report_renderable(report: TrainingDiagnosis, depth: int = 1) -> RenderableType:
    """The `table` format: the scale table, then 'no training problems found' or each finding."""
    parts: list[RenderableType] = [to_rich(scale_table(report, depth))]
    if report.ok:
        parts.append(Text(NO_PROBLEMS, style="bold green"))
    for index, finding in enumerate(report.findings, 1):
        parts += [Text(""), finding_renderable(index, finding)]
    return without_trailing_spaces(Group(*parts))


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become null (the findings say where they start)."""
    return value if value is not None and math.isfinite(value) else None


def debug_training_json(report: TrainingDiagnosis, request: Any = None) -> dict[str, Any]:
    """The `debug-training --format json` object (after the model's name and spec, or factory arguments, when the
    request is given)."""
    return {
        **(model_json(request) if request is not None else {}),
        "model": report.model,
        "input_shape": list(report.input_shape),
        "device": report.device,
        "dtype": report.dtype,
        "seed": report.seed,
        "loss": report.loss,
        "loss_value": report.loss_value,
        "ok": report.ok,
        "rows": [{"name": r.name, "type": r.type, "depth": r.depth, "output_rms": _finite(r.output_rms),
                  "grad_rms": _finite(r.grad_rms), "residual_share": _finite(r.residual_share)} for r in report.rows],  # fmt: skip
        "findings": [{"kind": f.kind, "title": KIND_TITLES.get(f.kind, f.kind), "modules": list(f.modules),
                      "evidence": f.evidence, "why": f.why, "fix": f.fix} for f in report.findings],  # fmt: skip
        "notes": report.notes,
    }


def scale_panels(report: TrainingDiagnosis) -> list:
    """Two log-scale bar panels for --plot: activation RMS and gradient RMS of every weight layer (conv, linear), in
    call order."""
    from resnet_cli.render.plots import BarPanel

    layers = [r for r in report.layers if r.type.startswith(("Conv", "Linear")) and r.output_rms is not None]
    names = [r.name for r in layers]
    return [
        BarPanel("Activation scale", "output RMS", names, {"": [r.output_rms or 0.0 for r in layers]}, log_scale=True),
        BarPanel("Gradient scale", "d loss / d output, RMS", names, {"": [r.grad_rms or 0.0 for r in layers]},
                 log_scale=True),
    ]
