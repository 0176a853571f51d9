"""debug-shapes: trace one forward pass, find where it breaks, say why in plain words and what to change.

Records come from the one tracer (resnet_cli.trace), with the checks meta kernels skip riding along (`checks`);
residual blocks are found in the operator records (resnet_cli.analysis.residuals). A failed pass becomes a `FailureContext`; the first of the
ordered `rules.RULES` that recognises it gives the `Diagnosis`, in words written by `prose`.
"""

from __future__ import annotations

import torch
from torch import nn

from resnet_cli.analysis.diagnosis.checks import MetaCheckError
from resnet_cli.analysis.diagnosis.checks import watched_trace as _trace  # looked up here on each call
from resnet_cli.analysis.diagnosis.report import Diagnosis, ShapeReport, SourceLocation, dtype_text
from resnet_cli.analysis.diagnosis.rules import (
    RULES,
    SILENT_RULES,
    FailureContext,
    PassContext,
    Rule,
    diagnose,
    silent_problem,
)
from resnet_cli.spec import ModelRequest
from resnet_cli.trace import ModelTrace, make_input
from resnet_cli.user_model import UserModelRequest, build_user_model

__all__ = [
    "RULES",
    "SILENT_RULES",
    "Diagnosis",
    "FailureContext",
    "MetaCheckError",
    "Rule",
    "ShapeReport",
    "SourceLocation",
    "debug_request",
    "debug_shapes",
]


def debug_request(request: ModelRequest | UserModelRequest) -> ShapeReport:
    """Build the requested model (a preset or the user's own) and its input, then debug one forward pass."""
    from resnet_cli.model import instantiate, resolve_device

    if isinstance(request, UserModelRequest):
        model = build_user_model(request)
        inputs = make_input(request.input_shape, resolve_device(request.device), getattr(torch, request.dtype))
    else:
        model, inputs = instantiate(request)
    default_input = isinstance(request, UserModelRequest) and request.default_input
    return debug_shapes(model, inputs, name=request.label, smallest_input_search=True, default_input=default_input)


def debug_shapes(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    name: str = "model",
    smallest_input_search: bool = False,
    default_input: bool = False,
) -> ShapeReport:
    """Trace `model` once on `inputs` and diagnose the first shape problem; the model is left as it was found.

    `smallest_input_search` lets rules re-trace at other input sizes (the smallest that runs, the sizes a model was
    written for); `default_input` says the input is the default one (no --input).
    """
    trace = _trace(model, inputs)
    report = ShapeReport(
        model=name,
        input_shape=tuple(inputs.shape),
        device=inputs.device.type,
        dtype=dtype_text(inputs.dtype),
        records=trace.records,
        functions=trace.functional_calls(),
    )
    if trace.ok:
        report.diagnosis = silent_problem(PassContext(model, inputs, trace, smallest_input_search, _trace))
        if report.diagnosis is not None:
            report.failing, report.location = report.diagnosis.about, report.diagnosis.location
            _set_context(report, trace)
        return report
    context = FailureContext.of(model, inputs, trace, search=smallest_input_search, retrace=_trace,
                                default_input=default_input)  # fmt: skip
    report.diagnosis = diagnose(context)
    report.error = _error_text(context.error)
    report.location = context.location
    report.failing = context.failing if report.diagnosis.about is None else report.diagnosis.about
    _set_context(report, trace)
    return report


def _set_context(report: ShapeReport, trace: ModelTrace) -> None:
    """For a failing leaf (a conv, a linear), list what its enclosing module's earlier children produced."""
    failing = report.failing
    if failing is None:
        return
    context = failing
    if failing.is_leaf and failing.parent is not None:
        context = trace.records[failing.parent]
    report.context = context
    report.children = [r for r in trace.children(context) if r.finished and r is not failing]


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip() if str(error) else type(error).__name__
