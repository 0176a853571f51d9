"""Shape-only answers for the aten operators a ResNet runs on meta tensors.

On meta tensors torch computes many outputs through Python meta kernels and decompositions, and the
first of them imports torch._dynamo (about a second). `answer_from_shapes()`, called by the tracer's operator
recorder (resnet_cli.trace), answers the operators below from shapes alone; anything else, and any call whose
shapes do not fit (so that torch can raise its own error), falls through to the real kernel. Outputs have the
real kernels' shapes, dtypes and strides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten


def _all_meta(args: tuple) -> bool:
    return all(a.is_meta for a in args if isinstance(a, torch.Tensor))


def _plain(t: torch.Tensor) -> bool:
    """Exactly the default contiguous strides. `is_contiguous()` ignores the strides of size-1 dimensions,
    which the real kernels' output strides can follow."""
    expected, step = [], 1
    for size in reversed(t.shape):
        expected.append(step)
        step *= max(size, 1)
    return tuple(reversed(expected)) == t.stride()


def _new(shape: list[int] | tuple[int, ...], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor | None:
    if any(s < 1 for s in shape):
        return None  # the real kernel decides (and usually raises)
    return torch.empty(tuple(shape), dtype=dtype or like.dtype, device="meta")


def pair(value: Any, default: Any = None) -> tuple[int, int] | None:
    """(h, w) from an int or a one- or two-element list (an operator argument); `default` for an empty list."""
    value = list(value) if isinstance(value, (list, tuple)) else [value]
    if not value and default is not None:
        return pair(default)
    if len(value) == 1:
        value = value * 2
    return (int(value[0]), int(value[1])) if len(value) == 2 else None


def output_size(size: int, kernel: int, stride: int, pad: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    """A convolution's or pooling window's output size along one dimension (torch's pooling_output_shape; without
    `ceil_mode`, also its convolution formula). Below 1 when the input is too small."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...] | None:
    """Broadcast two shapes, or None if they do not broadcast.

    torch.broadcast_shapes would do, but its first call imports sympy and torch.fx (about 0.3 s).
    """
    a, b = tuple(a), tuple(b)
    rank = max(len(a), len(b))
    a, b = (1,) * (rank - len(a)) + a, (1,) * (rank - len(b)) + b
    if any(m != n and 1 not in (m, n) for m, n in zip(a, b, strict=True)):
        return None
    return tuple(n if m == 1 else m for m, n in zip(a, b, strict=True))


def _in_place(x: torch.Tensor, *_: Any, **__: Any) -> torch.Tensor:
    return x


def _in_place_binary(x: torch.Tensor, other: Any = None, **kwargs: Any) -> torch.Tensor | None:
    """`x += y`, `w.mul_(std)`: x keeps its shape and layout when the operand is a scalar, or a tensor of x's dtype
    that broadcasts to x's shape (else torch raises, so its kernel must answer)."""
    if set(kwargs) - {"alpha"}:
        return None
    if not isinstance(other, torch.Tensor) or (other.dim() == 0 and x.is_floating_point()):
        return x
    return x if other.dtype == x.dtype and _broadcast(x.shape, other.shape) == tuple(x.shape) else None


def _unary(x: torch.Tensor) -> torch.Tensor | None:
    return _new(x.shape, x) if _plain_order(x) else None


def _binary(a: Any, b: Any, **kwargs: Any) -> torch.Tensor | None:
    if set(kwargs) - {"alpha"}:
        return None
    if not isinstance(b, torch.Tensor) or (b.dim() == 0 and a.dim() > 0 and a.is_floating_point() and not b.is_complex()):
        return _unary(a)  # a Python scalar operand: `sum(tensors)` starts with 0 + tensor
    if a.dtype != b.dtype:
        return None
    shape = _broadcast(a.shape, b.shape)
    if shape is None:
        return None
    if (_decides(a, shape) and _ordered(b)) or (_decides(b, shape) and _ordered(a)):
        return _new(shape, a)  # b may have fewer dimensions (a bias added to x @ w.t())
    if a.dim() != b.dim():
        return None
    if _plain(a) and _plain(b):
        return _new(shape, a)
    if a.shape == b.shape and _plain_order(a) and _plain_order(b):
        return _new(shape, a)  # two channel slices of one tensor (split-attention's sum of splits)
    return None  # other layouts: torch's kernel picks the output strides


def _plain_order(t: torch.Tensor) -> bool:
    """Plain, or a strided view in plain order (a channel slice from torch.split): kernels that pick their output
    layout from the input's suggested memory format then return a plain tensor. 4-D inputs with several channels
    and pixels only, where channels-last strides cannot be mistaken for these."""
    if _plain(t):
        return True
    return t.dim() == 4 and t.shape[1] > 1 and t.shape[2] * t.shape[3] > 1 and t.stride(1) > t.stride(2) >= t.stride(3) >= 1 and _ordered(t)


def _decides(t: torch.Tensor, shape: tuple[int, ...]) -> bool:
    """A plain operand of the output's shape whose strides all differ: it alone orders the output's dimensions
    (as TensorIterator compares operands' strides), so the output is plain. A size-1 dimension after the first
    gives two equal strides, which leaves the order to the other operand."""
    return tuple(t.shape) == shape and _plain_order(t) and all(size > 1 for size in t.shape[1:])


def _ordered(t: torch.Tensor) -> bool:
    """Strides that never disagree with the plain order: an expanded (stride 0) view of a plain tensor, e.g.
    `gate.expand_as(x)` in an SE block."""
    strides = [stride for size, stride in zip(t.shape, t.stride(), strict=True) if size > 1 and stride]
    return all(x >= y for x, y in zip(strides, strides[1:], strict=False))


def _convolution(
    x: torch.Tensor, weight: torch.Tensor, bias: Any, stride: Any, padding: Any, dilation: Any,
    transposed: bool, output_padding: Any, groups: int,
) -> torch.Tensor | None:  # fmt: skip
    if transposed or x.dim() != 4 or weight.dim() != 4 or not (_plain_order(x) and _plain(weight)):
        return None
    if x.dtype != weight.dtype or x.shape[1] != weight.shape[1] * groups or weight.shape[0] % groups:
        return None
    if bias is not None and (bias.dtype != x.dtype or tuple(bias.shape) != (weight.shape[0],)):
        return None
    if len(stride) != 2 or len(padding) != 2 or len(dilation) != 2 or min(*stride, *dilation) < 1 or min(padding) < 0:
        return None
    sizes = [
        output_size(size, kernel, step, pad, dil)
        for size, kernel, step, pad, dil in zip(x.shape[2:], weight.shape[2:], stride, padding, dilation, strict=True)
    ]
    return _new((x.shape[0], weight.shape[0], *sizes), x)


def _batch_norm_eval(x: torch.Tensor, weight: Any, bias: Any, mean: Any, var: Any, *_: Any) -> tuple | None:
    return _batch_norm(x, weight, bias, mean, var, optional=(weight, bias))


def _batch_norm(x: torch.Tensor, *per_channel: Any, optional: tuple = ()) -> tuple | None:
    """(output, mean, inverse std) of a batch norm; `per_channel` tensors must be (C,), those in `optional` may be
    None (no affine; in training, no running statistics)."""
    channels = x.shape[1] if x.dim() >= 2 else 0
    for t in per_channel:
        if t is None and any(t is o for o in optional):
            continue
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != (channels,):
            return None
    out = _unary(x)
    if out is None:
        return None
    stats = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype  # saved in opmath precision
    return out, torch.empty((channels,), dtype=stats, device="meta"), torch.empty((channels,), dtype=stats, device="meta")


def _native_batch_norm(x: torch.Tensor, weight: Any, bias: Any, mean: Any, var: Any, training: bool, *rest: Any) -> tuple | None:
    if not training:
        return _batch_norm_eval(x, weight, bias, mean, var)
    # with batch statistics: the same shapes (torch's meta kernel updates the running statistics of meta tensors,
    # which hold no values, and F.batch_norm has already refused one value per channel)
    return _batch_norm(x, weight, bias, mean, var, optional=(weight, bias, mean, var))


def _pool_output(x: torch.Tensor, kernel_size: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool) -> tuple | None:
    kernel, step = pair(kernel_size), pair(stride, kernel_size)
    pad, dil = pair(padding), pair(dilation)
    if None in (kernel, step, pad, dil) or x.dim() != 4 or not _plain_order(x):
        return None
    if min(*kernel, *step, *dil) < 1 or min(pad) < 0 or any(2 * p > k for p, k in zip(pad, kernel, strict=True)):
        return None
    return (x.shape[0], x.shape[1], *(
        output_size(size, k, s, p, d, ceil_mode) for size, k, s, p, d in zip(x.shape[2:], kernel, step, pad, dil, strict=True)
    ))  # fmt: skip


def _max_pool2d_with_indices(
    x: torch.Tensor, kernel_size: Any, stride: Any = (), padding: Any = 0, dilation: Any = 1, ceil_mode: bool = False
) -> tuple | None:
    shape = _pool_output(x, kernel_size, stride, padding, dilation, ceil_mode)
    out = None if shape is None else _new(shape, x)
    return None if out is None else (out, _new(shape, x, torch.int64))


def _max_pool2d(x: torch.Tensor, *args: Any) -> torch.Tensor | None:
    result = _max_pool2d_with_indices(x, *args)
    return None if result is None else result[0]


def _avg_pool2d(
    x: torch.Tensor, kernel_size: Any, stride: Any = (), padding: Any = 0, ceil_mode: bool = False,
    count_include_pad: bool = True, divisor_override: Any = None,
) -> torch.Tensor | None:  # fmt: skip
    if divisor_override is not None and divisor_override == 0:
        return None
    shape = _pool_output(x, kernel_size, stride, padding, 1, ceil_mode)
    return None if shape is None else _new(shape, x)


def _mean_dim(x: torch.Tensor, dims: Any, keepdim: bool = False, *, dtype: Any = None) -> torch.Tensor | None:
    if dtype is not None or not _plain(x) or not x.dtype.is_floating_point or x.dim() == 0:
        return None
    if dims and any(not -x.dim() <= d < x.dim() for d in dims):
        return None
    reduced = {d % x.dim() for d in dims} if dims else set(range(x.dim()))
    if keepdim:
        return _new([1 if i in reduced else size for i, size in enumerate(x.shape)], x)
    shape = [size for i, size in enumerate(x.shape) if i not in reduced]
    return torch.empty(shape, dtype=x.dtype, device="meta") if all(s >= 1 for s in shape) else None


def _native_group_norm(
    x: torch.Tensor, weight: Any, bias: Any, n: int, channels: int, pixels: int, groups: int, eps: float
) -> tuple | None:
    if x.dtype not in (torch.float32, torch.float64) or x.dim() < 2 or groups < 1 or channels % groups:
        return None
    for t in (weight, bias):
        if t is not None and (not isinstance(t, torch.Tensor) or tuple(t.shape) != (channels,)):
            return None
    out = _unary(x) if tuple(x.shape[:2]) == (n, channels) else None
    if out is None:
        return None
    return out, torch.empty((n, groups), dtype=x.dtype, device="meta"), torch.empty((n, groups), dtype=x.dtype, device="meta")


def _softmax(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor | None:
    """Softmax returns a contiguous tensor whatever the input's layout (ResNeSt's radix softmax on a transpose)."""
    if half_to_float or not x.is_floating_point() or not -max(x.dim(), 1) <= dim < max(x.dim(), 1):
        return None
    return _new(x.shape, x) if x.dim() else None


def _var_mean(x: torch.Tensor, dims: Any = None, *, correction: Any = None, keepdim: bool = False) -> tuple | None:
    mean = _mean_dim(x, dims or [], keepdim)
    return None if mean is None else (torch.empty(mean.shape, dtype=mean.dtype, device="meta"), mean)


def _matmul_shape(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int] | None:
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.dtype != b.dtype:
        return None
    return a.shape[0], b.shape[1]


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor | None:
    shape = _matmul_shape(a, b)
    return None if shape is None else _new(shape, a)


def _addmm(bias: torch.Tensor, a: torch.Tensor, b: torch.Tensor, **kwargs: Any) -> torch.Tensor | None:
    shape = _matmul_shape(a, b)
    if shape is None or set(kwargs) - {"beta", "alpha"} or bias.dtype != a.dtype:
        return None
    if _broadcast(bias.shape, shape) != tuple(shape):
        return None
    return _new(shape, a)


def _constant_pad_nd(x: torch.Tensor, pad: Any, value: Any = 0) -> torch.Tensor | None:
    if len(pad) % 2 or len(pad) // 2 > x.dim() or min(pad, default=0) < 0:
        return None
    if not any(pad):
        return None  # the real kernel returns a clone, which keeps a dense input's strides
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
        return None  # channels-last, or ambiguous (size-1 dims): the real kernel picks the layout
    shape = list(x.shape)
    for i in range(len(pad) // 2):
        shape[-1 - i] += pad[2 * i] + pad[2 * i + 1]
    return _new(shape, x)


def _cat(tensors: Any, dim: int = 0) -> torch.Tensor | None:
    """Concatenation of plain tensors of one dtype and rank (Res2Net's and DenseNet-style blocks)."""
    if not isinstance(tensors, (list, tuple)) or not tensors:
        return None
    first = tensors[0]
    if not all(isinstance(t, torch.Tensor) and t.is_meta and _plain_order(t) for t in tensors):
        return None
    if any(t.dtype != first.dtype or t.dim() != first.dim() for t in tensors) or first.dim() == 0:
        return None
    dim = dim % first.dim() if -first.dim() <= dim < first.dim() else None
    if dim is None or any(t.shape[:dim] != first.shape[:dim] or t.shape[dim + 1 :] != first.shape[dim + 1 :] for t in tensors):
        return None
    shape = list(first.shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    return _new(shape, first)


HANDLERS: dict[Any, Callable[..., Any]] = {
    aten.normal_.default: _in_place,
    aten.uniform_.default: _in_place,
    aten.fill_.Scalar: _in_place,
    aten.zero_.default: _in_place,
    aten.erfinv_.default: _in_place,
    aten.exponential_.default: _in_place,
    aten.clamp_.default: _in_place,
    aten.mul_.Tensor: _in_place_binary,
    aten.add_.Tensor: _in_place_binary,
    aten.mul_.Scalar: _in_place_binary,
    aten.add_.Scalar: _in_place_binary,
    aten.relu_.default: _in_place,
    aten.relu.default: _unary,
    aten.sigmoid.default: _unary,
    aten.add.Tensor: _binary,
    aten.sub.Tensor: _binary,
    aten.mul.Tensor: _binary,
    aten.div.Tensor: _binary,
    aten.sqrt.default: _unary,
    aten.rsqrt.default: _unary,
    aten.var_mean.correction: _var_mean,
    aten.native_group_norm.default: _native_group_norm,
    aten._softmax.default: _softmax,
    aten.convolution.default: _convolution,
    aten.native_batch_norm.default: _native_batch_norm,
    aten._native_batch_norm_legit_no_training.default: _batch_norm_eval,
    aten.max_pool2d_with_indices.default: _max_pool2d_with_indices,
    aten.max_pool2d.default: _max_pool2d,
    aten.avg_pool2d.default: _avg_pool2d,
    aten.mean.dim: _mean_dim,
    aten.mm.default: _mm,
    aten.addmm.default: _addmm,
    aten.constant_pad_nd.default: _constant_pad_nd,
    aten.cat.default: _cat,
}
"""Operators answered from shapes; views (view, t, slice, expand, alias...) and factories (empty...)
have fast C++ meta kernels and keep them, so aliasing stays exactly torch's."""


def answer_from_shapes(func: Any, args: tuple, kwargs: dict) -> Any:
    """The result of `func` on meta tensors computed from shapes, or None when torch's own kernel must answer.

    Floating-point operands only: integer and bool arithmetic promotes (`arange(w) / w` is float32), which the
    handlers do not model.
    """
    handler = HANDLERS.get(func)
    if handler is None or not args or not _all_meta(args):
        return None
    first = args[0][0] if func is aten.cat.default and isinstance(args[0], (list, tuple)) and args[0] else args[0]
    if not isinstance(first, torch.Tensor) or not first.is_floating_point():
        return None
    return handler(*args, **kwargs)


class ShapeOnlyMeta(TorchDispatchMode):
    """Answers HANDLERS' operators on meta tensors from shapes, for code run outside the tracer: a user's factory
    building on meta, whose weight initialisation (`normal_`, `uniform_`, `trunc_normal_`) would otherwise reach
    torch's Python meta kernels and import torch._dynamo."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # otherwise torch wraps __torch_dispatch__ in _disable_dynamo, importing torch._dynamo

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        result = answer_from_shapes(func, args, kwargs)
        return result if result is not None else func(*args, **kwargs)
