"""MAC counting with two engines that give one answer.

* fast: a TraceObserver on the shared hook tracer computes each module call's MACs from shapes
  alone, so it runs on the meta device (no activations allocated) at any input size. It reproduces
  fvcore's numbers exactly, per operator and per module, for the module types listed in
  `FAST_LEAF_RULES`, `ZERO_MAC_LEAVES` and `PASS_THROUGH_CONTAINERS`.
* fvcore: `FlopCountAnalysis` on real CPU tensors, the reference; `auto` falls back to it when a
  model holds a module type the fast engine does not know.

Units: fvcore calls a multiply-accumulate a "flop"; here it is a MAC, and FLOPs = 2 x MACs.
The fvcore convention counts conv, linear, batch norm and adaptive average pooling; the
conv + linear convention (He et al. 2015, Table 1; torchvision's GFLOPS) counts conv and linear only.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from resnet_cli.analysis.memory import MemoryEstimate, check_optimizer, estimate_memory
from resnet_cli.errors import UserError
from resnet_cli.meta_shapes import shape_only_meta
from resnet_cli.spec import ModelRequest
from resnet_cli.trace import LayerRecord, ModelTrace, TraceObserver, make_input, trace_model

COUNTERS = ("fast", "fvcore", "auto")
CONV_LINEAR_OPS = ("conv", "linear")  # He et al. Table 1 / torchvision GFLOPS count only these

# What each fvcore operator name counts, in MACs, for docs and the `--by operator` view.
OPERATOR_FORMULAS = {
    "conv": "N x Cout x Cin/groups x kH x kW x Hout x Wout (bias not counted)",
    "linear": "input elements x out_features (bias not counted)",
    "batch_norm": "2 per element in eval (1 if not affine; 5 or 4 with batch stats)",
    "adaptive_avg_pool2d": "1 per input element",
}


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
    note: str | None = None  # why `auto` used fvcore, if it did

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


# ---------------------------------------------------------------- fast engine: per-module rules

MacRule = Callable[[nn.Module, tuple, Any], dict[str, int]]
TraceCheck = Callable[[ModelTrace], None]


def _first_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            if isinstance(item, torch.Tensor):
                return item
    raise TypeError(f"expected a tensor, got {type(value).__name__}")


def _conv_macs(module: nn.Module, args: tuple, output: Any) -> dict[str, int]:
    # fvcore conv_flop_count: batch x prod(weight shape) x prod(output spatial dims)
    out = _first_tensor(output)
    return {"conv": out.shape[0] * math.prod(module.weight.shape) * math.prod(out.shape[2:])}


def _linear_macs(module: nn.Module, args: tuple, output: Any) -> dict[str, int]:
    # fvcore linear_flop_jit: prod(input shape) x out_features
    return {"linear": math.prod(_first_tensor(args).shape) * module.out_features}


def _batch_norm_macs(module: nn.Module, args: tuple, output: Any) -> dict[str, int]:
    # fvcore batchnorm_flop_jit; aten::batch_norm gets training=True also in eval without running stats
    elements = _first_tensor(args).numel()
    affine = module.weight is not None
    uses_batch_stats = module.training or (module.running_mean is None and module.running_var is None)
    if uses_batch_stats:
        return {"batch_norm": elements * (5 if affine else 4)}
    return {"batch_norm": elements * (2 if affine else 1)}


def _adaptive_avg_pool_macs(module: nn.Module, args: tuple, output: Any) -> dict[str, int]:
    # fvcore elementwise_flop_counter(1, 0): one per input element
    return {"adaptive_avg_pool2d": _first_tensor(args).numel()}


def _resnet_module_types() -> tuple[type[nn.Module], ...]:
    from resnet_cli.model import BasicBlock, Bottleneck, DropPath, PaddedIdentity, ResNet, SqueezeExcite

    return ResNet, BasicBlock, Bottleneck, SqueezeExcite, DropPath, PaddedIdentity


# Leaf types whose fvcore count is a closed formula of shapes (matched by exact type: a subclass may
# override forward).
FAST_LEAF_RULES: dict[type[nn.Module], MacRule] = {
    nn.Conv1d: _conv_macs,
    nn.Conv2d: _conv_macs,
    nn.Conv3d: _conv_macs,
    nn.Linear: _linear_macs,
    nn.BatchNorm1d: _batch_norm_macs,
    nn.BatchNorm2d: _batch_norm_macs,
    nn.BatchNorm3d: _batch_norm_macs,
    nn.AdaptiveAvgPool2d: _adaptive_avg_pool_macs,
}

# Leaf types made only of operators fvcore ignores or does not support (max/avg pool, activations,
# pad, reshape): fvcore counts them as 0 MACs.
ZERO_MAC_LEAVES: tuple[type[nn.Module], ...] = (
    nn.Identity, nn.Flatten, nn.Dropout, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Sigmoid,
    nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.MaxPool2d, nn.AvgPool2d,
)  # fmt: skip

# Containers whose own forward (outside child modules) runs only operators fvcore counts as 0:
# the residual add, the SE multiply, DropPath's mask, shortcut A's slicing and zero padding.
PASS_THROUGH_CONTAINERS: tuple[type[nn.Module], ...] = (nn.Sequential,)


def _known_types() -> set[type[nn.Module]]:
    return {*FAST_LEAF_RULES, *ZERO_MAC_LEAVES, *PASS_THROUGH_CONTAINERS, *_resnet_module_types()}


def unknown_module_types(model: nn.Module) -> list[str]:
    """Class names of modules in `model` whose MACs the fast engine cannot compute (sorted)."""
    known = _known_types()
    return sorted({type(m).__name__ for m in model.modules() if type(m) not in known})


class MacCounter:
    """TraceObserver: the MACs each module call runs itself (children excluded), by fvcore operator."""

    def __init__(self) -> None:
        self.own: dict[int, dict[str, int]] = {}  # record.order -> {operator: MACs}

    def on_start(self, record: LayerRecord, module: nn.Module, args: tuple) -> None:
        pass

    def on_finish(self, record: LayerRecord, module: nn.Module, args: tuple, output: Any) -> None:
        rule = FAST_LEAF_RULES.get(type(module))
        if rule is not None:
            ops = {op: macs for op, macs in rule(module, args, output).items() if macs}  # as _fvcore_count does
            if ops:
                self.own[record.order] = ops


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
) -> tuple[ModelTrace, MacCount]:
    counter = MacCounter()
    on_meta = all(t.is_meta for t in inputs)
    with shape_only_meta() if on_meta else contextlib.nullcontext():
        trace = trace_model(model, inputs, observers=[counter, *observers])
    if check is not None:
        check(trace)
    if not trace.ok:
        raise UserError(f"the forward pass fails{_where(trace)}: {_first_line(trace.error)}")
    annotate_records(trace, counter.own)
    by_module_and_operator: dict[str, dict[str, int]] = {name: {} for name, _ in model.named_modules()}
    by_order = {r.order: r for r in trace.records}
    for order, ops in counter.own.items():
        # fvcore's "owner" mode: an operator counts for its module and every dotted prefix of its name
        for name in _owners(by_order[order].name):
            _add(by_module_and_operator.setdefault(name, {}), ops)
    count = MacCount(
        by_operator=dict(by_module_and_operator[""]),
        by_module={name: sum(ops.values()) for name, ops in by_module_and_operator.items()},
        by_module_and_operator=by_module_and_operator,
        params=sum(p.numel() for p in model.parameters()),
        input_shape=tuple(inputs[0].shape),
        engine="fast",
    )
    return trace, count


def _owners(name: str) -> list[str]:
    if not name:
        return [""]
    parts = name.split(".")
    return ["", *(".".join(parts[: k + 1]) for k in range(len(parts)))]


def _where(trace: ModelTrace) -> str:
    failing = trace.unfinished[-1] if trace.unfinished else None
    return f" in {failing.name or 'the model'} ({failing.type})" if failing else ""


def _first_line(error: BaseException | None) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


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
    )


# ---------------------------------------------------------------- public API


def count_macs(model: nn.Module, inputs: torch.Tensor | tuple[torch.Tensor, ...], counter: str = "auto") -> MacCount:
    """MACs of `model` on `inputs` per operator and per module, with `counter` fast, fvcore or auto.

    The fast engine runs on the model's device: build it on "meta" for instant counts at any size.
    """
    return _count(model, inputs if isinstance(inputs, tuple) else (inputs,), counter)[1]


def count_module(module: nn.Module, input_shape: Iterable[int], counter: str = "auto") -> MacCount:
    """MACs of a single module (e.g. one block) on an input of `input_shape`, on the module's device."""
    reference = next(iter([*module.parameters(), *module.buffers()]), None)
    device = reference.device if reference is not None else torch.device("meta")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    return count_macs(module, make_input(tuple(input_shape), device, dtype), counter)


def count_request(request: ModelRequest, counter: str = "auto") -> MacCount:
    """MACs of the model and input a ModelRequest describes (fast: on the meta device; fvcore: on CPU)."""
    from resnet_cli.model import build_model

    _check_counter(counter)
    model = build_model(request.spec, device="meta")
    return count_macs(model, make_input(request.input_shape, "meta"), counter)


def count_traced(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    counter: str = "auto",
    *,
    observers: Iterable[TraceObserver] = (),
    check: TraceCheck | None = None,
    before_fvcore: TraceCheck | None = None,
) -> tuple[ModelTrace, MacCount]:
    """The trace (records annotated with "macs") and the MAC count, for callers that show layers too.

    `observers` ride along on the same trace; `check(trace)` runs before counting and may raise;
    `before_fvcore(trace)` runs only when fvcore is about to count (e.g. to refuse a huge input).
    With the fvcore engine the records carry fvcore's per-module counts.
    """
    return _count(model, inputs, counter, observers, check, before_fvcore)


def _check_counter(counter: str) -> None:
    if counter not in COUNTERS:
        raise UserError(f"--counter {counter!r} is not one of {', '.join(COUNTERS)}")


def _count(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    counter: str,
    observers: Iterable[TraceObserver] = (),
    check: TraceCheck | None = None,
    before_fvcore: TraceCheck | None = None,
) -> tuple[ModelTrace, MacCount]:
    _check_counter(counter)
    unknown = unknown_module_types(model)
    if counter == "fast" and unknown:
        raise UserError(
            f"--counter fast cannot count module type(s) {', '.join(unknown)}; use --counter fvcore or auto"
        )
    trace, fast = _fast_count(model, inputs, observers, check)
    if counter == "fast" or (counter == "auto" and not unknown):
        return trace, fast
    if before_fvcore is not None:
        before_fvcore(trace)
    count = _fvcore_count(model, inputs)
    if counter == "auto":
        count.note = f"counted with fvcore: the fast engine does not know {', '.join(unknown)}"
    _annotate_from_count(trace, count)
    return trace, count


@dataclass
class StageCount:
    """One stage of a ResNet (stem, layer1..N, head) or a top-level child of another model."""

    name: str
    params: int
    macs: int
    macs_conv_linear: int
    output_shape: tuple[int, ...] | None
    modules: list[str] = field(default_factory=list)


def stage_of(top_level_name: str, stage_names: Iterable[str]) -> str:
    """The stage a top-level module belongs to: stem, one of `stage_names`, or head."""
    if top_level_name in stage_names:
        return top_level_name
    return "head" if top_level_name in ("avgpool", "flatten", "fc") else "stem"


def count_by_stage(model: nn.Module, trace: ModelTrace, count: MacCount) -> list[StageCount]:
    """MACs and params per stage: stem, layer1..N, head for a ResNet; top-level children otherwise."""
    stage_names = getattr(model, "stage_names", None)
    stages: dict[str, StageCount] = {}
    for record in trace.records:
        if record.depth != 1:
            continue
        stage = stage_of(record.name, stage_names) if stage_names is not None else record.name
        entry = stages.setdefault(stage, StageCount(stage, 0, 0, 0, None))
        if record.call_index == 0:
            entry.params += record.params
            entry.macs += count.by_module.get(record.name, 0)
            entry.macs_conv_linear += count.module_conv_linear_macs(record.name)
            entry.modules.append(record.name)
        entry.output_shape = record.output_shape
    return list(stages.values())


@dataclass
class FlopsReport:
    """What `flops` reports: totals in both conventions, per operator, stage and module, and memory."""

    request: ModelRequest
    count: MacCount
    layers: list[LayerRecord]  # module calls at depth >= 1, annotated with "macs"
    stages: list[StageCount]
    memory: MemoryEstimate
    max_depth: int | None = None
    notes: list[str] = field(default_factory=list)


def flops_report(
    request: ModelRequest, counter: str = "auto", optimizer: str = "sgd", max_depth: int | None = None
) -> FlopsReport:
    """Build the requested model, count its MACs with `counter` and estimate its memory."""
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
        notes=[count.note] if count.note else [],
    )


def _annotate_from_count(trace: ModelTrace, count: MacCount) -> None:
    for record in trace.records:
        ops = count.by_module_and_operator.get(record.name, {}) if record.call_index == 0 else {}
        record.extra["macs"] = sum(ops.values())
        record.extra["macs_conv_linear"] = sum(ops.get(op, 0) for op in CONV_LINEAR_OPS)


def _check_fits_in_memory(activation_elements: int, request: ModelRequest) -> None:
    """fvcore runs for real in float32: refuse inputs whose activations alone exceed this machine's RAM."""
    needed = activation_elements * 4
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if needed > available:
        shape = "x".join(map(str, request.input_shape))
        raise UserError(
            f"--counter fvcore --input {shape} would allocate {needed / 2**30:,.1f} GiB of activations, more than "
            f"this machine's {available / 2**30:,.1f} GiB; use --counter fast (exact for built-in ResNets)"
        )
