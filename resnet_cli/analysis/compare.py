"""Side-by-side costs: two residual blocks (BasicBlock vs Bottleneck) or two whole networks, presets or the user's
own, and whether two networks are the same architecture (first structural divergence, state_dict fit).

MACs come from the counting engine (`resnet_cli.analysis.counting`), never from a formula table here.
Blocks are counted per image (batch 1) on the meta device; `--time` runs them for real.
"""

from __future__ import annotations

import difflib
import functools
import statistics
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from resnet_cli.analysis.bench import time_interleaved
from resnet_cli.analysis.counting import build_and_count, count_traced
from resnet_cli.analysis.mac_rules import VIEWS_AND_ALLOCATION
from resnet_cli.analysis.receptive_field import UNKNOWN, ReceptiveFields, receptive_fields
from resnet_cli.analysis.stages import count_by_stage, stage_names
from resnet_cli.errors import SpecError, UserError
from resnet_cli.model import BasicBlock, Bottleneck, StateDictFit, instantiate, resolve_device, state_dict_fit
from resnet_cli.spec import DEVICES, LIMITS, PRESETS, ModelRequest, ResNetSpec, parse_model_operand, request_from_flags
from resnet_cli.trace import ForwardPassFailed, LayerRecord, ModelTrace, TensorInfo, make_input, parameter_count
from resnet_cli.units import first_line, shape_text
from resnet_cli.user_model import is_user_model_reference, user_model_request

BLOCK_KINDS = ("basic", "bottleneck", "se-basic", "se-bottleneck")
WARMUP_RUNS = 3
TIMED_RUNS = 20


def is_block_operand(text: str) -> bool:
    """Whether a `compare` operand names a block kind rather than a network."""
    return text.strip().lower() in BLOCK_KINDS


# ---------------------------------------------------------------- blocks


@dataclass(frozen=True)
class BlockSetup:
    """The shared conditions both blocks are compared under."""

    channels: int = 256  # input and output channels of both blocks
    spatial: int = 56  # input feature map is spatial x spatial
    stride: int = 1
    expansion: int = 4  # bottleneck inner width = channels / expansion
    groups: int = 1  # bottleneck 3x3 conv only
    width_per_group: int = 64  # bottleneck 3x3 conv only
    se_ratio: int = 16

    def __post_init__(self) -> None:
        for flag, value in (
            ("--channels", self.channels), ("--spatial", self.spatial), ("--expansion", self.expansion),
            ("--groups", self.groups), ("--width-per-group", self.width_per_group), ("--se-ratio", self.se_ratio),
        ):  # fmt: skip
            if value < 1:
                raise SpecError(f"{flag} {value} must be a positive integer")
        if self.stride not in (1, 2):
            raise SpecError(f"--stride {self.stride} is not valid; use 1 or 2")
        for flag, value, key in (
            ("--channels", self.channels, "width"), ("--spatial", self.spatial, "spatial"),
            ("--expansion", self.expansion, "expansion"), ("--groups", self.groups, "groups"),
            ("--width-per-group", self.width_per_group, "width_per_group"), ("--se-ratio", self.se_ratio, "se_ratio"),
        ):  # fmt: skip
            if value > LIMITS[key]:
                raise SpecError(f"{flag} {value} is above the limit of {LIMITS[key]:,}")

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.channels, self.spatial, self.spatial)


@dataclass
class BlockLayer:
    """One convolution inside a block, with its cost from the counting engine."""

    name: str  # module path inside the block: conv1, downsample.0, se.fc1
    kernel: tuple[int, int]
    in_channels: int
    out_channels: int
    groups: int
    stride: int
    output_shape: tuple[int, ...]
    params: int
    macs: int

    @property
    def output_pixels(self) -> int:
        return self.output_shape[2] * self.output_shape[3]


@dataclass
class BlockCost:
    """One block's layers and totals, per image."""

    kind: str
    spec: ResNetSpec
    layers: list[BlockLayer]
    params: int
    conv_macs: int  # every convolution in the block (main path, projection shortcut, SE)
    other_macs: dict[str, int]  # the engine's other operators (fvcore convention), e.g. batch_norm
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    activation_bytes: int  # outputs newly made by leaf modules in one forward pass (float32)
    latency_ms: float | None = None

    @property
    def output_pixels(self) -> int:
        return self.output_shape[2] * self.output_shape[3]

    @property
    def macs_per_pixel(self) -> float:
        """Convolution MACs per pixel of the block's output (conv_macs / output H x W)."""
        return self.conv_macs / self.output_pixels


@dataclass
class Timing:
    """How latency was measured."""

    device: str
    batch: int
    warmup: int = WARMUP_RUNS
    runs: int = TIMED_RUNS


@dataclass
class BlockComparison:
    """Two blocks under one BlockSetup; the second is compared against the first."""

    setup: BlockSetup
    blocks: list[BlockCost]
    timing: Timing | None = None


def block_spec(kind: str, setup: BlockSetup) -> ResNetSpec:
    """A one-stage spec whose single block has `setup.channels` in and out channels."""
    kind = kind.strip().lower()
    if kind not in BLOCK_KINDS:
        raise SpecError(f"block {kind!r} is not one of {', '.join(BLOCK_KINDS)}")
    se = kind.startswith("se-")
    if kind.removeprefix("se-") == "basic":
        return ResNetSpec(block="basic", layers=(1,), widths=(setup.channels,), se=se, se_ratio=setup.se_ratio)
    if setup.channels % setup.expansion:
        raise SpecError(
            f"--channels {setup.channels} --expansion {setup.expansion}: the bottleneck's inner width C/E must be "
            f"a whole number; use channels divisible by {setup.expansion}"
        )
    try:
        return ResNetSpec(
            block="bottleneck", layers=(1,), widths=(setup.channels // setup.expansion,), expansion=setup.expansion,
            groups=setup.groups, width_per_group=setup.width_per_group, se=se, se_ratio=setup.se_ratio,
        )  # fmt: skip
    except SpecError as exc:
        raise SpecError(f"{kind} block with --channels {setup.channels} --expansion {setup.expansion}: {exc}") from None


def build_block(kind: str, setup: BlockSetup, device: str = "meta") -> nn.Module:
    """The block `kind` as an nn.Module on `device`, built by the same classes as the networks."""
    spec = block_spec(kind, setup)
    args = dict(in_ch=setup.channels, planes=spec.stage_widths[0], stride=setup.stride, dilation=1, drop_path=0.0)
    with torch.device(device):
        if spec.block == "basic":
            return BasicBlock(spec, **args)
        return Bottleneck(spec, stage=0, **args)


def block_cost(kind: str, setup: BlockSetup) -> BlockCost:
    """Layers, params, MACs (counting engine, fast, meta device) and activation memory of one block per image."""
    block = build_block(kind, setup)
    trace, count = count_traced(block, (make_input(setup.input_shape, "meta"),), counter="fast")
    modules = dict(block.named_modules())
    layers = []
    for record in trace.first_calls():
        module = modules.get(record.name)
        if isinstance(module, nn.Conv2d):
            layers.append(
                BlockLayer(
                    name=record.name,
                    kernel=tuple(module.kernel_size),
                    in_channels=module.in_channels,
                    out_channels=module.out_channels,
                    groups=module.groups,
                    stride=module.stride[0],
                    output_shape=record.output_shape,
                    params=record.params,
                    macs=count.by_module_and_operator.get(record.name, {}).get("conv", 0),
                )
            )
    other = {op: macs for op, macs in count.by_operator.items() if op != "conv"}
    return BlockCost(
        kind=kind.strip().lower(),
        spec=block_spec(kind, setup),
        layers=layers,
        params=count.params,
        conv_macs=count.by_operator.get("conv", 0),
        other_macs=other,
        input_shape=setup.input_shape,
        output_shape=trace.records[0].output_shape,
        activation_bytes=trace.activation_bytes,
    )


def compare_blocks(
    kinds: tuple[str, str], setup: BlockSetup, *, time_device: str | None = None, batch: int = 1,
    runs: int = TIMED_RUNS, warmup: int = WARMUP_RUNS,
) -> BlockComparison:  # fmt: skip
    """Both blocks' costs; with `time_device`, also their median forward latency there at `batch`."""
    blocks = [block_cost(kind, setup) for kind in kinds]
    timing = None
    if time_device is not None:
        timing = Timing(device=_timing_device(time_device), batch=_check_batch(batch), warmup=warmup, runs=runs)
        modules = [build_block(cost.kind, setup, timing.device) for cost in blocks]
        shape = (batch, setup.channels, setup.spatial, setup.spatial)
        latencies = median_latencies_ms(modules, [shape, shape], timing)
        for cost, latency in zip(blocks, latencies, strict=True):
            cost.latency_ms = latency
    return BlockComparison(setup=setup, blocks=blocks, timing=timing)


def median_latencies_ms(modules: list[nn.Module], input_shapes: list[tuple[int, ...]], timing: Timing) -> list[float]:
    """Median wall time of one forward pass of each module in ms, eval mode, no autograd.

    The modules run in turn (A, B, A, B, ...) after warm-up, so load from other processes hits both alike.
    """
    inputs = [make_input(shape, timing.device) for shape in input_shapes]
    sides = "AB" if len(modules) == 2 else [str(i + 1) for i in range(len(modules))]
    for module in modules:
        module.eval()
    steps = [
        functools.partial(_timed_forward, module, x, side, timing.device)
        for module, x, side in zip(modules, inputs, sides, strict=True)
    ]
    with torch.no_grad():
        times = time_interleaved(steps, timing.device, timing.runs, warmup=timing.warmup)
    return [statistics.median(t) for t in times]


def _timed_forward(module: nn.Module, x: torch.Tensor, side: str, device: str) -> None:
    """One timed forward pass; a failure of the model's own code (an exception, a sys.exit) is one line."""
    try:
        module(x)
    except (Exception, SystemExit) as exc:
        if isinstance(exc, (UserError, MemoryError)) or type(exc).__name__ == "OutOfMemoryError":
            raise
        what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else (
            first_line(exc))  # fmt: skip
        raise UserError(f"--time: {side}'s forward pass fails on {device}: {what}; run `resnet-cli debug-shapes "
                        f"MODEL --device {device}` for a diagnosis") from None


def _timing_device(device: str) -> str:
    if device not in DEVICES:
        raise SpecError(f"--device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "meta":
        raise UserError("--time needs a real device: use --device cpu or --device cuda (meta only computes shapes)")
    resolve_device(device)
    return device


def _check_batch(batch: int) -> int:
    if batch < 1:
        raise SpecError(f"--batch {batch} must be a positive integer")
    if batch > LIMITS["batch"]:
        raise SpecError(f"--batch {batch} is above the limit of {LIMITS['batch']:,}")
    return batch


# ---------------------------------------------------------------- networks

SHORTCUT_WORDS = ("downsample", "shortcut", "skip", "proj")  # how module paths name a block's shortcut branch
POOL_ATTRIBUTES = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "count_include_pad", "output_size")


@dataclass
class BlockSide:
    """One block of one network: a child of a stage module (layer1.0, layer1.1, ...)."""

    name: str
    type: str
    output_shape: tuple[int, ...] | None
    params: int
    macs: int  # fvcore convention
    macs_conv_linear: int


@dataclass
class StageSide:
    """One stage of one network."""

    name: str  # stem, layer1..N, head (or a top-level child of a model without stages)
    output_shape: tuple[int, ...] | None
    blocks: list[BlockSide] | None  # None for stem, head and rows that are not stages
    params: int
    macs: int  # fvcore convention
    macs_conv_linear: int
    modules: list[str] = field(default_factory=list)  # the model's calls grouped here (stem: conv1, bn1, ...)
    receptive_field: tuple[int, int] | None = None  # of the stage's output; None when global or not followed
    effective_stride: tuple[int, int] | None = None


@dataclass(frozen=True)
class LayerSide:
    """A parameterised leaf module or pooling layer, as the structural comparison walks them in call order."""

    name: str
    type: str
    attributes: tuple[tuple[str, Any], ...]  # conv: kernel, stride, ..., bias; BN: num_features; Linear: features
    output_shape: tuple[int, ...] | None


@dataclass
class NetworkCost:
    """One network's stages, totals, and what its structure is compared by."""

    label: str  # the operand as typed, e.g. resnet50[se=true] or my.py:resnet[num_classes=10]
    request: Any  # ModelRequest or UserModelRequest
    stages: list[StageSide]
    params: int
    macs: int  # fvcore convention (conv, linear, batch norm, adaptive avg pool)
    macs_conv_linear: int
    activation_bytes: int
    engine: str
    acts: int = 0  # output elements of conv and linear layers (MacCount.acts)
    output_stride: int | None = None  # the backbone's effective stride (analysis.receptive_field)
    receptive_field: tuple[int, int] | str | None = None  # the backbone's last feature map's; "global" after an SE gate
    layers: list[LayerSide] = field(default_factory=list)
    units: list[OperatorUnit] = field(default_factory=list)  # what each block (or call) computes, in order
    state_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)  # state_dict key -> shape
    latency_ms: float | None = None

    @property
    def num_blocks(self) -> int | None:
        counts = [len(s.blocks) for s in self.stages if s.blocks is not None]
        return sum(counts) if counts else None


@dataclass(frozen=True)
class OperatorUnit:
    """The operators one block computes (a stage's child; else one call the model makes, or one torch call in its
    own forward), as a multiset of (aten operator, output shapes, non-tensor arguments): a residual add, an
    activation or a pooling window that forward code adds outside any layer shows here. Views and allocations are
    left out; in-place and out-of-place forms (relu_, relu) are one operator."""

    name: str
    operators: tuple[tuple[tuple[Any, ...], int], ...]  # sorted (key, calls)


def operator_units(trace: ModelTrace, stages: list[str]) -> list[OperatorUnit]:
    """The model's blocks (children of stage calls), other calls and own torch calls, each with its operators."""
    unit_of: dict[int, tuple[str, str]] = {}  # record order -> (unit key, unit name)
    for record in trace.records:
        if record.depth <= 1:
            unit_of[record.order] = (f"m{record.order}", record.name)
        elif record.depth == 2 and trace.records[record.parent].name in stages:
            unit_of[record.order] = (f"m{record.order}", record.name)
        else:
            unit_of[record.order] = unit_of[record.parent]
    units: dict[str, tuple[str, Counter]] = {}
    for op in trace.ops:
        if op.op in VIEWS_AND_ALLOCATION or op.module is None:
            continue
        name = op.op.rstrip("_") if not op.op.startswith("_") else op.op  # relu_ and relu are one operator
        if trace.records[op.module].depth == 0 and op.function is not None:
            key, unit = f"f{op.function}", trace.functions[op.function].name
        else:
            key, unit = unit_of[op.module]
        settings = tuple(_hashable(a) for a in op.args if not _is_tensor_info(a))
        units.setdefault(key, (unit, Counter()))[1][(name, op.output_shapes, settings)] += 1
    return [OperatorUnit(unit, tuple(sorted(ops.items(), key=repr))) for unit, ops in units.values()]


def _is_tensor_info(value: Any) -> bool:
    return isinstance(value, TensorInfo) or (isinstance(value, tuple) and any(isinstance(v, TensorInfo) for v in value))


def _hashable(value: Any) -> Any:
    return tuple(_hashable(v) for v in value) if isinstance(value, (list, tuple)) else value if isinstance(
        value, (int, float, bool, str, type(None))) else repr(value)  # fmt: skip


def first_operator_divergence(a: list[OperatorUnit], b: list[OperatorUnit]) -> Divergence | None:
    """The first block (by position) whose operators differ: which operator, on which output shape, how often."""
    for index in range(max(len(a), len(b))):
        ua, ub = (side[index] if index < len(side) else None for side in (a, b))
        ops_a, ops_b = (dict(u.operators) if u else {} for u in (ua, ub))
        if ops_a == ops_b:
            continue
        differences = [
            (f"aten.{key[0]} -> {shape_text(key[1][0]) if key[1] else '()'} calls", ops_a.get(key, 0), ops_b.get(key, 0))
            for key in sorted(set(ops_a) | set(ops_b), key=repr)
            if ops_a.get(key, 0) != ops_b.get(key, 0)
        ]
        side = lambda u: LayerSide(u.name, "operators", (), None) if u else None  # noqa: E731
        return Divergence(index, side(ua), side(ub), differences[:2])
    return None


@dataclass
class Divergence:
    """Where two networks first differ: the layers at that position (None past one side's end) and what differs."""

    index: int  # position among the walked layers
    a: LayerSide | None
    b: LayerSide | None
    differences: list[tuple[str, Any, Any]]  # (what, A's, B's), e.g. ("stride", 2, 1)

    @property
    def shortcut_of(self) -> str:
        """The block whose shortcut branch holds the divergence ('layer2.0'), or ''."""
        return next((block for layer in (self.a, self.b) if layer and (block := shortcut_block(layer.name))), "")


def shortcut_block(name: str) -> str:
    """'layer2.0' for 'layer2.0.downsample.0', a module on a block's shortcut branch; '' for any other module."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if i and any(word in part.lower() for word in SHORTCUT_WORDS):
            return ".".join(parts[:i])
    return ""


def main_path_first(layers: list[LayerSide]) -> list[LayerSide]:
    """Layers in call order, except that a block's shortcut layers follow its main path's, whichever the block's
    forward calls first (torchvision calls the shortcut last, some code first)."""
    ordered: list[LayerSide] = []
    deferred: list[LayerSide] = []
    block = ""
    for layer in layers:
        own = shortcut_block(layer.name)
        in_block = own == block or (not own and layer.name.startswith(block + "."))
        if deferred and not in_block:
            ordered += deferred
            deferred = []
        if own:
            block = own
            deferred.append(layer)
        else:
            ordered.append(layer)
    return ordered + deferred


@dataclass
class ArchitectureMatch:
    """Is A the same network as B: the verdict, the first structural divergence, and B's weights in A."""

    verdict: str  # "identical", "renamed" or "different"
    divergence: Divergence | None
    state_dict: StateDictFit
    layers: tuple[int, int]  # layers walked in A and in B


@dataclass
class NetworkComparison:
    """Two networks; the second is compared against the first."""

    networks: list[NetworkCost]
    architecture: ArchitectureMatch
    timing: Timing | None = None
    notes: list[str] = field(default_factory=list)


def network_request(operand: str, input_text: str | None = None) -> Any:
    """A request from a preset operand, 'MODEL[flag=value,...]', or a user model, 'file.py:factory[key=value,...]'."""
    if is_user_model_reference(operand.partition("[")[0].strip()):
        reference, args = split_user_operand(operand)
        return user_model_request(reference, args, input=input_text)
    name, flags = parse_model_operand(operand)
    return request_from_flags(name, input=input_text, **flags)


def split_user_operand(text: str) -> tuple[str, list[str]]:
    """'my.py:resnet[num_classes=10,widths=(64, 128)]' -> ('my.py:resnet', ['num_classes=10', 'widths=(64, 128)'])."""
    text = text.strip()
    reference, bracket, rest = text.partition("[")
    if not bracket:
        return text, []
    example = f"{reference}[num_classes=10]"
    if not rest.endswith("]"):
        raise UserError(f"{text!r}: write factory arguments in brackets, key=value, e.g. {example!r}")
    items = _split_top_level(rest[:-1])
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise UserError(f"{text!r}: {item!r} is not key=value with a Python name as key, e.g. {example!r}")
    return reference.strip(), items


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside brackets and quotes: 'a=1, b=(2, 3)' -> ['a=1', 'b=(2, 3)']."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(text):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [part.strip() for part in parts if part.strip()]


def _stage_field(fields: ReceptiveFields, last: LayerRecord | None) -> dict[str, Any]:
    """A stage's receptive field and effective stride: those of its last call's output (none once global)."""
    found = fields.of(last) if last is not None else None
    if found is None or found is UNKNOWN or found.whole:
        return {}
    return {"receptive_field": found.rf, "effective_stride": found.jump}


def network_cost(label: str, request: Any) -> NetworkCost:
    """Per-stage and per-block output shape, params and MACs of one network, its layers in call order and its
    state_dict shapes (counting engine, meta device: no weights allocated)."""
    try:
        built = build_and_count(request)
    except ForwardPassFailed as exc:
        raise UserError(f"{label}: {exc.detail}") from None
    model, trace, count = built.model, built.trace, built.count
    fields = receptive_fields(trace)
    first = {r.name: r for r in trace.first_calls()}
    modules = dict(model.named_modules())

    def block(name: str) -> BlockSide:
        record = first.get(name)
        return BlockSide(
            name=name,
            type=type(modules[name]).__name__,
            output_shape=record.output_shape if record else None,
            params=parameter_count(modules[name]),
            macs=count.by_module.get(name, 0),
            macs_conv_linear=count.module_conv_linear_macs(name),
        )

    stages = stage_names(model) or []
    rows = [
        StageSide(
            name=s.name,
            output_shape=s.output_shape,
            blocks=[block(f"{s.name}.{child}") for child, _ in modules[s.name].named_children()]
            if s.name in stages else None,
            params=s.params,
            macs=s.macs,
            macs_conv_linear=s.macs_conv_linear,
            modules=s.modules,
            **_stage_field(fields, first.get(s.modules[-1]) if s.modules else None),
        )
        for s in count_by_stage(model, trace, count)
    ]
    layers = main_path_first([
        LayerSide(r.name, r.type, layer_attributes(modules[r.name]), r.output_shape)
        for r in trace.first_calls()
        if r.is_leaf and r.params
    ])  # fmt: skip  (pooling, activations and adds, module or functional, are compared as operators)
    return NetworkCost(
        label=label,
        request=request,
        stages=rows,
        params=count.params,
        macs=count.macs,
        macs_conv_linear=count.conv_linear_macs,
        activation_bytes=trace.activation_bytes,
        engine=count.engine,
        acts=count.acts,
        output_stride=fields.output_stride,
        receptive_field=None if fields.backbone is None else "global" if fields.backbone.whole else fields.backbone.rf,
        layers=layers,
        units=operator_units(trace, stages),
        state_shapes={key: tuple(value.shape) for key, value in model.state_dict().items()},
    )


def layer_attributes(module: nn.Module) -> tuple[tuple[str, Any], ...]:
    """What makes a layer what it is: conv kernel, stride, padding, dilation, channels, groups, bias; BN features;
    Linear features and bias; pooling window; otherwise the shapes of its own parameters."""
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    if isinstance(module, convs):
        return (
            ("kernel", tuple(module.kernel_size)), ("stride", _collapse(module.stride)),
            ("padding", _collapse(module.padding)), ("dilation", _collapse(module.dilation)),
            ("in_channels", module.in_channels), ("out_channels", module.out_channels),
            ("groups", module.groups), ("bias", module.bias is not None),
        )  # fmt: skip
    if isinstance(module, norms):
        return (("num_features", module.num_features),)
    if isinstance(module, nn.Linear):
        return (("in_features", module.in_features), ("out_features", module.out_features), ("bias", module.bias is not None))
    if "Pool" in type(module).__name__:
        return tuple((key, _collapse(getattr(module, key))) for key in POOL_ATTRIBUTES if hasattr(module, key))
    return tuple((f"{name} shape", tuple(p.shape)) for name, p in module.named_parameters(recurse=False))


def _collapse(value: Any) -> Any:
    """(2, 2) -> 2, so that torch's int and tuple spellings of one setting compare equal; (1, 2) stays."""
    if isinstance(value, (tuple, list)):
        return value[0] if value and len(set(value)) == 1 else tuple(value)
    return value


def first_divergence(a: list[LayerSide], b: list[LayerSide]) -> Divergence | None:
    """The first position where the layer types, settings or (settings equal) output shapes differ, names aside,
    or where one network has no more layers."""
    for index in range(max(len(a), len(b))):
        la, lb = (side[index] if index < len(side) else None for side in (a, b))
        if la is None or lb is None:
            return Divergence(index, la, lb, [("layer", la.type if la else "none", lb.type if lb else "none")])
        if la.type != lb.type:
            return Divergence(index, la, lb, [("type", la.type, lb.type)])
        settings_b = dict(lb.attributes)
        differences = [(key, value, settings_b.get(key)) for key, value in la.attributes if settings_b.get(key) != value]
        if not differences and la.output_shape != lb.output_shape:  # a different input, or a functional op before it
            differences.append(("output", la.output_shape, lb.output_shape))
        if differences:
            return Divergence(index, la, lb, differences)
    return None


def match_architecture(a: NetworkCost, b: NetworkCost) -> ArchitectureMatch:
    """Identical (same layers, names and shapes; B's state_dict loads into A), renamed (same layers, shapes and MACs,
    different keys) or different (the first divergence)."""
    fit = state_dict_fit(a.state_shapes, b.state_shapes)
    divergence = first_divergence(a.layers, b.layers) or first_operator_divergence(a.units, b.units)
    if divergence is None:
        differences = [(what, x, y) for what, x, y in (("params", a.params, b.params), ("MACs", a.macs, b.macs)) if x != y]
        if differences:
            divergence = Divergence(len(a.layers), None, None, differences)
        elif fit.mismatched:
            key, shape_a, shape_b = fit.mismatched[0]
            divergence = Divergence(len(a.layers), None, None, [(f"state_dict {key}", shape_a, shape_b)])
    if divergence is not None:
        verdict = "different"
    elif fit.loads and [layer.name for layer in a.layers] == [layer.name for layer in b.layers]:
        verdict = "identical"
    else:
        verdict = "renamed"
    return ArchitectureMatch(verdict, divergence, fit, (len(a.layers), len(b.layers)))


def compare_networks(
    operands: tuple[str, str], input_text: str | None = None, *, time_device: str | None = None, batch: int | None = None,
    runs: int = TIMED_RUNS, warmup: int = WARMUP_RUNS,
) -> NetworkComparison:  # fmt: skip
    """Both networks' per-stage costs and whether they are the same architecture; with `time_device`, also their
    median forward latency there (presets and user models alike, built on that device). Without `input_text`, a
    user model runs on the other side's preset input."""
    requests = [network_request(op, input_text) for op in operands]
    presets = [r for r in requests if isinstance(r, ModelRequest)]
    if input_text is None and presets:  # your model runs on the preset's input (32x32 for a CIFAR ResNet)
        requests = [r if isinstance(r, ModelRequest) else replace(r, input_shape=presets[0].input_shape) for r in requests]
    networks = [network_cost(op.strip(), request) for op, request in zip(operands, requests, strict=True)]
    timing = None
    if time_device is not None:
        device = _timing_device(time_device)
        shapes = [n.request.input_shape if batch is None else (_check_batch(batch), *n.request.input_shape[1:]) for n in networks]
        timing = Timing(device=device, batch=shapes[0][0], warmup=warmup, runs=runs)
        modules = [instantiate(n.request, device=device)[0] for n in networks]
        for net, latency in zip(networks, median_latencies_ms(modules, shapes, timing), strict=True):
            net.latency_ms = latency
    return NetworkComparison(networks=networks, architecture=match_architecture(*networks), timing=timing)


def compare(
    operands: tuple[str, str],
    setup_flags: dict[str, int | None],
    input_text: str | None = None,
    *,
    time_device: str | None = None,
    batch: int | None = None,
    runs: int = TIMED_RUNS,
    warmup: int = WARMUP_RUNS,
) -> BlockComparison | NetworkComparison:
    """Compare two blocks (operands basic/bottleneck/se-...) or two networks (MODEL[flag=value,...])."""
    empty = next((op for op in operands if not op.strip()), None)
    if empty is not None:
        raise UserError(
            f"compare: operand {empty!r} is empty; give two blocks ({', '.join(BLOCK_KINDS)}) or two networks "
            f"(a preset, 'MODEL[flag=value,...]', or path/to/file.py:factory)"
        )
    if batch is not None and time_device is None:
        raise UserError(f"--batch {batch} sets the batch of --time; add --time (counts are per image)")
    block_flags = [is_block_operand(op) for op in operands]
    if all(block_flags):
        if input_text is not None:
            raise UserError("--input applies to networks; for blocks use --channels and --spatial")
        bottleneck_only = [k for k in ("expansion", "groups", "width_per_group") if setup_flags.get(k) is not None]
        if bottleneck_only and not any("bottleneck" in op.lower() for op in operands):
            flag = "--" + bottleneck_only[0].replace("_", "-")
            raise UserError(f"{flag} applies to bottleneck blocks; compare {operands[0]} {operands[1]} has none")
        setup = BlockSetup(**{k: v for k, v in setup_flags.items() if v is not None})
        return compare_blocks(
            (operands[0], operands[1]), setup, time_device=time_device, batch=batch if batch is not None else 1,
            runs=runs, warmup=warmup,
        )  # fmt: skip
    if any(block_flags):
        other = operands[block_flags.index(True) ^ 1]
        if ":" not in other and other.split("[")[0] not in PRESETS:  # neither a network nor a block: a typo
            near = difflib.get_close_matches(other, [*BLOCK_KINDS, *PRESETS], n=1)
            raise UserError(
                f"compare: {other!r} is not a block ({', '.join(BLOCK_KINDS)}) or a preset"
                f"{f'; did you mean {near[0]}?' if near else ''}"
            )
        raise UserError(
            f"compare {operands[0]} {operands[1]}: compare two blocks ({', '.join(BLOCK_KINDS)}) or two networks, "
            "not one of each"
        )
    given = [k for k, v in setup_flags.items() if v is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UserError(
            f"{flag} applies to block operands ({', '.join(BLOCK_KINDS)}); for networks give build flags per side, "
            f"e.g. 'resnet50[{given[0]}=...]'"
        )
    return compare_networks(
        (operands[0], operands[1]), input_text, time_device=time_device, batch=batch, runs=runs, warmup=warmup
    )
