"""Theoretical receptive field and effective stride of every tensor of a forward pass, from the operator records.

Araujo et al. 2019 (Distill, "Computing Receptive Fields of Convolutional Neural Networks"): through a conv or
pool of kernel k, stride s and dilation d, with k_eff = d (k - 1) + 1, the receptive field grows to
r_out = r_in + (k_eff - 1) j_in and the jump (effective stride, in input pixels) to j_out = j_in s. Where paths
meet (a residual add, torch.cat, an SE gate's multiply) the receptive field is the maximum over the incoming
paths. A global pooling (adaptive pooling to 1x1, a mean over the map) sees the whole map: its field is marked
`whole`, and so is everything it reaches (an SE gate makes a block's output depend on the whole input). Height
and width are followed separately. An operator that changes a map's size in a way not listed here (upsampling,
unfold) makes everything after it unknown, and is named in `unknown_ops`: no figure is made up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from resnet_cli.meta_shapes import pair
from resnet_cli.trace import LayerRecord, ModelTrace, OpRecord

Pair = tuple[int, int]  # (height, width)
_WINDOWED = {"convolution", "max_pool2d_with_indices", "max_pool2d", "avg_pool2d"}
_GLOBAL = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "_adaptive_avg_pool2d", "mean", "amax", "sum"}


@dataclass(frozen=True)
class Field:
    """What one output pixel sees: the receptive field and the jump (input pixels between neighbouring outputs),
    per spatial dimension; `whole` once a global pooling made it depend on the whole input."""

    rf: Pair
    jump: Pair
    whole: bool = False


UNKNOWN = Field((0, 0), (0, 0))  # past an operator that is not followed


@dataclass
class ReceptiveFields:
    """Per operator and per module call (its first output): the field, None for tensors that are not activations
    (weights and what is computed from them only), UNKNOWN past an operator not followed."""

    ops: dict[int, Field | None]
    calls: dict[int, Field | None]
    output_stride: int | None  # the jump of the last map larger than 1x1 (the backbone's output stride)
    backbone: Field | None  # the field of that map (None when an operator was not followed)
    unknown_ops: dict[str, int] = field(default_factory=dict)

    def of(self, record: LayerRecord) -> Field | None:
        """The field of a module call's first output (None or UNKNOWN as above)."""
        return self.calls.get(record.order)


def receptive_fields(trace: ModelTrace) -> ReceptiveFields:
    """Follow the receptive field and jump through every operator of `trace` (input pixels: 1x1, jump 1)."""
    fields: dict[int, Field | None] = {}
    unknown: dict[str, int] = {}
    start = Field((1, 1), (1, 1))

    def of(source: int | None) -> Field | None:
        return None if source is None else start if source < 0 else fields.get(source)

    for op in trace.ops:
        if not op.finished:
            break
        fields[op.order] = _through(op, [f for f in map(of, op.input_from) if f is not None], unknown)
    calls = {r.order: of(r.output_ops[0]) if r.output_ops else None for r in trace.records}
    backbone = None if unknown else _backbone(trace, fields)
    return ReceptiveFields(fields, calls, max(backbone.jump) if backbone else None, backbone, unknown)


def _through(op: OpRecord, incoming: list[Field], unknown: dict[str, int]) -> Field | None:
    """The field of `op`'s output from the fields of its activation inputs."""
    if not incoming:
        return None  # computed from weights and constants only
    if UNKNOWN in incoming:
        return UNKNOWN
    merged = Field(tuple(max(f.rf[i] for f in incoming) for i in range(2)),  # type: ignore[arg-type]
                   tuple(max(f.jump[i] for f in incoming) for i in range(2)),  # type: ignore[arg-type]
                   any(f.whole for f in incoming))  # fmt: skip
    name, shapes = op.op, [arg.shape for arg in op.inputs]
    out = op.output_shapes[0] if op.output_shapes else ()
    if name in _WINDOWED and not (name == "convolution" and len(op.args) > 6 and op.args[6]):  # not transposed
        return _window(op, merged)
    keeps_map = len(out) >= 4 and len(shapes[0]) >= 4 and out[-2:] == shapes[0][-2:]
    if name in _GLOBAL and keeps_map:
        return merged  # a mean or sum over channels (CBAM's spatial attention): each pixel sees what it saw
    if name in _GLOBAL or name.startswith(("adaptive_", "_adaptive_")):
        if len(out) >= 4 and out[-2:] != (1, 1) and not keeps_map:
            unknown[name] = unknown.get(name, 0) + 1  # adaptive pooling to more than 1x1: windows of uneven size
            return UNKNOWN
        size = shapes[0][-2:] if len(shapes[0]) >= 4 else (1, 1)
        rf = tuple(merged.rf[i] + (size[i] - 1) * merged.jump[i] for i in range(2))
        return Field(rf, merged.jump, True)  # type: ignore[arg-type]
    if name == "slice" and len(op.args) >= 5 and op.args[1] in (2, 3, -1, -2):
        axis = 0 if op.args[1] in (2, -2) else 1
        jump = list(merged.jump)
        jump[axis] *= op.args[4]
        return Field(merged.rf, tuple(jump), merged.whole)  # type: ignore[arg-type]
    if len(out) >= 4 and len(shapes[0]) >= 4 and out[-2:] != shapes[0][-2:] and name != "constant_pad_nd":
        unknown[name] = unknown.get(name, 0) + 1  # upsampling, unfold, pixel shuffle, ...: not followed
        return UNKNOWN
    return merged  # elementwise, norms, views, padding, concatenation, linear: the union of what the inputs see


def _window(op: OpRecord, incoming: Field) -> Field:
    """Through a conv or pooling window."""
    if op.op == "convolution":
        kernel = op.args[1].shape[-2:]
        stride, dilation = pair(op.args[3]), pair(op.args[5])
    else:
        kernel = pair(op.args[1])
        stride = pair(op.args[2], kernel) if len(op.args) > 2 and op.args[2] is not None else kernel
        dilation = pair(op.args[4]) if op.op.startswith("max_pool") and len(op.args) > 4 else (1, 1)
    effective = [dilation[i] * (kernel[i] - 1) + 1 for i in range(2)]
    return Field(
        tuple(incoming.rf[i] + (effective[i] - 1) * incoming.jump[i] for i in range(2)),  # type: ignore[arg-type]
        tuple(incoming.jump[i] * stride[i] for i in range(2)),  # type: ignore[arg-type]
        incoming.whole,
    )


def _backbone(trace: ModelTrace, fields: dict[int, Field | None]) -> Field | None:
    """The field of the last 4-D map that is not a global pooling's output: the backbone's last feature map (whole
    when an SE gate or another global pooling made it depend on the whole input). Called only when every operator
    was followed."""
    for op in reversed(trace.ops):
        out = op.output_shapes[0] if op.output_shapes else ()
        found = fields.get(op.order)
        if len(out) == 4 and found is not None and not (op.op in _GLOBAL or op.op.startswith(("adaptive_", "_adaptive_"))):
            return found
    return None
