"""`resnet-cli flops` against a plain fvcore script, both timed as whole processes (imports included).

Run: python benchmarks/flops_vs_fvcore.py [--rounds 3] [--fvcore-rounds 1]
Prints, from one run on this machine:
  1. resnet152 at 64x3x224x224: CLI seconds, fvcore-script seconds, their ratio (target >= 10x), and
     that both totals are equal;
  2. the CLI's time and peak RSS across batch sizes and resolutions (target: nearly flat; resnet50 at
     256x3x1024x1024 in a few seconds under 1.5 GB);
  3. the fixed floor of any torch program that exits as the CLI does, `import torch` then `gc.freeze()`
     (see resnet_cli.cli.app.main), so the ratio can be read against what the CLI cannot avoid.
Runs alternate between the two tools so background load hits both alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FVCORE_SCRIPT = """
import sys
import time
import torch
from fvcore.nn import FlopCountAnalysis
from resnet_cli.model import build_model

model = build_model(sys.argv[1]).eval()
inputs = torch.randn(*map(int, sys.argv[2].split("x")))
started = time.perf_counter()
with torch.no_grad():
    analysis = FlopCountAnalysis(model, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    total = analysis.total()
print(time.perf_counter() - started)
print(total)
"""

FLOOR_SCRIPT = "import gc, torch; gc.freeze()"


def run_process(argv: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak resident memory (bytes) and stdout of one child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT, env=env)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, unlike RUSAGE_CHILDREN
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if child.returncode:
            raise SystemExit(f"{' '.join(argv[:4])} failed:\n{err.read()}")
        return seconds, usage.ru_maxrss * 1024, out.read()  # ru_maxrss is in KiB on Linux


def cli(model: str, shape: str) -> list[str]:
    return [sys.executable, "-m", "resnet_cli", "flops", model, "--input", shape, "--format", "json"]


def fvcore_script(model: str, shape: str) -> list[str]:
    return [sys.executable, "-c", FVCORE_SCRIPT, model, shape]


def timed_cli(model: str, shape: str) -> tuple[float, int, int]:
    """Seconds, peak RSS (bytes) and fvcore-convention MACs of one CLI run."""
    seconds, peak, out = run_process(cli(model, shape))
    return seconds, peak, json.loads(out)["totals"]["macs"]


def in_process_fast_count(model: str, shape: str, rounds: int) -> float:
    """Median seconds of the fast engine in this process, after one warm-up: build on meta and count."""
    from resnet_cli.analysis.counting import count_request
    from resnet_cli.spec import request_from_flags

    request = request_from_flags(model, input=shape)
    count_request(request, "fast")
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        count_request(request, "fast")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="CLI runs per configuration")
    parser.add_argument("--fvcore-rounds", type=int, default=1, help="fvcore-script runs (each takes ~30 s on 2 cores)")
    args = parser.parse_args()

    model, shape = "resnet152", "64x3x224x224"
    print(f"1. {model} --input {shape}, whole processes, {os.cpu_count()} cores")
    cli_times, fv_times, fv_count_times, cli_macs, fv_macs = [], [], [], set(), set()
    for i in range(max(args.rounds, args.fvcore_rounds)):
        if i < args.rounds:
            seconds, _, macs = timed_cli(model, shape)
            cli_times.append(seconds)
            cli_macs.add(macs)
        if i < args.fvcore_rounds:
            seconds, _, out = run_process(fvcore_script(model, shape))
            count_seconds, total = out.strip().splitlines()[-2:]
            fv_times.append(seconds)
            fv_count_times.append(float(count_seconds))
            fv_macs.add(int(total))
    cli_s, fv_s = statistics.median(cli_times), statistics.median(fv_times)
    equal = cli_macs == fv_macs and len(cli_macs) == 1
    print(f"   resnet-cli flops   {cli_s:6.2f} s   MACs {sorted(cli_macs)}")
    print(f"   fvcore script      {fv_s:6.2f} s   MACs {sorted(fv_macs)}")
    print(f"   totals equal: {'yes' if equal else 'NO'}   speed-up: {fv_s / cli_s:.1f}x (target >= 10x)")
    fast_s = in_process_fast_count(model, shape, args.rounds)
    fv_count_s = statistics.median(fv_count_times)
    print(
        f"   counting alone, in a warm process (model built, imports done): fast engine {fast_s:.2f} s, "
        f"fvcore {fv_count_s:.2f} s, {fv_count_s / fast_s:.0f}x"
    )

    print("\n2. resnet-cli flops across batch and resolution (median seconds, peak RSS)")
    for model, shape in [
        ("resnet50", "1x3x224x224"),
        ("resnet50", "64x3x224x224"),
        ("resnet50", "256x3x224x224"),
        ("resnet50", "1x3x1024x1024"),
        ("resnet50", "256x3x1024x1024"),
        ("resnet152", "1x3x224x224"),
    ]:
        runs = [timed_cli(model, shape) for _ in range(args.rounds)]
        seconds = statistics.median(r[0] for r in runs)
        peak = max(r[1] for r in runs)
        print(f"   {model:10s} {shape:16s} {seconds:6.2f} s   peak {peak / 2**20:7.1f} MiB   MACs {runs[0][2]:,}")

    floor = statistics.median(run_process([sys.executable, "-c", FLOOR_SCRIPT])[0] for _ in range(args.rounds))
    print(f"\n3. floor: `import torch` (exiting as the CLI does) = {floor:.2f} s of every CLI run above")


if __name__ == "__main__":
    main()
