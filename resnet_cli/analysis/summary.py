"""Per-layer summary and totals from a trace: records in, a ModelSummary out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from resnet_cli.errors import SpecError
from resnet_cli.trace import FunctionRecord, LayerRecord, ModelTrace, in_call_order
from resnet_cli.units import first_line, shape_text


@dataclass
class SummaryTotals:
    """Whole-model figures, with units in the names."""

    params: int
    trainable_params: int
    param_bytes: int
    input_bytes: int
    activation_bytes: int  # distinct tensors returned by module calls in one forward pass (ModelTrace.activation_bytes)
    macs: int = 0  # multiply-accumulates of one forward pass, fvcore convention (analysis.counting)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class ModelSummary:
    """What `summary` reports: the request, the visible layer records and the totals."""

    request: Any  # ModelRequest or UserModelRequest
    layers: list[LayerRecord]
    totals: SummaryTotals
    max_depth: int | None = None
    columns: list[str] = field(default_factory=lambda: ["name", "type", "output_shape", "params"])
    functions: list[FunctionRecord] = field(default_factory=list)  # with --ops: ModelTrace.functional_calls()
    coverage: str = "complete"  # MacCount.coverage

    def rows(self) -> list[LayerRecord | FunctionRecord]:
        """Layers and functional calls in the order the forward pass started them."""
        return in_call_order(self.layers, self.functions)


def model_totals(model: nn.Module, inputs: torch.Tensor, trace: ModelTrace) -> SummaryTotals:
    """Parameter counts and memory for one traced forward pass."""
    params = list(model.parameters())
    return SummaryTotals(
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        input_bytes=inputs.numel() * inputs.element_size(),
        activation_bytes=trace.activation_bytes,
    )


def check_trace(trace: ModelTrace, request: Any) -> None:
    """Raise a SpecError naming the layer when the input is too small or the forward pass failed."""
    for record in trace.records:
        for shape in record.output_shapes:
            if len(shape) >= 3 and 0 in shape[2:]:
                raise SpecError(
                    f"--input {shape_text(request.input_shape)} is too small for this network: "
                    f"{record.name} ({record.type}) output shrinks to {shape_text(shape)}; use a larger H and W"
                )
    if trace.error is not None:
        failing = trace.unfinished[-1] if trace.unfinished else None
        where = ""
        if failing is not None and failing.input_shapes:
            where = f" in {failing.name or 'the model'} ({failing.type}) on input {shape_text(failing.input_shapes[0])}"
        message = first_line(trace.error).rstrip(".")
        if "too small" in message.lower():
            hint = "; use a larger H and W"
        else:
            hint = "; run `resnet-cli debug-shapes` with the same flags for a diagnosis"
        raise SpecError(f"--input {shape_text(request.input_shape)}: the forward pass fails{where}: {message}{hint}")



def _shown(record: LayerRecord, max_depth: int | None) -> bool:
    # Disabled options (SE off, no drop-path, identity shortcut) are nn.Identity: nothing to show.
    if record.type == "Identity" or record.depth < 1:
        return False
    return max_depth is None or record.depth <= max_depth


def summarize(request: Any, max_depth: int | None = None, ops: bool = False) -> ModelSummary:
    """Build the requested model (preset or the user's own), trace one forward pass and summarise it per layer,
    MACs included; with `ops`, the functional calls in each module's forward are listed too."""
    from resnet_cli.analysis.counting import count_traced
    from resnet_cli.model import instantiate

    if max_depth is not None and max_depth < 0:
        raise SpecError(
            f"--depth {max_depth} must be >= 0 (0 = totals only, 1 = stem layers and stages, 2 = blocks, 3 = layers)"
        )
    model, inputs = instantiate(request)
    trace, count = count_traced(model, (inputs,), check=lambda t: check_trace(t, request))
    totals = model_totals(model, inputs, trace)
    totals.macs = count.macs
    layers = [r for r in trace.records if _shown(r, max_depth)]
    return ModelSummary(
        request=request,
        layers=layers,
        totals=totals,
        max_depth=max_depth,
        columns=["name", "type", "output_shape", "params", "macs"],
        functions=[f for f in trace.functional_calls() if max_depth is None or f.depth <= max_depth] if ops else [],
        coverage=count.coverage,
    )
