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
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from resnet_cli.analysis.fusion import FusionResult, fuse_conv_bn
from resnet_cli.analysis.mac_rules import (
    ACTIVATION_OPS,
    CONV_LINEAR_OPS,
    MODULE_CALLS,
    ZERO_BY_CONVENTION,
    operator_macs,
)
from resnet_cli.errors import UserError
from resnet_cli.model import instantiate
from resnet_cli.trace import (
    FunctionRecord,
    ModelTrace,
    OpRecord,
    TraceObserver,
    make_input,
    parameter_count,
    trace_model,
)
from resnet_cli.units import first_line

COUNTERS = ("fast", "fvcore")


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
    # Activations (Radosavovic et al. 2020): output elements of conv, linear and matrix products, fvcore's
    # ActivationCountAnalysis convention (ACTIVATION_OPS), per operator and per module like the MACs.
    acts_by_operator: dict[str, int] = field(default_factory=dict)
    acts_by_module: dict[str, int] = field(default_factory=dict)

    @property
    def acts(self) -> int:
        """Total activations (output elements of conv, linear and matrix products), fvcore convention."""
        return sum(self.acts_by_operator.values())

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
    """Apply the operator rules to a finished trace: MACs per operator and module; records and function calls get
    their `macs`."""
    own: dict[int, dict[str, int]] = {}  # module call order -> {operator: MACs} it ran itself
    own_acts: dict[int, dict[str, int]] = {}  # module call order -> {operator: activations} it made itself
    zero: Counter[str] = Counter()
    uncounted: Counter[str] = Counter()
    for function in trace.functions:
        function.macs = 0
    for op in trace.ops:
        function = trace.functions[op.function] if op.function is not None else None
        counted = operator_macs(op, _caller(trace, op, function))
        if counted is None:
            (zero if op.op in ZERO_BY_CONVENTION else uncounted)[op.op] += 1
            continue
        name, macs = counted
        if name in ACTIVATION_OPS and op.output_shapes:
            acts = own_acts.setdefault(op.module if op.module is not None else 0, {})
            acts[name] = acts.get(name, 0) + math.prod(op.output_shapes[0])
        if not macs:
            continue  # fvcore keeps no zero entries
        ops = own.setdefault(op.module if op.module is not None else 0, {})
        ops[name] = ops.get(name, 0) + macs
        if function is not None:
            function.macs += macs
    annotate_records(trace, own)
    by_module_and_operator: dict[str, dict[str, int]] = {name: {} for name, _ in model.named_modules()}
    for order, ops in own.items():
        # fvcore's "owner" mode: an operator counts for its module and every dotted prefix of its name
        for name in _owners(trace.records[order].name):
            _add(by_module_and_operator.setdefault(name, {}), ops)
    acts_by_module: dict[str, dict[str, int]] = {name: {} for name, _ in model.named_modules()}
    for order, ops in own_acts.items():
        for name in _owners(trace.records[order].name):
            _add(acts_by_module.setdefault(name, {}), ops)
    return MacCount(
        by_operator=dict(by_module_and_operator[""]),
        by_module={name: sum(ops.values()) for name, ops in by_module_and_operator.items()},
        by_module_and_operator=by_module_and_operator,
        params=parameter_count(model),
        input_shape=trace.input_shapes[0] if trace.input_shapes else (),
        engine="fast",
        zero_by_convention=dict(zero),
        uncounted=dict(uncounted),
        acts_by_operator=dict(acts_by_module[""]),
        acts_by_module={name: sum(ops.values()) for name, ops in acts_by_module.items()},
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
    """Write each call's MACs, children included, into its `macs` and `macs_conv_linear`."""
    totals = {r.order: dict(own.get(r.order, {})) for r in trace.records}
    by_order = {r.order: r for r in trace.records}
    for record in reversed(trace.records):  # children start after their parent
        if record.parent is not None:
            _add(totals[record.parent], totals[record.order])
    for order, ops in totals.items():
        by_order[order].macs = sum(ops.values())
        by_order[order].macs_conv_linear = sum(ops.get(op, 0) for op in CONV_LINEAR_OPS)


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
        from fvcore.nn import ActivationCountAnalysis, FlopCountAnalysis

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
            activations = ActivationCountAnalysis(model, inputs if len(inputs) > 1 else inputs[0])
            activations.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
            acts_by_operator = {op: int(v) for op, v in activations.by_operator().items() if v}
            acts_by_module = {name: int(v) for name, v in activations.by_module().items()}
    finally:
        for module, mode in was_training.items():
            module.training = mode
    by_module_and_operator = {name: {op: int(v) for op, v in ops.items() if v} for name, ops in counts.items()}
    return MacCount(
        by_operator=dict(by_module_and_operator.get("", {})),
        by_module={name: sum(ops.values()) for name, ops in by_module_and_operator.items()},
        by_module_and_operator=by_module_and_operator,
        params=parameter_count(model),
        input_shape=tuple(inputs[0].shape),
        engine="fvcore",
        zero_by_convention={_jit_name(op): n for op, n in unsupported.items() if _jit_name(op) in ZERO_BY_CONVENTION},
        uncounted={_jit_name(op): n for op, n in unsupported.items() if _jit_name(op) not in ZERO_BY_CONVENTION},
        acts_by_operator=acts_by_operator,
        acts_by_module=acts_by_module,
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
    check_counter(counter)
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
    """The trace (records annotated with their `macs`) and the MAC count, for callers that show layers too.

    `observers` ride along on the same trace; `check(trace)` runs before counting and may raise;
    `before_fvcore(trace)` runs only when fvcore is about to count (e.g. to refuse a huge input).
    With the fvcore engine the records carry fvcore's per-module counts. `functions=False` traces without
    FunctionRecords (faster; names matrix products and pooling from torch's module classes instead).
    """
    check_counter(counter)
    trace, fast = _fast_count(model, inputs, observers, check, functions)
    if counter == "fast":
        return trace, fast
    if before_fvcore is not None:
        before_fvcore(trace)
    count = _fvcore_count(model, inputs)
    _annotate_from_count(trace, count)
    return trace, count


def check_counter(counter: str) -> None:
    """Raise a UserError unless `counter` is one of COUNTERS."""
    if counter not in COUNTERS:
        raise UserError(f"--counter {counter!r} is not one of {', '.join(COUNTERS)}")


def _annotate_from_count(trace: ModelTrace, count: MacCount) -> None:
    for record in trace.records:
        ops = count.by_module_and_operator.get(record.name, {}) if record.call_index == 0 else {}
        record.macs = sum(ops.values())
        record.macs_conv_linear = sum(ops.get(op, 0) for op in CONV_LINEAR_OPS)


@dataclass
class BuiltCount:
    """A model built from a request, its input, its one traced forward pass and its MAC count."""

    model: nn.Module
    inputs: torch.Tensor
    trace: ModelTrace
    count: MacCount
    fusion: FusionResult | None = None  # with fuse_bn: the conv+BN pairs folded and the batch norms left


def failure_subject(request: Any) -> str | None:
    """What a failing forward pass is blamed on: the user's model by its reference (their code is the likelier
    cause), None for a preset of ours (the input is: ForwardPassFailed then names --input)."""
    return None if getattr(request, "spec", None) is not None else request.name


def build_and_count(
    request: Any,
    device: str | None = "meta",
    *,
    counter: str = "fast",
    functions: bool = True,
    before_fvcore: TraceCheck | None = None,
    fuse_bn: bool = False,
) -> BuiltCount:
    """Build the model a request describes (a preset's ModelRequest or a UserModelRequest) on `device` (meta by
    default; None: the request's own), trace it once and count its MACs with `counter`. A pass that fails or shrinks
    to nothing raises ForwardPassFailed naming the layer; `functions` and `before_fvcore` are count_traced's.
    With `fuse_bn` the model is the inference model with each BatchNorm that follows a convolution folded into it
    (analysis.fusion, pairs found in a first trace), and the count is the fused model's."""
    model, inputs = instantiate(request, device=device)
    subject = failure_subject(request)
    fusion = None
    if fuse_bn:
        unfused = trace_model(model, (inputs,))
        unfused.raise_for_failure(subject)
        fusion = fuse_conv_bn(model, unfused)
    trace, count = count_traced(
        model,
        (inputs,),
        counter,
        check=lambda traced: traced.raise_for_failure(subject),
        before_fvcore=before_fvcore,
        functions=functions,
    )
    return BuiltCount(model, inputs, trace, count, fusion)
