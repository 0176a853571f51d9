"""MAC counting with two engines that give one answer.

* fast: fvcore's per-operator rules (resnet_cli.analysis.mac_rules) applied to the aten operators the one
  tracer records, attributed to modules by the module call they ran in. It needs shapes only, so it runs on
  the meta device (no activations allocated) at any input size, and it counts a user's own code, functional
  operations included, exactly as it counts the presets.
* fvcore: `FlopCountAnalysis` on real CPU tensors, the reference.

Units: fvcore calls a multiply-accumulate a "flop"; here it is a MAC, and FLOPs = 2 x MACs.
The fvcore convention counts conv, matrix products, normalisation layers, adaptive average pooling and
upsampling; the conv + linear convention (He et al. 2015, Table 1; torchvision's GFLOPS; torch's
FlopCounterMode / 2) counts convolutions and matrix products only.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from resnet_cli.analysis.mac_rules import (
    CONV_LINEAR_OPS,
    MODULE_CALLS,
    OPERATOR_FORMULAS,
    ZERO_BY_CONVENTION,
    operator_macs,
)
from resnet_cli.analysis.memory import MemoryEstimate, check_optimizer, estimate_memory
from resnet_cli.errors import UserError
from resnet_cli.trace import FunctionRecord, LayerRecord, ModelTrace, OpRecord, TraceObserver, make_input, trace_model
from resnet_cli.units import first_line, shape_text

COUNTERS = ("fast", "fvcore")
__all__ = ["CONV_LINEAR_OPS", "OPERATOR_FORMULAS", "COUNTERS", "MacCount", "count_macs", "count_traced"]


@dataclass
class MacCount:
    """MACs of one forward pass per operator and per module, and the engine that counted them.

    Operator names and module names are fvcore's: `by_module[""]` is the whole model and a module's
    count includes its children's.
    """

    by_operator: dict[str, int]
    by_module: dict[str, int]
    by_module_and_operator: dict[str, dict[str, int]]
    params: int
    input_shape: tuple[int, ...]
    engine: str  # "fast" or "fvcore"
    zero_by_convention: dict[str, int] = field(default_factory=dict)  # operator -> calls counted 0 on purpose
    uncounted: dict[str, int] = field(default_factory=dict)  # operator -> calls with no rule (not counted)

    @property
    def complete(self) -> bool:
        """Every operator the model ran has a rule or is 0 by the convention: nothing was left out."""
        return not self.uncounted

    @property
    def coverage(self) -> str:
        """'complete', or 'partial (not counted: aten.xyz x3, ...)'."""
        if self.complete:
            return "complete"
        listed = ", ".join(f"aten.{op} x{calls}" for op, calls in sorted(self.uncounted.items()))
        return f"partial (not counted: {listed})"

    @property
    def macs(self) -> int:
        """Total MACs, fvcore convention."""
        return sum(self.by_operator.values())

    @property
    def flops(self) -> int:
        """Total FLOPs = 2 x MACs, fvcore convention."""
        return 2 * self.macs

    @property
    def conv_linear_macs(self) -> int:
        """Total MACs counting conv and linear only (He et al. Table 1, torchvision GFLOPS)."""
        return self.module_conv_linear_macs("")

    def module_conv_linear_macs(self, name: str) -> int:
        """MACs of conv and linear operators inside module `name` ("" = the model)."""
        ops = self.by_module_and_operator.get(name, {})
        return sum(ops.get(op, 0) for op in CONV_LINEAR_OPS)


# ---------------------------------------------------------------- fast engine: operator rules on the trace

TraceCheck = Callable[[ModelTrace], None]


def count_trace(model: nn.Module, trace: ModelTrace) -> MacCount:
    """Apply the operator rules to a finished trace: MACs per operator and module; records annotated with "macs"."""
    own: dict[int, dict[str, int]] = {}  # module call order -> {operator: MACs} it ran itself
    zero: Counter[str] = Counter()
    uncounted: Counter[str] = Counter()
    for function in trace.functions:
        function.extra["macs"] = 0
    for op in trace.ops:
        function = trace.functions[op.function] if op.function is not None else None
        counted = operator_macs(op, _caller(trace, op, function))
        if counted is None:
            (zero if op.op in ZERO_BY_CONVENTION else uncounted)[op.op] += 1
            continue
        name, macs = counted
        if not macs:
            continue  # fvcore keeps no zero entries
        ops = own.setdefault(op.module if op.module is not None else 0, {})
        ops[name] = ops.get(name, 0) + macs
        if function is not None:
            function.extra["macs"] += macs
    annotate_records(trace, own)
    by_module_and_operator: dict[str, dict[str, int]] = {name: {} for name, _ in model.named_modules()}
    for order, ops in own.items():
        # fvcore's "owner" mode: an operator counts for its module and every dotted prefix of its name
        for name in _owners(trace.records[order].name):
            _add(by_module_and_operator.setdefault(name, {}), ops)
    return MacCount(
        by_operator=dict(by_module_and_operator[""]),
        by_module={name: sum(ops.values()) for name, ops in by_module_and_operator.items()},
        by_module_and_operator=by_module_and_operator,
        params=sum(p.numel() for p in model.parameters()),
        input_shape=trace.input_shapes[0] if trace.input_shapes else (),
        engine="fast",
        zero_by_convention=dict(zero),
        uncounted=dict(uncounted),
    )


def _caller(trace: ModelTrace, op: OpRecord, function: FunctionRecord | None) -> str | None:
    """The torch function `op` ran in: recorded, or (traced without functions) what torch's module it ran in calls."""
    if function is not None:
        return function.name
    if op.module is None or trace.functions_tracked:
        return None
    record = trace.records[op.module]
    return MODULE_CALLS.get(record.type) if record.is_leaf else None


def annotate_records(trace: ModelTrace, own: dict[int, dict[str, int]]) -> None:
    """Write each call's MACs, children included, into record.extra["macs"] and ["macs_conv_linear"]."""
    totals = {r.order: dict(own.get(r.order, {})) for r in trace.records}
    by_order = {r.order: r for r in trace.records}
    for record in reversed(trace.records):  # children start after their parent
        if record.parent is not None:
            _add(totals[record.parent], totals[record.order])
    for order, ops in totals.items():
        by_order[order].extra["macs"] = sum(ops.values())
        by_order[order].extra["macs_conv_linear"] = sum(ops.get(op, 0) for op in CONV_LINEAR_OPS)


def _add(into: dict[str, int], ops: dict[str, int]) -> None:
    for op, macs in ops.items():
        into[op] = into.get(op, 0) + macs


def _fast_count(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    observers: Iterable[TraceObserver] = (),
    check: TraceCheck | None = None,
    functions: bool = True,
) -> tuple[ModelTrace, MacCount]:
    trace = trace_model(model, inputs, observers=observers, functions=functions)
    if check is not None:
        check(trace)
    if not trace.ok:
        raise UserError(f"the forward pass fails{_where(trace)}: {first_line(trace.error)}")
    return trace, count_trace(model, trace)


def _owners(name: str) -> list[str]:
    if not name:
        return [""]
    parts = name.split(".")
    return ["", *(".".join(parts[: k + 1]) for k in range(len(parts)))]


def _where(trace: ModelTrace) -> str:
    failing = trace.unfinished[-1] if trace.unfinished else None
    return f" in {failing.name or 'the model'} ({failing.type})" if failing else ""


# ---------------------------------------------------------------- fvcore engine


def _fvcore_count(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> MacCount:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import touches deprecated torch.jit APIs
        from fvcore.nn import FlopCountAnalysis

    if any(t.is_meta for t in (*model.parameters(), *model.buffers(), *inputs)):
        model = copy.deepcopy(model).to_empty(device="cpu")  # weights' values do not change the count
        inputs = tuple(make_input(t.shape, "cpu", t.dtype) for t in inputs)
    was_training = {m: m.training for m in model.modules()}
    analysis = FlopCountAnalysis(model, inputs if len(inputs) > 1 else inputs[0])
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    try:
        model.eval()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # fvcore warns about every op it does not count
            counts = analysis.by_module_and_operator()
            unsupported = analysis.unsupported_ops()
    finally:
        for module, mode in was_training.items():
            module.training = mode
    by_module_and_operator = {name: {op: int(v) for op, v in ops.items() if v} for name, ops in counts.items()}
    return MacCount(
        by_operator=dict(by_module_and_operator.get("", {})),
        by_module={name: sum(ops.values()) for name, ops in by_module_and_operator.items()},
        by_module_and_operator=by_module_and_operator,
        params=sum(p.numel() for p in model.parameters()),
        input_shape=tuple(inputs[0].shape),
        engine="fvcore",
        zero_by_convention={_jit_name(op): n for op, n in unsupported.items() if _jit_name(op) in ZERO_BY_CONVENTION},
        uncounted={_jit_name(op): n for op, n in unsupported.items() if _jit_name(op) not in ZERO_BY_CONVENTION},
    )


def _jit_name(op: str) -> str:
    return op.rpartition("::")[2]


# ---------------------------------------------------------------- public API


def count_macs(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...], counter: str = "fast") -> MacCount:
    """MACs of `model` on `inputs` per operator and per module, with `counter` fast or fvcore.

    The fast engine runs on the model's device: build it on "meta" for instant counts at any size.
    """
    return count_traced(model, inputs if isinstance(inputs, tuple) else (inputs,), counter)[1]


def count_module(module: nn.Module, input_shape: Iterable[int], counter: str = "fast") -> MacCount:
    """MACs of a single module (e.g. one block) on an input of `input_shape`, on the module's device."""
    reference = next(iter([*module.parameters(), *module.buffers()]), None)
    device = reference.device if reference is not None else torch.device("meta")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    return count_macs(module, make_input(tuple(input_shape), device, dtype), counter)


def count_request(request: Any, counter: str = "fast") -> MacCount:
    """MACs of the model and input a request describes (a preset's ModelRequest or a UserModelRequest), on meta."""
    from resnet_cli.model import instantiate

    _check_counter(counter)
    model, inputs = instantiate(request, device="meta")
    return count_macs(model, inputs, counter)


def count_traced(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    counter: str = "fast",
    *,
    observers: Iterable[TraceObserver] = (),
    check: TraceCheck | None = None,
    before_fvcore: TraceCheck | None = None,
    functions: bool = True,
) -> tuple[ModelTrace, MacCount]:
    """The trace (records annotated with "macs") and the MAC count, for callers that show layers too.

    `observers` ride along on the same trace; `check(trace)` runs before counting and may raise;
    `before_fvcore(trace)` runs only when fvcore is about to count (e.g. to refuse a huge input).
    With the fvcore engine the records carry fvcore's per-module counts. `functions=False` traces without
    FunctionRecords (faster; names matrix products and pooling from torch's module classes instead).
    """
    _check_counter(counter)
    trace, fast = _fast_count(model, inputs, observers, check, functions)
    if counter == "fast":
        return trace, fast
    if before_fvcore is not None:
        before_fvcore(trace)
    count = _fvcore_count(model, inputs)
    _annotate_from_count(trace, count)
    return trace, count


def _check_counter(counter: str) -> None:
    if counter not in COUNTERS:
        raise UserError(f"--counter {counter!r} is not one of {', '.join(COUNTERS)}")


@dataclass
class StageCount:
    """One stage of a ResNet (stem, layer1..N, head), a top-level child of another model, or the model's own
    forward (functional operations and parameters of the model itself, when not inside a stem or head)."""

    name: str
    params: int
    macs: int
    macs_conv_linear: int
    output_shape: tuple[int, ...] | None
    modules: list[str] = field(default_factory=list)


OWN_FORWARD = "(own forward)"
_STAGE_NAME = re.compile(r"^((layer|stage|block|res)_?\d+|(layers|stages|blocks|features)\.\d+)$")


def stage_names(model: nn.Module) -> list[str] | None:
    """The model's stages when it is recognisably stem / stages / head: resnet-cli's own `stage_names`, or at least
    two modules the model calls named like layer1, stage2, block3 (torchvision, timm, CIFAR and Wide ResNet code) or
    stages.0, stages.1 (an nn.ModuleList the forward loops over)."""
    names = getattr(model, "stage_names", None)
    if names:
        return list(names)
    candidates = [name for name, _ in model.named_children()]
    for name, child in model.named_children():
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)):
            candidates += [f"{name}.{index}" for index, _ in child.named_children()]
    found = [name for name in candidates if _STAGE_NAME.match(name)]
    return found if len(found) >= 2 else None


def count_by_stage(model: nn.Module, trace: ModelTrace, count: MacCount) -> list[StageCount]:
    """MACs and params per stage: stem, stages, head when the model has them, else per module the model calls.

    Calls before the first stage are the stem, after the last the head. What the model's own forward computes
    outside those calls (F.avg_pool2d, x @ w), and its own parameters, form the row OWN_FORWARD, the same with
    either counter (fvcore cannot place such operators in time). A call to a module inside another one the model
    also calls (self.backbone.fc after self.backbone) is part of that one's count, as fvcore attributes by name.
    """
    stages_of_model = stage_names(model) or []
    calls = [r for r in trace.records if r.depth == 1]  # the calls the model's forward makes itself
    called = {r.name for r in calls}
    calls = [r for r in calls if not any(r.name.startswith(name + ".") for name in called if name)]
    positions = [i for i, r in enumerate(calls) if r.name in stages_of_model]
    rows: dict[str, StageCount] = {}
    for position, record in enumerate(calls):
        if not positions:
            name = record.name
        elif position < positions[0]:
            name = "stem"
        elif position > positions[-1]:
            name = "head"
        else:
            name = next(calls[i].name for i in range(position, -1, -1) if calls[i].name in stages_of_model)
        entry = rows.setdefault(name, StageCount(name, 0, 0, 0, None))
        if record.call_index == 0:
            entry.params += record.params
            entry.macs += count.by_module.get(record.name, 0)
            entry.macs_conv_linear += count.module_conv_linear_macs(record.name)
            entry.modules.append(record.name)
        entry.output_shape = record.output_shape
    firsts = [r.name for r in calls if r.call_index == 0]
    own = StageCount(
        OWN_FORWARD,
        params=sum(p.numel() for p in model.parameters(recurse=False)),
        macs=count.macs - sum(count.by_module.get(name, 0) for name in firsts),
        macs_conv_linear=count.conv_linear_macs - sum(count.module_conv_linear_macs(name) for name in firsts),
        output_shape=trace.records[0].output_shape if trace.records else None,
    )
    if own.params or own.macs:
        rows[OWN_FORWARD] = own
    return list(rows.values())


@dataclass
class FlopsReport:
    """What `flops` reports: totals in both conventions, per operator, stage and module, and memory."""

    request: Any  # ModelRequest or UserModelRequest
    count: MacCount
    layers: list[LayerRecord]  # module calls at depth >= 1, annotated with "macs"
    stages: list[StageCount]
    memory: MemoryEstimate
    max_depth: int | None = None
    notes: list[str] = field(default_factory=list)


def flops_report(request: Any, counter: str = "fast", optimizer: str = "sgd", max_depth: int | None = None) -> FlopsReport:
    """Build the requested model (preset or the user's own), count its MACs with `counter` and estimate its memory."""
    from resnet_cli.analysis.summary import check_trace
    from resnet_cli.model import instantiate

    _check_counter(counter)
    check_optimizer(optimizer)
    if max_depth is not None and max_depth < 1:
        raise UserError(f"--depth {max_depth} must be >= 1 (1 = stem layers and stages, 2 = blocks, 3 = layers)")
    model, inputs = instantiate(request)
    trace, count = count_traced(
        model,
        (inputs,),
        counter,
        check=lambda t: check_trace(t, request),
        before_fvcore=lambda t: _check_fits_in_memory(t.activation_elements, request),
    )
    params = list(model.parameters())
    memory = estimate_memory(
        params=sum(p.numel() for p in params),
        trainable_params=sum(p.numel() for p in params if p.requires_grad),
        input_elements=inputs.numel(),
        activation_elements=trace.activation_elements,
        dtype=request.dtype,
        optimizer=optimizer,
    )
    # Disabled options are nn.Identity (0 MACs, nothing to show), as in `summary`.
    layers = [
        r
        for r in trace.records
        if r.depth >= 1 and r.type != "Identity" and (max_depth is None or r.depth <= max_depth)
    ]
    return FlopsReport(
        request=request,
        count=count,
        layers=layers,
        stages=count_by_stage(model, trace, count),
        memory=memory,
        max_depth=max_depth,
    )


def _annotate_from_count(trace: ModelTrace, count: MacCount) -> None:
    for record in trace.records:
        ops = count.by_module_and_operator.get(record.name, {}) if record.call_index == 0 else {}
        record.extra["macs"] = sum(ops.values())
        record.extra["macs_conv_linear"] = sum(ops.get(op, 0) for op in CONV_LINEAR_OPS)


def _check_fits_in_memory(activation_elements: int, request: Any) -> None:
    """fvcore runs for real in float32: refuse inputs whose activations alone exceed this machine's memory."""
    from resnet_cli.model import device_memory

    needed = activation_elements * 4
    available = device_memory("cpu")
    if available is not None and needed > available:
        shape = shape_text(request.input_shape)
        raise UserError(
            f"--counter fvcore --input {shape} would allocate {needed / 2**30:,.1f} GiB of activations, more than "
            f"the {available / 2**30:,.1f} GiB available; use --counter fast (the same counts, on meta)"
        )
