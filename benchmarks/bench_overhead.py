"""Overhead of `resnet-cli bench`: its median latency against a bare hand-written timing loop, same model and input.

Run: python benchmarks/bench_overhead.py [--model resnet18] [--input 4x3x112x112] [--rounds 12]
Both loops run in this one process in short back-to-back pairs (which one goes first alternates), so
background load that comes and goes hits both alike. The ratio compares the medians of all latencies
of each side; the spread of the per-pair ratios shows how noisy the machine was.
Target: within 3% (between 0.97 and 1.03).

One intra-op thread by default: the harness's overhead does not depend on the thread count, but with
every core busy, other jobs on the machine stall a multi-threaded step far more (pass --threads N).
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
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    request = request_from_flags(args.model, input=args.input, device="cpu")
    settings = BenchSettings(iters=args.iters, warmup=args.warmup, threads=args.threads)
    model = build_model(request.spec).eval()
    inputs = make_input(request.input_shape, "cpu")

    bare: list[float] = []
    bench: list[float] = []
    ratios: list[float] = []
    for round_index in range(args.rounds):
        if round_index % 2:
            bench_round = run_bench(request, settings).rows[0].latencies_ms
            bare_round = bare_loop(model, inputs, args.iters, args.warmup)
        else:
            bare_round = bare_loop(model, inputs, args.iters, args.warmup)
            bench_round = run_bench(request, settings).rows[0].latencies_ms
        bare += bare_round
        bench += bench_round
        ratios.append(statistics.median(bench_round) / statistics.median(bare_round))

    ratio = statistics.median(bench) / statistics.median(bare)
    print(f"{args.model} input {args.input}, {args.threads} threads, {args.rounds} pairs x {args.iters} iters")
    print(f"bare loop median : {statistics.median(bare):8.3f} ms")
    print(f"bench median     : {statistics.median(bench):8.3f} ms")
    print(f"pair ratios      : {min(ratios):.3f} .. {max(ratios):.3f}, median {statistics.median(ratios):.3f}")
    verdict = "within" if abs(ratio - 1) <= 0.03 else "OUTSIDE"
    print(f"ratio bench/bare : {ratio:.3f} ({verdict} the 3% target)")


if __name__ == "__main__":
    main()
