"""Per-layer summary and totals from a trace: records in, a ModelSummary out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from resnet_cli.analysis.counting import build_and_count
from resnet_cli.analysis.fusion import FusionResult
from resnet_cli.analysis.memory import forward_memory
from resnet_cli.analysis.receptive_field import ReceptiveFields, receptive_fields
from resnet_cli.trace import FunctionRecord, LayerRecord, ModelTrace, in_call_order, parameter_count


@dataclass
class SummaryTotals:
    """Whole-model figures, with units in the names."""

    params: int
    trainable_params: int
    param_bytes: int
    input_bytes: int
    activation_bytes: int  # distinct tensors returned by module calls in one forward pass (ModelTrace.activation_bytes)
    macs: int = 0  # multiply-accumulates of one forward pass, fvcore convention (analysis.counting)
    acts: int = 0  # output elements of conv, linear and matrix products (MacCount.acts)

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
    fields: ReceptiveFields | None = None  # with --rf: receptive field and effective stride of every call
    fusion: FusionResult | None = None  # with --fuse-bn: the conv+BN pairs folded and the batch norms left
    zero_by_convention: dict[str, int] = field(default_factory=dict)  # MacCount.zero_by_convention
    outside_rows: tuple[int, int] = (0, 0)  # params and MACs in no top-level row: the model's own forward

    def rows(self) -> list[LayerRecord | FunctionRecord]:
        """Layers and functional calls in the order the forward pass started them."""
        return in_call_order(self.layers, self.functions)


def model_totals(model: nn.Module, inputs: torch.Tensor, trace: ModelTrace) -> SummaryTotals:
    """Parameter counts and memory for one traced forward pass (memory: analysis.memory, as flops reports it)."""
    memory = forward_memory(model, inputs, trace)
    return SummaryTotals(
        params=parameter_count(model),
        trainable_params=parameter_count(model, trainable=True),
        param_bytes=memory.param_bytes,
        input_bytes=memory.input_bytes,
        activation_bytes=memory.activation_bytes,
    )


def _shown(record: LayerRecord, max_depth: int | None) -> bool:
    if record.is_disabled_option or record.depth < 1:
        return False
    return max_depth is None or record.depth <= max_depth


def summarize(
    request: Any, max_depth: int | None = None, ops: bool = False, rf: bool = False, fuse_bn: bool = False
) -> ModelSummary:
    """Build the requested model (preset or the user's own), trace one forward pass and summarise it per layer,
    MACs included, down to `max_depth` (None: all; 0: totals only); with `ops`, the functional calls in each
    module's forward are listed too; with `rf`, each call's receptive field and effective stride; with `fuse_bn`,
    the inference model with each BatchNorm that follows a convolution folded into it."""
    built = build_and_count(request, device=None, fuse_bn=fuse_bn)
    trace, count = built.trace, built.count
    totals = model_totals(built.model, built.inputs, trace)
    totals.macs = count.macs
    totals.acts = count.acts
    layers = [r for r in trace.records if _shown(r, max_depth)]
    top = [r for r in trace.records if r.depth == 1]  # the model's own calls; repeated calls carry 0 params
    called = {r.name for r in top}
    # a call to a module inside another one the model also calls (self.backbone.fc after self.backbone): its
    # parameters are that one's already, its MACs are this call's own
    owners = [r for r in top if not any(r.name.startswith(name + ".") for name in called if name)]
    outside = (totals.params - sum(r.params for r in owners), count.macs - sum(r.macs or 0 for r in top))
    return ModelSummary(
        request=request,
        layers=layers,
        totals=totals,
        max_depth=max_depth,
        columns=["name", "type", "output_shape", "params", "macs"],
        functions=[f for f in trace.functional_calls() if max_depth is None or f.depth <= max_depth] if ops else [],
        coverage=count.coverage,
        fields=receptive_fields(trace) if rf else None,
        fusion=built.fusion,
        zero_by_convention=count.zero_by_convention,
        outside_rows=outside,
    )
