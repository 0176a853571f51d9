"""Conv+BN fusion: every BatchNorm whose input is a convolution's output folded into that convolution.

Pairs are found by data flow in the tracer's records, never by module order: a BatchNorm module call whose only
input was made by the convolution operator of an nn.Conv1d/2d/3d module call, where nothing else reads (or returns)
that output and each of the two modules is called once. Folding uses the running statistics, so the fused model
computes what the original computes in eval mode (in training mode BatchNorm normalises with each batch's own
statistics, which no fixed weight can hold):

    W' = W x gamma / sqrt(var + eps)        b' = (b - mean) x gamma / sqrt(var + eps) + beta

The BatchNorm is replaced by nn.Identity wherever it is registered. On meta only the structure changes (for
counting); on a real device the weights are folded in float64 and stored in the convolution's dtype.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize

from resnet_cli.errors import UserError
from resnet_cli.trace import LayerRecord, ModelTrace, parameter_count, tensors_in, trace_model
from resnet_cli.units import first_line

# The aten operators a batch norm runs as (eval, training, and the cuDNN / MIOpen kernels).
BATCH_NORM_OPS = frozenset({
    "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional", "cudnn_batch_norm", "miopen_batch_norm",
})  # fmt: skip
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_INSTANCE_NORM_CALLS = frozenset({"F.instance_norm", "torch.instance_norm"})


@dataclass(frozen=True)
class FusedPair:
    """A BatchNorm folded into the convolution whose output it normalised."""

    conv: str  # dotted module names
    bn: str
    channels: int
    bias_added: bool  # the convolution had no bias and got one (out_channels parameters)


@dataclass(frozen=True)
class LeftNorm:
    """A batch norm left as it is, and why, in words."""

    name: str  # the BatchNorm module's name; for a functional batch norm, "<module>: F.batch_norm"
    reason: str


@dataclass
class FusionResult:
    """What fusion did: the folded pairs, the batch norms left as they are, and the parameters before and after."""

    fused: list[FusedPair] = field(default_factory=list)
    left: list[LeftNorm] = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0


# The check of a really fused model: the fold is exact in real arithmetic (in float64 fused and unfused outputs agree
# to 1e-12 of the largest output, preact_resnet1001 included), so what is left is rounding. The fused model may
# differ from the unfused one by ROUNDING_FACTOR x the unfused model's own rounding error (its distance from the same
# model run in float64), plus EPS_FACTOR x the dtype's eps x the largest output for outputs rounding leaves exact.
# Measured on seven presets in float32, float16 and bfloat16, the difference was 0.7 to 1.6 x that rounding error.
ROUNDING_FACTOR = 4
EPS_FACTOR = 8


@dataclass
class FusionCheck:
    """A model really fused, and how far its outputs moved; amounts are max absolute differences over every output
    element, in the units of the output."""

    fusion: FusionResult
    dtype: str  # the model's dtype (of its first floating-point output)
    max_abs_diff: float  # |fused - unfused|
    rounding_error: float  # |unfused - the unfused model run in float64|: what the dtype's rounding alone moves
    max_abs_output: float  # the largest |output| of the float64 run
    tolerance: float  # the largest max_abs_diff allowed: ROUNDING_FACTOR x rounding_error + EPS_FACTOR x eps x output


def fuse_and_check(model: nn.Module, inputs: torch.Tensor) -> FusionCheck:
    """Fuse `model` (on a real device) in place, after checking on a copy whose batch norms have random statistics
    and affine parameters that the fused copy's outputs on `inputs` equal the unfused copy's within the tolerance
    above; a UserError when they do not, or when the model cannot run to be checked.

    Freshly initialised batch norms (mean 0, variance 1, weight 1, bias 0) are the identity in eval mode, so a
    check on them could not tell a right fold from a wrong one; the copy's random statistics can."""
    probe = copy.deepcopy(model)
    randomise_norms(probe)
    check = _fuse_and_compare(probe, inputs)
    del probe
    for module in model.modules():
        module.training = False
    trace = trace_model(model, (inputs,))
    trace.raise_for_failure()
    return dataclasses.replace(check, fusion=fuse_conv_bn(model, trace))


def randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Give every batch norm random running statistics and affine parameters (in place)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
                for tensor, low, high in ((module.running_mean, -0.5, 0.5), (module.running_var, 0.5, 2.0)):
                    tensor.copy_(torch.empty(tensor.shape).uniform_(low, high, generator=generator))
                if module.affine:
                    for tensor, low, high in ((module.weight, 0.5, 1.5), (module.bias, -0.5, 0.5)):
                        tensor.copy_(torch.empty(tensor.shape).uniform_(low, high, generator=generator))


def _fuse_and_compare(model: nn.Module, inputs: torch.Tensor) -> FusionCheck:
    for module in model.modules():
        module.training = False
    output = _RootOutput()
    trace = trace_model(model, (inputs,), observers=[output])
    trace.raise_for_failure()
    unfused = tensors_in(output.value)
    exact = _float64_outputs(model, inputs)
    fusion = fuse_conv_bn(model, trace)
    try:
        with torch.no_grad():
            fused = tensors_in(model(inputs))
    except Exception as exc:  # the model relied on something fusion changed
        raise UserError(f"--fuse-bn: the fused model fails where the unfused one runs: {first_line(exc)}") from None
    if not len(unfused) == len(exact) == len(fused):
        raise UserError(f"--fuse-bn: the fused model returns {len(fused)} tensors, the unfused one {len(unfused)}")
    if not all(torch.isfinite(t).all() for t in unfused if t.is_floating_point()):
        raise UserError("--fuse-bn: the unfused model's output is not finite at this input, so there is nothing to "
                        "compare the fused model with; use a smaller input or --dtype float32")  # fmt: skip
    dtype = next((t.dtype for t in unfused if t.is_floating_point()), torch.float32)
    scale = max((_max_abs(t) for t in exact), default=0.0)
    rounding = max((_max_abs_diff(u, e) for u, e in zip(unfused, exact, strict=True)), default=0.0)
    check = FusionCheck(
        fusion=fusion,
        dtype=str(dtype).removeprefix("torch."),
        max_abs_diff=max((_max_abs_diff(f, u) for f, u in zip(fused, unfused, strict=True)), default=0.0),
        rounding_error=rounding,
        max_abs_output=scale,
        tolerance=ROUNDING_FACTOR * rounding + EPS_FACTOR * torch.finfo(dtype).eps * scale,
    )
    if not check.max_abs_diff <= check.tolerance:
        raise UserError(
            f"--fuse-bn: the fused model's outputs differ from the unfused model's by up to {check.max_abs_diff:.3g} "
            f"where {check.dtype} rounding allows {check.tolerance:.3g}; the model uses its BatchNorms in a way "
            f"fusion cannot see, run it without --fuse-bn"
        )
    return check


class _RootOutput:
    """A trace observer that keeps what the model returned."""

    value: Any = None

    def on_start(self, record: LayerRecord, module: nn.Module, args: tuple) -> None:
        pass

    def on_finish(self, record: LayerRecord, module: nn.Module, args: tuple, output: Any) -> None:
        if record.parent is None:
            self.value = output


def _float64_outputs(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of a float64 copy of the model (the reference rounding is measured against)."""
    try:
        with torch.no_grad():
            return tensors_in(copy.deepcopy(model).to(torch.float64)(inputs.to(torch.float64)))
    except Exception as exc:  # a model that fixes its own dtypes, or a device without float64
        raise UserError(
            f"--fuse-bn: the check of the fused model runs a float64 copy of the model to measure rounding, and it "
            f"fails: {first_line(exc)}"
        ) from None


def _max_abs(tensor: torch.Tensor) -> float:
    return float(tensor.detach().abs().max()) if tensor.numel() else 0.0


def _max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    if not a.numel():
        return 0.0
    return float((a.detach().double() - b.detach().double()).abs().nan_to_num(nan=float("inf")).max())


def plan_fusion(model: nn.Module, trace: ModelTrace) -> FusionResult:
    """The conv->BN pairs of `model` that can be folded, found in `trace` (one finished pass of `model`), and every
    batch norm that cannot, with the reason. Changes nothing."""
    modules = dict(model.named_modules())
    calls = Counter(r.name for r in trace.records)
    readers = _readers(trace)
    returned = set(trace.records[0].output_ops) if trace.records else set()
    shared = _shared_parameters(model)
    result = FusionResult(params_before=parameter_count(model))
    seen: set[str] = set()
    for record in trace.records:
        bn = modules.get(record.name)
        if record.call_index or not isinstance(bn, _BatchNorm) or record.name in seen:
            continue
        seen.add(record.name)
        conv_record, reason = _fusable(trace, modules, record, bn, calls, readers, returned, shared)
        if conv_record is None:
            result.left.append(LeftNorm(record.name, reason))
            continue
        conv = modules[conv_record.name]
        result.fused.append(FusedPair(conv_record.name, record.name, conv.out_channels, conv.bias is None))
    result.left += _functional_batch_norms(trace, modules)
    result.params_after = (
        result.params_before
        + sum(p.channels for p in result.fused if p.bias_added)
        - sum(parameter_count(modules[p.bn]) for p in result.fused)
    )
    return result


def fuse_conv_bn(model: nn.Module, trace: ModelTrace) -> FusionResult:
    """Fold every pair `plan_fusion` finds into its convolution and replace the BatchNorm by nn.Identity, in place;
    the model is left in eval mode, the only mode in which it equals the original."""
    result = plan_fusion(model, trace)
    modules = dict(model.named_modules())
    places = _registrations(model)
    for pair in result.fused:
        fold_into_conv(modules[pair.conv], modules[pair.bn])  # type: ignore[arg-type]
        identity = nn.Identity()
        for parent, attribute in places[id(modules[pair.bn])]:  # every name it is registered under
            setattr(parent, attribute, identity)
    for module in model.modules():
        module.training = False  # as the tracer does: not model.eval(), a user's override may have side effects
    result.params_after = parameter_count(model)
    return result


def fold_into_conv(conv: _ConvNd, bn: _BatchNorm) -> None:
    """conv's weight and bias (created when it has none) take bn's eval-mode affine map: W' = W x s,
    b' = (b - mean) x s + beta, with s = gamma / sqrt(var + eps), computed in float64. On meta, where there are no
    values, only the bias is created."""
    weight = conv.weight
    had_bias = conv.bias is not None
    if not had_bias:
        conv.bias = nn.Parameter(
            torch.zeros(conv.out_channels, device=weight.device, dtype=weight.dtype), requires_grad=weight.requires_grad
        )
    if weight.is_meta:
        return
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)  # type: ignore[union-attr]
        shift = -bn.running_mean.double()  # type: ignore[union-attr]
        if bn.affine:
            scale = scale * bn.weight.double()
        if had_bias:
            shift = shift + conv.bias.double()  # type: ignore[union-attr]
        bias = shift * scale + (bn.bias.double() if bn.affine else 0.0)
        weight.copy_((weight.double() * scale.reshape(-1, *([1] * (weight.dim() - 1)))).to(weight.dtype))
        conv.bias.copy_(bias.to(conv.bias.dtype))


def _fusable(
    trace: ModelTrace,
    modules: dict[str, nn.Module],
    record: LayerRecord,
    bn: _BatchNorm,
    calls: Counter[str],
    readers: dict[int, list[int]],
    returned: set[int | None],
    shared: dict[int, str],
) -> tuple[LayerRecord | None, str]:
    """(the conv call `record`'s BatchNorm folds into, "") or (None, why not)."""
    if type(bn).forward not in (_BatchNorm.forward, nn.SyncBatchNorm.forward):
        return None, f"is a {type(bn).__name__} whose forward is its own, not BatchNorm's"
    if bn.running_mean is None or bn.running_var is None:
        return None, (
            "has no running statistics (track_running_stats=False): it normalises with each batch's own "
            "statistics, in eval too"
        )
    if calls[record.name] > 1:
        return None, f"is called {calls[record.name]} times: folded into one convolution it would change the others"
    if _has_hooks(bn):
        return None, "has forward hooks, which replacing it by nn.Identity would drop"
    if len(record.input_ops) != 1:
        return None, f"takes {len(record.input_ops)} tensors, not one feature map"
    source = record.input_ops[0]
    if source is None or source < 0:
        what = "the model's input" if source is not None else "not made by an operator of the forward pass"
        return None, f"its input is {what}, not a convolution's output"
    op = trace.ops[source]
    if op.op != "convolution":
        return None, f"its input is made by {_made_where(trace, source)}, not by a convolution"
    conv_record = trace.records[op.module] if op.module is not None else None
    conv = modules.get(conv_record.name) if conv_record is not None else None
    if conv_record is None or not isinstance(conv, _ConvNd) or conv_record.output_ops != (source,):
        return None, f"its input is made by {_made_where(trace, source)}, not by an nn.Conv module's"
    name = conv_record.name
    if conv.transposed or not isinstance(conv, _CONVS):
        return None, f"follows {name} ({type(conv).__name__}), a transposed convolution"
    base = next(c for c in _CONVS if isinstance(conv, c))
    if type(conv).forward is not base.forward or type(conv)._conv_forward is not base._conv_forward:
        return None, f"follows {name}, a {type(conv).__name__} whose forward is its own, not {base.__name__}'s"
    if calls[name] > 1:
        return None, f"follows {name}, which is called {calls[name]} times"
    if parametrize.is_parametrized(conv) or _has_hooks(conv):
        return None, f"follows {name}, whose weight is computed when it runs (a parametrization or forward hook)"
    for tensor in (conv.weight, conv.bias):
        if tensor is not None and id(tensor) in shared:
            return None, f"follows {name}, whose parameters are shared with {shared[id(tensor)]}"
    if conv.out_channels != bn.num_features:
        return None, f"has {bn.num_features} features, but {name} makes {conv.out_channels} channels"
    others = [r for r in readers.get(source, []) if not record.ops_start <= r < record.ops_end]
    if others:
        return None, f"{name}'s output is also read by {_made_where(trace, others[0])}"
    if source in returned:
        return None, f"{name}'s output is also an output of the model"
    return conv_record, ""


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


def _readers(trace: ModelTrace) -> dict[int, list[int]]:
    """Operator order -> the operators that read its output."""
    found: dict[int, list[int]] = {}
    for op in trace.ops:
        for source in set(op.input_from):
            if source is not None and source >= 0:
                found.setdefault(source, []).append(op.order)
    return found


def _shared_parameters(model: nn.Module) -> dict[int, str]:
    """id of every parameter registered under more than one name -> its other names, for the reason text."""
    names: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    return {key: ", ".join(found) for key, found in names.items() if len(found) > 1}


def _made_where(trace: ModelTrace, op_order: int) -> str:
    """An operator and, by type, where it ran: 'aten.relu_ (a ReLU)', 'aten.add in a Bottleneck's own forward'."""
    op = trace.ops[op_order]
    record = trace.records[op.module] if op.module is not None else None
    if record is None or record.parent is None:
        return f"aten.{op.op} in the model's own forward"
    if record.is_leaf:
        return f"aten.{op.op} (a {record.type})"
    return f"aten.{op.op} in a {record.type}'s own forward"


def _functional_batch_norms(trace: ModelTrace, modules: dict[str, nn.Module]) -> list[LeftNorm]:
    """Batch norms run by the model's own forward code (F.batch_norm), not by a BatchNorm module: nothing to replace."""
    found: list[LeftNorm] = []
    per_module: Counter[str] = Counter()
    for op in trace.ops:
        if op.op not in BATCH_NORM_OPS:
            continue
        record = trace.records[op.module] if op.module is not None else None
        owner = modules.get(record.name) if record is not None else None
        if isinstance(owner, (_BatchNorm, nn.modules.instancenorm._InstanceNorm)):
            continue
        function = trace.functions[op.function].name if op.function is not None else f"aten.{op.op}"
        if function in _INSTANCE_NORM_CALLS:
            continue
        where = record.name if record is not None and record.name else "(model)"
        per_module[where] += 1
        call = f" (call {per_module[where]})" if per_module[where] > 1 else ""
        if record is not None and record.is_leaf and "BatchNorm" in record.type:
            reason = f"a {record.type} the model calls without registering it as a submodule: nothing to replace"
        else:
            reason = "a functional batch norm in the model's own forward code, not a BatchNorm module to replace"
        found.append(LeftNorm(f"{where}: {function}{call}", reason))
    return found


def _registrations(model: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """id of every submodule -> each (parent, attribute) it is registered under (a module may have several)."""
    found: dict[int, list[tuple[nn.Module, str]]] = {}
    for parent in model.modules():
        for attribute, child in parent._modules.items():
            if child is not None:
                found.setdefault(id(child), []).append((parent, attribute))
    return found
