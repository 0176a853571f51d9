"""Which input sizes a model runs at: one debug-shapes pass per size on meta, grouped into ranges with one outcome.

On meta nothing is allocated, so a hundred sizes of a resnet50 take seconds; a model on a real device is scanned
through a meta copy of itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from resnet_cli.analysis.diagnosis import ShapeReport, debug_shapes
from resnet_cli.analysis.diagnosis.search import meta_copy
from resnet_cli.errors import UserError
from resnet_cli.model import instantiate, resolve_device
from resnet_cli.spec import LIMITS, ModelRequest
from resnet_cli.trace import make_input
from resnet_cli.user_model import UserModelRequest, build_user_model


@dataclass(frozen=True)
class SizeResult:
    """One input size: whether the pass ran cleanly, and if not, where and what debug-shapes found."""

    size: tuple[int, int]
    ok: bool
    module: str | None = None  # the call the finding is about ("" is the model itself)
    type: str | None = None
    kind: str | None = None  # Diagnosis.kind
    summary: str | None = None
    fix: str | None = None

    @property
    def outcome(self) -> tuple[bool, str | None, str | None]:
        """What makes two sizes one range: the same result, at the same module, of the same kind."""
        return self.ok, self.module, self.kind


@dataclass(frozen=True)
class SizeRange:
    """Consecutive sizes (as given) with one outcome; `result` is its first size's."""

    first: tuple[int, int]
    last: tuple[int, int]
    count: int
    result: SizeResult


@dataclass(frozen=True)
class SizeScan:
    """What `debug-shapes --sizes` reports."""

    model: str
    batch: int
    channels: int
    dtype: str
    results: tuple[SizeResult, ...]

    @property
    def ranges(self) -> list[SizeRange]:
        """Runs of sizes, as given, with one outcome and one step between them (a list 26..30,58..62 is two)."""
        ranges: list[SizeRange] = []
        for result in self.results:
            last = ranges[-1] if ranges else None
            if last is not None and last.result.outcome == result.outcome and _steps_on(last, result.size):
                ranges[-1] = SizeRange(last.first, result.size, last.count + 1, last.result)
            else:
                ranges.append(SizeRange(result.size, result.size, 1, result))
        return ranges

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def _steps_on(run: SizeRange, size: tuple[int, int]) -> bool:
    """Whether `size` continues `run` with its step: square sizes, growing by the same amount."""
    if size[0] != size[1] or run.last[0] != run.last[1] or size[0] <= run.last[0]:
        return False
    return run.count == 1 or size[0] - run.last[0] == (run.last[0] - run.first[0]) // (run.count - 1)


def _result(size: tuple[int, int], report: ShapeReport) -> SizeResult:
    failing, diagnosis = report.failing, report.diagnosis
    if diagnosis is None:
        return SizeResult(size, True)
    return SizeResult(size, False, failing.name if failing else None, failing.type if failing else None,
                      diagnosis.kind, diagnosis.summary, diagnosis.fix)  # fmt: skip


def scan_request(request: ModelRequest | UserModelRequest, sizes: tuple[tuple[int, int], ...]) -> SizeScan:
    """Build the requested model and scan `sizes` (height, width) with the request's batch, channels and dtype."""
    batch, channels = request.input_shape[:2]
    largest = max(h * w for h, w in sizes)
    if batch * channels * largest > LIMITS["input_elements"]:
        raise UserError(f"--sizes: {batch}x{channels}x{largest:,} pixels is above the limit of "
                        f"{LIMITS['input_elements']:,} input elements")  # fmt: skip
    if isinstance(request, UserModelRequest):
        model = build_user_model(request)
    else:
        model, _ = instantiate(request)
    return scan_sizes(model, sizes, batch, channels, getattr(torch, request.dtype), request.label, resolve_device(request.device))


def scan_sizes(
    model: nn.Module, sizes: tuple[tuple[int, int], ...], batch: int = 1, channels: int = 3,
    dtype: torch.dtype = torch.float32, name: str = "model", device: str = "meta",
) -> SizeScan:  # fmt: skip
    """debug-shapes at every size, on meta (through a meta copy when the model is on a real device)."""
    if device != "meta" or any(not t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        copy = meta_copy(model)
        if copy is None:
            raise UserError(f"--sizes: {name} cannot be copied to the meta device to scan sizes; run one --input at a time")
        model = copy
    results = []
    full: dict[tuple[str | None, str], SizeResult] = {}  # the searched diagnosis, once per quick outcome
    for height, width in sizes:
        inputs = make_input((batch, channels, height, width), "meta", dtype)
        report = debug_shapes(model, inputs)
        if report.ok:
            results.append(SizeResult((height, width), True))
            continue
        key = (report.failing.name if report.failing else None, report.diagnosis.kind)  # type: ignore[union-attr]
        if key not in full:
            # The rules that try other sizes (the sizes a model was written for, the smallest that runs) run once
            # per kind of failure, so a range gets the same diagnosis as one --input of its first size would.
            full[key] = _result((height, width), debug_shapes(model, inputs, smallest_input_search=True))
        results.append(replace(full[key], size=(height, width)))
    return SizeScan(name, batch, channels, str(dtype).removeprefix("torch."), tuple(results))
