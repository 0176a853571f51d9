"""debug-shapes' traced pass: the checks meta kernels skip ride along as an observer; residual blocks are marked after."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from resnet_cli.analysis.diagnosis.report import dtype_text
from resnet_cli.analysis.residuals import residual_adds
from resnet_cli.trace import (
    LayerRecord,
    ModelTrace,
    has_zero_size,
    tensors_in,
    trace_model,
)
from resnet_cli.units import shape_text


class MetaCheckError(RuntimeError):
    """A problem torch's meta kernels let through but a real device would raise (dtype mismatch, empty map)."""


class MetaChecks:
    """Tracer observer that stops the pass with a `MetaCheckError` where a real device would fail and meta, or a
    zero-size map, does not: a conv or linear whose weight dtype differs from its input's (checked when
    `dtypes`, i.e. on meta), and a module output whose height or width is 0 (on every device)."""

    def __init__(self, dtypes: bool) -> None:
        self.dtypes = dtypes

    def on_start(self, record: LayerRecord, module: nn.Module, args: tuple) -> None:
        if self.dtypes:
            _check_param_dtypes(record, module, tensors_in(args))

    def on_finish(self, record: LayerRecord, module: nn.Module, args: tuple, output: Any) -> None:
        for shape in record.output_shapes:
            if has_zero_size(shape):
                raise MetaCheckError(f"{record.name or 'the model'} ({record.type}) output has size 0: {shape_text(shape)}")


def _check_param_dtypes(record: LayerRecord, module: nn.Module, tensors: list[torch.Tensor]) -> None:
    # Meta kernels do not always compare dtypes (F.linear accepts float32 input with float64 weights on meta);
    # a real device raises, so the check is made here.
    if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) or not tensors:
        return
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and tensors[0].is_floating_point() and weight.dtype != tensors[0].dtype:
        raise MetaCheckError(
            f"{record.type} {record.name or 'model'}: input dtype {dtype_text(tensors[0].dtype)} and weight dtype "
            f"{dtype_text(weight.dtype)} differ (a real device raises here; meta does not)"
        )


def watched_trace(model: nn.Module, inputs: torch.Tensor) -> ModelTrace:
    """One traced pass of `model` on `inputs` with the meta checks riding along; residual blocks are marked in
    `record.extra["residual"]` from the operator records (analysis.residuals), also when the pass failed."""
    on_meta = inputs.device.type == "meta"
    # On meta, tensors that forward creates without a device land on meta too (torch.device("meta")), so the pass
    # goes on; debug-shapes reports each such call, since on CUDA they would land on the CPU.
    with torch.device("meta") if on_meta else contextlib.nullcontext():
        trace = trace_model(model, inputs, observers=[MetaChecks(dtypes=on_meta)], locate=True)
    for block, add in residual_adds(trace).items():
        trace.records[block].extra["residual"] = add.as_dict()
    return trace
