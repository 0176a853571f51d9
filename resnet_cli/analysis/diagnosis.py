"""debug-shapes: trace one forward pass, find where it breaks, say why in plain words and what to change.

Records come from the one tracer (resnet_cli.trace). A `TensorFlowWatcher` rides along as tracer observer and
torch-function mode: it notes which module produced each tensor a module receives, and every tensor addition
made inside a module's own forward, which is how residual blocks are recognised (see `TensorFlowWatcher`).
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from resnet_cli.spec import ModelRequest
from resnet_cli.trace import (
    ForwardExit,
    FunctionRecord,
    LayerRecord,
    ModelTrace,
    TensorOrigins,
    make_input,
    tensors_in,
    trace_model,
)
from resnet_cli.units import shape_text
from resnet_cli.user_model import UserModelRequest, build_user_model, innermost_user_frame

Shape = tuple[int, ...]
_SHORTCUT_NAMES = ("downsample", "shortcut", "skip", "proj", "projection", "residual")


@dataclass
class SourceLocation:
    """A line of the user's code: where the failing statement is."""

    file: str
    line: int
    function: str
    code: str


@dataclass
class Diagnosis:
    """What went wrong in plain words, and a concrete change that fixes it."""

    kind: str  # residual_add_mismatch, expansion_mismatch, conv_channels, classifier_mismatch, missing_attribute,
    #            dtype_mismatch, device_mismatch, input_too_small, needs_real_tensors, sys_exit, unrecognised
    summary: str
    fix: str


@dataclass
class ShapeReport:
    """What debug-shapes reports: every call's shapes and, when the pass broke, where, why and what to change."""

    model: str
    input_shape: Shape
    device: str
    dtype: str
    records: list[LayerRecord]
    functions: list[FunctionRecord] = field(default_factory=list)  # torch calls in containers' own forward
    error: str | None = None  # the error as raised: "RuntimeError: ..."
    failing: LayerRecord | None = None  # innermost module whose forward started and did not finish
    context: LayerRecord | None = None  # whose children are listed: `failing`, or its parent when it is a leaf
    children: list[LayerRecord] = field(default_factory=list)  # finished calls directly inside `context`
    location: SourceLocation | None = None
    diagnosis: Diagnosis | None = None

    @property
    def ok(self) -> bool:
        return self.diagnosis is None


class MetaCheckError(RuntimeError):
    """A problem torch's meta kernels let through but a real device would raise (dtype mismatch, empty map)."""


class TensorFlowWatcher(TorchFunctionMode):
    """Tracer observer and torch-function mode that follows tensors between modules.

    For residual blocks it writes `extra["residual"]` (which call produced each input is the tracer's
    `LayerRecord.input_from`). A call is residual when its own forward adds two tensors of which one is its
    input (identity shortcut) or the output of a child called on its input (projection shortcut), and the
    other is the output of another child (the main branch).
    When both operands come from children called on the input, the one with fewer parameters is the shortcut.
    The addition is noted before it runs, so a failing residual add still leaves both shapes behind.
    """

    _ADDS = frozenset({torch.add, torch.Tensor.add, torch.Tensor.add_, torch.Tensor.__add__,
                       torch.Tensor.__iadd__, torch.Tensor.__radd__})  # fmt: skip

    def __init__(self, check_meta: bool, origins: TensorOrigins) -> None:
        super().__init__()
        self.check_meta = check_meta
        self.origins = origins  # the tracer's: which call returned each add operand
        self._stack: list[_Frame] = []  # running calls, with their inputs
        self._calls: dict[int, _Call] = {}  # every call so far, by order

    def on_start(self, record: LayerRecord, module: nn.Module, args: tuple) -> None:
        tensors = tensors_in(args)
        parent = self._stack[-1] if self._stack else None
        on_parent_input = parent is not None and any(t is p for t in tensors for p in parent.inputs)
        self._calls[record.order] = _Call(record, module, on_parent_input)
        self._stack.append(_Frame(self._calls[record.order], tensors))
        if self.check_meta:
            _check_param_dtypes(record, module, tensors)

    def on_finish(self, record: LayerRecord, module: nn.Module, args: tuple, output: Any) -> None:
        self._stack.pop()
        for shape in record.output_shapes:
            if len(shape) >= 3 and 0 in shape[2:]:
                raise MetaCheckError(f"{record.name or 'the model'} ({record.type}) output has size 0: {shape_text(shape)}")

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in self._ADDS and self._stack:
            other = args[1] if len(args) > 1 else kwargs.get("other")
            if isinstance(args[0], torch.Tensor) and isinstance(other, torch.Tensor):
                self._note_add(args[0], other)
        return func(*args, **kwargs)

    def _note_add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        frame = self._stack[-1]
        if a is b or a.dim() < 2 or b.dim() < 2:
            return
        roles = [self._role(frame, a), self._role(frame, b)]
        if None in roles:
            return
        (role_a, child_a), (role_b, child_b) = roles  # type: ignore[misc]
        if role_a == role_b and role_a in ("input", "child"):
            return
        if "input" in (role_a, role_b):  # identity shortcut
            a_is_shortcut = role_a == "input"
        elif role_a == role_b == "on_input":  # both branches took the input: the cheaper one is the shortcut
            a_is_shortcut = _param_count(child_a.module) <= _param_count(child_b.module)
        else:
            a_is_shortcut = role_a == "on_input"
        main, main_child = (b, child_b) if a_is_shortcut else (a, child_a)
        shortcut, shortcut_child = (a, child_a) if a_is_shortcut else (b, child_b)
        frame.call.record.extra["residual"] = {
            "main": tuple(main.shape),
            "main_from": main_child.record.name if main_child else None,
            "shortcut": tuple(shortcut.shape),
            "shortcut_from": shortcut_child.record.name if shortcut_child else None,  # None: identity
        }

    def _role(self, frame: _Frame, tensor: torch.Tensor) -> tuple[str, _Call | None] | None:
        """'input' (the running call's own input), 'on_input' (returned by a child called on that input),
        'child' (returned by another child), or None."""
        if any(tensor is t for t in frame.inputs):
            return "input", None
        known, order = self.origins.lookup(tensor)
        child = self._calls.get(order) if known and order is not None else None
        if child is None or child.record.parent != frame.call.record.order:
            return None
        return ("on_input" if child.on_parent_input else "child"), child


@dataclass
class _Call:
    record: LayerRecord
    module: nn.Module
    on_parent_input: bool  # called on (one of) its parent call's own inputs


@dataclass
class _Frame:
    call: _Call
    inputs: list[torch.Tensor]  # held only while the call runs


def debug_request(request: ModelRequest | UserModelRequest) -> ShapeReport:
    """Build the requested model (a preset or the user's own) and its input, then debug one forward pass."""
    from resnet_cli.model import instantiate, resolve_device

    if isinstance(request, UserModelRequest):
        model = build_user_model(request)
        inputs = make_input(request.input_shape, resolve_device(request.device), getattr(torch, request.dtype))
    else:
        model, inputs = instantiate(request)
    return debug_shapes(model, inputs, name=request.label, smallest_input_search=True)


def debug_shapes(
    model: nn.Module, inputs: torch.Tensor, *, name: str = "model", smallest_input_search: bool = False
) -> ShapeReport:
    """Trace `model` once on `inputs` and diagnose the first shape problem; the model is left as it was found.

    `smallest_input_search` re-traces at larger sizes when the input is too small, to name the smallest that runs.
    """
    trace = _trace(model, inputs)
    report = ShapeReport(
        model=name,
        input_shape=tuple(inputs.shape),
        device=inputs.device.type,
        dtype=str(inputs.dtype).removeprefix("torch."),
        records=trace.records,
        functions=trace.functional_calls(),
    )
    if trace.ok:
        return report
    error = trace.error
    report.error = _error_text(error)
    frame = innermost_user_frame(error)
    if frame is not None:
        report.location = SourceLocation(
            _relative(frame.filename), frame.lineno or 0, frame.name, (frame.line or "").strip()
        )
    unfinished = trace.unfinished
    report.failing = unfinished[-1] if unfinished else None
    if report.failing is not None:
        report.children = [r for r in trace.children(report.failing) if r.finished]
    report.diagnosis = _diagnose(model, inputs, trace, report, smallest_input_search)
    _set_context(report, trace)
    return report


def _set_context(report: ShapeReport, trace: ModelTrace) -> None:
    """For a failing leaf (a conv, a linear), list what its enclosing module's earlier children produced."""
    failing = report.failing
    if failing is None:
        return
    context = failing
    if failing.is_leaf and failing.parent is not None:
        context = trace.records[failing.parent]
    report.context = context
    report.children = [r for r in trace.children(context) if r.finished and r is not failing]


def _trace(model: nn.Module, inputs: torch.Tensor) -> ModelTrace:
    on_meta = inputs.device.type == "meta"
    origins = TensorOrigins()
    watcher = TensorFlowWatcher(check_meta=on_meta, origins=origins)
    # On meta, tensors that forward creates without a device follow the input, as they would on a real device.
    with torch.device("meta") if on_meta else contextlib.nullcontext(), watcher:
        return trace_model(model, inputs, observers=[watcher], origins=origins)


def _diagnose(
    model: nn.Module, inputs: torch.Tensor, trace: ModelTrace, report: ShapeReport, search: bool
) -> Diagnosis:
    error = trace.error
    records = trace.records
    failing = report.failing
    module = _submodule(model, failing)
    message = str(error)
    if isinstance(error, ForwardExit):
        return _sys_exit(report)

    zero = next((r for r in records if r.finished and any(len(s) >= 3 and 0 in s[2:] for s in r.output_shapes)), None)
    if zero is not None or _too_small(module, failing, message):
        where = zero or failing
        if zero is not None:
            report.failing = zero
        return _input_too_small(model, inputs, where, module if zero is None else _submodule(model, zero), search)
    owner = re.search(r"'(\w+)' object has no attribute '(\w+)'", message) if isinstance(error, AttributeError) else None
    if owner and owner.group(1) in {type(m).__name__ for m in model.modules()}:
        return _missing_attribute(module, failing, report.children, message)
    if inputs.device.type == "meta" and _needs_data(message):
        return _needs_real_tensors(report)
    if failing is None or module is None:
        return _unrecognised(report)
    own = [t for t in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)) if t.is_floating_point()]
    # Only a layer's own computation mixes its parameters with its input; a container's add fails for other reasons.
    dtype_related = failing.is_leaf or "type" in message.lower()
    if dtype_related and failing.input_dtypes and any(_dtype(t) != failing.input_dtypes[0] for t in own):
        return _dtype_mismatch(failing, own)
    device_problem = _device_mismatch(failing, module)
    if device_problem is not None:
        return device_problem
    if isinstance(module, nn.modules.conv._ConvNd) and failing.input_shapes:
        received = failing.input_shapes[0][1] if len(failing.input_shapes[0]) > 1 else None
        if received is not None and received != module.in_channels:
            return _conv_channels(model, records, failing, module, received)
    if isinstance(module, nn.Linear) and failing.input_shapes and failing.input_shapes[0][-1] != module.in_features:
        return _classifier_mismatch(records, failing, module)
    residual = failing.extra.get("residual")
    if residual and residual["main"] != residual["shortcut"]:
        return _residual_add_mismatch(failing, residual)
    return _unrecognised(report)


# --- the diagnoses --------------------------------------------------------------------------------------------


def _residual_add_mismatch(block: LayerRecord, residual: dict[str, Any]) -> Diagnosis:
    main, shortcut = residual["main"], residual["shortcut"]
    main_from, shortcut_from = residual["main_from"], residual["shortcut_from"]
    entered = block.input_shapes[0] if block.input_shapes else shortcut
    in_ch, out_ch = entered[1], main[1]
    stride = _stride_between(entered, main)
    where = f"{_label(block)}"
    what = []
    if main[1] != shortcut[1]:
        what.append(f"channels {main[1]} vs {shortcut[1]}")
    if main[2:] != shortcut[2:]:
        what.append(f"spatial size {shape_text(main[2:])} vs {shape_text(shortcut[2:])}")
    projection = f"nn.Sequential(nn.Conv2d({in_ch}, {out_ch}, kernel_size=1, stride={stride}, bias=False), nn.BatchNorm2d({out_ch}))"
    if shortcut_from is None:
        summary = (
            f"The residual add in {where} fails: the main branch ({_from(main_from)}) gives {shape_text(main)} but the "
            f"shortcut is the block's input unchanged, {shape_text(shortcut)} ({', '.join(what)}). The block changes "
            f"{_changes(entered, main)}, so an identity shortcut cannot be added; it needs a projection."
        )
        fix = f"Give {where} a projection shortcut and add its output instead of the input: {projection}."
    else:
        summary = (
            f"The residual add in {where} fails: the main branch ({_from(main_from)}) gives {shape_text(main)} but the "
            f"shortcut {shortcut_from} gives {shape_text(shortcut)} ({', '.join(what)})."
        )
        fix = (
            f"Build {shortcut_from} to map {shape_text(entered)} to {shape_text(main)}: {projection}"
            + (f" (its output channels must equal the main branch's {out_ch}, e.g. planes x expansion)"
               if main[1] != shortcut[1] else "")
            + "."
        )
    return Diagnosis("residual_add_mismatch", summary, fix)


def _conv_channels(
    model: nn.Module, records: list[LayerRecord], conv_record: LayerRecord, conv: nn.Module, received: int
) -> Diagnosis:
    producer = _producer(records, conv_record)
    block = _producing_block(records, conv_record)
    setter = _channel_setter(records, producer, received) if producer else None
    fixed = _conv_call(conv, in_channels=received)
    shape = shape_text(conv_record.input_shapes[0])
    if block is not None:
        summary = (
            f"{_label(conv_record)} {_conv_call(conv)} expects {conv.in_channels} input channels but receives "
            f"{shape}: {_label(block)} outputs {received} channels (its last layer sets the block's expansion), and "
            f"the next consumer was built for {conv.in_channels}. A block's output channels (planes x expansion) must "
            f"be the input channels of whatever follows it."
        )
        fix = (
            f"Build the consumer for {received} input channels: {conv_record.name} = {fixed} (and any other layer "
            f"that takes {block.name}'s output, e.g. the next block's shortcut conv); or make "
            f"{block.name} output {conv.in_channels} channels."
        )
        return Diagnosis("expansion_mismatch", summary, fix)
    source = f"from {_label(producer)}" if producer else "from a torch operation in forward (not a module)"
    set_by = ""
    if setter is not None and setter is not producer:
        setter_module = _submodule(model, setter)
        described = f" {_conv_call(setter_module)}" if isinstance(setter_module, nn.modules.conv._ConvNd) else ""
        set_by = f"; the {received} channels were set by {_label(setter)}{described}"
    summary = (
        f"{_label(conv_record)} {_conv_call(conv)} expects {conv.in_channels} input channels but receives "
        f"{shape} {source}{set_by}."
    )
    target = setter or producer
    alternative = f", or make {target.name} produce {conv.in_channels} channels" if target is not None else ""
    fix = f"Make {conv_record.name} take {received} channels: {fixed}{alternative}."
    return Diagnosis("conv_channels", summary, fix)


def _classifier_mismatch(records: list[LayerRecord], linear_record: LayerRecord, linear: nn.Linear) -> Diagnosis:
    shape = linear_record.input_shapes[0]
    arriving = shape[-1]
    source = _producer(records, linear_record) or _feature_source(records, linear_record, arriving)
    came = f" from {_label(source)} (output {shape_text(source.output_shape or ())})" if source else ""
    summary = (
        f"{_label(linear_record)} Linear(in_features={linear.in_features}, out_features={linear.out_features}) "
        f"expects {linear.in_features} features but receives {shape_text(shape)}{came}."
    )
    fix = f"Use nn.Linear({arriving}, {linear.out_features}) for {linear_record.name}."
    source_shape = source.output_shape if source else None
    if len(shape) > 2:
        summary += f" The features are still {len(shape)}-D: the map was not pooled and flattened before the classifier."
        fix = (
            f"Pool and flatten before {linear_record.name}: x = torch.flatten(nn.AdaptiveAvgPool2d(1)(x), 1), "
            f"then nn.Linear({shape[1]}, {linear.out_features})."
        )
    elif source_shape and len(source_shape) == 4 and source_shape[2] * source_shape[3] > 1:
        channels = source_shape[1]
        summary += (
            f" {arriving} = {channels} x {source_shape[2]} x {source_shape[3]}: the {shape_text(source_shape[2:])} map was "
            f"flattened without being pooled to 1x1."
        )
        fix = (
            f"Pool to 1x1 before flattening (nn.AdaptiveAvgPool2d(1)) and use nn.Linear({channels}, "
            f"{linear.out_features}); or keep the map and use nn.Linear({arriving}, {linear.out_features})."
        )
    else:
        block = _last_block_before(records, linear_record)
        if block is not None and block.output_shape and block.output_shape[1] == arriving:
            summary += (
                f" The last residual block, {_label(block)}, outputs {arriving} channels (planes x expansion); "
                f"in_features must equal that."
            )
    return Diagnosis("classifier_mismatch", summary, fix)


def _missing_attribute(
    module: nn.Module | None, failing: LayerRecord | None, children: list[LayerRecord], message: str
) -> Diagnosis:
    match = re.search(r"'(\w+)' object has no attribute '(\w+)'", message)
    owner, attribute = match.groups() if match else ("the module", "?")
    where = _label(failing) if failing is not None else owner
    summary = (
        f"{owner}.forward reads self.{attribute}, but {owner}.__init__ never sets it, so {where} fails when "
        f"forward reaches that line."
    )
    if module is not None:
        known = [n for n, _ in module.named_children()] + [n for n in vars(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attribute, known, n=1)
        if close:
            summary += f" Did you mean self.{close[0]}?"
    if attribute in _SHORTCUT_NAMES and failing is not None and failing.input_shapes:
        entered = failing.input_shapes[0]
        main = _main_branch_shape(entered, children)
        projection = "nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))"
        here = f"here the main branch maps {shape_text(entered)} to {shape_text(main)}" if main else f"here {shape_text(entered)} enters"
        fix = (
            f"In {owner}.__init__ set self.{attribute}: nn.Identity() when the block keeps the shape (stride 1, "
            f"in_ch == out_ch), else {projection}; {here}"
            + (f", so this one needs nn.Conv2d({entered[1]}, {main[1]}, kernel_size=1, stride="
               f"{_stride_between(entered, main)}, bias=False) + nn.BatchNorm2d({main[1]})." if main and main != entered
               else ", so this one is nn.Identity().")
        )
    else:
        fix = (
            f"Create self.{attribute} in {owner}.__init__ (every attribute forward reads must be set there; "
            f"for an optional layer use nn.Identity())."
        )
    return Diagnosis("missing_attribute", summary, fix)


def _dtype_mismatch(record: LayerRecord, own: list[torch.Tensor]) -> Diagnosis:
    param_dtype = next(_dtype(p) for p in own if _dtype(p) != record.input_dtypes[0])
    summary = (
        f"{_label(record)} holds {param_dtype} parameters but receives a {record.input_dtypes[0]} input "
        f"({shape_text(record.input_shapes[0])}); a layer computes in one dtype."
    )
    fix = (
        f"Cast the model and its input to one dtype: remove the stray .to(torch.{param_dtype})/.{_cast(param_dtype)}() on "
        f"{record.name or 'the model'}, or call model.to(torch.{record.input_dtypes[0]}) once on the whole model "
        f"(use torch.autocast for mixed precision)."
    )
    return Diagnosis("dtype_mismatch", summary, fix)


def _device_mismatch(record: LayerRecord, module: nn.Module) -> Diagnosis | None:
    if not record.input_devices:
        return None
    device = record.input_devices[0]
    registered = {id(t) for t in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))}
    stray = {
        attr: value.device.type
        for attr, value in vars(module).items()
        if isinstance(value, torch.Tensor) and id(value) not in registered and value.device.type != device
    }
    if stray:
        names = ", ".join(f"self.{a}" for a in stray)
        summary = (
            f"{_label(record)} uses {names}: plain tensor attribute{'s' if len(stray) > 1 else ''} on "
            f"{', '.join(sorted(set(stray.values())))}, with an input on {device}. model.to(device) moves parameters "
            f"and buffers only, so {names} stayed behind (on a GPU this fails the same way)."
        )
        registers = "; ".join(f"self.register_buffer({a!r}, ...)" for a in stray)
        fix = f"Register them as buffers in {record.type}.__init__: {registers} instead of assigning the tensors."
        return Diagnosis("device_mismatch", summary, fix)
    for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
        if tensor.device.type != device:
            summary = (
                f"{_label(record)} holds {name} on {tensor.device.type} but receives an input on {device}; "
                f"a layer's parameters and input must be on one device."
            )
            fix = "Move the whole model once with model.to(device) before the forward pass, and create inputs on that device."
            return Diagnosis("device_mismatch", summary, fix)
    return None


def _input_too_small(
    model: nn.Module, inputs: torch.Tensor, record: LayerRecord | None, module: nn.Module | None, search: bool
) -> Diagnosis:
    shape = tuple(inputs.shape)
    if record is None:
        return Diagnosis("input_too_small", f"The input {shape_text(shape)} is too small for this network.", "Use a larger input.")
    entered = record.input_shapes[0] if record.input_shapes else ()
    if record.finished and record.output_shape is not None:
        where = f"{_label(record)} turns {shape_text(entered)} into {shape_text(record.output_shape)}"
    else:
        kernel = getattr(module, "kernel_size", None)
        kernel_text = f" (kernel {shape_text(kernel if isinstance(kernel, tuple) else (kernel, kernel))})" if kernel else ""
        where = f"{_label(record)}{kernel_text} receives {shape_text(entered)}, which leaves no output pixels"
    summary = f"The input {shape_text(shape)} is too small for this network: {where}; the spatial size reaches zero there."
    smallest = _smallest_input(model, inputs) if search else None
    if smallest is not None:
        fix = f"Use an input of at least {smallest}x{smallest} (--input {shape_text(shape[:2])}x{smallest}x{smallest})"
    else:
        fix = "Use a larger input"
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)) and record.name:
        fix += f", or replace the fixed-size {record.type} {record.name} by nn.Adaptive{record.type.replace('2d', '')}2d(1) to accept any size"
    return Diagnosis("input_too_small", summary, fix + ".")


def _needs_data(message: str) -> bool:
    text = message.lower()
    return any(p in text for p in ("cannot be called on meta tensors", "out of meta tensor", "meta device type tensor",
                                   "data-independent implementation", "no data!"))


def _place(report: ShapeReport) -> tuple[str, str]:
    """(' at file:line' or '', the failing module's label) for a diagnosis's text."""
    where = f" at {report.location.file}:{report.location.line}" if report.location else ""
    return where, _label(report.failing) if report.failing else "the model"


def _needs_real_tensors(report: ShapeReport) -> Diagnosis:
    where, module = _place(report)
    return Diagnosis(
        "needs_real_tensors",
        f"{module} reads tensor values{where} (.item(), .tolist(), a data-dependent op or a Python `if` on a "
        f"tensor). Meta tensors have shapes but no values, so this cannot run on meta; it is not a shape problem.",
        "Run again with --device cpu (the input is random, so value-dependent branches take one path).",
    )


def _sys_exit(report: ShapeReport) -> Diagnosis:
    where, module = _place(report)
    return Diagnosis(
        "sys_exit",
        f"{module} calls sys.exit(){where}, which ends whatever program runs the model instead of reporting an "
        f"error; it is not a shape problem.",
        "Raise an exception (ValueError, RuntimeError) with the reason instead of calling sys.exit() in forward.",
    )


def _unrecognised(report: ShapeReport) -> Diagnosis:
    where, module = _place(report)
    return Diagnosis(
        "unrecognised",
        f"resnet-cli does not recognise this error. It was raised inside {module}{where}; the shapes above are what "
        f"entered that module and what its finished children produced.",
        f"Compare those shapes with what the failing statement{where} expects.",
    )


# --- helpers ----------------------------------------------------------------------------------------------------


def _smallest_input(model: nn.Module, inputs: torch.Tensor, limit: int = 4096) -> int | None:
    """The smallest square H = W at which the model runs, by doubling then bisection: a few traces, always on meta
    (a meta copy of a model on a real device), so the search allocates nothing at any size."""
    n, c = inputs.shape[:2]
    if inputs.device.type != "meta":
        model = _meta_copy(model)
        if model is None:
            return None

    def runs(size: int) -> bool:
        return _trace(model, make_input((n, c, size, size), "meta", inputs.dtype)).ok

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


def _meta_copy(model: nn.Module) -> nn.Module | None:
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


def _too_small(module: nn.Module | None, record: LayerRecord | None, message: str) -> bool:
    text = message.lower()
    if "too small" in text or "can't be greater than actual input size" in text:
        return True
    if module is None or record is None or not record.input_shapes or len(record.input_shapes[0]) != 4:
        return False
    kernel = getattr(module, "kernel_size", None)
    if kernel is None or isinstance(module, nn.modules.conv._ConvTransposeNd):
        return False
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    k, s, p = pair(kernel), pair(getattr(module, "stride", 1) or kernel), pair(getattr(module, "padding", 0))
    d = pair(getattr(module, "dilation", 1))
    if isinstance(p[0], str):
        return False
    size = record.input_shapes[0][2:]
    return any((size[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1 <= 0 for i in range(2))


def _producer(records: list[LayerRecord], record: LayerRecord) -> LayerRecord | None:
    froms = record.input_from or (None,)
    return records[froms[0]] if froms[0] is not None else None


def _producing_block(records: list[LayerRecord], record: LayerRecord) -> LayerRecord | None:
    """The residual block whose output is the tensor `record` received (directly, or as a stage's last block)."""
    producer = _producer(records, record)
    if producer is None:
        return None
    candidates = [producer] + [r for r in records if r.finished and r.order > producer.order
                               and r.name.startswith(producer.name + ".") and r.output_shape == producer.output_shape]
    blocks = [r for r in candidates if "residual" in r.extra]
    return blocks[-1] if blocks else None


def _channel_setter(records: list[LayerRecord], producer: LayerRecord, channels: int) -> LayerRecord:
    """Follow the tensor back to the module that made its channel count (the first whose input had other channels)."""
    current = producer
    for _ in range(len(records)):
        source = _producer(records, current)
        entered = current.input_shapes[0] if current.input_shapes else ()
        if source is None or len(entered) < 2 or entered[1] != channels:
            return current
        current = source
    return current


def _feature_source(records: list[LayerRecord], record: LayerRecord, features: int) -> LayerRecord | None:
    """The last finished call before `record` whose output holds `features` values per sample (flattened by an op)."""
    for r in reversed(records[: record.order]):
        if r.finished and r.output_shape and len(r.output_shape) > 1 and _per_sample(r.output_shape) == features:
            return r
    return None


def _last_block_before(records: list[LayerRecord], record: LayerRecord) -> LayerRecord | None:
    return next((r for r in reversed(records[: record.order]) if r.finished and "residual" in r.extra), None)


def _per_sample(shape: Shape) -> int:
    total = 1
    for d in shape[1:]:
        total *= d
    return total


def _check_param_dtypes(record: LayerRecord, module: nn.Module, tensors: list[torch.Tensor]) -> None:
    # Meta kernels do not always compare dtypes (F.linear accepts float32 input with float64 weights on meta);
    # a real device raises, so the check is made here.
    if not isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) or not tensors:
        return
    weight = getattr(module, "weight", None)
    if isinstance(weight, torch.Tensor) and tensors[0].is_floating_point() and weight.dtype != tensors[0].dtype:
        raise MetaCheckError(
            f"{record.type} {record.name or 'model'}: input dtype {_dtype(tensors[0])} and weight dtype "
            f"{_dtype(weight)} differ (a real device raises here; meta does not)"
        )


def _submodule(model: nn.Module, record: LayerRecord | None) -> nn.Module | None:
    if record is None:
        return None
    try:
        return model.get_submodule(record.name) if record.name else model
    except AttributeError:
        return None


def _conv_call(conv: nn.Module, in_channels: int | None = None) -> str:
    """Conv2d(64, 128, 3, stride=2, padding=1, bias=False) with the non-default arguments only."""
    k = conv.kernel_size
    parts = [str(in_channels if in_channels is not None else conv.in_channels), str(conv.out_channels),
             str(k[0] if len(set(k)) == 1 else k)]  # fmt: skip
    for attr, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)):
        value = getattr(conv, attr)
        value = value[0] if isinstance(value, tuple) and len(set(value)) == 1 else value
        if value != default:
            parts.append(f"{attr}={value}")
    if conv.bias is None:
        parts.append("bias=False")
    return f"{type(conv).__name__}({', '.join(parts)})"


def _stride_between(entered: Shape, out: Shape) -> int:
    if len(entered) < 3 or len(out) < 3 or out[2] == 0:
        return 1
    return max(1, round(entered[2] / out[2]))


def _changes(entered: Shape, out: Shape) -> str:
    parts = []
    if entered[1] != out[1]:
        parts.append(f"channels {entered[1]} -> {out[1]}")
    if entered[2:] != out[2:]:
        parts.append(f"spatial size {shape_text(entered[2:])} -> {shape_text(out[2:])}")
    return " and ".join(parts) or "nothing"


def _label(record: LayerRecord | None) -> str:
    if record is None:
        return "the model"
    return f"{record.name or '(model)'} ({record.type})"


def _from(name: str | None) -> str:
    return f"ending in {name}" if name else "computed in forward"


def _cast(dtype: str) -> str:
    return {"float64": "double", "float16": "half", "bfloat16": "bfloat16", "float32": "float"}.get(dtype, dtype)


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")



def _param_count(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".strip() if str(error) else type(error).__name__


def _main_branch_shape(entered: Shape, children: list[LayerRecord]) -> Shape | None:
    """The last 4-D child output that is a feature map, not a 1x1 gate (SE) from a larger input."""
    for child in reversed(children):
        out = child.output_shape
        if out and len(out) == 4 and (out[2:] != (1, 1) or entered[2:] == (1, 1)):
            return out
    return None


def _relative(path: str) -> str:
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else path
    except ValueError:
        return path
