"""Forward-pass memory from a trace: parameters, the input and the activations the pass makes.

The training step's memory (gradients, optimizer state and what autograd keeps for backward) is measured, not
estimated: `flops --mode train` (resnet_cli.analysis.training).
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet_cli.errors import UserError

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass
class MemoryEstimate:
    """Bytes of one model's forward pass at one input and dtype."""

    dtype: str
    param_bytes: int
    input_bytes: int
    activation_bytes: int  # distinct tensors the forward pass makes (module outputs and functional results)


def forward_memory(*, params: int, input_elements: int, activation_elements: int, dtype: str = "float32") -> MemoryEstimate:
    """Memory figures from element counts; every tensor is taken to be in `dtype`."""
    if dtype not in DTYPE_BYTES:
        raise UserError(f"--dtype {dtype!r} is not one of {', '.join(DTYPE_BYTES)}")
    size = DTYPE_BYTES[dtype]
    return MemoryEstimate(
        dtype=dtype,
        param_bytes=params * size,
        input_bytes=input_elements * size,
        activation_bytes=activation_elements * size,
    )
