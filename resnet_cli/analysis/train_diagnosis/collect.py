"""One real training step at initialisation, observed through the one tracer: activation statistics per module call,
the gradient reaching each call's output, each parameter's gradient, and the model put back exactly as it was.

The step is a forward pass with the model in training mode (as `model.train()` leaves it, overrides honoured) and a
backward pass of a loss against random targets. No optimizer runs: parameters never change. Buffers (batch norm's
running statistics), gradients and every module's mode are restored afterwards, also when the pass fails.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from resnet_cli.errors import UserError
from resnet_cli.trace import GradientCut, LayerRecord, ModelTrace, tensors_in, trace_model, untraced
from resnet_cli.units import shape_text

LOSSES = ("ce", "mse")
GATES = ("Sigmoid", "Hardsigmoid")  # outputs in [0, 1]: SE gates
SATURATION_MARGIN = 0.01  # a gate output below this or above 1 - this is saturated


@dataclass
class CallStats:
    """Real values of one module call: its first output's scale, and the gradient that reached it."""

    order: int
    output_rms: float | None = None
    input_rms: float | None = None
    zero_fraction: float | None = None  # of output elements exactly 0 (ReLU: dead units)
    saturated_fraction: float | None = None  # gates only: outputs within SATURATION_MARGIN of 0 or 1
    grad_rms: float | None = None  # of d loss / d output; None: no gradient reached it


@dataclass
class ParamStats:
    """One parameter at initialisation and after the backward pass."""

    name: str
    module: str  # the dotted name of the module that owns it
    shape: tuple[int, ...]
    requires_grad: bool
    std: float
    all_zero: bool
    grad: str  # "ok", "none" (.grad stayed None) or "zero" (every element 0)
    grad_rms: float


@dataclass
class StepRun:
    """What one observed training step saw."""

    trace: ModelTrace
    calls: dict[int, CallStats]
    params: list[ParamStats]
    training: dict[str, bool]  # every module's mode during the step (after model.train())
    loss_name: str
    loss: float | None
    cuts: list[GradientCut] = field(default_factory=list)
    error: BaseException | None = None  # the forward or backward pass failed
    backward_failed: bool = False  # the failure was in the backward pass


def _rms(t: torch.Tensor) -> float:
    """Root mean square, in float64 (float32 would overflow to inf on large finite activations)."""
    return float(t.detach().double().pow(2).mean().sqrt()) if t.numel() else 0.0


class _Statistics:
    """A TraceObserver: scale of every module call's input and output, and a hook for the gradient at its output."""

    def __init__(self) -> None:
        self.calls: dict[int, CallStats] = {}

    def on_start(self, record: LayerRecord, module: nn.Module, args: tuple) -> None:
        floats = [t for t in tensors_in(args) if t.is_floating_point()]
        with untraced():
            self.calls[record.order] = CallStats(record.order, input_rms=_rms(floats[0]) if floats else None)

    def on_finish(self, record: LayerRecord, module: nn.Module, args: tuple, output: Any) -> None:
        floats = [t for t in tensors_in(output) if t.is_floating_point()]
        if not floats:
            return
        out, stats = floats[0], self.calls[record.order]
        with untraced():
            detached = out.detach()
            stats.output_rms = _rms(detached)
            stats.zero_fraction = float((detached == 0).float().mean()) if out.numel() else None
            if type(module).__name__ in GATES:
                saturated = (detached < SATURATION_MARGIN) | (detached > 1 - SATURATION_MARGIN)
                stats.saturated_fraction = float(saturated.float().mean())
            if out.requires_grad:
                out.register_hook(lambda grad, stats=stats: self._gradient(stats, grad))

    @staticmethod
    def _gradient(stats: CallStats, grad: torch.Tensor) -> None:
        value = _rms(grad)
        # a module called twice adds up: keep the root of the sum of squares
        stats.grad_rms = value if stats.grad_rms is None else math.hypot(stats.grad_rms, value)


@contextmanager
def untouched(model: nn.Module) -> Iterator[None]:
    """Put the model back as it was: every parameter's and buffer's values (batch norm statistics, a max-norm
    rescaling forward does in place) and the tensor each module attribute names, gradients, requires_grad flags,
    modes, and torch's random number generators."""
    tensors = [(m, name, t, t.detach().clone()) for m in model.modules()
               for name, t in (*m._parameters.items(), *m._buffers.items()) if t is not None]  # fmt: skip
    grads = [(p, p.grad, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    try:
        yield
    finally:
        with torch.no_grad():
            for module, name, tensor, saved in tensors:
                tensor.copy_(saved)
                (module._parameters if name in module._parameters else module._buffers)[name] = tensor
        for parameter, grad, flag in grads:
            parameter.grad = grad
            parameter.requires_grad_(flag)
        for module, mode in modes:
            module.training = mode
        torch.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def loss_of(output: Any, loss: str, generator: torch.Generator) -> tuple[torch.Tensor, str]:
    """The step's loss and its description: cross-entropy against random labels for N x classes logits, or the mean
    squared error against a random target of the output's shape."""
    floats = [t for t in tensors_in(output) if t.is_floating_point()]
    if not floats:
        raise UserError(f"debug-training: the model returns {type(output).__name__} with no floating-point tensor to "
                        f"take a loss of")  # fmt: skip
    out = floats[0]
    if loss == "ce":
        if out.dim() != 2 or out.shape[1] < 2:
            raise UserError(
                f"--loss ce needs N x classes logits, but the model returns {shape_text(out.shape)}; use "
                f"--loss mse (a random target of that shape)"
            )
        # every N x classes output (an auxiliary head's too) gets a cross-entropy term, as training them would
        logits = [t for t in floats if t.dim() == 2 and t.shape[0] == out.shape[0] and t.shape[1] >= 2]
        total = sum(F.cross_entropy(t.float(), torch.randint(0, t.shape[1], (t.shape[0],), generator=generator)
                                    .to(t.device)) for t in logits)  # fmt: skip
        heads = "" if len(logits) == 1 else f", summed over {len(logits)} heads"
        return total, f"cross-entropy against random labels over {out.shape[1]} classes{heads}"
    total = sum(F.mse_loss(t, torch.randn(t.shape, generator=generator).to(device=t.device, dtype=t.dtype))
                for t in floats)  # fmt: skip
    what = "a random target" if len(floats) == 1 else f"random targets, summed over the {len(floats)} outputs"
    return total, f"mean squared error against {what}"


def run_step(model: nn.Module, inputs: torch.Tensor, loss: str, seed: int) -> StepRun:
    """Run one observed forward and backward pass in training mode; the model is left exactly as it was found."""
    generator = torch.Generator().manual_seed(seed)
    statistics = _Statistics()
    outputs: list[Any] = []
    with untouched(model):
        model.train()  # as a training loop would: a user's train() override (frozen BN) is honoured
        training = {name: m.training for name, m in model.named_modules()}
        for parameter in model.parameters():
            parameter.grad = None
        with torch.enable_grad():
            trace = trace_model(model, inputs, train=None, autograd=True, observers=[statistics], locate=True,
                                keep_output=outputs)  # fmt: skip
        error, value, loss_name, backward_failed = trace.error, None, "", False
        if error is None:
            try:
                with torch.enable_grad():  # also when the caller is under torch.no_grad()
                    step_loss, loss_name = loss_of(outputs[0], loss, generator)
                    value = float(step_loss.detach())
                    step_loss.backward()
            except UserError:
                raise
            except (Exception, SystemExit) as exc:  # the backward pass failed: a finding, not resnet-cli's exit
                error = exc if isinstance(exc, Exception) else RuntimeError(f"backward called sys.exit({exc.code!r})")
                backward_failed = True
        params = [_param_stats(name, p) for name, p in model.named_parameters()]
    return StepRun(
        trace=trace,
        calls=statistics.calls,
        params=params,
        training=training,
        loss_name=loss_name,
        loss=value,
        cuts=list(trace.gradient_cuts),
        error=error,
        backward_failed=backward_failed,
    )


def _param_stats(name: str, parameter: torch.Tensor) -> ParamStats:
    grad = parameter.grad
    values = parameter.detach().float()
    if grad is None:
        state, grad_rms = "none", 0.0
    else:
        grad_rms = _rms(grad)
        state = "zero" if not bool(grad.detach().ne(0).any()) else "ok"
    return ParamStats(
        name=name,
        module=name.rpartition(".")[0],
        shape=tuple(parameter.shape),
        requires_grad=parameter.requires_grad,
        std=float(values.std()) if values.numel() > 1 else 0.0,
        all_zero=not bool(values.ne(0).any()),
        grad=state,
        grad_rms=grad_rms,
    )
