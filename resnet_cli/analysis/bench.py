"""Timing a model on a real device: latency percentiles, throughput and peak memory per configuration.

The timing loop never prints: callers that want a progress bar pass a callback.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import platform
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from resnet_cli.analysis.checkpointing import check_checkpoint, checkpoint_segments, checkpointed
from resnet_cli.analysis.counting import failure_subject
from resnet_cli.analysis.fusion import FusionCheck, fuse_and_check
from resnet_cli.errors import UserError
from resnet_cli.model import instantiate, resolve_device
from resnet_cli.spec import ModelRequest
from resnet_cli.trace import tensors_in
from resnet_cli.units import first_line, shape_text
from resnet_cli.user_model import UserModelRequest

MODES = ("infer", "train")
AMP_DTYPES = {"bf16": "bfloat16", "fp16": "float16"}
# The train step's loss: cross-entropy against random labels when the model returns N x K logits, otherwise the
# sum of the means of its floating-point outputs (a backbone's feature maps, a list, a dict)
CROSS_ENTROPY = "cross-entropy"
OUTPUT_MEAN = "output mean"

BenchRequest = ModelRequest | UserModelRequest  # a preset (changed by build flags) or the user's own model

# (row label, steps done, steps in the row) after every warm-up and timed step
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchSettings:
    """How to run the model: the mode, the loop lengths and the speed knobs."""

    mode: str = "infer"
    iters: int = 20
    warmup: int = 3
    channels_last: bool = False
    amp: str | None = None  # "bf16" | "fp16": autocast to that dtype
    compile: bool = False
    threads: int | None = None  # CPU intra-op threads; None keeps torch's default
    fuse_bn: bool = False  # infer: each BatchNorm folded into the conv before it (analysis.fusion), outputs checked
    checkpoint: str = "none"  # train: "block" or "stage" segments recomputed during backward (analysis.checkpointing)

    def knobs(self) -> list[str]:
        """The enabled speed knobs as flag text, e.g. ['channels-last', 'amp bf16']."""
        enabled = []
        if self.channels_last:
            enabled.append("channels-last")
        if self.amp:
            enabled.append(f"amp {self.amp}")
        if self.compile:
            enabled.append("compile")
        if self.fuse_bn:
            enabled.append("fuse-bn")
        if self.checkpoint != "none":
            enabled.append(f"checkpoint {self.checkpoint}")
        return enabled

    @property
    def label(self) -> str:
        """'baseline' or the knobs joined with ' + '."""
        return " + ".join(self.knobs()) or "baseline"

    def baseline(self) -> BenchSettings:
        """The same run with every speed knob off."""
        return replace(self, channels_last=False, amp=None, compile=False, fuse_bn=False, checkpoint="none")


@dataclass
class BenchRow:
    """Measurements of one configuration; latencies are per batch, in milliseconds."""

    label: str
    settings: BenchSettings
    latencies_ms: list[float]
    peak_memory_bytes: int | None  # CUDA allocator peak, or CPU resident-set growth; None if unknown
    speedup: float | None = None  # baseline median / this median, in a grid
    fusion: FusionCheck | None = None  # with fuse_bn: what was folded and how far the outputs moved

    @property
    def median_ms(self) -> float:
        return percentile(self.latencies_ms, 50)

    @property
    def p10_ms(self) -> float:
        return percentile(self.latencies_ms, 10)

    @property
    def p90_ms(self) -> float:
        return percentile(self.latencies_ms, 90)


@dataclass
class BenchReport:
    """What `bench` reports: the request, where it ran, and one row per configuration."""

    request: BenchRequest
    settings: BenchSettings
    device_name: str
    threads: int
    memory_kind: str  # what peak_memory_bytes measures, in words
    torch_version: str
    rows: list[BenchRow] = field(default_factory=list)
    loss: str | None = None  # CROSS_ENTROPY or OUTPUT_MEAN in train mode, None in infer mode

    @property
    def batch_size(self) -> int:
        return self.request.input_shape[0]

    def images_per_s(self, row: BenchRow) -> float:
        """Throughput at the median latency."""
        return self.batch_size / (row.median_ms / 1000.0)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile with linear interpolation between order statistics (numpy's default)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def grid_settings(settings: BenchSettings) -> list[BenchSettings]:
    """The baseline, each enabled knob alone, and all of them together when more than one is enabled."""
    base = settings.baseline()
    rows = [base]
    if settings.channels_last:
        rows.append(replace(base, channels_last=True))
    if settings.amp:
        rows.append(replace(base, amp=settings.amp))
    if settings.compile:
        rows.append(replace(base, compile=True))
    if settings.fuse_bn:
        rows.append(replace(base, fuse_bn=True))
    if settings.checkpoint != "none":
        rows.append(replace(base, checkpoint=settings.checkpoint))
    if len(settings.knobs()) > 1:
        rows.append(settings)
    return rows


def check_settings(request: BenchRequest, settings: BenchSettings, grid: bool) -> None:
    """Raise a UserError naming the flag for settings that cannot be timed."""
    if request.device == "meta":
        raise UserError("--device meta cannot be timed: nothing runs on meta; use --device cpu or cuda")
    if settings.mode not in MODES:
        raise UserError(f"--mode {settings.mode!r} is not one of {', '.join(MODES)}")
    if settings.iters < 1:
        raise UserError(f"--iters {settings.iters} must be at least 1")
    if settings.warmup < 0:
        raise UserError(f"--warmup {settings.warmup} must be 0 or more")
    if settings.amp is not None and settings.amp not in AMP_DTYPES:
        raise UserError(f"--amp {settings.amp!r} is not one of {', '.join(AMP_DTYPES)}")
    if settings.threads is not None:
        if settings.threads < 1:
            raise UserError(f"--threads {settings.threads} must be at least 1")
        most = 4 * (os.cpu_count() or 1)
        if settings.threads > most:
            raise UserError(f"--threads {settings.threads} is above the limit of {most} (4 per core on this machine)")
        if request.device != "cpu":
            raise UserError(f"--threads sets CPU threads and applies to --device cpu only, not {request.device}")
    if settings.compile and settings.warmup < 1:
        raise UserError("--compile needs --warmup 1 or more: the first step compiles and must not be timed")
    if settings.fuse_bn and settings.mode != "infer":
        raise UserError(
            "--fuse-bn with --mode train: fusion folds BatchNorm's running statistics, which only inference uses; "
            "use --mode infer"
        )
    check_checkpoint(settings.checkpoint)
    if settings.checkpoint != "none" and settings.mode != "train":
        raise UserError(
            f"--checkpoint {settings.checkpoint} with --mode infer: checkpointing recomputes activations during "
            f"backward, which only --mode train runs; use --mode train or --checkpoint none"
        )
    if grid and not settings.knobs():
        raise UserError(
            "--grid compares knobs against the baseline; add at least one of --channels-last, --amp, --compile, "
            "--fuse-bn (infer), --checkpoint (train)"
        )


def run_bench(
    request: BenchRequest,
    settings: BenchSettings,
    *,
    grid: bool = False,
    progress: ProgressCallback | None = None,
) -> BenchReport:
    """Time the requested model (a preset or the user's own) under `settings`, or under each grid configuration,
    and report per row."""
    check_settings(request, settings, grid)
    if request.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    device = resolve_device(request.device)
    previous_threads = torch.get_num_threads()
    previous_cudnn_benchmark = torch.backends.cudnn.benchmark
    try:
        if settings.threads is not None:
            torch.set_num_threads(settings.threads)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # picks the fastest conv kernels during warm-up
        report = BenchReport(
            request=request,
            settings=settings,
            device_name=device_name(device),
            threads=torch.get_num_threads(),
            memory_kind="CUDA allocator peak" if device.type == "cuda" else "CPU resident-set growth",
            torch_version=torch.__version__,
        )
        configs = grid_settings(settings) if grid else [settings]
        with contextlib.ExitStack() as rows_open:  # a checkpointed row's model stays so until every row is timed
            prepared = [rows_open.enter_context(prepare_row(request, config, progress)) for config in configs]
            steps = [functools.partial(run_step, row.step, row.settings, request, first=False) for row in prepared]
            labels, total = [row.label for row in prepared], settings.warmup + settings.iters
            after_step = (lambda i, run: progress(labels[i], settings.warmup + run + 1, total)) if progress else None
            with grad_mode(settings):
                latencies = time_interleaved(steps, device, settings.iters, after_step=after_step)
        report.rows = [
            BenchRow(
                label=row.label,
                settings=row.settings,
                latencies_ms=times,
                peak_memory_bytes=row.peak_memory_bytes,
                fusion=row.fusion,
            )
            for row, times in zip(prepared, latencies, strict=True)
        ]
        report.loss = prepared[0].loss.kind if prepared[0].loss else None
        del prepared, steps  # the rows' models
    finally:
        torch.set_num_threads(previous_threads)
        torch.backends.cudnn.benchmark = previous_cudnn_benchmark
    baseline = report.rows[0].median_ms
    if grid:
        for row in report.rows:
            row.speedup = baseline / row.median_ms
    return report


@dataclass
class PreparedRow:
    """A configuration built and warmed up, ready to be timed; holds its model alive through `step`. Used as a
    context manager: on exit, a checkpointed model's modules get their own forward back."""

    label: str
    settings: BenchSettings
    step: Callable[[], None]
    peak_memory_bytes: int | None
    loss: TrainLoss | None  # the train step's loss; None in infer mode
    fusion: FusionCheck | None = None  # with fuse_bn: what was folded and how far the outputs moved
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def __enter__(self) -> PreparedRow:
        return self

    def __exit__(self, *exc: object) -> None:
        self.resources.close()


def prepare_row(
    request: BenchRequest, settings: BenchSettings, progress: ProgressCallback | None = None
) -> PreparedRow:
    """Build a fresh model for one configuration and run its warm-up steps, measuring peak memory meanwhile. With
    fuse_bn the model is fused and its outputs checked first (fusion.fuse_and_check; the check's float64 copy is
    left out of the peak); with a checkpoint choice its segments stay checkpointed until the row is closed."""
    label = settings.label
    resources = contextlib.ExitStack()
    with peak_memory(request.device) as memory:
        try:
            model, inputs = instantiate(request)
        except (RuntimeError, MemoryError) as exc:  # out of memory, on either device
            message = first_line(exc)
            raise UserError(
                f"--input {shape_text(request.input_shape)}: cannot allocate the model and input on {request.device} "
                f"({message}); use a smaller batch or model"
            ) from None
        fusion = None
        if settings.fuse_bn:
            fusion = fuse_and_check(model, inputs)
            memory.forget_peak()
        if settings.channels_last:
            model = model.to(memory_format=torch.channels_last)
            inputs = inputs.contiguous(memory_format=torch.channels_last)
        model.train(settings.mode == "train")  # before compiling: a later mode switch would recompile
        try:
            if settings.checkpoint != "none":
                resources.enter_context(checkpointed(model, checkpoint_segments(model, settings.checkpoint)))
            if settings.compile:
                model = compile_model(model)
            loss = TrainLoss() if settings.mode == "train" else None
            step = make_step(model, inputs, settings, loss)
            total = settings.warmup + settings.iters
            with grad_mode(settings):
                for i in range(settings.warmup):
                    run_step(step, settings, request, first=i == 0)
                    if progress:
                        progress(label, i + 1, total)
        except BaseException:
            resources.close()
            raise
    return PreparedRow(
        label=label,
        settings=settings,
        step=step,
        peak_memory_bytes=memory.peak_bytes,
        loss=loss,
        fusion=fusion,
        resources=resources,
    )


class TrainLoss:
    """The train step's loss, picked from the model's first output: cross-entropy against random labels for
    N x K logits, otherwise the sum of the means of every floating-point tensor in the output."""

    def __init__(self) -> None:
        self.kind: str | None = None  # CROSS_ENTROPY or OUTPUT_MEAN, once the first output was seen
        self._compute: Callable[[Any], Any] | None = None

    def __call__(self, output: Any) -> Any:
        if self._compute is None:
            self._compute = self._pick(output)
        return self._compute(output)

    def _pick(self, output: Any) -> Callable[[Any], Any]:
        if isinstance(output, torch.Tensor) and output.ndim == 2 and output.is_floating_point():
            batch, classes = output.shape
            targets = torch.randint(0, classes, (batch,), device=output.device)
            self.kind = CROSS_ENTROPY
            return lambda logits: F.cross_entropy(logits, targets)
        if any(t.is_floating_point() for t in tensors_in(output)):
            self.kind = OUTPUT_MEAN
            return lambda out: sum(t.mean(dtype=torch.float32) for t in tensors_in(out) if t.is_floating_point())
        raise UserError(
            f"--mode train: the model returns {type(output).__name__} with no floating-point tensor to take a loss "
            f"of; use --mode infer"
        )


def make_step(model: Any, inputs: Any, settings: BenchSettings, loss: TrainLoss | None = None) -> Callable[[], None]:
    """One benchmark step: a forward pass (infer) or forward, `loss` (a new TrainLoss if None), backward and an
    SGD update (train)."""
    device_type = inputs.device.type
    amp_dtype = getattr(torch, AMP_DTYPES[settings.amp]) if settings.amp else None

    def autocast() -> contextlib.AbstractContextManager:
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=amp_dtype)

    if settings.mode == "infer":
        model.eval()

        def infer() -> None:
            with autocast():
                model(inputs)

        return infer

    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise UserError("--mode train: the model has no trainable parameters, so there is no step to time; use --mode infer")
    model.train()
    optimizer = torch.optim.SGD(trainable, lr=1e-3, momentum=0.9)
    loss_of = loss if loss is not None else TrainLoss()
    # fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none
    scaler = torch.amp.GradScaler(device_type) if settings.amp == "fp16" else None

    def train() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            value = loss_of(model(inputs))
        if scaler is None:
            value.backward()
            optimizer.step()
        else:
            scaler.scale(value).backward()
            scaler.step(optimizer)
            scaler.update()

    return train


def time_interleaved(
    steps: Sequence[Callable[[], None]],
    device: str | torch.device,
    runs: int,
    *,
    warmup: int = 0,
    after_step: Callable[[int, int], None] | None = None,
) -> list[list[float]]:
    """Run every step `warmup + runs` times, taking the steps in turn (A, B, A, B, ...) so that load that comes and
    goes hits them alike; milliseconds of each timed run, one list per step (on CUDA, timed with CUDA events).
    `after_step(step, run)` is called after each call, warm-up runs included."""
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
    latencies: list[list[float]] = [[] for _ in steps]
    for run in range(warmup + runs):
        for index, (step, times) in enumerate(zip(steps, latencies, strict=True)):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                step()
                end.record()
                end.synchronize()
                elapsed = start.elapsed_time(end)
            else:
                started = time.perf_counter()
                step()
                elapsed = (time.perf_counter() - started) * 1000.0
            if run >= warmup:
                times.append(elapsed)
            if after_step is not None:
                after_step(index, run)
    return latencies


def grad_mode(settings: BenchSettings) -> contextlib.AbstractContextManager:
    """torch.inference_mode for infer steps; autograd as usual for train steps."""
    return torch.inference_mode() if settings.mode == "infer" else contextlib.nullcontext()


def run_step(step: Callable[[], None], settings: BenchSettings, request: BenchRequest, *, first: bool) -> None:
    """Run one step, turning a failure into a UserError that names the cause."""
    try:
        step()
    except torch.cuda.OutOfMemoryError:
        raise UserError(
            f"--input {shape_text(request.input_shape)}: out of memory on {request.device} in {settings.mode} mode; "
            f"use a smaller batch"
        ) from None
    except UserError:
        raise
    except SystemExit as exc:  # the model's own code called sys.exit(); resnet-cli's exit code stays its own
        raise UserError(
            f"the {settings.mode} step fails: the model's code called sys.exit({exc.code!r}); raise an exception "
            f"instead (run `resnet-cli debug-shapes` to find the call)"
        ) from None
    except Exception as exc:  # any failure of the model run is reported as one line
        message = first_line(exc)
        if settings.compile and first:
            raise UserError(
                f"--compile: torch.compile failed on this machine ({message}); run without --compile"
            ) from None
        if "more than 1 value per channel" in message:
            raise UserError(
                f"--input {shape_text(request.input_shape)}: batch norm in train mode needs more than one value per "
                f"channel; use a batch of 2 or more or a larger H and W"
            ) from None
        if isinstance(request, UserModelRequest) and request.dtype != "float32" and "type" in message.lower():
            raise UserError(
                f"--dtype {request.dtype}: the {settings.mode} step fails: {message}; your own model keeps its "
                f"parameters' dtypes and --dtype sets the input's only: time mixed precision with --amp instead"
            ) from None
        subject = failure_subject(request) or f"--input {shape_text(request.input_shape)}"
        raise UserError(f"{subject}: the {settings.mode} step fails: {message}") from None


def compile_model(model: Any) -> Any:
    """torch.compile the model, or a UserError when this torch or Python cannot compile."""
    try:
        return torch.compile(model)
    except Exception as exc:  # unsupported Python, missing backend: compile itself refuses
        message = first_line(exc)
        raise UserError(f"--compile: torch.compile is unavailable here ({message}); run without --compile") from None


class PeakMemory:
    """Peak memory seen inside a `peak_memory` block; `peak_bytes` is None where it cannot be measured."""

    peak_bytes: int | None = None

    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def forget_peak(self) -> None:
        """Start the peak again from what is allocated now: memory used and freed so far stops counting (what is
        still allocated since the block began still does)."""
        gc.collect()
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        else:
            _release_free_heap()
            _reset_peak_rss()


@contextlib.contextmanager
def peak_memory(device: str) -> Iterator[PeakMemory]:
    """Peak memory added inside the block: CUDA allocator peak, or on the CPU resident-set growth to its peak."""
    result = PeakMemory(device)
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        allocated_before = torch.cuda.memory_allocated()  # earlier grid rows' models, still alive
        yield result
        result.peak_bytes = torch.cuda.max_memory_allocated() - allocated_before
        return
    _release_free_heap()
    before = _proc_status_bytes("VmRSS")
    can_reset = _reset_peak_rss()
    yield result
    peak = _proc_status_bytes("VmHWM")
    if before is not None and peak is not None and can_reset:
        result.peak_bytes = max(0, peak - before)
    gc.collect()


def _proc_status_bytes(key: str) -> int | None:
    """A memory figure from /proc/self/status (Linux), in bytes."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux 4.0+); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        return True
    except OSError:
        return False


def _release_free_heap() -> None:
    # glibc keeps freed blocks mapped; returning them makes the next row's growth start from a fair floor
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def device_name(device: Any) -> str:
    """The GPU's name or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "cpu"

