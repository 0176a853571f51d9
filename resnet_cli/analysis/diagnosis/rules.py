"""The diagnoses as rules: each reads a `FailureContext` and answers a `Diagnosis`, or None when it does not
recognise the failure. `RULES` is tried in order and the first answer wins; the last rule always answers.

Rules change nothing: a rule whose diagnosis is about another call than the innermost unfinished one (a layer
whose output is empty) says so in `Diagnosis.about`, and `debug_shapes` reports that call.
"""

from __future__ import annotations

import difflib
import linecache
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from resnet_cli.analysis.diagnosis import prose
from resnet_cli.analysis.diagnosis.report import Diagnosis, Shape, SourceLocation, dtype_text, relative_path
from resnet_cli.analysis.diagnosis.search import Retrace, meta_copy, sides_that_run, smallest_input
from resnet_cli.analysis.diagnosis.source import (
    IN_ARGUMENT,
    OUT_ARGUMENT,
    Assignment,
    Constructor,
    assignment,
    constructor,
    keyword_or_position,
    owner_and_attribute,
)
from resnet_cli.analysis.mac_rules import VIEWS_AND_ALLOCATION
from resnet_cli.analysis.residuals import ResidualAdd, residual_adds
from resnet_cli.meta_shapes import output_size, pair
from resnet_cli.trace import ForwardExit, LayerRecord, ModelTrace, OpRecord, TensorInfo, has_zero_size, make_input
from resnet_cli.user_model import innermost_user_frame

NORMS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm)
POOLS = (nn.MaxPool2d, nn.AvgPool2d)
_FIXED_POOLS = ("avg_pool2d", "max_pool2d", "max_pool2d_with_indices")
_NO_ATTRIBUTE = re.compile(r"'(\w+)' object has no attribute '(\w+)'")


@dataclass(frozen=True)
class FailureContext:
    """One failed pass, as the rules see it."""

    model: nn.Module
    inputs: torch.Tensor
    trace: ModelTrace
    error: BaseException
    message: str  # str(error)
    failing: LayerRecord | None  # innermost call that did not finish
    module: nn.Module | None  # its module
    children: tuple[LayerRecord, ...]  # finished calls directly inside `failing`
    location: SourceLocation | None  # the failing statement in the user's code
    search: bool  # whether rules may re-trace at other input sizes (the smallest that runs, the sizes that run)
    retrace: Retrace  # one traced pass, for that search
    default_input: bool = False  # the input is the default 1x3x224x224 (no --input)

    @classmethod
    def of(cls, model: nn.Module, inputs: torch.Tensor, trace: ModelTrace, *, search: bool, retrace: Retrace,
           default_input: bool = False) -> FailureContext:  # fmt: skip
        """The context of `trace`, a failed pass of `model` on `inputs`."""
        error = trace.error
        if error is None:
            raise ValueError("the pass did not fail: there is no failure context")
        frame = innermost_user_frame(error)
        location = None
        if frame is not None:
            location = SourceLocation(relative_path(frame.filename), frame.lineno or 0, frame.name, (frame.line or "").strip())
        unfinished = trace.unfinished
        failing = unfinished[-1] if unfinished else None
        children = tuple(r for r in trace.children(failing) if r.finished) if failing is not None else ()
        return cls(model, inputs, trace, error, str(error), failing, submodule(model, failing), children, location,
                   search, retrace, default_input)  # fmt: skip


Rule = Callable[[FailureContext], Diagnosis | None]


# --- the rules, in the order RULES tries them -------------------------------------------------------------------


def sys_exit(ctx: FailureContext) -> Diagnosis | None:
    """forward called sys.exit()."""
    return prose.sys_exit(ctx.location, ctx.failing) if isinstance(ctx.error, ForwardExit) else None


def input_too_small(ctx: FailureContext) -> Diagnosis | None:
    """A layer's output is empty, or the failing layer's window does not fit the map it received."""
    zero = next((r for r in ctx.trace.records if r.finished and any(has_zero_size(s) for s in r.output_shapes)), None)
    if zero is None and not _too_small(ctx.module, ctx.failing, ctx.message):
        return None
    record, module = (ctx.failing, ctx.module) if zero is None else (zero, submodule(ctx.model, zero))
    smallest = None
    if ctx.search and record is not None:
        smallest = smallest_input(ctx.model, ctx.inputs, ctx.retrace)
    fixed_pool = isinstance(module, POOLS)
    kernel, function = getattr(module, "kernel_size", None), None
    op = ctx.trace.ops[-1] if zero is None and ctx.trace.ops and not ctx.trace.ops[-1].finished else None
    if (op is not None and not fixed_pool and op.op in _FIXED_POOLS and op.function is not None
            and op.module == getattr(record, "order", None)):  # F.avg_pool2d(x, 4) in a forward: no pooling module
        kernel, function = op.args[1] if len(op.args) > 1 else None, ctx.trace.functions[op.function]
    diagnosis = prose.input_too_small(tuple(ctx.inputs.shape), record, kernel, fixed_pool, smallest, function)
    return replace(diagnosis, about=zero)


def missing_attribute(ctx: FailureContext) -> Diagnosis | None:
    """A module's forward reads an attribute its __init__ never set."""
    match = _NO_ATTRIBUTE.search(ctx.message) if isinstance(ctx.error, AttributeError) else None
    if not match or match.group(1) not in {type(m).__name__ for m in ctx.model.modules()}:
        return None
    owner, attribute = match.groups()
    close = None
    if ctx.module is not None:
        known = [n for n, _ in ctx.module.named_children()] + [n for n in vars(ctx.module) if not n.startswith("_")]
        close = next(iter(difflib.get_close_matches(attribute, known, n=1)), None)
    failing = ctx.failing
    main = _main_branch_shape(failing.input_shapes[0], ctx.children) if failing and failing.input_shapes else None
    return prose.missing_attribute(owner, attribute, failing, close, main)


def needs_real_tensors(ctx: FailureContext) -> Diagnosis | None:
    """forward reads tensor values, which meta tensors do not have."""
    if ctx.inputs.device.type != "meta" or not _needs_data(ctx.message):
        return None
    return prose.needs_real_tensors(ctx.location, ctx.failing)


def dtype_mismatch(ctx: FailureContext) -> Diagnosis | None:
    """A layer's own parameters or buffers are of another floating dtype than its input."""
    failing, module = ctx.failing, ctx.module
    if failing is None or module is None or not failing.input_dtypes:
        return None
    # Only a layer's own computation mixes its parameters with its input; a container's add fails for other reasons.
    if not (failing.is_leaf or "type" in ctx.message.lower()):
        return None
    own = [t for t in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False)) if t.is_floating_point()]
    other = next((dtype_text(t.dtype) for t in own if dtype_text(t.dtype) != failing.input_dtypes[0]), None)
    return prose.dtype_mismatch(failing, other) if other is not None else None


def device_mismatch(ctx: FailureContext) -> Diagnosis | None:
    """A layer's plain tensor attributes, or its parameters and buffers, are on another device than its input."""
    failing, module = ctx.failing, ctx.module
    if failing is None or module is None or not failing.input_devices:
        return None
    device = failing.input_devices[0]
    registered = {id(t) for t in list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))}
    stray = {
        attr: value.device.type
        for attr, value in vars(module).items()
        if isinstance(value, torch.Tensor) and id(value) not in registered and value.device.type != device
    }
    if stray:
        return prose.stray_tensor_attributes(failing, stray, device)
    for name, tensor in list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False)):
        if tensor.device.type != device:
            return prose.parameter_elsewhere(failing, name, tensor.device.type, device)
    return None


def norm_channels(ctx: FailureContext) -> Diagnosis | None:
    """A BatchNorm or GroupNorm receives other channels than it was built for."""
    failing, norm = ctx.failing, ctx.module
    if failing is None or not isinstance(norm, NORMS) or not failing.input_shapes or len(failing.input_shapes[0]) < 2:
        return None
    built = norm.num_channels if isinstance(norm, nn.GroupNorm) else norm.num_features
    received = failing.input_shapes[0][1]
    if received == built:
        return None
    producer = producer_call(ctx.trace, failing)
    site = constructor_fix(ctx.model, failing, norm, producer, received)
    return prose.norm_channels(failing, norm, built, received, producer, site)


def input_size(ctx: FailureContext) -> Diagnosis | None:
    """The classifier receives other features than it was built for, and the model runs at other input sizes: it
    was written for those (a fixed-window pool or a fixed view before the classifier)."""
    failing, linear = ctx.failing, ctx.module
    if not ctx.search or failing is None or not isinstance(linear, nn.Linear) or not failing.input_shapes:
        return None
    if failing.input_shapes[0][-1] == linear.in_features or linear is not _classifier(ctx.model):
        return None
    sides = [s for s in sides_that_run(ctx.model, ctx.inputs, ctx.retrace) if s != ctx.inputs.shape[-1]]
    if not sides:
        return None
    window = _fixed_window(ctx.trace, failing)
    cifar = ctx.default_input and _cifar_stem(ctx.model)
    return prose.input_size(failing, linear, tuple(ctx.inputs.shape), sides, window, cifar)


def _fixed_window(trace: ModelTrace, record: LayerRecord) -> tuple[str, Any, Shape, Shape] | None:
    """The fixed-window pooling (F.avg_pool2d(x, 8), nn.AvgPool2d(7)) whose output reached `record`: its name,
    kernel, and input and output shapes."""
    source = record.input_ops[0] if record.input_ops else None
    while source is not None and source >= 0:
        op = trace.ops[source]
        if op.op in ("avg_pool2d", "max_pool2d_with_indices", "max_pool2d") and op.args:
            if op.function is not None:
                name = trace.functions[op.function].name
            else:
                name = trace.records[op.module].name if op.module is not None else op.name
            return name, op.args[1] if len(op.args) > 1 else None, op.args[0].shape, op.output_shapes[0]
        source = op.main_input()
    return None


def _cifar_stem(model: nn.Module) -> bool:
    """Whether the model's first conv is a 3x3 with stride 1, the CIFAR stem."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return conv is not None and conv.kernel_size == (3, 3) and conv.stride == (1, 1)


def layer_features(ctx: FailureContext) -> Diagnosis | None:
    """A Linear inside the network (an SE excitation, an MLP), not the classifier, receives other features."""
    failing, linear = ctx.failing, ctx.module
    if failing is None or not isinstance(linear, nn.Linear) or not failing.input_shapes:
        return None
    received = failing.input_shapes[0][-1]
    if received == linear.in_features or linear is _classifier(ctx.model):
        return None
    producer = producer_call(ctx.trace, failing)
    built_for = _module_built_for(ctx, failing, linear.in_features, received)
    if built_for is not None:
        return prose.module_width(failing, linear, received, *built_for)
    site = constructor_fix(ctx.model, failing, linear, producer, received)
    return prose.layer_features(failing, linear, received, producer, site)


def _module_built_for(
    ctx: FailureContext, record: LayerRecord, built: int, received: int
) -> tuple[LayerRecord, Assignment, LayerRecord | None, Assignment | None] | None:
    """When the failing layer is the first weighted layer of a submodule (an SE layer) that received `received`
    channels and was built for `built`: that submodule's call and the line that builds it, and the layer that made
    its input with the line that builds that one (same __init__), for the expression of the right size."""
    records = ctx.trace.records
    found = None
    parent = records[record.parent] if record.parent is not None else None
    while parent is not None and parent.parent is not None:  # the outermost such submodule, below the model
        weighted = [r for r in records[parent.order + 1:record.order + 1]
                    if r.is_leaf and r.params and r.name.startswith(parent.name + ".")]
        entered = parent.input_shapes[0] if parent.input_shapes else ()
        if not weighted or weighted[0] is not record or len(entered) < 2 or entered[1] != received or received == built:
            break
        found = parent
        parent = records[parent.parent]
    if found is None:
        return None
    owner, attribute = owner_and_attribute(ctx.model, found.name)
    site = assignment(owner, attribute)
    if site is None:
        return None
    maker = producer_call(ctx.trace, found)
    maker_site = assignment(owner, maker.name.rpartition(".")[2]) if maker is not None else None
    return found, site, maker, maker_site


def cat_mismatch(ctx: FailureContext) -> Diagnosis | None:
    """torch.cat or torch.stack receives tensors whose sizes differ outside the joined dimension."""
    op = ctx.trace.ops[-1] if ctx.trace.ops else None
    if op is None or op.finished or op.op not in ("cat", "stack") or op.module is None:
        return None
    tensors = [t for t in op.args[0] if isinstance(t, TensorInfo)] if isinstance(op.args[0], tuple) else []
    if len({t.shape for t in tensors}) < 2:
        return None
    enclosing = ctx.trace.records[op.module]
    sources = op.input_from[: len(tensors)]
    makers = [_maker(ctx.trace, source, enclosing) for source in sources]
    shapes = [t.shape for t in tensors]
    cause = None
    for shape, source in zip(shapes, sources, strict=True):
        for other in (o for o in shapes if o != shape and len(o) == len(shape) == 4):
            cause = cause or rounding_pool(ctx.trace, enclosing, source, other)
            cause = cause or unpadded_pool(ctx.trace, enclosing, source, other)
    function = ctx.trace.functions[op.function].name if op.function is not None else f"torch.{op.op}"
    return prose.cat_mismatch(enclosing, function, shapes, makers, cause)


def split_width(ctx: FailureContext) -> Diagnosis | None:
    """A conv receives other channels than it was built for, and they are a piece of torch.split or chunk."""
    received = _channels_received(ctx)
    if received is None:
        return None
    split = _split_before(ctx.trace, ctx.failing)
    if split is None:
        return None
    function = ctx.trace.functions[split.function] if split.function is not None else None
    total = split.args[0].shape[1] if split.args and len(split.args[0].shape) > 1 else None
    return prose.split_width(ctx.failing, ctx.module, received, function, total)


def _split_before(trace: ModelTrace, record: LayerRecord) -> OpRecord | None:
    """The split along channels whose piece `record` received, following the enclosing call's own operators back."""
    source = record.input_ops[0] if record.input_ops else None
    while source is not None and source >= 0:
        op = trace.ops[source]
        if op.op in ("split", "split_with_sizes", "chunk", "unsafe_split", "unbind"):
            dim = op.args[2] if len(op.args) > 2 else op.kwargs.get("dim", 0)
            return op if dim in (1, -3) else None
        if (op.module is not None and op.module != record.parent) or op.op not in _CHANNEL_KEEPING:
            return None  # a layer, or arithmetic that makes new channels (a sum of pieces, a pool): not the split's
        source = op.main_input()
    return None


# Operators a split piece may pass through on its way to the conv and still be that piece.
_CHANNEL_KEEPING = VIEWS_AND_ALLOCATION | {"relu", "relu_"}


def expansion_mismatch(ctx: FailureContext) -> Diagnosis | None:
    """A conv receives other channels than it was built for, and they come out of a residual block."""
    received = _channels_received(ctx)
    if received is None:
        return None
    block = _producing_block(ctx.trace.records, ctx.failing)
    return prose.expansion_mismatch(ctx.failing, ctx.module, received, block) if block is not None else None


def conv_channels(ctx: FailureContext) -> Diagnosis | None:
    """A conv receives other channels than it was built for (after expansion_mismatch: from anywhere)."""
    received = _channels_received(ctx)
    if received is None:
        return None
    records = ctx.trace.records
    producer = _producer(records, ctx.failing)
    setter = _channel_setter(records, producer, received) if producer else None
    site = constructor_fix(ctx.model, ctx.failing, ctx.module, setter, received)
    functions = _through_functions(ctx.trace, ctx.failing)[1] if producer is None else []
    return prose.conv_channels(ctx.failing, ctx.module, received, producer, setter, submodule(ctx.model, setter), site,
                               functions)  # fmt: skip


def classifier_mismatch(ctx: FailureContext) -> Diagnosis | None:
    """A linear layer receives another number of features than its in_features."""
    failing, linear = ctx.failing, ctx.module
    if failing is None or not isinstance(linear, nn.Linear) or not failing.input_shapes:
        return None
    arriving = failing.input_shapes[0][-1]
    if arriving == linear.in_features:
        return None
    records = ctx.trace.records
    source, functions = _producer(records, failing), []
    if source is None:  # made by torch calls in the enclosing forward: follow them back to the module call
        source, functions = _through_functions(ctx.trace, failing)
    return prose.classifier_mismatch(failing, linear, source, _last_block_before(records, failing), functions)


def _through_functions(trace: ModelTrace, record: LayerRecord) -> tuple[LayerRecord | None, list[str]]:
    """The module call whose output reached `record` through the enclosing forward's own torch calls, and those
    calls in order (F.adaptive_avg_pool2d, Tensor.view)."""
    names: list[str] = []
    source = record.input_ops[0] if record.input_ops else None
    while source is not None and source >= 0:
        op = trace.ops[source]
        if op.module is not None and op.module != record.parent:
            return call_that_made(trace, source, record.parent), names[::-1]
        if op.function is not None and (not names or names[-1] != trace.functions[op.function].name):
            names.append(trace.functions[op.function].name)
        source = op.main_input()
    return None, names[::-1]


def residual_add_mismatch(ctx: FailureContext) -> Diagnosis | None:
    """A residual block adds a main branch and a shortcut of different shapes."""
    if ctx.failing is None or ctx.module is None:
        return None
    residual = ctx.failing.extra.get("residual")
    if not residual or residual["main"] == residual["shortcut"]:
        return None
    return _residual_mismatch(ctx, ctx.failing, residual, residual_adds(ctx.trace).get(ctx.failing.order))


def _residual_mismatch(
    ctx: FailureContext | PassContext, block: LayerRecord, residual: dict[str, Any], add: ResidualAdd | None,
    broadcast: bool = False,
) -> Diagnosis:  # fmt: skip
    """The residual add's diagnosis: a shortcut pool that rounds the other way, an option-A pad of the wrong size,
    or the general case; `broadcast` when the add ran by broadcasting instead of failing."""
    if add is not None and add.main[1:2] == add.shortcut[1:2] and len(add.main) == 4:
        pool = rounding_pool(ctx.trace, block, add.shortcut_source, add.main)
        if pool is not None:
            return prose.rounding_shortcut(block, add, pool, _size_rule(ctx, block, pool[0]), broadcast)
    pad = _channel_pad(ctx.trace, add) if add is not None and add.main[1] != add.shortcut[1] else None
    if pad is not None:
        return prose.padded_shortcut(block, add, *pad, broadcast=broadcast)
    module = submodule(ctx.model, block)
    if add is not None and add.shortcut_from is None:
        condition = _projection_condition(ctx.model, module)
        if condition is not None:
            return prose.conditional_projection(block, add, *condition, broadcast=broadcast)
    if add is not None and add.shortcut_from is not None and add.main[1] == add.shortcut[1]:
        stride = _shortcut_stride(module, add.shortcut_from.rpartition(".")[2])
        if stride is not None:
            return prose.shortcut_stride(block, add, *stride, broadcast=broadcast)
    return prose.residual_add_mismatch(block, residual, broadcast)


def _projection_condition(model: nn.Module, module: nn.Module | None) -> tuple[list[str], Assignment] | None:
    """Other modules of this block's class that hold a projection (a child with weights under a shortcut-like
    name) where this one holds none, and the `if` in __init__ that builds it."""
    if module is None:
        return None
    same = [m for m in model.modules() if type(m) is type(module)]
    for attribute in sorted({n for m in same for n in m._modules if _reads_as_shortcut(n)}):
        if _has_weights(getattr(module, attribute, None)):
            continue
        others = [name for name, m in model.named_modules()
                  if type(m) is type(module) and m is not module and _has_weights(getattr(m, attribute, None))]  # fmt: skip
        built = assignment(module, attribute) if others else None
        if built is not None and built.condition is not None:
            return others, built
    return None


def _reads_as_shortcut(name: str) -> bool:
    """downsample, shortcut, convShortcut, proj, skip: what residual code calls a projection."""
    return any(word in name.lower() for word in ("shortcut", "downsample", "proj", "skip"))


def _has_weights(value: object) -> bool:
    return isinstance(value, nn.Module) and next(value.parameters(), None) is not None


def _shortcut_stride(module: nn.Module | None, attribute: str) -> tuple[str, int, str, Assignment, str] | None:
    """A projection conv built with another stride than the main branch's strided conv in the same __init__:
    (the main conv's attribute, its stride, its stride expression, the projection's assignment, its stride as
    written)."""
    if module is None:
        return None
    shortcut = getattr(module, attribute, None)
    conv = next((m for m in shortcut.modules() if isinstance(m, nn.Conv2d)), None) if isinstance(shortcut, nn.Module) else None
    main = next(((n, c) for n, c in module.named_children() if isinstance(c, nn.Conv2d) and c.stride != (1, 1)), None)
    if conv is None or main is None or conv.stride == main[1].stride:
        return None
    built, main_built = assignment(module, attribute), assignment(module, main[0])
    if built is None or main_built is None or not built.convs or not main_built.convs:
        return None
    expression = keyword_or_position(main_built.convs[0], "stride", 3)
    written = keyword_or_position(built.convs[0], "stride", 3) or "1 (the default)"
    return (main[0], main[1].stride[0], expression, built, written) if expression else None


def _channel_pad(trace: ModelTrace, add: ResidualAdd) -> tuple[int, int, tuple[str, int] | None] | None:
    """On an option-A shortcut (zero-padded channels): the channels padded before and after, and where F.pad is."""
    for order in add.shortcut_path:
        op = trace.ops[order]
        if op.op == "constant_pad_nd" and len(op.args) > 1 and len(op.args[1]) == 6:
            function = trace.functions[op.function] if op.function is not None else None
            return op.args[1][4], op.args[1][5], function.location if function is not None else None
    return None


def _size_rule(ctx: FailureContext | PassContext, block: LayerRecord, pool: PoolCall) -> tuple[int, int] | None:
    """(M, a size that runs) when input sides that are multiples of M keep `pool`'s input even, checked by tracing
    two consecutive multiples on meta (M = 2 x the stride up to the pool, or 2x, 4x that for pools further on);
    None when not searched or nothing checks out."""
    entered, size = pool.entered, tuple(ctx.inputs.shape[2:])
    if not ctx.search or len(entered) != 2 or len(size) != 2 or entered[0] == 0 or size[0] % entered[0]:
        return None
    model = ctx.model if ctx.inputs.device.type == "meta" else meta_copy(ctx.model)
    if model is None:
        return None
    for multiple in (size[0] // entered[0] * 2 * k for k in (1, 2, 4)):
        first = max(multiple, size[0] // multiple * multiple)
        if all(_runs_cleanly(ctx, model, side) for side in (first, first + multiple)):
            return multiple, first
    return None


def _runs_cleanly(ctx: FailureContext | PassContext, model: nn.Module, side: int) -> bool:
    """Whether `model` runs at side x side on meta with every residual add's operands of one shape."""
    trace = ctx.retrace(model, make_input((*ctx.inputs.shape[:2], side, side), "meta", ctx.inputs.dtype))
    return trace.ok and all(add.main == add.shortcut for add in residual_adds(trace).values())


def unrecognised(ctx: FailureContext) -> Diagnosis:
    """Anything else: where it was raised, and the shapes around it."""
    return prose.unrecognised(ctx.location, ctx.failing)


RULES: tuple[Rule, ...] = (
    sys_exit,
    input_too_small,
    missing_attribute,
    needs_real_tensors,
    dtype_mismatch,
    device_mismatch,
    norm_channels,
    cat_mismatch,
    split_width,  # before the other channel rules: the split makes the channels, not a layer
    expansion_mismatch,  # before conv_channels: the same symptom, when a residual block made the channels
    conv_channels,
    layer_features,  # before classifier_mismatch: a Linear that is not the classifier
    input_size,  # before classifier_mismatch: the classifier is right for the size the model was written for
    classifier_mismatch,
    residual_add_mismatch,
    unrecognised,  # always answers
)


def diagnose(ctx: FailureContext, rules: tuple[Rule, ...] = RULES) -> Diagnosis:
    """The first rule's answer that is not None."""
    for rule in rules:
        diagnosis = rule(ctx)
        if diagnosis is not None:
            return diagnosis
    raise ValueError(f"no rule recognised the failure and the last rule, {rules[-1].__name__}, must always answer")


# --- facts the rules read -----------------------------------------------------------------------------------------


def submodule(model: nn.Module, record: LayerRecord | None) -> nn.Module | None:
    """The module that made call `record`, or None."""
    if record is None:
        return None
    try:
        return model.get_submodule(record.name) if record.name else model
    except AttributeError:
        return None


def producer_call(trace: ModelTrace, record: LayerRecord) -> LayerRecord | None:
    """The module call whose output `record` received: its input's operator, followed back through the enclosing
    call's own operators (relu, view, a gate's multiply: through the largest operand) to a module call; the child of
    the enclosing call that holds it when there is one."""
    return call_that_made(trace, record.input_ops[0] if record.input_ops else None, record.parent)


def call_that_made(trace: ModelTrace, source: int | None, enclosing: int | None) -> LayerRecord | None:
    """The module call that made operator `source`'s result, followed back through call `enclosing`'s own operators
    (through their largest operand); the child of `enclosing` that holds it when there is one."""
    ops, records = trace.ops, trace.records
    while source is not None and source >= 0:
        op = ops[source]
        if op.module is not None and op.module != enclosing:
            found = records[op.module]
            child = found
            while child.parent is not None and child.parent != enclosing:
                child = records[child.parent]
            return child if child.parent == enclosing else found
        source = op.main_input()
    return None


@dataclass(frozen=True)
class PoolCall:
    """A max or average pooling window as the operator ran it (nn.MaxPool2d or F.max_pool2d alike)."""

    label: str  # 'reduce1.pool (MaxPool2d)', or 'F.avg_pool2d in layer1.0 (Block)'
    name: str  # what to change: the module's path, or the torch call
    average: bool
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    ceil_mode: bool
    entered: Shape  # height and width in and out
    out: Shape

    def size(self, entered: Shape, *, ceil_mode: bool | None = None, padding: int | None = None) -> Shape:
        """The output height and width with another rounding or padding."""
        ceil = self.ceil_mode if ceil_mode is None else ceil_mode
        pads = self.padding if padding is None else (padding, padding)
        return tuple(output_size(entered[i], self.kernel[i], self.stride[i], pads[i], self.dilation[i], ceil)
                     for i in range(2))  # fmt: skip


def pool_call(trace: ModelTrace, op: OpRecord) -> PoolCall | None:
    """The pooling window `op` ran, read from its arguments, or None for other operators."""
    if op.op not in _FIXED_POOLS or not op.args or not op.output_shapes or len(op.args[0].shape) != 4:
        return None
    average = op.op == "avg_pool2d"
    # avg_pool2d(x, kernel, stride, padding, ceil_mode, ...); max_pool2d(x, kernel, stride, padding, dilation, ceil_mode)
    names = ["kernel_size", "stride", "padding", "ceil_mode"] if average else \
        ["kernel_size", "stride", "padding", "dilation", "ceil_mode"]  # fmt: skip
    given = dict(zip(names, op.args[1:], strict=False)) | {k: v for k, v in op.kwargs.items() if k in names}

    def two(key: str, default: tuple[int, int]) -> tuple[int, int]:
        value = given.get(key)
        return default if value is None else pair(value, default) or default

    kernel = two("kernel_size", (1, 1))
    record = trace.records[op.module] if op.module is not None else None
    function = trace.functions[op.function].name if op.function is not None else f"aten.{op.op}"
    if record is not None and record.type.endswith("Pool2d"):
        label, name = f"{record.name} ({record.type})", record.name
    else:
        label = name = function + (f" in {record.name or 'the model'} ({record.type})" if record is not None else "")
    return PoolCall(label, name, average, kernel, two("stride", kernel), two("padding", (0, 0)), two("dilation", (1, 1)),
                    bool(given.get("ceil_mode", False)), op.args[0].shape[2:], op.output_shapes[0][2:])  # fmt: skip


def rounding_pool(trace: ModelTrace, enclosing: LayerRecord, source: int | None, target: Shape) -> tuple[PoolCall, Shape] | None:
    """A pooling window inside `enclosing`, on the path that made operator `source`'s result, whose output would have
    `target`'s height and width with the other rounding (ceil_mode flipped): (the pool, that size)."""
    for order in sorted(_ops_on_path(trace, enclosing, source), reverse=True):
        pool = pool_call(trace, trace.ops[order])
        if pool is not None:
            flipped = pool.size(pool.entered, ceil_mode=not pool.ceil_mode)
            if flipped == tuple(target[2:]) != tuple(pool.out):
                return pool, flipped
    return None


def unpadded_pool(
    trace: ModelTrace, enclosing: LayerRecord, source: int | None, target: Shape
) -> tuple[PoolCall, Shape, int] | None:
    """A pooling window without padding on the path to operator `source`'s result that would give `target`'s height
    and width with padding kernel // 2: (the pool, that size, that padding)."""
    for order in sorted(_ops_on_path(trace, enclosing, source), reverse=True):
        pool = pool_call(trace, trace.ops[order])
        if pool is None or pool.padding != (0, 0) or pool.kernel[0] != pool.kernel[1] or pool.kernel[0] < 2:
            continue
        padded = pool.size(pool.entered, padding=pool.kernel[0] // 2)
        if padded == tuple(target[2:]):
            return pool, padded, pool.kernel[0] // 2
    return None


def _maker(trace: ModelTrace, source: int | None, enclosing: LayerRecord) -> str:
    """Who made a cat operand: a torch call of the enclosing forward itself (an earlier torch.cat), or a module."""
    op = trace.ops[source] if source is not None and source >= 0 else None
    if op is not None and op.module == enclosing.order and op.function is not None:
        return trace.functions[op.function].name
    record = call_that_made(trace, source, enclosing.order)
    return f"{record.name} ({record.type})" if record is not None else "the input"


def _ops_on_path(trace: ModelTrace, enclosing: LayerRecord, source: int | None) -> set[int]:
    """The operators of call `enclosing` that operator `source`'s result derives from."""
    seen: set[int] = set()
    stack = [source]
    while stack:
        order = stack.pop()
        if order is None or order < enclosing.ops_start or order in seen:
            continue
        seen.add(order)
        stack.extend(trace.ops[order].input_from)
    return seen


def constructor_fix(
    model: nn.Module, record: LayerRecord, layer: nn.Module, producer: LayerRecord | None, received: int
) -> ConstructorFix | None:
    """The line that builds `layer` and the call that fits what it received: with the producer's own output-size
    expression when the same __init__ builds both (`nn.BatchNorm2d(planes)`), else the number."""
    owner, attribute = owner_and_attribute(model, record.name)
    site = constructor(owner, attribute)
    if site is None or site.argument(IN_ARGUMENT, layer) is None:
        return None
    expression, shared = str(received), None
    if producer is not None:
        producer_owner, producer_attribute = owner_and_attribute(model, producer.name)
        producer_module = submodule(model, producer)
        built = constructor(producer_owner, producer_attribute) if producer_owner is owner else None
        out = built.argument(OUT_ARGUMENT, producer_module) if built is not None and producer_module is not None else None
        if out is not None and _out_size(producer_module) == received:
            expression, shared = out, built
    return ConstructorFix(site, site.with_argument(IN_ARGUMENT, layer, expression), shared)


@dataclass(frozen=True)
class ConstructorFix:
    """`site` builds the failing layer; `call` is what it should build; `shared` builds the producer, whose
    output-size expression `call` reuses (None: `call` uses the number)."""

    site: Constructor
    call: str
    shared: Constructor | None


def _out_size(module: nn.Module | None) -> int | None:
    for attribute in ("out_channels", "out_features", "num_features", "num_channels"):
        if isinstance(getattr(module, attribute, None), int):
            return getattr(module, attribute)
    return None


def _classifier(model: nn.Module) -> nn.Linear | None:
    """The model's last Linear as registered: the classifier head."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def _too_small(module: nn.Module | None, record: LayerRecord | None, message: str) -> bool:
    text = message.lower()
    if "too small" in text or "can't be greater than actual input size" in text:
        return True
    if module is None or record is None or not record.input_shapes or len(record.input_shapes[0]) != 4:
        return False
    kernel = getattr(module, "kernel_size", None)
    if kernel is None or isinstance(module, nn.modules.conv._ConvTransposeNd):
        return False
    padding = getattr(module, "padding", 0)
    if isinstance(padding, str):  # 'same' / 'valid': torch sizes these itself
        return False
    k, s, p = pair(kernel), pair(getattr(module, "stride", 1) or kernel), pair(padding)
    d = pair(getattr(module, "dilation", 1))
    if None in (k, s, p, d):  # a 3-D window: not this 2-D check
        return False
    size = record.input_shapes[0][2:]
    return any(output_size(size[i], k[i], s[i], p[i], d[i]) <= 0 for i in range(2))


def _needs_data(message: str) -> bool:
    text = message.lower()
    return any(p in text for p in ("cannot be called on meta tensors", "out of meta tensor", "meta device type tensor",
                                   "data-independent implementation", "no data!"))


def _channels_received(ctx: FailureContext) -> int | None:
    """The channels a failing conv received, when they are not its in_channels."""
    failing, conv = ctx.failing, ctx.module
    if failing is None or not isinstance(conv, nn.modules.conv._ConvNd) or not failing.input_shapes:
        return None
    received = failing.input_shapes[0][1] if len(failing.input_shapes[0]) > 1 else None
    return received if received is not None and received != conv.in_channels else None


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


def _last_block_before(records: list[LayerRecord], record: LayerRecord) -> LayerRecord | None:
    return next((r for r in reversed(records[: record.order]) if r.finished and "residual" in r.extra), None)


def _per_sample(shape: Shape) -> int:
    total = 1
    for d in shape[1:]:
        total *= d
    return total


def _main_branch_shape(entered: Shape, children: tuple[LayerRecord, ...]) -> Shape | None:
    """The last 4-D child output that is a feature map, not a 1x1 gate (SE) from a larger input."""
    for child in reversed(children):
        out = child.output_shape
        if out and len(out) == 4 and (out[2:] != (1, 1) or entered[2:] == (1, 1)):
            return out
    return None


# --- passes that run but are wrong: the silent problems -----------------------------------------------------------


@dataclass(frozen=True)
class PassContext:
    """A pass that ran, as the silent rules see it."""

    model: nn.Module
    inputs: torch.Tensor
    trace: ModelTrace
    search: bool
    retrace: Retrace


SilentRule = Callable[[PassContext], Diagnosis | None]
# Torch functions that make a new tensor; without device= it lands on the default device (the CPU), whatever
# device the model runs on.
FACTORIES = frozenset({"torch.zeros", "torch.ones", "torch.empty", "torch.full", "torch.arange", "torch.rand",
                       "torch.randn", "torch.randint", "torch.eye", "torch.linspace", "torch.logspace",
                       "torch.tensor"})  # fmt: skip
_RESHAPES = frozenset({"view", "_unsafe_view", "reshape", "flatten"})


def broadcast_residual(ctx: PassContext) -> Diagnosis | None:
    """A residual add whose main branch and shortcut differ in shape ran anyway, by broadcasting (a 1x1 shortcut
    added to every position of a 2x2 map): the result is wrong."""
    for add in residual_adds(ctx.trace).values():
        if add.main != add.shortcut:
            block = ctx.trace.records[add.block]
            diagnosis = _residual_mismatch(ctx, block, add.as_dict(), add, broadcast=True)
            function = ctx.trace.functions[ctx.trace.ops[add.op].function] if ctx.trace.ops[add.op].function is not None else None
            return replace(diagnosis, about=block, location=source_location(function))
    return None


def batch_changed(ctx: PassContext) -> Diagnosis | None:
    """The output's batch size is not the input's: a view or reshape folded pixels into the batch."""
    batch = ctx.inputs.shape[0]
    output = ctx.trace.records[0].output_shape if ctx.trace.records else None
    if not output or output[0] == batch:
        return None
    op = next((o for o in ctx.trace.ops if o.inputs and o.inputs[0].shape[:1] == (batch,) and o.output_shapes
               and o.output_shapes[0][:1] not in ((batch,), ()) and o.op in _RESHAPES), None)  # fmt: skip
    if op is None:
        return None
    function = ctx.trace.functions[op.function] if op.function is not None else None
    record = ctx.trace.records[op.module] if op.module is not None else None
    sides = sides_that_run(ctx.model, ctx.inputs, ctx.retrace) if ctx.search else []
    diagnosis = prose.batch_changed(tuple(ctx.inputs.shape), output, op, function, record, sides)
    return replace(diagnosis, about=record, location=source_location(function))


def tensor_without_device(ctx: PassContext) -> Diagnosis | None:
    """forward creates a tensor with torch.zeros/ones/arange/... and no device=: on CUDA it lands on the CPU."""
    made = [f for f in ctx.trace.functions if f.name in FACTORIES and f.module is not None
            and "device" not in f.keywords and not f.input_shapes]  # fmt: skip
    if not made:
        return None
    first = made[0]
    places = sorted({f.location for f in made if f.location is not None})
    record = ctx.trace.records[first.module]  # type: ignore[index]
    diagnosis = prose.tensor_without_device(first, record, len(made), places, ctx.inputs.device.type)
    return replace(diagnosis, about=record, location=source_location(first))


SILENT_RULES: tuple[SilentRule, ...] = (broadcast_residual, batch_changed, tensor_without_device)


def silent_problem(ctx: PassContext, rules: tuple[SilentRule, ...] = SILENT_RULES) -> Diagnosis | None:
    """The first silent problem of a pass that ran, or None."""
    for rule in rules:
        diagnosis = rule(ctx)
        if diagnosis is not None:
            return diagnosis
    return None


def source_location(function: Any) -> SourceLocation | None:
    """A FunctionRecord's place in the user's code as a SourceLocation (with the line's text)."""
    if function is None or function.location is None:
        return None
    file, line = function.location
    return SourceLocation(relative_path(file), line, _function_at(file, line), linecache.getline(file, line).strip())


def _function_at(file: str, line: int) -> str:
    """The name of the innermost def around `line` of `file` ('forward', usually)."""
    for number in range(line, 0, -1):
        match = re.match(r"\s*def (\w+)", linecache.getline(file, number))
        if match:
            return match.group(1)
    return "?"
