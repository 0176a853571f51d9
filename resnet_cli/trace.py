"""One forward-hook tracer: runs a model once and returns a record per module call.

It serves summary, counting and debug-shapes alike. Hooks are removed and the train/eval
mode restored in `finally`, also when the forward pass fails; a failure is returned in the
trace (with the modules that had started and not finished), never swallowed silently.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

Shape = tuple[int, ...]


@dataclass
class LayerRecord:
    """What one call of one module received and produced."""

    name: str  # dotted module path; "" is the model itself
    type: str  # class name
    depth: int  # 0 for the model, 1 for its children (stem layers, stages), ...
    order: int  # position of this call's start in the forward pass
    parent: int | None  # `order` of the enclosing call, None for the model
    is_leaf: bool  # has no child modules
    call_index: int  # 0 for a module's first call, 1 for its second, ...
    params: int  # parameters of the module and its children (0 on repeated calls)
    trainable_params: int
    input_shapes: tuple[Shape, ...] = ()
    input_dtypes: tuple[str, ...] = ()
    input_devices: tuple[str, ...] = ()
    output_shapes: tuple[Shape, ...] = ()
    output_dtypes: tuple[str, ...] = ()
    input_from: tuple[int | None, ...] = ()  # per input: `order` of the latest call that returned it, or None
    output_elements: int = 0  # elements of the tensors this call is first to return (activations; see below)
    output_bytes: int = 0
    finished: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # filled by observers (e.g. MAC counts)

    @property
    def output_shape(self) -> Shape | None:
        """The first output tensor's shape, or None when the call did not finish."""
        return self.output_shapes[0] if self.output_shapes else None


@dataclass
class ModelTrace:
    """Records of one forward pass, in call order, and the error that stopped it, if any."""

    records: list[LayerRecord]
    input_shapes: tuple[Shape, ...]
    device: str
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def activation_elements(self) -> int:
        """Elements of every distinct tensor that module calls return, once: in-place results, pass-throughs,
        views and the model's inputs add nothing; a residual add counts through the module that returns it."""
        return sum(r.output_elements for r in self.records)

    @property
    def activation_bytes(self) -> int:
        """Bytes of the same tensors (forward activation memory)."""
        return sum(r.output_bytes for r in self.records)

    @property
    def unfinished(self) -> list[LayerRecord]:
        """Calls that started and did not finish, outermost first (the stack at the failure)."""
        return [r for r in self.records if not r.finished]

    def children(self, record: LayerRecord) -> list[LayerRecord]:
        """Calls made directly inside `record`'s call, in order."""
        return [r for r in self.records if r.parent == record.order]

    def first_calls(self) -> list[LayerRecord]:
        """One record per module: its first call."""
        return [r for r in self.records if r.call_index == 0]


class TraceObserver(Protocol):
    """Extra per-call measurement attached to the tracer's hooks (e.g. counting MACs)."""

    def on_start(self, record: LayerRecord, module: nn.Module, args: tuple) -> None: ...

    def on_finish(self, record: LayerRecord, module: nn.Module, args: tuple, output: Any) -> None: ...


class TensorOrigins:
    """Which traced call last returned each tensor (its `order`; None for a model input).

    Tensors are held weakly, so nothing stays alive longer; a dead tensor's id may be reused, hence the
    identity check.
    """

    def __init__(self) -> None:
        self._seen: dict[int, tuple[weakref.ref, int | None]] = {}

    def lookup(self, tensor: torch.Tensor) -> tuple[bool, int | None]:
        """(whether the tensor was seen, the order of the call that last returned it)."""
        ref, order = self._seen.get(id(tensor), (None, None))
        return (True, order) if ref is not None and ref() is tensor else (False, None)

    def note(self, tensor: torch.Tensor, order: int | None) -> bool:
        """Record that call `order` returned `tensor`; True if it had been seen before."""
        known, _ = self.lookup(tensor)
        self._seen[id(tensor)] = (weakref.ref(tensor), order)
        return known


def make_input(shape: Sequence[int], device: str | torch.device = "meta", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A random (or, on meta, shape-only) input tensor."""
    if torch.device(device).type == "meta":
        return torch.empty(tuple(shape), device=device, dtype=dtype)
    if dtype.is_floating_point:
        return torch.randn(tuple(shape), device=device, dtype=dtype)
    return torch.zeros(tuple(shape), device=device, dtype=dtype)


def trace_model(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    train: bool = False,
    observers: Iterable[TraceObserver] = (),
    origins: TensorOrigins | None = None,
) -> ModelTrace:
    """Run `model` once on `inputs` with hooks on every module and return the records.

    The model runs in eval mode unless `train`, under `torch.no_grad()`; its mode is restored afterwards.
    Pass `origins` to share the tracer's record of which call returned each tensor with an observer.
    """
    observers = list(observers)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    sizes = _parameter_counts(model)
    names = {m: name for name, m in model.named_modules()}  # a shared module keeps its first name
    records: list[LayerRecord] = []
    stack: list[LayerRecord] = []
    origins = TensorOrigins() if origins is None else origins
    for t in tensors_in(args):
        origins.note(t, None)
    calls: dict[nn.Module, int] = {}

    def pre_hook(module: nn.Module, hook_args: tuple) -> None:
        name = names.get(module, type(module).__name__)
        call_index = calls.get(module, 0)
        calls[module] = call_index + 1
        params, trainable = sizes.get(module, (0, 0)) if call_index == 0 else (0, 0)
        tensors = tensors_in(hook_args)
        record = LayerRecord(
            name=name,
            type=type(module).__name__,
            depth=0 if module is model else name.count(".") + 1,
            order=len(records),
            parent=stack[-1].order if stack else None,
            is_leaf=next(module.children(), None) is None,
            call_index=call_index,
            params=params,
            trainable_params=trainable,
            input_shapes=tuple(tuple(t.shape) for t in tensors),
            input_dtypes=tuple(_dtype_name(t.dtype) for t in tensors),
            input_devices=tuple(t.device.type for t in tensors),
            input_from=tuple(origins.lookup(t)[1] for t in tensors),
        )
        records.append(record)
        stack.append(record)
        for observer in observers:
            observer.on_start(record, module, hook_args)

    def post_hook(module: nn.Module, hook_args: tuple, output: Any) -> None:
        record = stack.pop()
        outputs = tensors_in(output)
        record.output_shapes = tuple(tuple(t.shape) for t in outputs)
        record.output_dtypes = tuple(_dtype_name(t.dtype) for t in outputs)
        fresh = [t for t in outputs if not origins.note(t, record.order) and t._base is None]  # a view owns no memory
        record.output_elements = sum(t.numel() for t in fresh)
        record.output_bytes = sum(t.numel() * t.element_size() for t in fresh)
        record.finished = True
        for observer in observers:
            observer.on_finish(record, module, hook_args, output)

    handles = []
    was_training = {m: m.training for m in model.modules()}
    error: BaseException | None = None
    try:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))
        model.train(train)
        with torch.no_grad():
            model(*args)
    except Exception as exc:  # the failure is the finding; the caller decides how to report it
        error = exc
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in was_training.items():
            module.training = mode
    return ModelTrace(
        records=records,
        input_shapes=tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)),
        device=_device_of(args),
        error=error,
    )


def _parameter_counts(model: nn.Module) -> dict[nn.Module, tuple[int, int]]:
    """(parameters, trainable parameters) of every module with its children, in one bottom-up pass."""
    counts: dict[nn.Module, tuple[int, int]] = {}
    for module in reversed(list(model.modules())):  # reversed pre-order: descendants before ancestors
        own = list(module.parameters(recurse=False))
        total = sum(p.numel() for p in own) + sum(counts[c][0] for c in module.children())
        trainable = sum(p.numel() for p in own if p.requires_grad) + sum(counts[c][1] for c in module.children())
        counts[module] = (total, trainable)
    return counts


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors in a module's arguments or output (nested tuples, lists and dicts included)."""
    leaves, _ = tree_flatten(value)
    return [v for v in leaves if isinstance(v, torch.Tensor)]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _device_of(args: tuple) -> str:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device.type
    return "cpu"
