"""Residual adds found by data flow in the tracer's operator records, whatever the code looks like.

An add of two tensors inside a module call is a residual add when both operands derive, within that call, from
the call's own input, and one of them (the shortcut) went through fewer convolutions and linear layers than the
other (the main branch; with as many, the one with fewer weights): the identity (`out + x`), a projection (`out + self.downsample(x)`), a pre-activation
shortcut (`self.shortcut(relu(bn1(x)))`), option A (`F.pad(x[:, :, ::2, ::2], ...)`), or an SE branch that
scales functionally (`out * w + x`). Only the operator records are read, so a failing add counts too: the tracer
records an operator with its operands before it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from resnet_cli.trace import LayerRecord, ModelTrace, OpRecord, Shape

ADDS = frozenset({"add", "add_"})
# Operators that carry weights: the main branch has more of them than the shortcut.
WEIGHTED = frozenset({"convolution", "addmm", "mm", "bmm", "linear", "matmul"})


@dataclass(frozen=True)
class ResidualAdd:
    """The residual add of one module call (`block`, a LayerRecord order): its operands and where they came from."""

    block: int
    op: int  # OpRecord order of the add
    main: Shape
    shortcut: Shape
    main_from: str | None  # the child call whose output the main branch ends in (None: the block's own forward)
    shortcut_from: str | None  # the child call that made the shortcut; None when it is the block's input itself
    shortcut_source: int | None  # OpRecord that made the shortcut operand (-1 - i: the model's input i)
    shortcut_path: tuple[int, ...]  # OpRecords between the block's input and the shortcut (slice, constant_pad_nd, ...)
    finished: bool

    def as_dict(self) -> dict[str, object]:
        """The form debug-shapes keeps in LayerRecord.extra["residual"]."""
        return {"main": self.main, "main_from": self.main_from, "shortcut": self.shortcut,
                "shortcut_from": self.shortcut_from}  # fmt: skip


def residual_adds(trace: ModelTrace) -> dict[int, ResidualAdd]:
    """The residual add of every module call that makes one, by the call's order (its last one, when several do)."""
    found: dict[int, ResidualAdd] = {}
    for op in trace.ops:
        if op.op in ADDS and op.module is not None:
            add = _residual_add(trace, op)
            if add is not None:
                found[add.block] = add
    return found


def _residual_add(trace: ModelTrace, op: OpRecord) -> ResidualAdd | None:
    operands = [(arg, src) for arg, src in zip(op.inputs, op.input_from, strict=False) if len(arg.shape) >= 2]
    if len(operands) != 2:
        return None
    block = trace.records[op.module]  # type: ignore[index]
    inputs = {i for i in block.input_ops if i is not None}
    paths = [_path(trace.ops, block, op.order, source, inputs) for _, source in operands]
    if any(path is None for path in paths):
        return None
    weights = [_weight(trace.ops, path) for path in paths]  # type: ignore[arg-type]
    if weights[0] == weights[1]:
        return None
    main, shortcut = (0, 1) if weights[0] > weights[1] else (1, 0)
    shortcut_path = paths[shortcut]
    return ResidualAdd(
        block=block.order,
        op=op.order,
        main=operands[main][0].shape,
        shortcut=operands[shortcut][0].shape,
        main_from=_made_by(trace, block, operands[main][1], inputs),
        shortcut_from=_made_by(trace, block, operands[shortcut][1], inputs),
        shortcut_source=operands[shortcut][1],
        shortcut_path=tuple(sorted(shortcut_path)),  # type: ignore[arg-type]
        finished=op.finished,
    )


def _weight(ops: list[OpRecord], path: set[int]) -> tuple[int, int]:
    """(weighted operators, elements of their weights) on a path: the shortcut is the lighter branch."""
    weighted = [ops[i] for i in path if ops[i].op in WEIGHTED]
    return len(weighted), sum(a.numel() for op in weighted for a, src in zip(op.inputs, op.input_from, strict=False)
                              if src is None)  # fmt: skip


def _path(ops: list[OpRecord], block: LayerRecord, before: int, source: int | None, inputs: set[int]) -> set[int] | None:
    """The operators of `block` (before operator `before`) that `source` derives from, or None when it does not
    derive from the block's input."""
    if source is None:
        return None
    seen: set[int] = set()
    stack = [source]
    reached = False
    while stack:
        order = stack.pop()
        if order in inputs:
            reached = True
            continue
        if order is None or order < block.ops_start or order >= before or order in seen:
            continue
        seen.add(order)
        stack.extend(ops[order].input_from)
    return seen if reached else None


def _made_by(trace: ModelTrace, block: LayerRecord, source: int | None, inputs: set[int]) -> str | None:
    """The child call of `block` whose output the operand is, following the block's own operators back through
    their largest operand (the feature map, not an SE gate); None when it reaches the block's input first."""
    ops, records = trace.ops, trace.records
    while source is not None and source not in inputs and source >= block.ops_start:
        op = ops[source]
        if op.module != block.order and op.module is not None:
            record = records[op.module]
            while record.parent is not None and record.parent != block.order:
                record = records[record.parent]
            return record.name if record.parent == block.order else None
        source = op.main_input()
    return None
