"""Block and network comparisons -> table data (with a network pair's verdict), JSON and bar-chart panels."""

from __future__ import annotations

import itertools
from typing import Any

from resnet_cli.analysis.compare import (
    ArchitectureMatch,
    BlockComparison,
    BlockCost,
    BlockLayer,
    BlockSide,
    Divergence,
    LayerSide,
    NetworkComparison,
    NetworkCost,
    StageSide,
)
from resnet_cli.render.plots import BarPanel
from resnet_cli.render.table import Column, Shown, TableData, format_cell, request_json
from resnet_cli.units import format_bytes, saved_percent, shape_text

BLOCK_NAMES = {"basic": "BasicBlock", "bottleneck": "Bottleneck", "se-basic": "SE-BasicBlock", "se-bottleneck": "SE-Bottleneck"}
OP_LABELS = {"batch_norm": "BN", "adaptive_avg_pool2d": "SE pool"}
CONV_CONVENTION = "convolutions only, each term kernel H x W x in channels x out channels (/ groups)"


def ratio_text(new: float, old: float) -> str:
    """'0.059x' (new / old), or '' when old is 0."""
    return f"{new / old:.3g}x" if old else ""


def _ratio(new: float, old: float) -> float | None:
    """new / old, or None (JSON null) when old is 0."""
    return new / old if old else None


def saved_text(new: float, old: float) -> str:
    """'94.1%' saved going from old to new; negative when new costs more; '' when old is 0."""
    saved = saved_percent(new, old)
    return "" if saved is None else f"{saved:.1f}%"


def number_text(value: float) -> str:
    """Whole numbers with separators, others with two decimals."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:,.2f}"


LAYER_NAMES = {"downsample.0": "shortcut"}


def layer_text(layer: BlockLayer) -> str:
    """'conv1: 3x3 256->64 s1 56x56': kernel, in->out channels (groups as 'g32'), stride, output H x W."""
    groups = f" g{layer.groups}" if layer.groups > 1 else ""
    size = shape_text(layer.output_shape[2:])
    name = LAYER_NAMES.get(layer.name, layer.name)
    return f"{name}: {layer.kernel[0]}x{layer.kernel[1]} {layer.in_channels}->{layer.out_channels}{groups} s{layer.stride} {size}"


def layer_formula(layer: BlockLayer) -> str:
    """The layer's MACs per pixel of its own output: '3x3x256x256' (grouped: '3x3x128x128/32')."""
    text = f"{layer.kernel[0]}x{layer.kernel[1]}x{layer.in_channels}x{layer.out_channels}"
    return f"{text}/{layer.groups}" if layer.groups > 1 else text


def block_arithmetic(cost: BlockCost) -> str:
    """The per-pixel figure written out: '3x3x256x256 + 3x3x256x256'; layers at another resolution are scaled."""
    terms = []
    for layer in cost.layers:
        formula, scale = layer_formula(layer), layer.output_pixels / cost.output_pixels
        if scale == 1:
            terms.append(formula)
        elif scale > 1:
            terms.append(f"{formula} x {scale:g}")
        else:
            terms.append(f"{formula} / {cost.output_pixels // layer.output_pixels:g}")
    # "3x3x256x256 + 3x3x256x256" reads as "3x3x256x256 x 2", the way the paper's arithmetic is usually shown
    if len(terms) > 1 and len(set(terms)) == 1 and " " not in terms[0]:
        return f"{terms[0]} x {len(terms)}"
    return " + ".join(terms)


def block_name(kind: str) -> str:
    return BLOCK_NAMES.get(kind, kind)


def inner_width(cost: BlockCost) -> int:
    """Channels between the block's first and last conv."""
    return cost.layers[0].out_channels


def _metric_row(label: str, a: float, b: float, show: Any = None, csv_label: str | None = None) -> list[Any]:
    """A figure of both blocks: raw values shown by `show`, B / A and the percentage saved (CSV: `csv_label`)."""
    show = show or number_text
    name = label if csv_label is None else Shown(csv_label, label)
    return [name, Shown(a, show(a)), Shown(b, show(b)), _ratio(b, a), saved_percent(b, a)]


def _ratio_column(header: str = "ratio", csv_header: str | None = None) -> Column:
    """B / A as a float, shown as '0.0596x'."""
    return Column(header, "right", fmt=lambda ratio: f"{ratio:.3g}x", csv_header=csv_header)


def block_table(result: BlockComparison) -> TableData:
    """Layers of both blocks side by side, then params, MACs, memory (and latency), with the ratio and saving."""
    setup, (a, b) = result.setup, result.blocks
    name_a, name_b = block_name(a.kind), block_name(b.kind)
    size = f"{setup.spatial}x{setup.spatial}"
    rows: list[list[Any]] = []
    for i in range(max(len(a.layers), len(b.layers))):
        cells = [layer_text(cost.layers[i]) if i < len(cost.layers) else "" for cost in (a, b)]
        rows.append([f"layer {i + 1}", *cells, None, None])
    rows.append(["output", a.output_shape, b.output_shape, None, None])
    rows.append(_metric_row("params", a.params, b.params))
    rows.append(_metric_row("conv MACs/pixel", a.macs_per_pixel, b.macs_per_pixel))
    rows.append(_metric_row(f"conv MACs, {size} in", a.conv_macs, b.conv_macs))
    for op in sorted(set(a.other_macs) | set(b.other_macs)):
        label = f"{OP_LABELS.get(op, op)} MACs, {size} in"
        rows.append(_metric_row(label, a.other_macs.get(op, 0), b.other_macs.get(op, 0)))
    rows.append(_metric_row("activations f32", a.activation_bytes, b.activation_bytes, format_bytes,
                            csv_label="activation bytes f32"))
    if result.timing is not None and a.latency_ms is not None and b.latency_ms is not None:
        t = result.timing
        label = f"latency ms {t.device} b{t.batch}"
        rows.append(_metric_row(label, a.latency_ms, b.latency_ms, lambda v: f"{v:.2f}"))
    width = {cost.kind: inner_width(cost) for cost in (a, b)}
    footer = [
        (name_a, f"{block_arithmetic(a)} = {number_text(a.macs_per_pixel)} MACs per output pixel"),
        (name_b, f"{block_arithmetic(b)} = {number_text(b.macs_per_pixel)} MACs per output pixel"),
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
        columns=[Column(""), Column(name_a), Column(name_b), _ratio_column(),
                 Column("saved", "right", fmt=lambda saved: f"{saved:.1f}%", csv_header="saved %")],
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
            "params": _saved_json(b.params, a.params),
            "conv_macs": _saved_json(b.conv_macs, a.conv_macs),
            "activation_bytes": _saved_json(b.activation_bytes, a.activation_bytes),
            **({"latency": _saved_json(b.latency_ms, a.latency_ms)} if a.latency_ms and b.latency_ms is not None else {}),
        },
        "timing": None if result.timing is None else vars(result.timing),
        "macs_convention": CONV_CONVENTION,
    }


def _saved_json(new: float, old: float) -> float | None:
    saved = saved_percent(new, old)
    return None if saved is None else round(saved, 4)


def _block_cost_json(cost: BlockCost) -> dict[str, Any]:
    return {
        "kind": cost.kind,
        "params": cost.params,
        "macs_per_output_pixel": cost.macs_per_pixel,
        "arithmetic": block_arithmetic(cost),
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


STATE_DICT_SHOWN = 3  # keys named per state_dict finding; the rest are counted


def aligned_stages(result: NetworkComparison) -> list[tuple[StageSide | None, StageSide | None]]:
    """A's and B's stages paired: stem with stem, the i-th stage with the i-th (layer1 with stage1), head with head,
    other rows by name; rows only one side has are paired with None."""
    keyed = [{_stage_key(net, stage): stage for stage in net.stages} for net in result.networks]
    keys = list(dict.fromkeys([*keyed[0], *keyed[1]]))
    keys.sort(key=lambda k: k == "head")  # stable: only moves the head last
    return [(keyed[0].get(k), keyed[1].get(k)) for k in keys]


def _stage_key(net: NetworkCost, stage: StageSide) -> str:
    if stage.blocks is None:
        return stage.name
    return f"stage {[s for s in net.stages if s.blocks is not None].index(stage) + 1}"


def _shape(shape: tuple[int, ...] | None) -> str:
    return shape_text(shape[1:]) if shape else ""


def _pair_rows(a: StageSide | BlockSide | None, b: StageSide | BlockSide | None, indent: str = "") -> list[list[Any]]:
    """A's row then B's: output shape, blocks, params and MACs, B/A ratios on B's row; B names itself if it differs."""
    name_a = a.name if a is not None else b.name if b is not None else ""
    name_b = b.name if b is not None and b.name != name_a else ""
    rows = []
    for name, label, side, other in ((name_a, "A", a, None), (name_b, "B", b, a)):
        name = indent + name if name else ""
        if side is None:
            rows.append([name, label, "", None, None, None, None, None])
            continue
        blocks = len(side.blocks) if isinstance(side, StageSide) and side.blocks is not None else None
        rows.append([
            name, label, _shape(side.output_shape), blocks,
            side.params, _ratio(side.params, other.params) if other else None,
            side.macs, _ratio(side.macs, other.macs) if other else None,
        ])  # fmt: skip
    return rows


def network_table(result: NetworkComparison, depth: int = 2) -> TableData:
    """Per stage (and with depth 2 per block), A's row then B's (output shape, blocks, params, MACs) with B/A
    ratios; totals last."""
    a, b = result.networks
    rows: list[list[Any]] = []
    for sa, sb in aligned_stages(result):
        rows += _pair_rows(sa, sb)
        if depth >= 2:
            blocks = [(stage.blocks or []) if stage else [] for stage in (sa, sb)]
            for ba, bb in itertools.zip_longest(*blocks):
                rows += _pair_rows(ba, bb, indent="  ")
    styles: list[str | None] = [None] * len(rows)
    rows.append(["total", "A", "", a.num_blocks, a.params, None, a.macs, None])
    rows.append(["", "B", "", b.num_blocks, b.params, _ratio(b.params, a.params), b.macs, _ratio(b.macs, a.macs)])
    styles += ["bold", "bold"]
    footer = [
        ("params", f"{b.params:,} / {a.params:,} = {ratio_text(b.params, a.params)}"),
        ("MACs, fvcore", f"{b.macs:,} / {a.macs:,} = {ratio_text(b.macs, a.macs)}"),
        ("MACs, conv + linear", f"{b.macs_conv_linear:,} / {a.macs_conv_linear:,} = "
                                f"{ratio_text(b.macs_conv_linear, a.macs_conv_linear)}"),
        ("activations (float32)", f"{format_bytes(b.activation_bytes)} / {format_bytes(a.activation_bytes)} = "
                                  f"{ratio_text(b.activation_bytes, a.activation_bytes)}"),
        ("acts (conv + linear)", f"{b.acts:,} / {a.acts:,} = {ratio_text(b.acts, a.acts)}"),
        ("RF, output stride", f"{_field_text(b)} / {_field_text(a)}"),
    ]  # fmt: skip
    if result.timing is not None and a.latency_ms is not None and b.latency_ms is not None:
        t = result.timing
        footer.append((
            f"latency ({t.device}, batch {t.batch})",
            f"{b.latency_ms:.1f} ms / {a.latency_ms:.1f} ms = {ratio_text(b.latency_ms, a.latency_ms)}; "
            f"A runs at {b.latency_ms / a.latency_ms:.0%} of B's speed",
        ))  # fmt: skip
    footer += architecture_footer(result.architecture)
    same_input = a.request.input_shape == b.request.input_shape
    inputs = format_cell(a.request.input_shape)
    if not same_input:
        inputs += f" / {format_cell(b.request.input_shape)}"
    return TableData(
        title=f"A = {a.label} vs B = {b.label}  input {inputs}",
        columns=[
            Column("stage"), Column(""), Column("output", "right"), Column("blocks", "right"),
            Column("params", "right"), _ratio_column("B/A", "params B/A"), Column("MACs", "right"),
            _ratio_column("B/A", "MACs B/A"),
        ],
        rows=rows,
        footer=footer,
        notes=[
            "MACs per stage use fvcore's convention (conv, linear, BN, adaptive avg pool), the same engine and "
            f"numbers as `resnet-cli flops`{_grouping(result)}. Totals: B / A."
            + (" Blocks are each stage's children, paired by position." if depth >= 2 else ""),
            ARCHITECTURE_NOTE,
            *([f"Latency: median of {result.timing.runs} runs after {result.timing.warmup} warm-up runs."]
              if result.timing else []),
            *result.notes,
        ],
        row_styles=styles,
    )


def architecture_footer(match: ArchitectureMatch) -> list[tuple[str, str]]:
    """Layers compared, whether B's state_dict loads into A (the first keys of each kind), and the verdict."""
    fit = match.state_dict
    mismatched = [f"{key} {_dims(shape_a)} vs {_dims(shape_b)}" for key, shape_a, shape_b in fit.mismatched]
    findings = [(label, items) for label, items in (
        ("missing keys", fit.missing), ("unexpected keys", fit.unexpected), ("shape mismatches", mismatched)
    ) if items]  # fmt: skip
    counts = ", ".join(f"{len(items)} {label}" for label, items in findings)
    lines = [
        ("layers compared", f"{match.layers[0]} in A, {match.layers[1]} in B"),
        ("B's state_dict into A", f"loads ({fit.keys} keys)" if fit.loads else f"does not load: {counts} ({fit.keys} keys)"),
    ]
    for label, items in findings:
        more = f" (+{len(items) - STATE_DICT_SHOWN} more)" if len(items) > STATE_DICT_SHOWN else ""
        lines.append((label, ", ".join(items[:STATE_DICT_SHOWN]) + more))
    return [*lines, ("verdict", verdict_text(match))]


VERDICTS = {"identical": "identical architecture", "renamed": "same architecture, different names"}


def verdict_text(match: ArchitectureMatch) -> str:
    """'identical architecture', 'same architecture, different names' or 'different: <first divergence>'."""
    return VERDICTS.get(match.verdict) or f"different: {divergence_text(match.divergence)}"


def divergence_text(divergence: Divergence | None) -> str:
    """'layer2.0.conv1: stride 2 vs 1', naming the block when it lies in a shortcut."""
    if divergence is None:
        return "none"
    if (divergence.a is None) != (divergence.b is None):
        ended, side, layer = ("A", "B", divergence.b) if divergence.a is None else ("B", "A", divergence.a)
        return f"{layer.name}: {ended} has no more layers, {side} has {layer.type}"
    names = list(dict.fromkeys(layer.name for layer in (divergence.a, divergence.b) if layer is not None))
    what = ", ".join(f"{key} {_setting_text(key, x)} vs {_setting_text(key, y)}" for key, x, y in divergence.differences)
    text = f"{' vs '.join(names)}: {what}" if names else what
    block = divergence.shortcut_of
    return text + (f" (in the shortcut, where {block} projects)" if block else "")


ARCHITECTURE_NOTE = (
    "Layers compared: parameterised leaf modules in call order (a block's shortcut after its main path), paired by "
    "position; names aside, each pair must agree in type, settings and output shape. Then each block's aten "
    "operators (adds, activations, pooling), with shapes and settings. B's "
    "state_dict is checked against A's keys and shapes as load_state_dict(strict=True) would, on meta models; "
    "missing keys are A's that B lacks, shapes A's vs B's."
)


def _setting_text(key: str, value: Any) -> str:
    # channels read as 2048, totals as 25,557,032; shapes and kernels as 1x64x56x56 and 3x3
    return format_cell(value) if key in ("params", "MACs") or isinstance(value, tuple) else str(value)


def _dims(shape: tuple[int, ...]) -> str:
    return format_cell(shape) or "scalar"


def network_json(result: NetworkComparison) -> dict[str, Any]:
    """The `compare MODEL MODEL --format json` object."""
    a, b = result.networks
    return {
        "kind": "networks",
        "networks": [_network_json(net) for net in result.networks],
        "ratios": {
            "params": _ratio(b.params, a.params),
            "macs": _ratio(b.macs, a.macs),
            "macs_conv_linear": _ratio(b.macs_conv_linear, a.macs_conv_linear),
            "activation_bytes": _ratio(b.activation_bytes, a.activation_bytes),
            "acts": _ratio(b.acts, a.acts),
            **({"latency": b.latency_ms / a.latency_ms} if a.latency_ms and b.latency_ms is not None else {}),
        },
        "architecture": _architecture_json(result.architecture),
        "timing": None if result.timing is None else vars(result.timing),
        "macs_convention": "fvcore (conv, linear, batch norm, adaptive avg pool); macs_conv_linear: conv + linear",
    }


def _architecture_json(match: ArchitectureMatch) -> dict[str, Any]:
    fit, divergence = match.state_dict, match.divergence
    return {
        "verdict": match.verdict,
        "text": verdict_text(match),
        "layers_compared": list(match.layers),
        "divergence": None if divergence is None else {
            "index": divergence.index,
            "text": divergence_text(divergence),
            "a": _layer_side_json(divergence.a),
            "b": _layer_side_json(divergence.b),
            "differences": [{"what": what, "a": _jsonable(x), "b": _jsonable(y)} for what, x, y in divergence.differences],
            "in_shortcut_of": divergence.shortcut_of or None,
        },
        "state_dict": {
            "direction": "B into A",
            "loads": fit.loads,
            "keys": fit.keys,
            "missing": fit.missing,
            "unexpected": fit.unexpected,
            "shape_mismatch": [{"key": key, "a": list(x), "b": list(y)} for key, x, y in fit.mismatched],
        },
    }  # fmt: skip


def _layer_side_json(layer: LayerSide | None) -> dict[str, Any] | None:
    if layer is None:
        return None
    return {
        "name": layer.name,
        "type": layer.type,
        "attributes": {key: _jsonable(value) for key, value in layer.attributes},
        "output_shape": _jsonable(layer.output_shape),
    }


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _field_text(net: NetworkCost) -> str:
    """'427 px, 32': the backbone's receptive field (a side when not square) and output stride."""
    if net.receptive_field is None or net.output_stride is None:
        return "unknown"
    if isinstance(net.receptive_field, str):
        return f"{net.receptive_field}, {net.output_stride}"
    h, w = net.receptive_field
    return f"{h if h == w else f'{h}x{w}'} px, {net.output_stride}"


def _network_json(net: NetworkCost) -> dict[str, Any]:
    return {
        "label": net.label,
        **request_json(net.request),
        "params": net.params,
        "macs": net.macs,
        "macs_conv_linear": net.macs_conv_linear,
        "activation_bytes": net.activation_bytes,
        "acts": net.acts,
        "receptive_field": _jsonable(net.receptive_field),
        "output_stride": net.output_stride,
        "latency_ms": net.latency_ms,
        "engine": net.engine,
        "stages": [
            {
                "name": s.name, "output_shape": _jsonable(s.output_shape),
                "blocks": None if s.blocks is None else len(s.blocks),
                "params": s.params, "macs": s.macs, "macs_conv_linear": s.macs_conv_linear,
                "receptive_field": _jsonable(s.receptive_field), "effective_stride": _jsonable(s.effective_stride),
                "per_block": None if s.blocks is None else [
                    {"name": blk.name, "type": blk.type, "output_shape": _jsonable(blk.output_shape),
                     "params": blk.params, "macs": blk.macs, "macs_conv_linear": blk.macs_conv_linear}
                    for blk in s.blocks
                ],
            }  # fmt: skip
            for s in net.stages
        ],
    }


def network_panels(result: NetworkComparison) -> list[BarPanel]:
    """Params and MACs per stage, one bar per network."""
    pairs = aligned_stages(result)
    names = [(sa or sb).name for sa, sb in pairs]

    def series(attr: str) -> dict[str, list[float]]:
        return {
            net.label: [getattr(pair[i], attr) if pair[i] else 0 for pair in pairs]
            for i, net in enumerate(result.networks)
        }

    return [
        BarPanel("Parameters per stage", "parameters", names, series("params")),
        BarPanel("MACs per stage (fvcore convention)", "MACs", names, series("macs")),
    ]


def comparison_output(
    result: BlockComparison | NetworkComparison, depth: int = 2
) -> tuple[TableData, dict[str, Any], list[BarPanel], str]:
    """Tables, JSON payload, plot panels and plot title for either kind of comparison (`depth` 2: networks' blocks)."""
    if isinstance(result, BlockComparison):
        a, b = (block_name(c.kind) for c in result.blocks)
        return block_table(result), block_json(result), block_panels(result), f"{a} vs {b}"
    a, b = (net.label for net in result.networks)
    return network_table(result, depth), network_json(result), network_panels(result), f"{a} vs {b}"


def _grouping(result: NetworkComparison) -> str:
    """'; stem = conv1, bn1, relu, maxpool; head = avgpool, flatten, fc', per side where the sides differ."""
    texts = []
    for net in result.networks:
        groups = [f"{s.name} = {', '.join(s.modules)}" for s in net.stages if s.name in ("stem", "head") and s.modules]
        texts.append("; ".join(groups))
    if not any(texts):
        return ""
    if texts[0] == texts[1]:
        return f"; {texts[0]}"
    return "".join(f"; {side}: {text}" for side, text in zip("AB", texts, strict=True) if text)
