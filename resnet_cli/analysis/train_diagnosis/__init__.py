"""debug-training: why a ResNet will not train, found at initialisation in one observed training step.

`collect.run_step` runs one forward pass in training mode and one backward pass for real, through the one tracer
(resnet_cli.trace) with a statistics observer, and puts the model back as it was; residual adds come from the
operator records (resnet_cli.analysis.residuals); `rules.RULES` turn what was seen into findings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from resnet_cli.analysis.residuals import residual_adds
from resnet_cli.analysis.stages import stage_names
from resnet_cli.analysis.train_diagnosis.collect import LOSSES, StepRun, run_step
from resnet_cli.analysis.train_diagnosis.rules import (
    NORMS,
    SHORTCUT_NAMES,
    WEIGHTED,
    Finding,
    TrainingContext,
    block_share,
    diagnose,
    frozen_prefix,
)
from resnet_cli.errors import UserError
from resnet_cli.spec import ModelRequest
from resnet_cli.user_model import UserModelRequest

DEFAULT_BATCH = 8
_RESIDUAL_NAMES = re.compile(r"res|bottleneck|basicblock", re.I)


@dataclass
class ScaleRow:
    """One stage or block: activation scale, the gradient reaching it, and the residual branch's share."""

    name: str
    type: str
    depth: int
    output_rms: float | None
    grad_rms: float | None
    residual_share: float | None  # RMS(branch) / (RMS(branch) + RMS(shortcut)); mean over a stage's blocks


@dataclass
class TrainingDiagnosis:
    """What `debug-training` reports."""

    model: str
    input_shape: tuple[int, ...]
    device: str
    dtype: str
    seed: int
    loss: str
    loss_value: float | None
    rows: list[ScaleRow]
    layers: list[ScaleRow]  # every module call's first call, for --plot
    findings: list[Finding]
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise UserError(f"--loss {loss!r} is not one of {', '.join(LOSSES)}")


def training_input_shape(request: ModelRequest | UserModelRequest) -> tuple[int, ...]:
    """The request's input, or (no --input) a batch of DEFAULT_BATCH at the model's natural size."""
    if getattr(request, "default_input", False):
        return (DEFAULT_BATCH, *request.input_shape[1:])
    return tuple(request.input_shape)


def debug_training_request(request: ModelRequest | UserModelRequest, loss: str = "ce", seed: int = 0) -> TrainingDiagnosis:
    """Build the requested model for real (seeded), check the step fits in memory first, and diagnose one step."""
    import dataclasses

    from resnet_cli.model import device_memory, instantiate, resolve_device
    from resnet_cli.trace import make_input
    from resnet_cli.user_model import build_user_model

    check_loss(loss)
    if request.device == "meta":
        raise UserError("--device meta: debug-training runs one real training step (statistics of real values); use "
                        "--device cpu (the default) or cuda")  # fmt: skip
    shape = training_input_shape(request)
    request = dataclasses.replace(request, input_shape=shape)
    _check_step_fits(request, device_memory(request.device))
    torch.manual_seed(seed)
    if isinstance(request, UserModelRequest):
        model = build_user_model(request)
        device = resolve_device(request.device)
    else:
        model, _ = instantiate(request)
        device = resolve_device(request.device)
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(shape, generator=generator).to(device=device, dtype=getattr(torch, request.dtype))
    if not inputs.is_floating_point():
        inputs = make_input(shape, device, getattr(torch, request.dtype))
    zero_init = (request.spec.zero_init_residual if isinstance(request, ModelRequest)
                 else dict(request.kwargs).get("zero_init_residual") is True)  # fmt: skip
    return diagnose_training(model, inputs, name=request.label, loss=loss, seed=seed, zero_init_asked=zero_init)


def _check_step_fits(request: Any, available: int | None) -> None:
    """Refuse, before allocating, a step whose parameters, gradients and saved tensors exceed the device's memory
    (measured on meta, as `flops --mode train` does)."""
    import dataclasses

    from resnet_cli.analysis.training import TrainSettings, training_report
    from resnet_cli.trace import ForwardPassFailed  # a UserError, named for the reader
    from resnet_cli.units import format_bytes, shape_text

    if available is None:
        return
    try:
        report = training_report(dataclasses.replace(request, device="meta"), TrainSettings())
    except (ForwardPassFailed, UserError):
        return  # the real step fails or finds the same, and that is the finding
    needed = report.memory.total_bytes
    if needed > available:
        raise UserError(
            f"--input {shape_text(request.input_shape)}: one training step needs {format_bytes(needed)} on "
            f"{request.device} (measured on meta), more than the {format_bytes(available)} available; use a smaller "
            f"batch or input"
        )


def diagnose_training(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    name: str = "model",
    loss: str = "ce",
    seed: int = 0,
    zero_init_asked: bool = False,
) -> TrainingDiagnosis:
    """One observed training step on `inputs` and what it shows; the model is left exactly as it was found."""
    check_loss(loss)
    run = run_step(model, inputs, loss, seed)
    ctx = _context(model, run, zero_init_asked)
    findings = diagnose(ctx)
    rows = _rows(ctx)
    layers = [
        ScaleRow(r.name, r.type, r.depth, ctx.stats(r).output_rms, ctx.stats(r).grad_rms, None)
        for r in run.trace.records
        if r.depth >= 1 and r.call_index == 0 and not r.is_disabled_option
    ]
    return TrainingDiagnosis(
        model=name,
        input_shape=tuple(inputs.shape),
        device=inputs.device.type,
        dtype=str(inputs.dtype).removeprefix("torch."),
        seed=seed,
        loss=run.loss_name,
        loss_value=run.loss,
        rows=rows,
        layers=layers,
        findings=findings,
        notes=_notes(ctx, findings),
    )


def _context(model: nn.Module, run: StepRun, zero_init_asked: bool) -> TrainingContext:
    trace = run.trace
    stages_named = set(stage_names(model) or [])
    modules = dict(model.named_modules())
    stages = tuple(r for r in trace.records if r.name in stages_named and r.call_index == 0 and not r.is_leaf)

    def is_block(record: Any) -> bool:  # layers of its own (two or more convs or linears): a stem's are single layers
        return sum(isinstance(m, WEIGHTED) for m in modules[record.name].modules()) >= 2

    if not stages:  # no stage names: the model's own containers of two or more blocks (`self.blocks = Sequential(...)`)
        stages = tuple(r for r in trace.records if r.depth == 1 and r.call_index == 0 and not r.is_leaf
                       and sum(map(is_block, _blocks_of(trace, r))) >= 2)  # fmt: skip
    blocks = tuple(b for s in stages for b in _blocks_of(trace, s) if is_block(b))
    adds = residual_adds(trace) if trace.ops else {}
    zero_weights = {p.module for p in run.params if p.name.endswith("weight") and p.all_zero}
    last_layers = _last_layers(trace, adds, modules)
    from resnet_cli.model import ResNet

    residual_expected = (
        isinstance(model, ResNet)
        or bool(adds)
        or any(_RESIDUAL_NAMES.search(type(m).__name__) for m in (model, *(modules[b.name] for b in blocks)))
        or any(SHORTCUT_NAMES.search(child) for b in blocks for child, _ in modules[b.name].named_children())
    )
    return TrainingContext(
        model=model,
        run=run,
        stages=stages,
        blocks=blocks,
        adds=adds,
        residual_expected=residual_expected,
        zero_init_asked=zero_init_asked,
        intended_zero=frozenset(name for name in last_layers.values() if name in zero_weights),
        last_layers=last_layers,
    )


def _last_layers(trace: Any, adds: dict, modules: dict[str, nn.Module]) -> dict[int, str]:
    """Per block with a residual add: the last conv or norm layer its main branch calls (the one zero-init residual
    zeroes; an SE module or drop-path after it does not change which)."""
    last: dict[int, str] = {}
    for order, add in adds.items():
        shortcut = add.shortcut_from
        for record in trace.records:
            if record.parent != order or (shortcut and (record.name == shortcut or record.name.startswith(shortcut + "."))):
                continue
            if isinstance(modules.get(record.name), (*WEIGHTED, *NORMS)) and record.name not in (None, ""):
                last[order] = record.name
    return last


def _blocks_of(trace: Any, stage: Any) -> list[Any]:
    """A stage's blocks: its child calls, or, when it wraps one container (WRN's `block1.layer`), that one's."""
    children = [r for r in trace.records if r.parent == stage.order and not r.is_disabled_option]
    while len(children) == 1 and children[0].type in ("Sequential", "ModuleList"):
        inner = [r for r in trace.records if r.parent == children[0].order and not r.is_disabled_option]
        if len(inner) < 2:
            break
        children = inner
    return children


def _rows(ctx: TrainingContext) -> list[ScaleRow]:
    rows = []
    for stage in ctx.stages:
        blocks = [b for b in ctx.blocks if b.parent == stage.order]
        shares = [s for s in (block_share(ctx, b) for b in blocks) if s is not None]
        stats = ctx.stats(stage)
        rows.append(ScaleRow(stage.name, stage.type, 1, stats.output_rms, stats.grad_rms,
                             sum(shares) / len(shares) if shares else None))  # fmt: skip
        for block in blocks:
            b = ctx.stats(block)
            rows.append(ScaleRow(block.name, block.type, 2, b.output_rms, b.grad_rms, block_share(ctx, block)))
    if not rows:  # no recognisable stages: the model's own calls
        for record in ctx.run.trace.records:
            if record.depth == 1 and record.call_index == 0 and not record.is_disabled_option:
                s = ctx.stats(record)
                rows.append(ScaleRow(record.name, record.type, 1, s.output_rms, s.grad_rms, block_share(ctx, record)))
    return rows


def _notes(ctx: TrainingContext, findings: list[Finding]) -> list[str]:
    notes = []
    params = {p.module: p for p in ctx.run.params if p.name.endswith("weight")}
    zeroed = sorted(n for n in ctx.intended_zero if n in params and params[n].all_zero)
    if zeroed and not any(f.kind == "zero_weights" for f in findings):
        notes.append(
            f"zero-initialised on purpose: the last layer of {len(zeroed)} residual blocks (zero_init_residual), so "
            "each block starts as the identity; the layers before it in the same block get a zero gradient at this "
            "first step, and learn from the second"
        )
    if frozen_prefix(ctx):
        frozen = sorted({p.module for p in ctx.run.params if not p.requires_grad}, key=[p.module for p in ctx.run.params].index)
        notes.append(f"{sum(not p.requires_grad for p in ctx.run.params)} parameters of the first modules are frozen "
                     f"(requires_grad=False: {', '.join(frozen[:4])}{' ...' if len(frozen) > 4 else ''}): "
                     "fine-tuning with a frozen backbone, taken as intended")  # fmt: skip
    notes.append("learning rates and anything else that needs more than one step are out of scope: no training loop runs")
    return notes


__all__ = ["DEFAULT_BATCH", "Finding", "ScaleRow", "TrainingDiagnosis", "debug_training_request", "diagnose_training"]
