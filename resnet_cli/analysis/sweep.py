"""Design-space sweeps: every combination of `--vary` values, counted on the meta device.

Each variant becomes a validated ModelRequest through `request_from_flags`, then gets params,
MACs (the counting engine's fast path) and activation memory without allocating activations.
Combinations the spec refuses, and variants whose build or count fails in any way (torch's storage
overflow, OverflowError, MemoryError), are kept as skipped variants with the reason.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import closing
from dataclasses import dataclass, field
from typing import Any

from resnet_cli.errors import SpecError, UserError
from resnet_cli.spec import (
    BUILD_FLAGS,
    BuildFlag,
    ModelRequest,
    changed_flags,
    default_widths,
    request_from_flags,
    resolve_spec,
)
from resnet_cli.units import first_line, typed_first_line

# The quantities a variant is measured by, as --sort and --pareto name them: Measurement field for each.
QUANTITIES = {"macs": "macs", "params": "params", "acts": "acts", "memory": "activation_bytes"}
SORT_KEYS = (*QUANTITIES, "order")
DEFAULT_PARETO = ("macs", "params")
LIST_SEPARATOR = "/"
# Below this many variants the worker processes cost more to start (they import torch) than they save.
MIN_VARIANTS_FOR_POOL = 48

# (done, total) after every variant
ProgressCallback = Callable[[int, int], None]


# --vary takes every build flag, by the name users write (`width-per-group`).
VARY_FLAGS: dict[str, BuildFlag] = {flag.name: flag for flag in BUILD_FLAGS.values()}


@dataclass(frozen=True)
class Vary:
    """One --vary: the flag and its values, parsed (`values`) and as shown (`labels`)."""

    flag: BuildFlag
    values: tuple[Any, ...]
    labels: tuple[str, ...]


def parse_vary(text: str) -> Vary:
    """Parse 'FLAG=v1,v2,...'; list-valued flags (layers, widths, dilate-stages) separate values with '/'."""
    name, equals, values_text = text.partition("=")
    name = name.strip().lstrip("-").replace("_", "-").lower()
    if not equals or not name:
        raise UserError(f"--vary {text!r}: use FLAG=v1,v2 such as expansion=2,4 or layers=2,2,2,2/3,4,6,3")
    flag = VARY_FLAGS.get(name)
    if flag is None:
        raise UserError(f"--vary {name}: not a build flag; valid: {', '.join(VARY_FLAGS)}")
    if flag.kind == "int-list" or LIST_SEPARATOR in values_text:
        parts = values_text.split(LIST_SEPARATOR)
    else:
        parts = values_text.split(",")
    parsed = [_parse_value(flag, part.strip(), text) for part in parts]
    labels = [label for _, label in parsed]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise UserError(f"--vary {text}: value {repeated[0]} is listed twice")
    return Vary(flag=flag, values=tuple(v for v, _ in parsed), labels=tuple(labels))


def _parse_value(flag: BuildFlag, part: str, text: str) -> tuple[Any, str]:
    """One value of a --vary flag and its label; a UserError names the flag and what is valid."""
    if not part and flag.kind == "int-list" and flag.field != "dilate_stages":
        raise UserError(f"--vary {text}: empty value; separate {flag.name} values with '/', e.g. {flag.example}")
    if not part and flag.kind != "int-list":
        raise UserError(f"--vary {text}: empty value; separate values with ',', e.g. {flag.name}={flag.example}")
    try:
        value = flag.parse(part)
    except SpecError as exc:
        raise UserError(f"--vary {text}: {exc}; e.g. {flag.name}={flag.example}") from None
    if flag.kind == "bool":
        return value, "on" if value else "off"
    if flag.kind == "int-list":
        return value, value or "none"
    return value, str(value) if flag.kind == "int" else part


@dataclass
class Measurement:
    """A variant's size and cost; memory in bytes at the request's dtype."""

    params: int
    macs: int  # fvcore convention: conv, linear, batch norm, adaptive pooling
    conv_linear_macs: int  # conv and linear only (He et al. 2015, torchvision)
    activation_bytes: int  # forward pass: distinct module outputs
    acts: int = 0  # output elements of conv, linear and matrix products (MacCount.acts)


@dataclass
class Variant:
    """One point of the grid: its position, the varied values as shown, and its measurement."""

    index: int
    labels: dict[str, str]
    measurement: Measurement | None = None
    skipped_reason: str | None = None
    pareto: bool = False


@dataclass
class SweepResult:
    """What `sweep` reports: the base request, the varied flags, measured and skipped variants."""

    base: ModelRequest
    varies: list[Vary]
    variants: list[Variant]  # measured ones, sorted by `sort`
    skipped: list[Variant]
    sort: str
    workers: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    pareto: tuple[str, str] = DEFAULT_PARETO  # the two quantities the front is taken on


def check_sweep(base: ModelRequest, varies: list[Vary], sort: str, workers: int | None) -> None:
    """Raise a UserError naming the flag for a sweep that cannot run."""
    if not varies:
        raise UserError("sweep needs at least one --vary FLAG=v1,v2, e.g. --vary expansion=2,4")
    seen: set[str] = set()
    for vary in varies:
        if vary.flag.name in seen:
            raise UserError(f"--vary {vary.flag.name} is given twice; put all its values in one --vary")
        seen.add(vary.flag.name)
    if base.device != "meta":
        raise UserError(f"--device {base.device}: sweep counts every variant on the meta device; drop --device")
    if base.weights is not None:
        raise UserError("--weights does not apply to sweep: params and MACs do not depend on weight values")
    if sort not in SORT_KEYS:
        raise UserError(f"--sort {sort!r} is not one of {', '.join(SORT_KEYS)}")
    if workers is not None and workers < 1:
        raise UserError(f"--workers {workers} must be at least 1")


def expand_variants(base: ModelRequest, varies: list[Vary]) -> list[tuple[Variant, ModelRequest | None]]:
    """Every combination of the varied values, with its validated request or the reason it was skipped."""
    overrides = base_overrides(base)
    varied_keywords = {vary.flag.field for vary in varies}
    if "layers" in varied_keywords and "widths" not in varied_keywords:
        # widths that only followed the base's --layers must follow each variant's layers instead
        derived = ",".join(map(str, default_widths(base.name, base.spec.num_stages)))
        if overrides.get("widths") == derived:
            overrides.pop("widths")
    batch, channels, height, width = base.input_shape
    out = []
    for index, combination in enumerate(itertools.product(*(range(len(v.values)) for v in varies))):
        flags = dict(overrides)
        labels = {}
        for vary, choice in zip(varies, combination, strict=True):
            flags[vary.flag.field] = vary.values[choice]
            labels[vary.flag.name] = vary.labels[choice]
        in_channels = flags.get("in_channels", base.spec.in_channels)
        variant = Variant(index=index, labels=labels)
        try:
            request = request_from_flags(
                base.name, input=f"{batch}x{in_channels}x{height}x{width}", device="meta", dtype=base.dtype, **flags
            )
        except Exception as exc:  # SpecError, or anything else one impossible variant raises
            variant.skipped_reason = skip_reason(exc)
            request = None
        out.append((variant, request))
    return out


def base_overrides(base: ModelRequest) -> dict[str, Any]:
    """The base's build flags that differ from its preset, as request_from_flags keywords."""
    return changed_flags(base.spec, resolve_spec(base.name))


def measure_request(request: ModelRequest) -> Measurement:
    """Params, MACs and memory of one request on the meta device; a SpecError if its forward pass fails."""
    # Imported here: this module stays torch-free until a variant is measured (the forkserver preloads counting).
    from resnet_cli.analysis.counting import build_and_count
    from resnet_cli.analysis.memory import forward_memory

    # Presets only: no functional rows to show, so the trace skips the (costly) torch-call tracking.
    built = build_and_count(request, functions=False)
    count = built.count
    memory = forward_memory(built.model, built.inputs, built.trace, request.dtype)
    return Measurement(
        params=count.params,
        macs=count.macs,
        conv_linear_macs=count.conv_linear_macs,
        activation_bytes=memory.activation_bytes,
        acts=count.acts,
    )


def skip_reason(exc: Exception) -> str:
    """Why a variant is skipped, in one line: a UserError's message, else the exception's type and first line."""
    return first_line(exc) if isinstance(exc, UserError) else typed_first_line(exc)


def _measure_job(job: tuple[int, ModelRequest]) -> tuple[int, Measurement | str]:
    index, request = job
    try:
        return index, measure_request(request)
    except Exception as exc:  # one variant torch cannot build or count (RuntimeError, MemoryError, ...) is skipped
        return index, skip_reason(exc)


def _init_worker(sweep_pid: int) -> None:
    import torch

    # Ctrl-C reaches the whole process group: the parent alone handles it (cancels, shuts the pool down)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with(sweep_pid)
    torch.set_num_threads(1)  # one process per core already; more threads would only contend


def _exit_with(pid: int) -> None:
    """End this worker as soon as process `pid` (the sweep) ends, however it ends (kill -9 included).

    Workers are the forkserver's children, not the sweep's, and they hold the forkserver's liveness pipe
    open, so neither would notice the sweep's death on its own. Linux 5.3+ (pidfd); elsewhere a no-op.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):
        return

    def wait_for_exit() -> None:
        select.select([pidfd], [], [])
        os._exit(1)

    threading.Thread(target=wait_for_exit, name="exit-with-sweep", daemon=True).start()


def default_workers() -> int:
    """One worker per available core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_sweep(
    base: ModelRequest,
    varies: list[Vary],
    *,
    sort: str = "macs",
    workers: int | None = None,
    progress: ProgressCallback | None = None,
    pareto: tuple[str, str] = DEFAULT_PARETO,
) -> SweepResult:
    """Measure every variant of `base` the --vary grid spans, using `workers` processes (None: one per core);
    the Pareto front is taken on the two quantities `pareto`."""
    check_sweep(base, varies, sort, workers)
    started = time.perf_counter()
    expanded = expand_variants(base, varies)
    jobs = [(variant.index, request) for variant, request in expanded if request is not None]
    by_index = {variant.index: variant for variant, _ in expanded}
    if workers is None:
        workers = default_workers() if len(jobs) >= MIN_VARIANTS_FOR_POOL else 1
    workers = max(1, min(workers, len(jobs)))
    with closing(_measure_all(jobs, workers)) as outcomes:  # an interrupt shuts the pool down here, not later
        for done, (index, outcome) in enumerate(outcomes, 1):
            if isinstance(outcome, str):
                by_index[index].skipped_reason = outcome
            else:
                by_index[index].measurement = outcome
            if progress:
                progress(done, len(jobs))
    measured = [v for v, _ in expanded if v.measurement is not None]
    mark_pareto(measured, pareto)
    return SweepResult(
        base=base,
        varies=varies,
        variants=sort_variants(measured, sort),
        skipped=[v for v, _ in expanded if v.skipped_reason is not None],
        sort=sort,
        workers=workers,
        seconds=time.perf_counter() - started,
        pareto=pareto,
    )


def _measure_all(jobs: list[tuple[int, ModelRequest]], workers: int) -> Iterator[tuple[int, Measurement | str]]:
    if workers == 1:
        yield from map(_measure_job, jobs)
        return
    # forkserver: workers fork from a clean server that imported torch once, not from this
    # (possibly multi-threaded) process
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(["torch", "resnet_cli.analysis.counting", __name__])
    chunksize = max(1, min(16, len(jobs) // (workers * 8)))
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(),)
    )
    try:
        yield from pool.map(_measure_job, jobs, chunksize=chunksize)
    except BrokenProcessPool:
        raise UserError(
            "a sweep worker process died (killed, or out of memory) while measuring; "
            "--workers 1 measures in this process"
        ) from None
    except BaseException:  # Ctrl-C, SIGTERM, an error: stop now, not after the chunks in hand
        _terminate_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _terminate_workers(pool: ProcessPoolExecutor) -> None:
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((pool._processes or {}).values()):  # earlier versions have no public way
        process.terminate()


def parse_pareto(text: str) -> tuple[str, str]:
    """'macs,params' -> ("macs", "params"): two different quantities of QUANTITIES; a UserError otherwise."""
    names = tuple(part.strip().lower() for part in text.split(","))
    if len(names) != 2 or names[0] == names[1] or any(n not in QUANTITIES for n in names):
        raise UserError(f"--pareto {text!r}: give two of {', '.join(QUANTITIES)}, e.g. --pareto macs,acts")
    return names  # type: ignore[return-value]


def quantity(variant: Variant, name: str) -> int:
    """A measured variant's value of one of QUANTITIES."""
    return getattr(variant.measurement, QUANTITIES[name])


def mark_pareto(variants: list[Variant], axes: tuple[str, str] = DEFAULT_PARETO) -> None:
    """Mark the variants no other variant beats on both `axes` (lower is better for both)."""
    ordered = sorted(variants, key=lambda v: (quantity(v, axes[0]), quantity(v, axes[1])))
    best: int | None = None
    last_front: tuple[int, int] | None = None
    for variant in ordered:
        point = (quantity(variant, axes[0]), quantity(variant, axes[1]))
        if best is None or point[1] < best or point == last_front:
            variant.pareto = True
            best, last_front = point[1], point


def sort_variants(variants: list[Variant], sort: str) -> list[Variant]:
    """Variants ordered by `sort` (ascending), grid order breaking ties."""
    if sort == "order":
        return sorted(variants, key=lambda v: v.index)
    return sorted(variants, key=lambda v: (quantity(v, sort), v.index))
