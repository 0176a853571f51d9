"""The smallest square input a model runs on, searched on meta so that no size allocates anything."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from resnet_cli.trace import ModelTrace, make_input

Retrace = Callable[[nn.Module, torch.Tensor], ModelTrace]  # one traced pass (checks.watched_trace)


def smallest_input(model: nn.Module, inputs: torch.Tensor, retrace: Retrace, limit: int = 4096) -> int | None:
    """The smallest square H = W at which the model runs, by doubling then bisection: a few `retrace` passes, always
    on meta (a meta copy of a model on a real device); None above `limit` or when the model cannot be copied."""
    n, c = inputs.shape[:2]
    if inputs.device.type != "meta":
        model = meta_copy(model)
        if model is None:
            return None

    def runs(size: int) -> bool:
        return retrace(model, make_input((n, c, size, size), "meta", inputs.dtype)).ok

    low = max(inputs.shape[2:])
    high = max(low * 2, 8)
    while not runs(high):
        low, high = high, high * 2
        if high > limit:
            return None
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if runs(middle) else (middle, high)
    return high


# Square input sides tried when a model may expect another input size (CIFAR 32, MNIST 28, ImageNet 224, ...).
CANDIDATE_SIDES = (16, 28, 32, 64, 96, 112, 128, 160, 192, 224, 256, 299, 320, 384, 448, 512)


def sides_that_run(model: nn.Module, inputs: torch.Tensor, retrace: Retrace, sides: tuple[int, ...] = CANDIDATE_SIDES) -> list[int]:
    """The square sides among `sides` at which the model runs on meta and keeps the input's batch size."""
    n, c = inputs.shape[:2]
    if inputs.device.type != "meta":
        model = meta_copy(model)
        if model is None:
            return []
    found = []
    for side in sides:
        trace = retrace(model, make_input((n, c, side, side), "meta", inputs.dtype))
        if trace.ok and trace.records and trace.records[0].output_shape and trace.records[0].output_shape[0] == n:
            found.append(side)
    return found


def meta_copy(model: nn.Module) -> nn.Module | None:
    """A copy of `model` whose parameters and buffers are shape-only meta tensors (the weights are not copied);
    None when the model cannot be copied."""
    memo: dict[int, Any] = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        meta = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
    try:
        return copy.deepcopy(model, memo)
    except Exception:  # a module holding something that cannot be copied: no search, only the finding
        return None
