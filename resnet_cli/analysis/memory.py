"""Forward-pass memory from a trace: parameters, the input and the activations the pass makes.

The training step's memory (gradients, optimizer state and what autograd keeps for backward) is measured, not
estimated: `flops --mode train` (resnet_cli.analysis.training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from resnet_cli.errors import UserError
from resnet_cli.trace import ModelTrace

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass
class MemoryEstimate:
    """Bytes of one model's forward pass at one input and dtype."""

    dtype: str
    param_bytes: int
    input_bytes: int
    activation_bytes: int  # distinct tensors the forward pass makes (module outputs and functional results)


def forward_memory(model: nn.Module, inputs: torch.Tensor, trace: ModelTrace, dtype: str = "float32") -> MemoryEstimate:
    """Memory figures in the tensors' own bytes (a complex FFT result takes 8 per element in float32, a user model's
    half-precision parameters 2): one computation for summary, flops and sweep. `dtype` is the requested one."""
    if dtype not in DTYPE_BYTES:
        raise UserError(f"--dtype {dtype!r} is not one of {', '.join(DTYPE_BYTES)}")
    return MemoryEstimate(
        dtype=dtype,
        param_bytes=sum(p.numel() * p.element_size() for p in model.parameters()),
        input_bytes=inputs.numel() * inputs.element_size(),
        activation_bytes=trace.activation_bytes,
    )
