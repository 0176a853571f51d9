"""The `flops` report: MACs in both conventions per operator, stage and module, and memory, for one request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from resnet_cli.analysis.counting import MacCount, build_and_count, check_counter
from resnet_cli.analysis.fusion import FusionResult
from resnet_cli.analysis.memory import MemoryEstimate, forward_memory
from resnet_cli.analysis.stages import StageCount, count_by_stage
from resnet_cli.errors import UserError
from resnet_cli.model import device_memory
from resnet_cli.trace import LayerRecord
from resnet_cli.units import shape_text


@dataclass
class FlopsReport:
    """What `flops` reports: totals in both conventions, per operator, stage and module, and memory."""

    request: Any  # ModelRequest or UserModelRequest
    count: MacCount
    layers: list[LayerRecord]  # module calls at depth >= 1 (to max_depth), with their `macs`
    stages: list[StageCount]
    memory: MemoryEstimate
    max_depth: int | None = None
    notes: list[str] = field(default_factory=list)
    fusion: FusionResult | None = None  # with fuse_bn: the conv+BN pairs folded and the batch norms left


def flops_report(
    request: Any,
    counter: str = "fast",
    max_depth: int | None = None,
    fuse_bn: bool = False,
) -> FlopsReport:
    """Build the requested model (preset or the user's own), count its MACs with `counter` and its forward memory;
    `layers` keeps the module calls down to `max_depth` (None: all). With `fuse_bn` the model counted is the
    inference model with each BatchNorm that follows a convolution folded into it (analysis.fusion)."""
    check_counter(counter)
    built = build_and_count(
        request,
        device=None,
        counter=counter,
        before_fvcore=lambda t: _check_fits_in_memory(t.activation_elements, request),
        fuse_bn=fuse_bn,
    )
    model, trace, count = built.model, built.trace, built.count
    memory = forward_memory(model, built.inputs, trace, request.dtype)
    layers = [
        r
        for r in trace.records
        if r.depth >= 1 and not r.is_disabled_option and (max_depth is None or r.depth <= max_depth)
    ]
    return FlopsReport(
        request=request,
        count=count,
        layers=layers,
        stages=count_by_stage(model, trace, count),
        memory=memory,
        max_depth=max_depth,
        fusion=built.fusion,
    )


def _check_fits_in_memory(activation_elements: int, request: Any) -> None:
    """fvcore runs for real in float32: refuse inputs whose activations alone exceed this machine's memory."""
    needed = activation_elements * 4
    available = device_memory("cpu")
    if available is not None and needed > available:
        shape = shape_text(request.input_shape)
        raise UserError(
            f"--counter fvcore --input {shape} would allocate {needed / 2**30:,.1f} GiB of activations, more than "
            f"the {available / 2**30:,.1f} GiB available; use --counter fast (the same counts, on meta)"
        )
