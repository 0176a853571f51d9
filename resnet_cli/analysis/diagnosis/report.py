"""What debug-shapes reports: the shapes of every call and, when the pass broke, where, why and what to change."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from resnet_cli.trace import FunctionRecord, LayerRecord

if TYPE_CHECKING:
    import torch

Shape = tuple[int, ...]


@dataclass
class SourceLocation:
    """A line of the user's code: where the failing statement is."""

    file: str
    line: int
    function: str
    code: str


@dataclass
class Diagnosis:
    """What went wrong in plain words, and a concrete change that fixes it."""

    kind: str  # one of render.debug's titles: residual_add_mismatch, norm_channels, batch_changed, ...
    summary: str
    fix: str
    about: LayerRecord | None = None  # the call it is about when not the innermost unfinished one (an empty output)
    location: SourceLocation | None = None  # where in the user's code, when not where an error was raised


@dataclass
class ShapeReport:
    """What debug-shapes reports: every call's shapes and, when the pass broke, where, why and what to change."""

    model: str
    input_shape: Shape
    device: str
    dtype: str
    records: list[LayerRecord]
    functions: list[FunctionRecord] = field(default_factory=list)  # torch calls in containers' own forward
    error: str | None = None  # the error as raised: "RuntimeError: ..."
    failing: LayerRecord | None = None  # innermost call that did not finish, or the layer whose output is empty
    context: LayerRecord | None = None  # whose children are listed: `failing`, or its parent when it is a leaf
    children: list[LayerRecord] = field(default_factory=list)  # finished calls directly inside `context`
    location: SourceLocation | None = None
    diagnosis: Diagnosis | None = None

    @property
    def ok(self) -> bool:
        return self.diagnosis is None


def dtype_text(dtype: torch.dtype) -> str:
    """torch.float32 -> 'float32'."""
    return str(dtype).removeprefix("torch.")


def relative_path(path: str) -> str:
    """`path` relative to the working directory when it lies below it (as the user typed the file), else as is."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive on Windows
        return path
    return path if relative.startswith("..") else relative
