"""Overhead of `resnet-cli bench`: its median latency against a bare hand-written timing loop, same model and input.

Run: python benchmarks/bench_overhead.py [--model resnet18] [--input 4x3x112x112] [--rounds 5]
Both loops run in this one process, in alternating rounds, so background load hits both alike.
Target: bench's median within 3% of the bare loop's (ratio between 0.97 and 1.03).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from resnet_cli.analysis.bench import BenchSettings, run_bench
from resnet_cli.model import build_model
from resnet_cli.spec import request_from_flags
from resnet_cli.trace import make_input


def bare_loop(model: torch.nn.Module, inputs: torch.Tensor, iters: int, warmup: int) -> list[float]:
    """What one would write by hand: eval, inference_mode, warm-up, perf_counter around each call (ms)."""
    latencies = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(inputs)
        for _ in range(iters):
            started = time.perf_counter()
            model(inputs)
            latencies.append((time.perf_counter() - started) * 1000.0)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--input", default="4x3x112x112")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    request = request_from_flags(args.model, input=args.input, device="cpu")
    settings = BenchSettings(iters=args.iters, warmup=args.warmup, threads=args.threads)
    model = build_model(request.spec).eval()
    inputs = make_input(request.input_shape, "cpu")

    bare: list[float] = []
    bench: list[float] = []
    for _ in range(args.rounds):
        bare += bare_loop(model, inputs, args.iters, args.warmup)
        bench += run_bench(request, settings).rows[0].latencies_ms

    bare_median, bench_median = statistics.median(bare), statistics.median(bench)
    ratio = bench_median / bare_median
    print(f"{args.model} input {args.input}, {args.threads} threads, {args.rounds} rounds x {args.iters} iters")
    print(f"bare loop median : {bare_median:8.3f} ms")
    print(f"bench median     : {bench_median:8.3f} ms")
    verdict = "within" if abs(ratio - 1) <= 0.03 else "OUTSIDE"
    print(f"ratio bench/bare : {ratio:.3f} ({verdict} the 3% target)")


if __name__ == "__main__":
    main()
