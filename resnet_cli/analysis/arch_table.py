"""He et al. 2015, Table 1, computed from the built models instead of typed in.

Cell text is read from the modules themselves (kernel, channels, groups, dilation, SE), so it cannot
drift from what `build_model` makes; output sizes come from one traced forward pass and MACs from
the counting engine, in the paper's conv + linear convention.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from resnet_cli.analysis.counting import build_and_count
from resnet_cli.analysis.receptive_field import UNKNOWN, receptive_fields
from resnet_cli.analysis.stages import count_by_stage
from resnet_cli.model import ResNet
from resnet_cli.spec import ModelRequest

DEFAULT_TABLE_MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
STEM_ROW, POOL_ROW, HEAD_ROW = "conv1", "maxpool", "average pool + fc"


def stage_row_name(stage: int) -> str:
    """The paper's row name of stage `stage` (0-based): conv2_x, conv3_x, ..."""
    return f"conv{stage + 2}_x"


@dataclass
class ArchColumn:
    """One model's column: cell text and output size (H x W) per row, and its totals."""

    label: str
    request: ModelRequest
    cells: dict[str, str]
    output_sizes: dict[str, tuple[int, ...]]
    params: int
    macs_conv_linear: int
    macs: int  # fvcore convention, for the JSON
    row_params: dict[str, int]  # per row (pool rows have none)
    row_macs: dict[str, int]  # conv + linear, per row
    downsample_on: str  # where a bottleneck stage's stride sits: "3x3" or "1x1"; "" for basic blocks
    receptive_field: int | str | None = None  # the last feature map's (analysis.receptive_field), height; "global"
    output_stride: int | None = None
    row_receptive_fields: dict[str, int] = field(default_factory=dict)  # at each row's output (not after global pooling)


@dataclass
class ArchTable:
    """Rows in the paper's order and one column per model."""

    rows: list[str]
    columns: list[ArchColumn]


def conv_text(conv: nn.Conv2d, show_stride: bool = True) -> str:
    """A convolution as the paper writes it: '7x7, 64, stride 2'; groups as 'C=32', dilation as 'd=2'."""
    kh, kw = conv.kernel_size
    parts = [f"{kh}x{kw}, {conv.out_channels}"]
    if conv.groups > 1:
        parts.append(f"C={conv.groups}")
    if conv.dilation[0] > 1:
        parts.append(f"d={conv.dilation[0]}")
    if show_stride and conv.stride[0] > 1:
        parts.append(f"stride {conv.stride[0]}")
    return ", ".join(parts)


def stem_cell(model: ResNet) -> str:
    """The stem convolution(s): '7x7, 64, stride 2' or, for the deep stem, three 3x3 convs joined by '; '."""
    convs = [m for m in model.conv1.modules() if isinstance(m, nn.Conv2d)]
    return "; ".join(conv_text(c) for c in convs)


def pool_cell(model: ResNet) -> str:
    """'3x3 max pool, stride 2', or '' when the stem has no pooling (cifar)."""
    pool = model.maxpool
    if not isinstance(pool, nn.MaxPool2d):
        return ""
    k, s = pool.kernel_size, pool.stride
    k = k if isinstance(k, int) else k[0]
    s = s if isinstance(s, int) else s[0]
    return f"{k}x{k} max pool, stride {s}"


def stage_cell(stage: nn.Sequential) -> str:
    """'[1x1, 64; 3x3, 64; 1x1, 256] x 3' from the stage's last block (the first differs only in stride)."""
    block = stage[-1]
    parts = [conv_text(getattr(block, name), show_stride=False) for name in ("conv1", "conv2", "conv3") if hasattr(block, name)]
    se = getattr(block, "se", None)
    if se is not None and hasattr(se, "fc1"):
        parts.append(f"fc, [{se.fc1.out_channels}, {se.fc2.out_channels}]")
    return f"[{'; '.join(parts)}] x {len(stage)}"


def head_cell(model: ResNet) -> str:
    """'average pool, 1000-d fc'."""
    return f"average pool, {model.fc.out_features}-d fc"


def arch_column(label: str, request: ModelRequest) -> ArchColumn:
    """One model's column, built and traced on the meta device."""
    built = build_and_count(request)
    model, trace, count = built.model, built.trace, built.count
    shapes = {r.name: r.output_shape for r in trace.records if r.depth == 1 and r.call_index == 0}
    cells = {STEM_ROW: stem_cell(model), POOL_ROW: pool_cell(model), HEAD_ROW: head_cell(model)}
    sizes = {STEM_ROW: shapes["conv1"][2:], POOL_ROW: shapes["maxpool"][2:], HEAD_ROW: shapes["avgpool"][2:]}
    for i, name in enumerate(model.stage_names):
        cells[stage_row_name(i)] = stage_cell(getattr(model, name))
        sizes[stage_row_name(i)] = shapes[name][2:]
    rows = {"stem": STEM_ROW, "head": HEAD_ROW, **{name: stage_row_name(i) for i, name in enumerate(model.stage_names)}}
    stages = count_by_stage(model, trace, count)
    spec = request.spec
    fields = receptive_fields(trace)
    first = {r.name: r for r in trace.records if r.depth == 1 and r.call_index == 0}
    row_fields = {}
    for row, name in ((STEM_ROW, "conv1"), (POOL_ROW, "maxpool"),
                      *((stage_row_name(i), n) for i, n in enumerate(model.stage_names))):  # fmt: skip
        found = fields.of(first[name]) if name in first else None
        if found is not None and found is not UNKNOWN and not found.whole and cells.get(row):
            row_fields[row] = found.rf[0]
    return ArchColumn(
        label=label,
        request=request,
        cells=cells,
        output_sizes=sizes,
        params=count.params,
        macs_conv_linear=count.conv_linear_macs,
        macs=count.macs,
        row_params={rows[s.name]: s.params for s in stages},
        row_macs={rows[s.name]: s.macs_conv_linear for s in stages},
        downsample_on=spec.stride_on if spec.block == "bottleneck" else "",
        receptive_field=None if fields.backbone is None else "global" if fields.backbone.whole else fields.backbone.rf[0],
        output_stride=fields.output_stride,
        row_receptive_fields=row_fields,
    )


def architecture_table(labelled_requests: list[tuple[str, ModelRequest]]) -> ArchTable:
    """The paper's Table 1 for any models: conv1, max pool, one row per stage, average pool + fc."""
    columns = [arch_column(label, request) for label, request in labelled_requests]
    stages = max(c.request.spec.num_stages for c in columns)
    rows = [STEM_ROW]
    if any(c.cells[POOL_ROW] for c in columns):
        rows.append(POOL_ROW)
    rows += [stage_row_name(i) for i in range(stages)] + [HEAD_ROW]
    return ArchTable(rows=rows, columns=columns)
