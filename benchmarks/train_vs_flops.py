"""`flops --mode train` against `flops` (inference), both as whole processes, alternated in one run.

Run: python benchmarks/train_vs_flops.py [--rounds 5]
Prints, from one run on this machine:
  1. resnet152 at 64x3x224x224: median seconds of `flops` and of `flops --mode train` (backward MACs, saved tensors
     measured on meta, the three checkpointing choices), and their ratio (target: train within 2x of flops);
  2. the same for the analysis alone, in this process (imports excluded), after a warm-up;
  3. `flops --mode train` time and peak RSS across batch sizes and resolutions (target: flat, as flops).
Runs alternate between the two commands so background load hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from flops_vs_fvcore import run_process


def command(model: str, shape: str, train: bool) -> list[str]:
    mode = ["--mode", "train"] if train else []
    return [sys.executable, "-m", "resnet_cli", "flops", model, "--input", shape, *mode, "--format", "json"]


def in_process(model: str, shape: str, rounds: int) -> tuple[float, float]:
    """Median seconds of flops_report and training_report in this process, alternated, after one warm-up each."""
    from resnet_cli.analysis.flops_report import flops_report
    from resnet_cli.analysis.training import TrainSettings, training_report
    from resnet_cli.spec import request_from_flags

    request = request_from_flags(model, input=shape)
    flops_report(request)
    training_report(request, TrainSettings())
    infer, train = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        flops_report(request)
        infer.append(time.perf_counter() - started)
        started = time.perf_counter()
        training_report(request, TrainSettings())
        train.append(time.perf_counter() - started)
    return statistics.median(infer), statistics.median(train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="runs per command and configuration")
    args = parser.parse_args()
    load = os.getloadavg()[0]

    model, shape = "resnet152", "64x3x224x224"
    print(f"1. {model} --input {shape}, whole processes, {os.cpu_count()} cores, load average {load:.2f}")
    infer, train = [], []
    for _ in range(args.rounds):
        infer.append(run_process(command(model, shape, False))[0])
        train.append(run_process(command(model, shape, True))[0])
    infer_s, train_s = statistics.median(infer), statistics.median(train)
    print(f"   flops                {infer_s:6.2f} s")
    print(f"   flops --mode train   {train_s:6.2f} s")
    print(f"   ratio train / infer: {train_s / infer_s:.2f}x (target <= 2x)")

    infer_s, train_s = in_process(model, shape, args.rounds)
    print(f"2. the analysis alone, in process: flops_report {infer_s * 1000:.0f} ms, training_report "
          f"{train_s * 1000:.0f} ms, ratio {train_s / infer_s:.2f}x")

    print("3. flops --mode train across sizes (resnet50): median seconds, peak RSS")
    for size in ("1x3x224x224", "64x3x224x224", "256x3x224x224", "8x3x1024x1024"):
        runs = [run_process(command("resnet50", size, True)) for _ in range(max(1, args.rounds // 2))]
        seconds = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        print(f"   {size:>15}  {seconds:6.2f} s  {peak / 2**20:7.0f} MiB")


if __name__ == "__main__":
    main()
