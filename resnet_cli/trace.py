"""One tracer: runs a model once and returns a record per module call, per torch function call and per aten operator.

Module hooks give the module tree; a `TorchFunctionMode` sees the Python-level torch calls (`F.avg_pool2d`,
`torch.cat`, `Tensor.view`, `x + y`) and a `TorchDispatchMode` sees every aten operator they run, each attributed to
the innermost module call it ran in, with the earlier operator that produced each of its inputs. Summary, counting
and debug-shapes all read these records. On meta tensors nothing is allocated, at any input size.

Hooks are removed, modes exited and the train/eval mode restored in `finally`, also when the forward pass fails; a
failure is returned in the trace (with the calls that had started and not finished), never swallowed silently.
"""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten

from resnet_cli.amp import autocast_like
from resnet_cli.errors import SpecError
from resnet_cli.meta_shapes import answer_from_shapes
from resnet_cli.units import first_line, shape_text
from resnet_cli.user_model import is_user_file

Shape = tuple[int, ...]


@dataclass(slots=True)
class LayerRecord:
    """What one call of one module received and produced."""

    name: str  # dotted module path; "" is the model itself
    type: str  # class name
    depth: int  # 0 for the model, 1 for the calls it makes (stem layers, stages), 2 for theirs, ...
    order: int  # position of this call's start among module calls
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
    input_from: tuple[int | None, ...] = ()  # per input: `order` of the latest module call that returned it, or None
    input_ops: tuple[int | None, ...] = ()  # per input: the OpRecord that made it (see OpRecord.input_from), or None
    output_ops: tuple[int | None, ...] = ()  # per output: the OpRecord that made it (an input returned as is: its own)
    ops_start: int = 0  # this call's operators are ops[ops_start:ops_end]
    ops_end: int = -1  # -1 while running, and when the call failed (then its operators run to the end of `ops`)
    output_elements: int = 0  # elements of the tensors this call is first to return (activations; see below)
    output_bytes: int = 0
    finished: bool = False
    macs: int | None = None  # this call's MACs, children included (fvcore convention); None until counted
    macs_conv_linear: int | None = None  # the same, conv and linear operators only
    input_storages: tuple[int, ...] = ()  # per input, the memory it lives in (ModelTrace.storage_bytes); autograd only
    extra: dict[str, Any] = field(default_factory=dict)  # filled by observers (e.g. debug-shapes' residual watcher)

    @property
    def output_shape(self) -> Shape | None:
        """The first output tensor's shape, or None when the call did not finish."""
        return self.output_shapes[0] if self.output_shapes else None

    @property
    def is_disabled_option(self) -> bool:
        """An `nn.Identity` that ran: a disabled option (SE off, no drop-path, identity shortcut), nothing to show."""
        return self.type == "Identity" and self.finished


def has_zero_size(shape: Shape) -> bool:
    """A feature map that shrank to nothing: N x C x 0 x W (the input is too small for the network)."""
    return len(shape) >= 3 and 0 in shape[2:]


class TensorInfo(NamedTuple):
    """A tensor argument of an operator, as the records keep it: shape and dtype, never the data."""

    shape: Shape
    dtype: str

    def numel(self) -> int:
        total = 1
        for size in self.shape:
            total *= size
        return total


@dataclass(slots=True)
class OpRecord:
    """One aten operator call (as `TorchDispatchMode` sees it): arguments, results and where it ran."""

    order: int  # position among operator calls
    op: str  # aten operator, e.g. "convolution", "addmm", "mean"
    overload: str  # "default", "dim", "Tensor", ...
    function: int | None  # index of the FunctionRecord (Python-level torch call) it ran in
    module: int | None  # `order` of the innermost module call it ran in (None: outside the model)
    args: tuple[Any, ...]  # positional arguments; tensors as TensorInfo, lists of tensors as tuples of them
    kwargs: dict[str, Any]
    # per tensor argument: `order` of the operator that produced it; -1 - i for the model's i-th input tensor;
    # None for parameters, buffers and constants
    input_from: tuple[int | None, ...]
    output_shapes: tuple[Shape, ...] = ()
    output_dtypes: tuple[str, ...] = ()
    finished: bool = False
    # per tensor argument (as `inputs`), with trace_model(autograd=True): whether autograd tracks it through this
    # operator (it requires grad and grad mode is on: False for everything under torch.no_grad() in forward code)
    requires_grad: tuple[bool, ...] = ()

    @property
    def inputs(self) -> list[TensorInfo]:
        """Tensor arguments in order (lists of tensors flattened)."""
        return _infos(self.args) + _infos(tuple(self.kwargs.values()))

    @property
    def name(self) -> str:
        return f"aten.{self.op}"

    def main_input(self) -> int | None:
        """The producer (as in `input_from`) of its largest tensor argument that has one: the feature map of
        `out * gate` or `x.view(...)`, never a weight."""
        made = [(arg.numel(), src) for arg, src in zip(self.inputs, self.input_from, strict=False) if src is not None]
        return max(made, key=lambda m: m[0])[1] if made else None


@dataclass(slots=True)
class FunctionRecord:
    """One Python-level torch call that ran at least one operator: `F.avg_pool2d`, `torch.cat`, `Tensor.view`."""

    index: int  # position among function records
    name: str  # as the user would write it: F.conv2d, torch.cat, Tensor.view, Tensor.add
    module: int | None  # `order` of the innermost module call it ran in
    module_name: str  # that module's dotted path ("" for the model's own forward)
    depth: int  # its module's depth + 1 (where it sits in the module tree)
    modules_before: int  # module calls started before it (places it among LayerRecords)
    input_shapes: tuple[Shape, ...]
    input_from: tuple[Producer | None, ...]  # per tensor argument: who made it last (module call or function call)
    first_op: int  # `order` of its first OpRecord
    keywords: tuple[str, ...] = ()  # names of the keyword arguments it was called with (device=, dtype=, ...)
    location: tuple[str, int] | None = None  # (file, line) of the call in the user's code, with trace_model(locate=True)
    last_op: int = -1  # `order` of its last OpRecord
    output_shapes: tuple[Shape, ...] = ()
    output_elements: int = 0  # elements of the new tensors it returned that no module call returns (activations)
    output_bytes: int = 0
    finished: bool = False
    macs: int | None = None  # MACs of the operators it ran (fvcore convention); None until counted


@dataclass(slots=True)
class SavedTensor:
    """One tensor autograd saved for the backward pass (trace_model(autograd=True)): where and which memory."""

    module: int | None  # `order` of the innermost module call running when it was saved (None: outside the model)
    storage: int  # the memory it lives in (a view shares its base's): ModelTrace.storage_bytes has its size
    shape: Shape
    dtype: str
    source: int | None  # the operator that made it (OpRecord.order), -1 - i: the model's i-th input, None: other
    is_state: bool  # a parameter or buffer of the model: held anyway, not activation memory
    position: int = 0  # operators recorded before it was saved (an operator's inputs are saved before it runs)


@dataclass(slots=True)
class GradientCut:
    """A call in forward code that stops gradients (recorded with autograd=True): `.detach()`, `.data`, or
    entering `torch.no_grad()`; none of them runs an operator the records would show."""

    kind: str  # "detach", "data" or "no_grad"
    module: str  # the dotted name of the module call it ran in ("" the model's own forward)
    location: tuple[str, int] | None  # (file, line) in the user's code, with locate=True


class Producer(NamedTuple):
    """Who last returned a tensor: a module call (`LayerRecord.order`) or a function call (`FunctionRecord.index`)."""

    kind: str  # "module" or "function"
    index: int


@dataclass
class ModelTrace:
    """Records of one forward pass, in call order, and the error that stopped it, if any."""

    records: list[LayerRecord]
    input_shapes: tuple[Shape, ...]
    device: str
    error: BaseException | None = None
    ops: list[OpRecord] = field(default_factory=list)
    functions: list[FunctionRecord] = field(default_factory=list)
    functions_tracked: bool = True  # False: traced with functions=False, so every OpRecord.function is None
    saved: list[SavedTensor] = field(default_factory=list)  # with autograd=True, in the order autograd saved them
    storage_bytes: dict[int, int] = field(default_factory=dict)  # storage -> bytes, for `saved` and input_storages
    gradient_cuts: list[GradientCut] = field(default_factory=list)  # with autograd=True
    grad_params: set[int] = field(default_factory=set)  # with autograd=True: id() of parameters that get a gradient

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def activation_elements(self) -> int:
        """Elements of every distinct tensor that module calls return, once, and of the new tensors torch calls in
        forward code return that no module returns (F.relu in a functional block): in-place results, pass-throughs,
        views and the model's inputs add nothing; a residual add counts through the module that returns it."""
        return sum(r.output_elements for r in self.records) + sum(f.output_elements for f in self.functions)

    @property
    def activation_bytes(self) -> int:
        """Bytes of the same tensors (forward activation memory)."""
        return sum(r.output_bytes for r in self.records) + sum(f.output_bytes for f in self.functions)

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

    def own_functions(self, record: LayerRecord) -> list[FunctionRecord]:
        """Function calls made directly in `record`'s own forward (not inside a child module)."""
        return [f for f in self.functions if f.module == record.order]

    def functional_calls(self) -> list[FunctionRecord]:
        """Torch calls made in a container module's own forward (F.avg_pool2d, torch.cat, x.view, out + identity),
        not inside a leaf layer, whose call is the layer itself."""
        leaves = {r.order for r in self.records if r.is_leaf}
        return [f for f in self.functions if f.module is not None and f.module not in leaves]

    def raise_for_failure(self, subject: str | None = None) -> None:
        """Raise ForwardPassFailed naming the layer when an output shrank to nothing or the forward pass failed. The
        line starts with `subject` (the user's model reference: their code is the likelier cause) or, for a preset
        of ours, with `--input SHAPE`."""
        given = shape_text(self.input_shapes[0]) if self.input_shapes else "()"
        for record in self.records:
            for shape in record.output_shapes:
                if has_zero_size(shape):
                    raise ForwardPassFailed(
                        f"--input {given} is too small for this network: "
                        f"{record.name} ({record.type}) output shrinks to {shape_text(shape)}; use a larger H and W"
                    )
        if self.error is not None:
            failing = self.unfinished[-1] if self.unfinished else None
            where = ""
            if failing is not None and failing.input_shapes:
                where = f" in {failing.name or 'the model'} ({failing.type}) on input {shape_text(failing.input_shapes[0])}"
            message = first_line(self.error).rstrip(".")
            if "too small" in message.lower():
                hint = "; use a larger H and W"
            else:
                hint = "; run `resnet-cli debug-shapes` with the same flags for a diagnosis"
            detail = f"the forward pass fails{where}: {message}{hint}"
            raise ForwardPassFailed(f"{subject or f'--input {given}'}: {detail}", detail)


class ForwardPassFailed(SpecError):
    """The traced forward pass failed or an output shrank to nothing (ModelTrace.raise_for_failure): one line;
    `detail` is that line without the subject it starts with (the whole line when it has none)."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = message if detail is None else detail


def in_call_order(
    records: Iterable[LayerRecord], functions: Iterable[FunctionRecord]
) -> list[LayerRecord | FunctionRecord]:
    """Module calls and function calls merged in the order the forward pass started them."""
    pending = sorted(functions, key=lambda f: f.modules_before)
    merged: list[LayerRecord | FunctionRecord] = []
    for record in records:
        while pending and pending[0].modules_before <= record.order:
            merged.append(pending.pop(0))
        merged.append(record)
    return merged + pending


class TraceObserver(Protocol):
    """Extra per-call measurement attached to the tracer's hooks."""

    def on_start(self, record: LayerRecord, module: nn.Module, args: tuple) -> None: ...

    def on_finish(self, record: LayerRecord, module: nn.Module, args: tuple, output: Any) -> None: ...


@contextlib.contextmanager
def untraced() -> Iterator[None]:
    """Run code inside an observer's callback without the tracer recording it: no operator, function or gradient
    cut records, and (on tensors detached first) nothing saved for backward."""
    with torch._C.DisableTorchFunction(), _disable_current_modes():
        yield


class TensorOrigins:
    """Which traced module call, and which function call, last returned each tensor.

    Tensors are held weakly, so nothing stays alive longer; a dead tensor's id may be reused, hence the
    identity check. A step counter orders module returns and function returns, so the latest producer wins.
    """

    def __init__(self) -> None:
        self._seen: dict[int, tuple[weakref.ref, int | None, int]] = {}  # module calls: (ref, order, step)
        self._made: dict[int, tuple[weakref.ref, int, int]] = {}  # function calls: (ref, index, step)
        self._step = 0

    def lookup(self, tensor: torch.Tensor) -> tuple[bool, int | None]:
        """(whether a module call or the caller returned the tensor, the order of the module call that last did)."""
        ref, order, _ = self._seen.get(id(tensor), (None, None, 0))
        return (True, order) if ref is not None and ref() is tensor else (False, None)

    def note(self, tensor: torch.Tensor, order: int | None) -> bool:
        """Record that module call `order` (None: the caller, for model inputs) returned `tensor`; True if seen."""
        known, _ = self.lookup(tensor)
        self._step += 1
        self._seen[id(tensor)] = (weakref.ref(tensor), order, self._step)
        return known

    def note_function(self, tensor: torch.Tensor, index: int) -> None:
        """Record that function call `index` returned `tensor`."""
        self._step += 1
        self._made[id(tensor)] = (weakref.ref(tensor), index, self._step)

    def producer(self, tensor: torch.Tensor) -> Producer | None:
        """The latest module or function call that returned `tensor` (None: a model input, parameter or constant)."""
        ref, order, module_step = self._seen.get(id(tensor), (None, None, 0))
        module = order if ref is not None and ref() is tensor else None
        ref, index, function_step = self._made.get(id(tensor), (None, 0, 0))
        function = index if ref is not None and ref() is tensor else None
        if function is not None and (module is None or function_step > module_step):
            return Producer("function", function)
        return Producer("module", module) if module is not None else None


def make_input(shape: Sequence[int], device: str | torch.device = "meta", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A random (or, on meta, shape-only) input tensor."""
    if torch.device(device).type == "meta":
        return torch.empty(tuple(shape), device=device, dtype=dtype)
    if dtype.is_floating_point:
        return torch.randn(tuple(shape), device=device, dtype=dtype)
    return torch.zeros(tuple(shape), device=device, dtype=dtype)


class ForwardExit(RuntimeError):
    """The forward pass called sys.exit(): a failure of the model, returned in the trace, not resnet-cli's exit."""


def trace_model(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    *,
    train: bool | None = False,
    observers: Iterable[TraceObserver] = (),
    origins: TensorOrigins | None = None,
    shape_only: bool | None = None,
    functions: bool = True,
    locate: bool = False,
    autograd: bool = False,
    amp: torch.dtype | None = None,
    keep_output: list[Any] | None = None,
) -> ModelTrace:
    """Run `model` once on `inputs` with hooks on every module and operator and return the records.

    The model runs in eval mode unless `train` (`train=None`: in the modes its modules are in), under
    `torch.no_grad()`; its mode is restored afterwards. `keep_output` gets the model's output appended.
    Pass `origins` to share the tracer's record of which call returned each tensor with an observer.
    `shape_only` (default: when every input is on meta) answers a ResNet's common operators from shapes alone
    (resnet_cli.meta_shapes), which gives the same records faster. `functions=False` skips the FunctionRecords
    (each operator's `function` is then None): the sweep's many variants of resnet-cli's own ResNets need no
    functional rows, and tracking every Python-level torch call costs about a third of a trace. `locate` records
    where in the user's code each function call was made (FunctionRecord.location), for debug-shapes.

    `autograd` runs the pass with gradients enabled, as a training step's forward: each operator records which tensor
    arguments require grad, and every tensor autograd saves for backward is recorded (`ModelTrace.saved`, through
    `torch.autograd.graph.saved_tensors_hooks`), with the memory it lives in. `amp` casts as `torch.autocast` does
    to that dtype (resnet_cli.amp), also on meta, where torch.autocast does nothing. With autograd, the calls that
    stop gradients in forward code are recorded too (`ModelTrace.gradient_cuts`).
    """
    observers = list(observers)
    args = inputs if isinstance(inputs, tuple) else (inputs,)
    if shape_only is None:
        shape_only = all(t.is_meta for t in tensors_in(args))
    sizes = _parameter_counts(model)
    names = {m: name for name, m in model.named_modules()}  # a shared module keeps its first name
    records: list[LayerRecord] = []
    stack: list[LayerRecord] = []
    origins = TensorOrigins() if origins is None else origins
    for t in tensors_in(args):
        origins.note(t, None)
    calls: dict[nn.Module, int] = {}
    operators = _OperatorRecorder(stack, records, origins, shape_only, record_grads=autograd)
    operators.mark_inputs(tensors_in(args))
    saver = _SavedTensorRecorder(model, stack, operators) if autograd else None
    cuts: list[GradientCut] | None = [] if autograd else None

    def pre_hook(module: nn.Module, hook_args: tuple) -> None:
        name = names.get(module, type(module).__name__)
        call_index = calls.get(module, 0)
        calls[module] = call_index + 1
        params, trainable = sizes.get(module, (0, 0)) if call_index == 0 else (0, 0)
        tensors = tensors_in(hook_args)
        record = LayerRecord(
            name=name,
            type=type(module).__name__,
            depth=stack[-1].depth + 1 if stack else 0,  # by calls: blocks in a ModuleList the model loops over are 1
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
            input_ops=tuple(operators.producer_op(t) for t in tensors),
            ops_start=len(operators.ops),
        )
        if saver is not None:
            record.input_storages = tuple(saver.storage(t) for t in tensors)
        records.append(record)
        stack.append(record)
        for observer in observers:
            observer.on_start(record, module, hook_args)

    def post_hook(module: nn.Module, hook_args: tuple, output: Any) -> None:
        record = stack.pop()
        outputs = tensors_in(output)
        record.output_shapes = tuple(tuple(t.shape) for t in outputs)
        record.output_dtypes = tuple(_dtype_name(t.dtype) for t in outputs)
        record.output_ops = tuple(operators.producer_op(t) for t in outputs)
        fresh = [t for t in outputs if not origins.note(t, record.order) and t._base is None]  # a view owns no memory
        operators.claim(fresh)
        record.output_elements = sum(t.numel() for t in fresh)
        record.output_bytes = sum(t.numel() * t.element_size() for t in fresh)
        record.ops_end = len(operators.ops)
        record.finished = True
        for observer in observers:
            observer.on_finish(record, module, hook_args, output)

    handles = []
    was_training = {m: m.training for m in model.modules()}
    error: BaseException | None = None
    try:
        for module in was_training:
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))
            if train is not None:
                module.training = train  # not model.train(): a user's train() override may have side effects
        tracker = _FunctionTracker(operators, locate, cuts) if functions else contextlib.nullcontext()
        grad = torch.enable_grad() if autograd else torch.no_grad()
        saving = saver.hooks() if saver is not None else contextlib.nullcontext()
        casting = autocast_like(amp) if amp is not None else contextlib.nullcontext()
        # The user's print() goes to stderr, so that --format json and csv stay parseable.
        with contextlib.redirect_stdout(sys.stderr), grad, saving, tracker, casting, operators:
            output = model(*args)
        if keep_output is not None:
            keep_output.append(output)
        del output
    except Exception as exc:  # the failure is the finding; the caller decides how to report it
        error = exc
    except SystemExit as exc:  # sys.exit() in forward must not become resnet-cli's exit code
        code = "" if exc.code is None else repr(exc.code)
        error = ForwardExit(f"called sys.exit({code})").with_traceback(exc.__traceback__)
        error.__cause__ = exc
    finally:
        operators.credit_unclaimed()
        for handle in handles:
            handle.remove()
        for module, mode in was_training.items():
            module.training = mode
    return ModelTrace(
        records=records,
        input_shapes=tuple(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)),
        device=_device_of(args),
        error=error,
        ops=operators.ops,
        functions=operators.functions,
        functions_tracked=functions,
        saved=saver.saved if saver is not None else [],
        storage_bytes=saver.sizes if saver is not None else {},
        gradient_cuts=cuts or [],
        grad_params=operators.grad_params,
    )


class _SavedTensorRecorder:
    """Records each tensor autograd saves for backward, and the memory (storage) it lives in.

    Saved tensors and module inputs are held until the trace ends (on meta they hold no memory), so that no storage
    is freed and its identity reused meanwhile.
    """

    def __init__(self, model: nn.Module, stack: list[LayerRecord], operators: _OperatorRecorder) -> None:
        self.stack = stack
        self.operators = operators
        self.saved: list[SavedTensor] = []
        self.sizes: dict[int, int] = {}
        self._held: list[torch.Tensor] = []
        self._state = {self.storage(t) for t in (*model.parameters(), *model.buffers())}

    def storage(self, tensor: torch.Tensor) -> int:
        """A key for the memory `tensor` lives in (shared by its views), its size noted in `sizes`; the tensor is
        held until the trace ends, so that the key stays its own."""
        self._held.append(tensor)
        try:
            storage = tensor.untyped_storage()
            key, size = storage._cdata, storage.nbytes()
        except (RuntimeError, NotImplementedError):  # no storage (a sparse or nested tensor): the tensor itself
            key, size = id(tensor), tensor.numel() * tensor.element_size()
        self.sizes[key] = size
        return key

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        key = self.storage(tensor)
        self.saved.append(
            SavedTensor(
                module=self.stack[-1].order if self.stack else None,
                storage=key,
                shape=tuple(tensor.shape),
                dtype=_dtype_name(tensor.dtype),
                source=self.operators.producer_op(tensor),
                is_state=key in self._state,
                position=len(self.operators.ops),
            )
        )
        return tensor

    @contextlib.contextmanager
    def hooks(self) -> Iterator[None]:
        try:
            with torch.autograd.graph.saved_tensors_hooks(self.pack, _unpack):
                yield
        finally:
            self._held.clear()


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


class _OperatorRecorder(TorchDispatchMode):
    """Records every aten operator: arguments as shapes, results, the module and function call it ran in.

    With `shape_only`, operators that meta_shapes can answer from shapes are answered without torch's kernels.
    """

    def __init__(
        self,
        stack: list[LayerRecord],
        records: list[LayerRecord],
        origins: TensorOrigins,
        shape_only: bool,
        record_grads: bool = False,
    ):
        super().__init__()
        self.stack = stack  # the tracer's running module calls
        self.records = records
        self.origins = origins
        self.shape_only = shape_only
        self.ops: list[OpRecord] = []
        self.functions: list[FunctionRecord] = []
        self.record_grads = record_grads  # OpRecord.requires_grad, for a pass with autograd on
        self.grads: list[bool] | None = None  # the running operator's, while its arguments are read
        self.grad_mode = False  # whether grad mode was on for the running operator
        self.grad_params: set[int] = set()  # id() of the parameters some tracked operator used: they get a gradient
        self.pending: tuple[Any, tuple, dict] | None = None  # the running torch call (func, args, kwargs), if any
        self.location: tuple[str, int] | None = None  # where the user's code made that call (locate=True)
        self.function: FunctionRecord | None = None  # its record, once it ran an operator
        self._made: dict[int, tuple[weakref.ref, int]] = {}  # id(tensor) -> (ref, op order)
        # New tensors returned by function calls, until a module call returns them: id -> (ref, function, elements, bytes)
        self._unclaimed: dict[int, tuple[weakref.ref, FunctionRecord, int, int]] = {}

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False  # otherwise torch wraps __torch_dispatch__ in _disable_dynamo, importing torch._dynamo

    def _start_function(self) -> FunctionRecord:
        func, args, kwargs = self.pending  # type: ignore[misc]
        tensors = tensors_in(args) + tensors_in(tuple(kwargs.values())) if kwargs else tensors_in(args)
        function = FunctionRecord(
            index=len(self.functions),
            name=function_name(func),
            module=self.stack[-1].order if self.stack else None,
            module_name=self.stack[-1].name if self.stack else "",
            depth=self.stack[-1].depth + 1 if self.stack else 0,
            modules_before=len(self.records),
            input_shapes=tuple(tuple(t.shape) for t in tensors),
            input_from=tuple(self.origins.producer(t) for t in tensors),
            first_op=len(self.ops),
            keywords=tuple(kwargs),
            location=self.location,
        )
        self.functions.append(function)
        return function

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        names = _OP_NAMES.get(func)
        if names is None:
            names = _OP_NAMES[func] = (func._overloadpacket.__name__, func._overloadname)
        function = self.function
        if function is None and self.pending is not None:  # the first operator makes the function call a record
            function = self.function = self._start_function()
        producers: list[int | None] = []
        grads: list[bool] | None = [] if self.record_grads else None
        self.grads = grads
        self.grad_mode = grads is not None and torch.is_grad_enabled()
        record = OpRecord(
            order=len(self.ops),
            op=names[0],
            overload=names[1],
            function=function.index if function is not None else None,
            module=self.stack[-1].order if self.stack else None,
            args=tuple(self._info(a, producers) for a in args),
            kwargs={k: self._info(v, producers) for k, v in kwargs.items()} if kwargs else {},
            input_from=(),
        )
        record.input_from = tuple(producers)
        if grads is not None:
            record.requires_grad = tuple(grads)
        self.ops.append(record)
        result = answer_from_shapes(func, args, kwargs) if self.shape_only else None
        if result is None:
            result = func(*args, **kwargs)
        outputs = tensors_in(result)
        record.output_shapes = tuple(tuple(t.shape) for t in outputs)
        record.output_dtypes = tuple(_DTYPE_NAMES.get(t.dtype) or _dtype_name(t.dtype) for t in outputs)
        record.finished = True
        made, order = self._made, record.order
        for t in outputs:
            made[id(t)] = (weakref.ref(t), order)
        return result

    def _info(self, value: Any, producers: list[int | None]) -> Any:
        """A tensor argument as TensorInfo (its producer appended to `producers`); lists of tensors as tuples."""
        if isinstance(value, torch.Tensor):
            producers.append(self.producer_op(value))
            if self.grads is not None:
                tracked = self.grad_mode and value.requires_grad
                self.grads.append(tracked)
                if tracked and isinstance(value, nn.Parameter):
                    self.grad_params.add(id(value))
            return TensorInfo(tuple(value.shape), _DTYPE_NAMES.get(value.dtype) or _dtype_name(value.dtype))
        if type(value) in (list, tuple) and value and (
            isinstance(value[0], torch.Tensor) or (value[0] is None and any(isinstance(v, torch.Tensor) for v in value))
        ):
            return tuple(self._info(v, producers) for v in value)
        return value

    def returned(self, function: FunctionRecord, outputs: list[torch.Tensor]) -> None:
        """A function call returned `outputs`: note who made them, and keep the new ones as its activations until a
        module call returns them (then they are the module's, as before operators were traced)."""
        origins = self.origins
        for t in outputs:
            new = origins.producer(t) is None and not origins.lookup(t)[0] and t._base is None
            origins.note_function(t, function.index)
            if new:
                self._credit(self._unclaimed.get(id(t)))  # a dead tensor's id, reused: it was never claimed
                self._unclaimed[id(t)] = (weakref.ref(t), function, t.numel(), t.numel() * t.element_size())

    def claim(self, tensors: list[torch.Tensor]) -> None:
        """A module call returned these new tensors: they are its activations, not a function call's."""
        for t in tensors:
            entry = self._unclaimed.get(id(t))
            if entry is not None and entry[0]() is t:
                del self._unclaimed[id(t)]

    def credit_unclaimed(self) -> None:
        """At the end of the pass, tensors no module returned count for the function call that made them."""
        for entry in self._unclaimed.values():
            self._credit(entry)
        self._unclaimed.clear()

    @staticmethod
    def _credit(entry: tuple[weakref.ref, FunctionRecord, int, int] | None) -> None:
        if entry is not None:
            _, function, elements, size = entry
            function.output_elements += elements
            function.output_bytes += size

    def mark_inputs(self, inputs: list[torch.Tensor]) -> None:
        """The model's input tensors, as producer -1 - i (OpRecord.input_from, LayerRecord.input_ops)."""
        for i, t in enumerate(inputs):
            self._made[id(t)] = (weakref.ref(t), -1 - i)

    def producer_op(self, tensor: torch.Tensor) -> int | None:
        """The operator that made `tensor` (-1 - i: the model's i-th input; None: a parameter, buffer or constant)."""
        ref, order = self._made.get(id(tensor), (None, None))
        return order if ref is not None and ref() is tensor else None


class _FunctionTracker(TorchFunctionMode):
    """Tells the operator recorder which Python-level torch call is running, and records its result."""

    def __init__(self, recorder: _OperatorRecorder, locate: bool = False, cuts: list[GradientCut] | None = None) -> None:
        super().__init__()
        self.recorder = recorder
        self.locate = locate
        self.cuts = cuts  # GradientCuts are recorded here when not None

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        recorder = self.recorder
        if recorder.pending is not None:  # called by a running torch call (a mode re-entered): part of it
            return func(*args, **kwargs)
        recorder.pending = (func, args, kwargs)
        recorder.location = user_code_location(sys._getframe(1)) if self.locate else None
        if self.cuts is not None:
            self._note_cut(func, args)
        try:
            result = func(*args, **kwargs)
        finally:
            function, recorder.function, recorder.pending = recorder.function, None, None
        if function is not None:
            function.last_op = len(recorder.ops) - 1
            outputs = tensors_in(result)
            function.output_shapes = tuple(tuple(t.shape) for t in outputs)
            function.finished = True
            recorder.returned(function, outputs)
        return result


    def _note_cut(self, func: Any, args: tuple) -> None:
        name = getattr(func, "__name__", "")
        if name == "detach":
            kind = "detach"
        elif name == "__get__" and getattr(getattr(func, "__self__", None), "__name__", "") == "data":
            kind = "data"
        elif name == "_set_grad_enabled" and args and args[0] is False:
            kind = "no_grad"
        else:
            return
        stack = self.recorder.stack
        self.cuts.append(GradientCut(kind, stack[-1].name if stack else "", self.recorder.location))  # type: ignore[union-attr]


_NAMES: dict[Any, str] = {}
_OP_NAMES: dict[Any, tuple[str, str]] = {}  # aten overload -> (operator, overload)


def function_name(func: Any) -> str:
    """A torch callable as a user writes it: F.avg_pool2d, torch.cat, Tensor.view (cached per callable)."""
    try:
        return _NAMES[func]
    except (KeyError, TypeError):
        pass
    name = getattr(func, "__name__", None) or str(func)
    qualname = getattr(func, "__qualname__", "") or ""
    module = getattr(func, "__module__", None)
    if getattr(torch.nn.functional, name, None) is func or module in ("torch.nn.functional", "torch._C._nn"):
        text = f"F.{name}"
    elif qualname.startswith(("TensorBase.", "Tensor.")) or module is None:
        text = f"Tensor.{name}"
    else:
        text = f"torch.{name}"
    try:
        _NAMES[func] = text
    except TypeError:
        pass
    return text


def user_code_location(frame: Any) -> tuple[str, int] | None:
    """(file, line) of the innermost frame in the user's code (user_model.is_user_file), starting at `frame`."""
    while frame is not None:
        if is_user_file(frame.f_code.co_filename):
            return frame.f_code.co_filename, frame.f_lineno
        frame = frame.f_back
    return None


def _infos(values: tuple) -> list[TensorInfo]:
    found: list[TensorInfo] = []
    for v in values:
        if isinstance(v, TensorInfo):
            found.append(v)
        elif isinstance(v, tuple) and any(isinstance(x, TensorInfo) for x in v):
            found.extend(x for x in v if isinstance(x, TensorInfo))
    return found


def parameter_count(module: nn.Module, *, recurse: bool = True, trainable: bool = False) -> int:
    """Parameters of `module` (with its children unless `recurse=False`), each shared tensor once; only those that
    require grad when `trainable`."""
    return _numel(module.parameters(recurse=recurse), trainable)


def _numel(parameters: Iterable[nn.Parameter], trainable: bool) -> int:
    return sum(p.numel() for p in parameters if p.requires_grad or not trainable)


def _parameter_counts(model: nn.Module) -> dict[nn.Module, tuple[int, int]]:
    """(parameters, trainable parameters) of every module with its children, each shared tensor once (a module
    registered in two containers, tied weights)."""
    found: dict[nn.Module, dict[int, nn.Parameter]] = {}

    def parameters_of(module: nn.Module) -> dict[int, nn.Parameter]:
        # bottom up, each module once: a child's parameters are collected once, not again for every ancestor
        if module not in found:
            own = {id(p): p for p in module.parameters(recurse=False)}
            for child in module.children():
                own.update(parameters_of(child))
            found[module] = own
        return found[module]

    parameters_of(model)
    return {m: (_numel(ps.values(), False), _numel(ps.values(), True)) for m, ps in found.items()}


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors in a module's arguments or output (nested tuples, lists and dicts included)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if type(value) in (tuple, list):
        found: list[torch.Tensor] = []
        for item in value:
            if isinstance(item, torch.Tensor):
                found.append(item)
            elif item is not None and not isinstance(item, (int, float, bool, str)):
                found.extend(tensors_in(item))
        return found
    if value is None or isinstance(value, (int, float, bool, str)):
        return []
    leaves, _ = tree_flatten(value)  # dicts, named tuples, dataclasses registered with pytree
    return [v for v in leaves if isinstance(v, torch.Tensor)]


_DTYPE_NAMES: dict[torch.dtype, str] = {}


def _dtype_name(dtype: torch.dtype) -> str:
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = str(dtype).removeprefix("torch.")
    return name


def _device_of(args: tuple) -> str:
    for a in args:
        if isinstance(a, torch.Tensor):
            return a.device.type
    return "cpu"
