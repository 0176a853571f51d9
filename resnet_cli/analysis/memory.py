"""Memory from a trace: parameters, forward activations and a training estimate.

Training estimate = parameters + gradients + optimizer state + activations saved for backward,
all in the chosen dtype (pure float16/bfloat16 training, no float32 master copy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnet_cli.errors import UserError

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# Extra buffers per trainable parameter: plain SGD none, SGD with momentum one, Adam and AdamW two (exp_avg,
# exp_avg_sq).
OPTIMIZER_STATE_BUFFERS = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}


@dataclass
class MemoryEstimate:
    """Bytes of one model at one input and dtype; `training_bytes` is their sum for one training step."""

    dtype: str
    optimizer: str
    param_bytes: int
    grad_bytes: int
    optimizer_state_bytes: int
    input_bytes: int
    activation_bytes: int  # forward pass: distinct module outputs
    saved_activation_bytes: int  # kept for backward: the input and every forward activation

    @property
    def training_bytes(self) -> int:
        """Parameters + gradients + optimizer state + saved activations."""
        return self.param_bytes + self.grad_bytes + self.optimizer_state_bytes + self.saved_activation_bytes

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "training_bytes": self.training_bytes}


def check_optimizer(optimizer: str) -> None:
    """Raise a UserError unless `optimizer` is one --optimizer knows."""
    if optimizer not in OPTIMIZER_STATE_BUFFERS:
        raise UserError(f"--optimizer {optimizer!r} is not one of {', '.join(OPTIMIZER_STATE_BUFFERS)}")


def estimate_memory(
    *,
    params: int,
    trainable_params: int,
    input_elements: int,
    activation_elements: int,
    dtype: str = "float32",
    optimizer: str = "sgd",
) -> MemoryEstimate:
    """Memory figures from element counts; every tensor is taken to be in `dtype`."""
    check_optimizer(optimizer)
    if dtype not in DTYPE_BYTES:
        raise UserError(f"--dtype {dtype!r} is not one of {', '.join(DTYPE_BYTES)}")
    size = DTYPE_BYTES[dtype]
    return MemoryEstimate(
        dtype=dtype,
        optimizer=optimizer,
        param_bytes=params * size,
        grad_bytes=trainable_params * size,
        optimizer_state_bytes=trainable_params * size * OPTIMIZER_STATE_BUFFERS[optimizer],
        input_bytes=input_elements * size,
        activation_bytes=activation_elements * size,
        saved_activation_bytes=(input_elements + activation_elements) * size,
    )
