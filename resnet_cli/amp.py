"""torch.autocast's casting, on any device: on meta, where torch.autocast does nothing.

Mixed precision decides which tensors a training step saves in 16 bits, so measuring its memory on meta needs the
casts autocast would make. The policy is torch's (CUDA and CPU autocast agree on what a ResNet runs):

* lower precision: convolutions and matrix products run in the autocast dtype; their float32 arguments are cast
  first, and a cast of a parameter is made once per pass and reused (autocast's weight cache);
* float32: losses, softmax, layer and group norm, exponentials and sums run in float32;
* everything else runs in the dtype of its inputs (batch norm takes a 16-bit input with float32 weights).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode

LOWER_PRECISION = frozenset(
    """
    conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d convolution _convolution conv_tbc
    linear matmul __matmul__ __rmatmul__ mm bmm addmm addbmm baddbmm addmv addr mv einsum chain_matmul multi_dot
    prelu scaled_dot_product_attention
    """.split()
)
"""Torch functions (by name) autocast runs in its lower-precision dtype."""

FLOAT32 = frozenset(
    """
    softmax log_softmax layer_norm group_norm norm cross_entropy nll_loss mse_loss l1_loss smooth_l1_loss huber_loss
    binary_cross_entropy_with_logits kl_div cosine_similarity exp expm1 log log1p log2 log10 pow reciprocal rsqrt
    logsumexp cumsum cumprod sum prod dist cdist pdist renorm softplus
    """.split()
)
"""Torch functions (by name) autocast runs in float32."""

_HALF = (torch.float16, torch.bfloat16)


class autocast_like(TorchFunctionMode):  # noqa: N801 - used like torch.autocast
    """Cast arguments as `torch.autocast(dtype=dtype)` would, through a TorchFunctionMode (works on meta)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id(parameter) -> (parameter, its cast)

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in LOWER_PRECISION:
            args, kwargs = self._cast_all(args, kwargs, lambda t: t.dtype == torch.float32, self.dtype)
        elif name in FLOAT32:
            args, kwargs = self._cast_all(args, kwargs, lambda t: t.dtype in _HALF, torch.float32)
        return func(*args, **kwargs)

    def _cast_all(self, args: tuple, kwargs: dict, wanted: Any, dtype: torch.dtype) -> tuple[tuple, dict]:
        def cast(value: Any) -> Any:
            if isinstance(value, torch.Tensor) and value.is_floating_point() and wanted(value):
                return self._cast(value, dtype)
            if type(value) in (list, tuple):
                return type(value)(cast(v) for v in value)
            return value

        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

    def _cast(self, tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if not (tensor.is_leaf and tensor.requires_grad):
            return tensor.to(dtype)
        cached = self._cache.get(id(tensor))
        if cached is None or cached[0] is not tensor or cached[1].dtype != dtype:
            cached = self._cache[id(tensor)] = (tensor, tensor.to(dtype))
        return cached[1]
