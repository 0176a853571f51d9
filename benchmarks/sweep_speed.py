"""Variants per second of `resnet-cli sweep` on a 1,000-variant resnet50 grid, with 1 worker and with all cores.

Run: python benchmarks/sweep_speed.py
The one-worker run measures a 200-variant slice of the same grid (layers fixed at 3,4,6,3, close to
the grid's mean depth); the target is the full grid within 60 s on 2 cores.
"""

from __future__ import annotations

import os
import time

from resnet_cli.analysis.sweep import default_workers, parse_vary, run_sweep
from resnet_cli.spec import request_from_flags

GRID = [
    "layers=2,2,2,2/3,4,6,3/3,4,12,3/2,3,4,2/3,6,8,3",
    "expansion=1,2,3,4,6",
    "se=off,on",
    "groups=1,2,4,8,16",
    "stem=imagenet,deep",
    "avg-down=off,on",
]  # 5 x 5 x 2 x 5 x 2 x 2 = 1,000 variants


def timed_sweep(varies: list, workers: int) -> tuple[int, float, float]:
    """Variants, wall seconds, and CPU seconds of this process (the work itself when workers=1)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    result = run_sweep(request_from_flags("resnet50"), varies, workers=workers)
    count = len(result.variants) + len(result.skipped)
    return count, time.perf_counter() - started, time.process_time() - cpu_started


def main() -> None:
    varies = [parse_vary(text) for text in GRID]
    cores = default_workers()

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    one_grid = [parse_vary("layers=3,4,6,3"), *varies[1:]]
    count, seconds, cpu = timed_sweep(one_grid, workers=1)
    one_rate = count / seconds
    print(
        f"1 worker     : {count:5d} variants in {seconds:6.1f} s = {one_rate:6.1f} variants/s "
        f"({1000 * cpu / count:.0f} ms of CPU per variant)"
    )

    count, seconds, _ = timed_sweep(varies, workers=cores)
    rate = count / seconds
    print(f"{cores} workers    : {count:5d} variants in {seconds:6.1f} s = {rate:6.1f} variants/s")
    print(f"speedup from {cores} workers: {rate / one_rate:.2f}x (includes starting the workers)")
    print(f"1,000 resnet50 variants: {1000 / rate:.1f} s (target: within 60 s on 2 cores)")
    print(f"load average after: {os.getloadavg()[0]:.2f} (other jobs on the cores slow both runs)")


if __name__ == "__main__":
    main()
