"""Block and network comparisons -> table data, JSON and bar-chart panels."""

from __future__ import annotations

from typing import Any

from resnet_cli.analysis.compare import BlockComparison, BlockCost, BlockLayer, NetworkComparison, NetworkCost
from resnet_cli.render.plots import BarPanel
from resnet_cli.render.summary import format_bytes
from resnet_cli.render.table import Column, TableData, format_cell

BLOCK_NAMES = {"basic": "BasicBlock", "bottleneck": "Bottleneck", "se-basic": "SE-BasicBlock", "se-bottleneck": "SE-Bottleneck"}
OP_LABELS = {"batch_norm": "BN", "adaptive_avg_pool2d": "SE pool"}
CONV_CONVENTION = "convolutions only, each term kernel H x W x in channels x out channels (/ groups)"


def ratio_text(new: float, old: float) -> str:
    """'0.059x' (new / old), or '' when old is 0."""
    return f"{new / old:.3g}x" if old else ""


def saved_text(new: float, old: float) -> str:
    """'94.1%' saved going from old to new; negative when new costs more; '' when old is 0."""
    return f"{(1 - new / old) * 100:.1f}%" if old else ""


def number_text(value: float) -> str:
    """Whole numbers with separators, others with two decimals."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


LAYER_NAMES = {"downsample.0": "shortcut"}


def layer_text(layer: BlockLayer) -> str:
    """'conv1: 3x3 256->64 s1 56x56': kernel, in->out channels (groups as 'g32'), stride, output H x W."""
    groups = f" g{layer.groups}" if layer.groups > 1 else ""
    size = "x".join(str(d) for d in layer.output_shape[2:])
    name = LAYER_NAMES.get(layer.name, layer.name)
    return f"{name}: {layer.kernel[0]}x{layer.kernel[1]} {layer.in_channels}->{layer.out_channels}{groups} s{layer.stride} {size}"


def block_name(kind: str) -> str:
    return BLOCK_NAMES.get(kind, kind)


def inner_width(cost: BlockCost) -> int:
    """Channels between the block's first and last conv."""
    return cost.layers[0].out_channels


def _metric_row(label: str, a: float, b: float, show: Any = None) -> list[Any]:
    show = show or number_text
    return [label, show(a), show(b), ratio_text(b, a), saved_text(b, a)]


def block_table(result: BlockComparison) -> TableData:
    """Layers of both blocks side by side, then params, MACs, memory (and latency), with the ratio and saving."""
    setup, (a, b) = result.setup, result.blocks
    name_a, name_b = block_name(a.kind), block_name(b.kind)
    size = f"{setup.spatial}x{setup.spatial}"
    rows: list[list[Any]] = []
    for i in range(max(len(a.layers), len(b.layers))):
        cells = [layer_text(cost.layers[i]) if i < len(cost.layers) else "" for cost in (a, b)]
        rows.append([f"layer {i + 1}", *cells, "", ""])
    rows.append(["output", format_cell(a.output_shape), format_cell(b.output_shape), "", ""])
    rows.append(_metric_row("params", a.params, b.params))
    rows.append(_metric_row("conv MACs/pixel", a.macs_per_pixel, b.macs_per_pixel))
    rows.append(_metric_row(f"conv MACs, {size} in", a.conv_macs, b.conv_macs))
    for op in sorted(set(a.other_macs) | set(b.other_macs)):
        label = f"{OP_LABELS.get(op, op)} MACs, {size} in"
        rows.append(_metric_row(label, a.other_macs.get(op, 0), b.other_macs.get(op, 0)))
    rows.append(_metric_row("activations f32", a.activation_bytes, b.activation_bytes, format_bytes))
    if result.timing is not None and a.latency_ms is not None and b.latency_ms is not None:
        t = result.timing
        label = f"latency ms {t.device} b{t.batch}"
        rows.append(_metric_row(label, a.latency_ms, b.latency_ms, lambda v: f"{v:.2f}"))
    width = {cost.kind: inner_width(cost) for cost in (a, b)}
    footer = [
        (name_a, f"{a.arithmetic} = {number_text(a.macs_per_pixel)} MACs per output pixel"),
        (name_b, f"{b.arithmetic} = {number_text(b.macs_per_pixel)} MACs per output pixel"),
        ("saved", f"{saved_text(b.macs_per_pixel, a.macs_per_pixel)} of the conv MACs, "
                  f"{saved_text(b.params, a.params)} of the params ({name_b} vs {name_a})"),
    ]  # fmt: skip
    notes = [
        f"Held equal: {setup.channels} input and output channels, {size} input, stride {setup.stride}. "
        f"Not equal: the inner width ({name_a} {width[a.kind]}, {name_b} {width[b.kind]}; "
        f"a bottleneck's is C/E = {setup.channels}/{setup.expansion}"
        + (f", x W/64 x groups = {setup.width_per_group}/64 x {setup.groups}" if (setup.groups, setup.width_per_group) != (1, 64) else "")
        + ").",
        f"Conv MACs/pixel is per pixel of the block's output: {CONV_CONVENTION}; a layer at another resolution "
        "is scaled (x 4: the input side of a stride-2 block; / H*W: SE's 1x1 map). BN and pooling MACs follow "
        "fvcore's rules and are listed apart.",
        "Counts are per image (batch 1), from the same counting engine as `resnet-cli flops`; "
        f"ratio = {name_b} / {name_a}"
        + (f"; latency is the median of {result.timing.runs} runs after {result.timing.warmup} warm-up runs."
           if result.timing else "."),
    ]
    return TableData(
        title=f"{name_a} vs {name_b}: {setup.channels} channels, {size} input, stride {setup.stride}",
        columns=[Column(""), Column(name_a), Column(name_b), Column("ratio", "right"), Column("saved", "right")],
        rows=rows,
        footer=footer,
        notes=notes,
    )


def block_json(result: BlockComparison) -> dict[str, Any]:
    """The `compare BLOCK BLOCK --format json` object."""
    setup, (a, b) = result.setup, result.blocks
    return {
        "kind": "blocks",
        "setup": {
            "channels": setup.channels, "spatial": setup.spatial, "stride": setup.stride,
            "expansion": setup.expansion, "groups": setup.groups, "width_per_group": setup.width_per_group,
            "se_ratio": setup.se_ratio, "batch_for_counts": 1,
        },  # fmt: skip
        "blocks": [_block_cost_json(cost) for cost in (a, b)],
        "saved_percent": {
            "params": _percent(b.params, a.params),
            "conv_macs": _percent(b.conv_macs, a.conv_macs),
            "activation_bytes": _percent(b.activation_bytes, a.activation_bytes),
            **({"latency": _percent(b.latency_ms, a.latency_ms)} if a.latency_ms and b.latency_ms is not None else {}),
        },
        "timing": None if result.timing is None else vars(result.timing),
        "macs_convention": CONV_CONVENTION,
    }


def _percent(new: float, old: float) -> float | None:
    return round((1 - new / old) * 100, 4) if old else None


def _block_cost_json(cost: BlockCost) -> dict[str, Any]:
    return {
        "kind": cost.kind,
        "params": cost.params,
        "macs_per_output_pixel": cost.macs_per_pixel,
        "arithmetic": cost.arithmetic,
        "conv_macs": cost.conv_macs,
        "other_macs": cost.other_macs,
        "activation_bytes": cost.activation_bytes,
        "input_shape": list(cost.input_shape),
        "output_shape": list(cost.output_shape),
        "latency_ms": cost.latency_ms,
        "layers": [
            {
                "name": layer.name, "kernel": list(layer.kernel), "in_channels": layer.in_channels,
                "out_channels": layer.out_channels, "groups": layer.groups, "stride": layer.stride,
                "output_shape": list(layer.output_shape), "params": layer.params, "macs": layer.macs,
            }  # fmt: skip
            for layer in cost.layers
        ],
    }


def block_panels(result: BlockComparison) -> list[BarPanel]:
    """Params and conv MACs of each block, stacked by layer."""
    names = list(dict.fromkeys(layer.name for cost in result.blocks for layer in cost.layers))
    categories = [block_name(cost.kind) for cost in result.blocks]

    def per_layer(attr: str) -> dict[str, list[float]]:
        return {
            name: [sum(getattr(layer, attr) for layer in cost.layers if layer.name == name) for cost in result.blocks]
            for name in names
        }

    size = f"{result.setup.spatial}x{result.setup.spatial}"
    return [
        BarPanel("Parameters (conv weights)", "parameters", categories, per_layer("params"), stacked=True),
        BarPanel(f"Conv MACs at {size}", "MACs", categories, per_layer("macs"), stacked=True),
    ]


# ---------------------------------------------------------------- networks


def _stage_names(result: NetworkComparison) -> list[str]:
    names: list[str] = []
    for net in result.networks:
        for stage in net.stages:
            if stage.name not in names and stage.name != "head":
                names.append(stage.name)
    return names + ["head"]


def _stage(net: NetworkCost, name: str) -> Any:
    return next((s for s in net.stages if s.name == name), None)


def _shape(shape: tuple[int, ...] | None) -> str:
    return "x".join(str(d) for d in shape[1:]) if shape else ""


def network_table(result: NetworkComparison) -> TableData:
    """Per stage, A's row then B's (output shape, blocks, params, MACs) with B/A ratios; totals last."""
    a, b = result.networks
    rows: list[list[Any]] = []
    styles: list[str | None] = []
    for name in _stage_names(result):
        sa, sb = _stage(a, name), _stage(b, name)
        for label, stage, other in (("A", sa, None), ("B", sb, sa)):
            if stage is None:
                rows.append([name if label == "A" else "", label, "", None, None, "", None, ""])
            else:
                rows.append([
                    name if label == "A" else "", label, _shape(stage.output_shape), stage.blocks,
                    stage.params, ratio_text(stage.params, other.params) if other else "",
                    stage.macs, ratio_text(stage.macs, other.macs) if other else "",
                ])  # fmt: skip
            styles.append(None)
    rows.append(["total", "A", "", a.request.spec.num_blocks, a.params, "", a.macs, ""])
    rows.append(["", "B", "", b.request.spec.num_blocks, b.params, ratio_text(b.params, a.params),
                 b.macs, ratio_text(b.macs, a.macs)])  # fmt: skip
    styles += ["bold", "bold"]
    footer = [
        ("params", f"{b.params:,} / {a.params:,} = {ratio_text(b.params, a.params)}"),
        ("MACs, fvcore", f"{b.macs:,} / {a.macs:,} = {ratio_text(b.macs, a.macs)}"),
        ("MACs, conv + linear", f"{b.macs_conv_linear:,} / {a.macs_conv_linear:,} = "
                                f"{ratio_text(b.macs_conv_linear, a.macs_conv_linear)}"),
        ("activations (float32)", f"{format_bytes(b.activation_bytes)} / {format_bytes(a.activation_bytes)} = "
                                  f"{ratio_text(b.activation_bytes, a.activation_bytes)}"),
    ]  # fmt: skip
    if result.timing is not None and a.latency_ms is not None and b.latency_ms is not None:
        t = result.timing
        footer.append((
            f"latency ({t.device}, batch {t.batch})",
            f"{b.latency_ms:.1f} ms / {a.latency_ms:.1f} ms = {ratio_text(b.latency_ms, a.latency_ms)}",
        ))  # fmt: skip
    same_input = a.request.input_shape == b.request.input_shape
    inputs = format_cell(a.request.input_shape)
    if not same_input:
        inputs += f" / {format_cell(b.request.input_shape)}"
    return TableData(
        title=f"A = {a.label} vs B = {b.label}  input {inputs}",
        columns=[
            Column("stage"), Column(""), Column("output", "right"), Column("blocks", "right"),
            Column("params", "right"), Column("B/A", "right"), Column("MACs", "right"), Column("B/A", "right"),
        ],
        rows=rows,
        footer=footer,
        notes=[
            "MACs per stage use fvcore's convention (conv, linear, BN, adaptive avg pool), the same engine and "
            "numbers as `resnet-cli flops`; stem = conv1, bn1, relu, maxpool; head = avgpool, fc. Totals: B / A.",
            *([f"Latency: median of {result.timing.runs} runs after {result.timing.warmup} warm-up runs."]
              if result.timing else []),
            *result.notes,
        ],
        row_styles=styles,
    )


def network_json(result: NetworkComparison) -> dict[str, Any]:
    """The `compare MODEL MODEL --format json` object."""
    a, b = result.networks
    return {
        "kind": "networks",
        "networks": [_network_json(net) for net in result.networks],
        "ratios": {
            "params": b.params / a.params,
            "macs": b.macs / a.macs,
            "macs_conv_linear": b.macs_conv_linear / a.macs_conv_linear,
            "activation_bytes": b.activation_bytes / a.activation_bytes,
            **({"latency": b.latency_ms / a.latency_ms} if a.latency_ms and b.latency_ms is not None else {}),
        },
        "timing": None if result.timing is None else vars(result.timing),
        "macs_convention": "fvcore (conv, linear, batch norm, adaptive avg pool); macs_conv_linear: conv + linear",
    }


def _network_json(net: NetworkCost) -> dict[str, Any]:
    return {
        "label": net.label,
        "model": net.request.name,
        "spec": net.request.spec.to_dict(),
        "input_shape": list(net.request.input_shape),
        "params": net.params,
        "macs": net.macs,
        "macs_conv_linear": net.macs_conv_linear,
        "activation_bytes": net.activation_bytes,
        "latency_ms": net.latency_ms,
        "engine": net.engine,
        "stages": [
            {
                "name": s.name, "output_shape": list(s.output_shape) if s.output_shape else None, "blocks": s.blocks,
                "params": s.params, "macs": s.macs, "macs_conv_linear": s.macs_conv_linear,
            }  # fmt: skip
            for s in net.stages
        ],
    }


def network_panels(result: NetworkComparison) -> list[BarPanel]:
    """Params and MACs per stage, one bar per network."""
    names = _stage_names(result)

    def series(attr: str) -> dict[str, list[float]]:
        return {
            net.label: [getattr(_stage(net, name), attr, 0) if _stage(net, name) else 0 for name in names]
            for net in result.networks
        }

    return [
        BarPanel("Parameters per stage", "parameters", names, series("params")),
        BarPanel("MACs per stage (fvcore convention)", "MACs", names, series("macs")),
    ]


def comparison_output(result: BlockComparison | NetworkComparison) -> tuple[TableData, dict[str, Any], list[BarPanel], str]:
    """Table, JSON payload, plot panels and plot title for either kind of comparison."""
    if isinstance(result, BlockComparison):
        a, b = (block_name(c.kind) for c in result.blocks)
        return block_table(result), block_json(result), block_panels(result), f"{a} vs {b}"
    a, b = (net.label for net in result.networks)
    return network_table(result), network_json(result), network_panels(result), f"{a} vs {b}"
