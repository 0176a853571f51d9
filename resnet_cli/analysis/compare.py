"""Side-by-side costs: two residual blocks (BasicBlock vs Bottleneck) or two whole networks.

MACs come from the counting engine (`resnet_cli.analysis.counting`), never from a formula table here.
Blocks are counted per image (batch 1) on the meta device; `--time` runs them for real.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from resnet_cli.errors import SpecError, UserError
from resnet_cli.spec import DEVICES, ModelRequest, ResNetSpec, parse_model_operand, request_from_flags

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

    @property
    def formula(self) -> str:
        """The layer's MACs per pixel of its own output: '3x3x256x256' (grouped: '3x3x128x128/32')."""
        text = f"{self.kernel[0]}x{self.kernel[1]}x{self.in_channels}x{self.out_channels}"
        return f"{text}/{self.groups}" if self.groups > 1 else text


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

    @property
    def arithmetic(self) -> str:
        """The per-pixel figure written out: '3x3x256x256 + 3x3x256x256'; layers at another resolution are scaled."""
        terms = []
        for layer in self.layers:
            scale = layer.output_pixels / self.output_pixels
            if scale == 1:
                terms.append(layer.formula)
            elif scale > 1:
                terms.append(f"{layer.formula} x {scale:g}")
            else:
                terms.append(f"{layer.formula} / {self.output_pixels // layer.output_pixels:g}")
        return _collapse_repeats(terms)


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


def _collapse_repeats(terms: list[str]) -> str:
    # "3x3x256x256 + 3x3x256x256" reads as "3x3x256x256 x 2", the way the paper's arithmetic is usually shown
    if len(terms) > 1 and len(set(terms)) == 1 and " " not in terms[0]:
        return f"{terms[0]} x {len(terms)}"
    return " + ".join(terms)


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


def build_block(kind: str, setup: BlockSetup, device: str = "meta") -> Any:
    """The block `kind` as an nn.Module on `device`, built by the same classes as the networks."""
    import torch

    from resnet_cli.model import BasicBlock, Bottleneck

    spec = block_spec(kind, setup)
    args = dict(in_ch=setup.channels, planes=spec.widths[0], stride=setup.stride, dilation=1, drop_path=0.0)
    with torch.device(device):
        if spec.block == "basic":
            return BasicBlock(spec, **args)
        return Bottleneck(spec, stage=0, **args)


def block_cost(kind: str, setup: BlockSetup) -> BlockCost:
    """Layers, params, MACs (counting engine, fast, meta device) and activation memory of one block per image."""
    from torch import nn

    from resnet_cli.analysis.counting import count_traced
    from resnet_cli.trace import make_input

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
    kinds: tuple[str, str], setup: BlockSetup, *, time_device: str | None = None, batch: int = 1
) -> BlockComparison:
    """Both blocks' costs; with `time_device`, also their median forward latency there at `batch`."""
    blocks = [block_cost(kind, setup) for kind in kinds]
    timing = None
    if time_device is not None:
        timing = Timing(device=_timing_device(time_device), batch=_check_batch(batch))
        modules = [build_block(cost.kind, setup, timing.device) for cost in blocks]
        shape = (batch, setup.channels, setup.spatial, setup.spatial)
        latencies = median_latencies_ms(modules, [shape, shape], timing)
        for cost, latency in zip(blocks, latencies, strict=True):
            cost.latency_ms = latency
    return BlockComparison(setup=setup, blocks=blocks, timing=timing)


def median_latencies_ms(modules: list[Any], input_shapes: list[tuple[int, ...]], timing: Timing) -> list[float]:
    """Median wall time of one forward pass of each module in ms, eval mode, no autograd.

    The modules run in turn (A, B, A, B, ...) after warm-up, so load from other processes hits both alike.
    """
    import torch

    from resnet_cli.trace import make_input

    inputs = [make_input(shape, timing.device) for shape in input_shapes]
    sync = torch.cuda.synchronize if timing.device == "cuda" else (lambda: None)
    times: list[list[float]] = [[] for _ in modules]
    for module in modules:
        module.eval()
    with torch.no_grad():
        for run in range(timing.warmup + timing.runs):
            for i, (module, x) in enumerate(zip(modules, inputs, strict=True)):
                sync()
                start = time.perf_counter()
                module(x)
                sync()
                if run >= timing.warmup:
                    times[i].append(time.perf_counter() - start)
    return [statistics.median(t) * 1000 for t in times]


def _timing_device(device: str) -> str:
    if device not in DEVICES:
        raise SpecError(f"--device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "meta":
        raise UserError("--time needs a real device: use --device cpu or --device cuda (meta only computes shapes)")
    from resnet_cli.model import resolve_device

    resolve_device(device)
    return device


def _check_batch(batch: int) -> int:
    if batch < 1:
        raise SpecError(f"--batch {batch} must be a positive integer")
    return batch


# ---------------------------------------------------------------- networks


@dataclass
class StageSide:
    """One stage of one network."""

    name: str  # stem, layer1..N, head
    output_shape: tuple[int, ...] | None
    blocks: int | None  # None for stem and head
    params: int
    macs: int  # fvcore convention
    macs_conv_linear: int


@dataclass
class NetworkCost:
    """One network's stages and totals."""

    label: str  # the operand as typed, e.g. resnet50[se=true]
    request: ModelRequest
    stages: list[StageSide]
    params: int
    macs: int  # fvcore convention (conv, linear, batch norm, adaptive avg pool)
    macs_conv_linear: int
    activation_bytes: int
    engine: str
    latency_ms: float | None = None


@dataclass
class NetworkComparison:
    """Two networks; the second is compared against the first."""

    networks: list[NetworkCost]
    timing: Timing | None = None
    notes: list[str] = field(default_factory=list)


def network_request(operand: str, input_text: str | None = None) -> ModelRequest:
    """A ModelRequest from 'MODEL' or 'MODEL[flag=value,...]' and the shared --input."""
    name, flags = parse_model_operand(operand)
    return request_from_flags(name, input=input_text, **flags)


def network_cost(label: str, request: ModelRequest) -> NetworkCost:
    """Per-stage output shape, blocks, params and MACs of one network (counting engine, meta device)."""
    from resnet_cli.analysis.counting import count_by_stage, count_traced
    from resnet_cli.analysis.summary import check_trace
    from resnet_cli.model import build_model
    from resnet_cli.trace import make_input

    model = build_model(request.spec, device="meta")
    trace, count = count_traced(model, (make_input(request.input_shape, "meta"),))
    check_trace(trace, request)
    layers = dict(zip(model.stage_names, request.spec.layers, strict=True))
    stages = [
        StageSide(
            name=s.name,
            output_shape=s.output_shape,
            blocks=layers.get(s.name),
            params=s.params,
            macs=s.macs,
            macs_conv_linear=s.macs_conv_linear,
        )
        for s in count_by_stage(model, trace, count)
    ]
    return NetworkCost(
        label=label,
        request=request,
        stages=stages,
        params=count.params,
        macs=count.macs,
        macs_conv_linear=count.conv_linear_macs,
        activation_bytes=trace.activation_bytes,
        engine=count.engine,
    )


def compare_networks(
    operands: tuple[str, str], input_text: str | None = None, *, time_device: str | None = None, batch: int | None = None
) -> NetworkComparison:
    """Both networks' per-stage costs; with `time_device`, also their median forward latency there."""
    networks = [network_cost(op.strip(), network_request(op, input_text)) for op in operands]
    notes: list[str] = []
    timing = None
    if time_device is not None:
        from resnet_cli.model import build_model

        device = _timing_device(time_device)
        shapes = [n.request.input_shape if batch is None else (_check_batch(batch), *n.request.input_shape[1:]) for n in networks]
        timing = Timing(device=device, batch=shapes[0][0])
        modules = [build_model(n.request.spec, device=device) for n in networks]
        for net, latency in zip(networks, median_latencies_ms(modules, shapes, timing), strict=True):
            net.latency_ms = latency
    return NetworkComparison(networks=networks, timing=timing, notes=notes)


def compare(
    operands: tuple[str, str],
    setup_flags: dict[str, int | None],
    input_text: str | None = None,
    *,
    time_device: str | None = None,
    batch: int | None = None,
) -> BlockComparison | NetworkComparison:
    """Compare two blocks (operands basic/bottleneck/se-...) or two networks (MODEL[flag=value,...])."""
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
            (operands[0], operands[1]), setup, time_device=time_device, batch=batch if batch is not None else 1
        )
    if any(block_flags):
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
    return compare_networks((operands[0], operands[1]), input_text, time_device=time_device, batch=batch)
