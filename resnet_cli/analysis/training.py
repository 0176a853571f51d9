"""The cost of a training step, exact, from one traced forward pass on meta with autograd on.

* Backward MACs (conv + linear convention, as torch's FlopCounterMode): a convolution or matrix product costs its
  forward MACs once for the gradient of its input, if that input requires grad, and once for the gradient of its
  weight, if the weight requires grad. Which ones do is read from autograd itself (OpRecord.requires_grad): the
  first layer, frozen layers and everything before the first trainable one need no input gradient.
* Saved tensors, measured: every tensor autograd keeps for backward (saved_tensors_hooks), each memory block once,
  per module and stage. Parameters and buffers are the model's state, not activation memory.
* Gradient checkpointing what-if from the same pass: a checkpointed segment keeps only its input; its interior is
  recomputed (once, its forward MACs again) during backward, so the peak is what is kept plus the largest interior.
* The largest batch that fits a memory budget: saved bytes are linear in the batch (checked on measured batches).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from resnet_cli.analysis.checkpointing import CHECKPOINT_CHOICES, check_checkpoint, checkpoint_segments
from resnet_cli.analysis.counting import MacCount, _caller, _owners, count_trace, failure_subject
from resnet_cli.analysis.mac_rules import CONV_LINEAR_OPS, VIEWS_AND_ALLOCATION, operator_macs
from resnet_cli.analysis.stages import OWN_FORWARD, StageCount, count_by_stage, stage_names
from resnet_cli.errors import UserError
from resnet_cli.model import instantiate
from resnet_cli.trace import ForwardPassFailed, ModelTrace, make_input, parameter_count, trace_model

OPTIMIZER_STATE_BUFFERS = {"sgd": 0, "sgd-momentum": 1, "adam": 2, "adamw": 2}
"""State each optimizer keeps per trainable parameter: plain SGD none, SGD with momentum one buffer, Adam and AdamW
two (exp_avg, exp_avg_sq)."""
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
STEM = "stem"  # --freeze's name for the modules before the first stage
MAX_FIT_BATCH = 2**31 - 1

# The tensor arguments (positions in OpRecord.inputs) whose gradients a conv or matrix product's backward computes,
# each costing the forward's MACs: (data input, weight); addmm's first argument is the bias (its gradient is a sum).
_GRAD_ARGUMENTS = {"convolution": (0, 1), "addmm": (1, 2), "mm": (0, 1), "bmm": (0, 1)}


@dataclass(frozen=True)
class TrainSettings:
    """How the training step is set up: optimizer, mixed precision, checkpointing and frozen modules."""

    optimizer: str = "sgd"
    amp: str | None = None  # "bf16" or "fp16": torch.autocast to that dtype
    checkpoint: str = "none"
    freeze: tuple[str, ...] = ()  # module prefixes (or "stem")
    freeze_stages: int | None = None  # the stem and the first N stages (mmdetection's frozen_stages)
    fit_memory: int | None = None  # bytes: answer the largest batch that fits

    def check(self, dtype: str) -> None:
        """Raise a UserError naming the first bad value."""
        if self.optimizer not in OPTIMIZER_STATE_BUFFERS:
            raise UserError(f"--optimizer {self.optimizer!r} is not one of {', '.join(OPTIMIZER_STATE_BUFFERS)}")
        if self.amp is not None and self.amp not in AMP_DTYPES:
            raise UserError(f"--amp {self.amp!r} is not one of {', '.join(AMP_DTYPES)}")
        if self.amp is not None and dtype != "float32":
            raise UserError(f"--amp {self.amp} with --dtype {dtype}: autocast keeps float32 weights; use --dtype float32")
        check_checkpoint(self.checkpoint)
        if self.freeze_stages is not None and self.freeze_stages < 0:
            raise UserError(f"--freeze-stages {self.freeze_stages} must be 0 (the stem) or more (stem and N stages)")


@dataclass
class BackwardCount:
    """Backward MACs in the conv + linear convention, per operator (fvcore's names) and module (children included)."""

    by_operator: dict[str, int]
    by_module: dict[str, int]
    input_grad_macs: int  # gradients of conv / matrix product inputs
    weight_grad_macs: int  # gradients of their weights
    not_counted: dict[str, int]  # aten operator -> calls whose backward does arithmetic this convention leaves out

    @property
    def macs(self) -> int:
        return self.input_grad_macs + self.weight_grad_macs


@dataclass
class CheckpointCost:
    """Memory and compute of one --checkpoint choice: saved bytes kept at the end of the forward pass, the peak of
    saved bytes over the step, and the forward MACs recomputing costs."""

    choice: str
    segments: int
    kept_bytes: int  # at the end of forward: saved outside every segment, plus each segment's input
    recompute_bytes: int  # the interior of the segment being recomputed at the peak (0: the peak is the forward's end)
    peak_saved_bytes: int  # the largest of: kept_bytes, and for each segment while recomputed, what is still alive
    extra_macs: int  # fvcore convention
    extra_macs_conv_linear: int


@dataclass
class SavedRow:
    """Saved-tensor bytes of one module or stage, each memory block counted where it was first saved."""

    name: str
    saved_bytes: int
    forward_macs_conv_linear: int
    backward_macs: int


@dataclass
class TrainingMemory:
    """Bytes of one training step at its peak (see `total_bytes`), by kind."""

    dtype: str  # of parameters (and, without AMP, activations)
    amp: str | None
    optimizer: str
    checkpoint: str
    param_bytes: int
    buffer_bytes: int
    grad_bytes: int  # one gradient per trainable parameter, in its dtype
    optimizer_state_bytes: int
    saved_bytes: int  # every saved tensor without checkpointing: activations, the input batch, AMP weight copies
    input_bytes: int  # the input batch, when a layer saves it (the first conv does, for its weight gradient)
    batch_bytes: int  # the input batch itself (the caller holds it whether or not a layer saves it)
    weight_copy_bytes: int  # AMP: 16-bit copies of the weights that conv and linear layers save
    peak_saved_bytes: int  # with the chosen checkpointing: kept + the largest segment recomputed

    @property
    def state_bytes(self) -> int:
        """Parameters, buffers, gradients and optimizer state: independent of the batch."""
        return self.param_bytes + self.buffer_bytes + self.grad_bytes + self.optimizer_state_bytes

    @property
    def total_bytes(self) -> int:
        return self.state_bytes + self.peak_saved_bytes


@dataclass
class BatchFit:
    """The largest batch whose training step fits `budget_bytes`, and the measurements behind it."""

    budget_bytes: int
    batch: int  # 0: not even one sample fits
    bytes_at_batch: int | None  # measured at `batch`
    bytes_at_next: int | None  # measured at batch + 1 (over the budget); None when `batch` is the search's limit
    fixed_bytes: int  # the line's value at batch 0: state plus per-channel statistics
    per_sample_bytes: int  # the line's slope
    checks: list[tuple[int, int, int]]  # (batch, bytes the line predicts, bytes measured): equal when linear


@dataclass
class TrainingReport:
    """What `flops --mode train` reports for one request."""

    request: Any
    settings: TrainSettings
    forward: MacCount
    backward: BackwardCount
    stages: list[SavedRow]
    modules: list[SavedRow]  # every module call's first call, in call order (depth >= 1)
    module_depths: dict[str, int]
    memory: TrainingMemory
    checkpoints: list[CheckpointCost]
    frozen: list[str]  # module prefixes whose parameters were frozen
    frozen_params: int
    trainable_params: int
    fit: BatchFit | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def step_macs(self) -> int:
        """Forward + backward MACs of conv and linear layers (FlopCounterMode's count / 2)."""
        return self.forward.conv_linear_macs + self.backward.macs


# ---------------------------------------------------------------- backward MACs


def backward_count(trace: ModelTrace) -> BackwardCount:
    """Backward MACs of a trace made with autograd on (conv + linear convention), per operator and module."""
    own: dict[int, dict[str, int]] = {}
    inputs = weights = 0
    not_counted: dict[str, int] = {}
    for op in trace.ops:
        if not any(op.requires_grad):
            continue
        grads = _GRAD_ARGUMENTS.get(op.op)
        counted = operator_macs(op, _caller(trace, op, None if op.function is None else trace.functions[op.function]))
        if grads is None or counted is None or counted[0] not in CONV_LINEAR_OPS:
            if op.op not in VIEWS_AND_ALLOCATION:
                not_counted[op.op] = not_counted.get(op.op, 0) + 1
            continue
        name, macs = counted
        needs_input, needs_weight = (op.requires_grad[i] if i < len(op.requires_grad) else False for i in grads)
        inputs += macs * needs_input
        weights += macs * needs_weight
        ops = own.setdefault(op.module if op.module is not None else 0, {})
        ops[name] = ops.get(name, 0) + macs * (needs_input + needs_weight)
    by_module_and_operator: dict[str, dict[str, int]] = {}
    for order, ops in own.items():
        for owner in _owners(trace.records[order].name):
            into = by_module_and_operator.setdefault(owner, {})
            for name, macs in ops.items():
                into[name] = into.get(name, 0) + macs
    return BackwardCount(
        by_operator=dict(by_module_and_operator.get("", {})),
        by_module={name: sum(ops.values()) for name, ops in by_module_and_operator.items()},
        input_grad_macs=inputs,
        weight_grad_macs=weights,
        not_counted=not_counted,
    )


# ---------------------------------------------------------------- saved tensors


def _segment_of(trace: ModelTrace, segments: set[str]) -> dict[int, int | None]:
    """Module call order -> order of the segment call it runs in (itself included), or None."""
    inside: dict[int, int | None] = {}
    for record in trace.records:  # parents start before their children
        parent = inside.get(record.parent) if record.parent is not None else None
        inside[record.order] = record.order if parent is None and record.name in segments else parent
    return inside


def activation_storages(trace: ModelTrace) -> dict[int, int | None]:
    """Each memory block autograd saved (not the model's parameters or buffers) -> the module call that saved it
    first (None: outside every module)."""
    first: dict[int, int | None] = {}
    for saved in trace.saved:
        if not saved.is_state and saved.storage not in first:
            first[saved.storage] = saved.module
    return first


def checkpoint_cost(trace: ModelTrace, segments: list[str], choice: str) -> CheckpointCost:
    """What checkpointing `segments` keeps and recomputes, from a pass traced without it.

    Backward runs the segments last to first, freeing what each kept once it is done, so while segment k is
    recomputed what is alive is what was kept before it ended, plus its interior. Recomputing stops after the last
    operator whose tensors the segment saved (torch's checkpoint stops early by default), so the operators after it
    (a pre-activation block's last conv) are not run again.
    """
    storages = activation_storages(trace)
    size = trace.storage_bytes
    if not segments:
        total = sum(size[s] for s in storages)
        return CheckpointCost(choice, 0, total, 0, total, 0, 0)
    segment_of = _segment_of(trace, set(segments))
    state = {s.storage for s in trace.saved if s.is_state}
    kept: dict[int, int] = {}  # storage -> operator position from which it is alive
    interior: dict[int, set[int]] = {}
    last_save: dict[int, int] = {}  # segment -> operators run before its last save
    for saved in trace.saved:
        if saved.is_state:
            continue
        segment = segment_of.get(saved.module) if saved.module is not None else None
        if segment is None:
            kept.setdefault(saved.storage, saved.position)
        else:
            interior.setdefault(segment, set()).add(saved.storage)
            last_save[segment] = max(last_save.get(segment, 0), saved.position)
    # A segment in which autograd saves nothing (frozen, nothing before it trains) is never reached by backward:
    # it keeps no input and is not recomputed.
    calls = [r for r in trace.records if r.name in segments and segment_of.get(r.order) == r.order and r.order in interior]
    for record in calls:  # torch.utils.checkpoint keeps each segment's tensor inputs to run it again
        for storage in record.input_storages:
            if storage not in state:
                kept[storage] = min(kept.get(storage, record.ops_start), record.ops_start)
    kept_bytes = sum(size[s] for s in kept)
    peak, recompute = kept_bytes, 0
    for record in calls:
        end = record.ops_end if record.ops_end >= 0 else len(trace.ops)
        alive = {s for s, position in kept.items() if position < end}
        inner = interior[record.order] - alive
        at_peak = sum(size[s] for s in alive) + sum(size[s] for s in inner)
        if at_peak > peak:
            peak, recompute = at_peak, sum(size[s] for s in inner)
    extra = extra_conv_linear = 0
    for record in calls:
        stop = last_save[record.order]
        for op in trace.ops[record.ops_start : min(stop, record.ops_end if record.ops_end >= 0 else stop)]:
            counted = operator_macs(op, _caller(trace, op, None if op.function is None else trace.functions[op.function]))
            if counted is not None:
                extra += counted[1]
                extra_conv_linear += counted[1] if counted[0] in CONV_LINEAR_OPS else 0
    return CheckpointCost(choice, len(calls), kept_bytes, recompute, peak, extra, extra_conv_linear)


def _saved_by_module(trace: ModelTrace) -> dict[str, int]:
    """Saved bytes per module name (children included), each memory block where it was first saved."""
    by_module: dict[str, int] = {}
    for storage, module in activation_storages(trace).items():
        name = trace.records[module].name if module is not None else ""
        for owner in _owners(name):
            by_module[owner] = by_module.get(owner, 0) + trace.storage_bytes[storage]
    return by_module


# ---------------------------------------------------------------- freezing


def freeze(model: nn.Module, prefixes: Iterable[str], stages: int | None) -> list[str]:
    """Stop the gradients of every parameter under the named modules ("stem": those before the first stage) and,
    with `stages`, of the stem and the first `stages` stages; the module names frozen, in model order."""
    prefixes = [p.strip() for p in prefixes if p.strip()]
    modules = dict(model.named_modules())
    stage_list = stage_names(model) or []
    stem = _stem(model, stage_list)
    names: list[str] = []
    for prefix in prefixes:
        if prefix == STEM:
            if not stage_list:
                raise UserError(f"--freeze stem: {type(model).__name__} has no recognisable stages, so no stem; name "
                                f"modules instead: {', '.join(_top_level(model))}")  # fmt: skip
            names += stem
        elif prefix in modules and prefix:
            names.append(prefix)
        else:
            raise UserError(
                f"--freeze {prefix!r} names no module; valid: {', '.join(_top_level(model))}"
                + (f", {STEM}" if stage_list else "")
                + " (or any dotted module path, e.g. layer1.0)"
            )
    if stages is not None:
        if not stage_list:
            raise UserError(f"--freeze-stages {stages}: {type(model).__name__} has no recognisable stages (layer1, "
                            f"stage2, ...); use --freeze with module names")  # fmt: skip
        if stages > len(stage_list):
            raise UserError(f"--freeze-stages {stages}: the model has {len(stage_list)} stages; give 0 to {len(stage_list)}")
        names += stem + stage_list[:stages]
    names = list(dict.fromkeys(names))
    for name in names:
        for parameter in modules[name].parameters():
            parameter.requires_grad_(False)
    return names


def _stem(model: nn.Module, stages: list[str]) -> list[str]:
    """The model's own children registered before its first stage."""
    if not stages:
        return []
    first = stages[0].split(".")[0]
    children = [name for name, _ in model.named_children()]
    return children[: children.index(first)] if first in children else []


def _top_level(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_children()]


# ---------------------------------------------------------------- the report


def _measure(model: nn.Module, inputs: torch.Tensor, amp: str | None, subject: str | None = None) -> ModelTrace:
    """One traced training forward pass: `model.train()` first, as a training loop calls it (an override that keeps
    batch norm in eval mode, mmdetection's norm_eval, is honoured)."""
    model.train()
    trace = trace_model(model, inputs, train=None, autograd=True, amp=AMP_DTYPES[amp] if amp else None)
    try:
        trace.raise_for_failure(subject)
    except ForwardPassFailed as exc:
        if "more than 1 value per channel" not in str(exc):
            raise
        raise UserError(
            f"{str(exc).split('; run `resnet-cli debug-shapes`')[0]}; batch norm in training mode needs more than one "
            "value per channel: use a larger batch or input"
        ) from None
    return trace


def _checkpoint_costs(model: nn.Module, trace: ModelTrace) -> list[CheckpointCost]:
    costs = []
    for choice in CHECKPOINT_CHOICES:
        try:
            segments = checkpoint_segments(model, choice)
        except UserError:  # no stages: only "none" applies
            continue
        costs.append(checkpoint_cost(trace, segments, choice))
    return costs


def _memory(
    model: nn.Module, trace: ModelTrace, settings: TrainSettings, dtype: str, peak_saved: int, batch_bytes: int
) -> TrainingMemory:
    params = list(model.parameters())
    grad_bytes = sum(p.numel() * p.element_size() for p in params if id(p) in trace.grad_params)
    storages = activation_storages(trace)
    size = trace.storage_bytes
    input_storages = {s.storage for s in trace.saved if _origin(trace, s.source) is not None and _origin(trace, s.source) < 0}  # type: ignore[operator]
    copies = {s.storage for s in trace.saved if _is_weight_copy(trace, s.source)}
    return TrainingMemory(
        dtype=dtype,
        amp=settings.amp,
        optimizer=settings.optimizer,
        checkpoint=settings.checkpoint,
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        buffer_bytes=sum(b.numel() * b.element_size() for b in model.buffers()),
        grad_bytes=grad_bytes,
        optimizer_state_bytes=grad_bytes * OPTIMIZER_STATE_BUFFERS[settings.optimizer],
        saved_bytes=sum(size[s] for s in storages),
        input_bytes=sum(size[s] for s in input_storages if s in storages),
        batch_bytes=batch_bytes,
        weight_copy_bytes=sum(size[s] for s in copies if s in storages),
        peak_saved_bytes=peak_saved,
    )


_VIEWS = frozenset("t view _unsafe_view transpose permute expand reshape alias slice select unsqueeze squeeze".split())


def _origin(trace: ModelTrace, source: int | None) -> int | None:
    """The producer (as in OpRecord.input_from) of what `source` made, followed back through views."""
    while source is not None and source >= 0 and trace.ops[source].op in _VIEWS:
        source = trace.ops[source].input_from[0] if trace.ops[source].input_from else None
    return source


def _is_weight_copy(trace: ModelTrace, source: int | None) -> bool:
    """Whether the operator `source` made (a view of) a cast of a parameter or buffer: AMP's 16-bit weight copy."""
    source = _origin(trace, source)
    if source is None or source < 0:
        return False
    op = trace.ops[source]
    return op.op == "_to_copy" and op.input_from[:1] == (None,)


def _chosen(costs: list[CheckpointCost], choice: str, model: nn.Module) -> CheckpointCost:
    for cost in costs:
        if cost.choice == choice:
            return cost
    checkpoint_segments(model, choice)  # raises the UserError saying why the choice does not apply
    raise AssertionError("unreachable")


def training_report(request: Any, settings: TrainSettings) -> TrainingReport:
    """Build the requested model on meta, freeze what `settings` says, trace one training forward pass with autograd
    on and measure backward MACs, saved tensors, checkpointing and (with fit_memory) the largest batch that fits."""
    settings.check(request.dtype)
    model, inputs = instantiate(request, device="meta")
    frozen = freeze(model, settings.freeze, settings.freeze_stages)
    trainable = parameter_count(model, trainable=True)
    if trainable == 0:
        what = "--freeze leaves" if frozen else "the model has"
        raise UserError(f"{what} no trainable parameters, so a training step computes no gradients; freeze less")
    trace = _measure(model, inputs, settings.amp, failure_subject(request))
    if not trace.grad_params:
        raise UserError(
            "no parameter receives a gradient: the forward pass runs its trainable layers under torch.no_grad() or "
            "inference_mode, or the output does not depend on them; there is no training step to measure"
        )
    forward = count_trace(model, trace)
    backward = backward_count(trace)
    costs = _checkpoint_costs(model, trace)
    chosen = _chosen(costs, settings.checkpoint, model)
    memory = _memory(model, trace, settings, _params_dtype(model, request.dtype), chosen.peak_saved_bytes,
                     inputs.numel() * inputs.element_size())  # fmt: skip
    saved_by_module = _saved_by_module(trace)
    stage_rows = count_by_stage(model, trace, forward)
    report = TrainingReport(
        request=request,
        settings=settings,
        forward=forward,
        backward=backward,
        stages=_stage_rows(stage_rows, saved_by_module, backward),
        modules=[
            SavedRow(r.name, saved_by_module.get(r.name, 0), forward.module_conv_linear_macs(r.name),
                     backward.by_module.get(r.name, 0))  # every call of the module, as backward counts them
            for r in trace.records
            if r.depth >= 1 and r.call_index == 0 and not r.is_disabled_option
        ],  # fmt: skip
        module_depths={r.name: r.depth for r in trace.records if r.call_index == 0},
        memory=memory,
        checkpoints=costs,
        frozen=frozen,
        frozen_params=parameter_count(model) - trainable,
        trainable_params=trainable,
    )
    if settings.fit_memory is not None:
        report.fit = fit_batch(model, inputs, settings, memory.state_bytes, chosen.peak_saved_bytes)
    return report


def _stage_rows(rows: list[StageCount], saved_by_module: dict[str, int], backward: BackwardCount) -> list[SavedRow]:
    """A SavedRow per stage; what the model's own forward saves or computes outside every stage row (a functional
    F.relu in it) is the OWN_FORWARD row, so the rows add up to the totals."""
    result = [
        SavedRow(row.name, sum(saved_by_module.get(n, 0) for n in row.modules), row.macs_conv_linear,
                 sum(backward.by_module.get(n, 0) for n in row.modules))
        for row in rows
        if row.name != OWN_FORWARD
    ]  # fmt: skip
    own_forward = next((row.macs_conv_linear for row in rows if row.name == OWN_FORWARD), 0)
    saved = saved_by_module.get("", 0) - sum(r.saved_bytes for r in result)
    back = backward.by_module.get("", 0) - sum(r.backward_macs for r in result)
    if saved or back or own_forward:
        result.append(SavedRow(OWN_FORWARD, saved, own_forward, back))
    return result


def _params_dtype(model: nn.Module, fallback: str) -> str:
    """The dtype of the model's parameters (a user's model keeps its own whatever --dtype says)."""
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    return str(first.dtype).removeprefix("torch.") if first is not None else fallback


# ---------------------------------------------------------------- the largest batch that fits


def fit_batch(model: nn.Module, inputs: torch.Tensor, settings: TrainSettings, state: int, measured: int) -> BatchFit:
    """The largest batch whose step (state + peak saved bytes) fits `settings.fit_memory`.

    Saved bytes are a line in the batch (per-sample activations plus per-channel statistics): the line is taken
    from batches N and 2N, checked at 3N, and the answer B is then measured at B and B + 1, not extrapolated.
    """
    budget = settings.fit_memory
    assert budget is not None
    batch = inputs.shape[0]

    def total(n: int) -> int:
        if n == batch:
            return state + measured
        try:
            trace = _measure(model, make_input((n, *inputs.shape[1:]), "meta", inputs.dtype), settings.amp)
        except UserError as exc:
            reason = str(exc).split(": ", 1)[-1]
            raise UserError(f"--fit-memory: the training step fails at batch {n:,}, which the search must measure "
                            f"({reason})") from None  # fmt: skip
        return state + _chosen(_checkpoint_costs(model, trace), settings.checkpoint, model).peak_saved_bytes

    at_1, at_2 = total(batch), total(2 * batch)
    slope_n = at_2 - at_1  # bytes per `batch` samples
    fixed = at_1 - slope_n
    per_sample, remainder = divmod(slope_n, batch)
    checks = [(3 * batch, fixed + 3 * slope_n, total(3 * batch))]
    if remainder or checks[0][1] != checks[0][2]:
        raise UserError(
            f"--fit-memory: saved bytes are not linear in the batch for this model (batch {3 * batch}: "
            f"{checks[0][2]:,} measured, {checks[0][1]:,} on the line); give --input with the batch to check instead"
        )
    if fixed + per_sample > budget:  # the line's value at batch 1 (batch norm may not even run there)
        return BatchFit(budget, 0, None, fixed + per_sample, fixed, per_sample, checks)
    best = min((budget - fixed) // per_sample if per_sample else MAX_FIT_BATCH, MAX_FIT_BATCH)
    if best == MAX_FIT_BATCH:
        at_best = total(best)
        checks.append((best, fixed + best * per_sample, at_best))
        return BatchFit(budget, best, at_best, None, fixed, per_sample, checks)
    at_best, at_next = total(best), total(best + 1)
    checks += [(best, fixed + best * per_sample, at_best), (best + 1, fixed + (best + 1) * per_sample, at_next)]
    while at_best > budget and best > 0:  # never taken for a linear model; a safety net if the line was wrong
        best -= 1
        at_next, at_best = at_best, total(best) if best else state
    return BatchFit(budget, best, at_best if best else None, at_next, fixed, per_sample, checks)
