"""Memory from a trace: parameters, forward activations and a training estimate.

Training estimate = parameters + gradients + optimizer state + activations saved for backward,
all in the chosen dtype (pure float16/bfloat16 training, no float32 master copy).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from resnet_cli.errors import UserError
from resnet_cli.trace import LayerRecord

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# Extra buffers per trainable parameter: SGD with momentum keeps one, Adam two (exp_avg, exp_avg_sq).
OPTIMIZER_STATE_BUFFERS = {"sgd": 1, "adam": 2}


class ActivationObserver:
    """TraceObserver: elements of the distinct tensors that module calls produce in one forward pass.

    A tensor is counted once, by the call that first returns it: in-place results, pass-through
    outputs (Identity) and views (Flatten) add nothing, and the model's inputs are not activations.
    The residual add and the SE multiply are counted through the block that returns them.
    """

    def __init__(self) -> None:
        self.elements = 0
        self.bytes = 0
        # Weak references, so real activations are freed as usual; a dead tensor's id is forgotten
        # before Python can reuse it for a new tensor.
        self._seen: dict[int, weakref.ref] = {}

    def _remember(self, tensor: torch.Tensor) -> None:
        key = id(tensor)
        self._seen[key] = weakref.ref(tensor, lambda _, key=key: self._seen.pop(key, None))

    def on_start(self, record: LayerRecord, module: nn.Module, args: tuple) -> None:
        if record.parent is None:
            for tensor in _tensors(args):
                self._remember(tensor)

    def on_finish(self, record: LayerRecord, module: nn.Module, args: tuple, output: Any) -> None:
        for tensor in _tensors(output):
            if id(tensor) in self._seen:
                continue
            self._remember(tensor)
            if tensor._base is None:
                self.elements += tensor.numel()
                self.bytes += tensor.numel() * tensor.element_size()


def _tensors(value: Any) -> list[torch.Tensor]:
    leaves, _ = tree_flatten(value)
    return [v for v in leaves if isinstance(v, torch.Tensor)]


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
