"""`debug-shapes --sizes`: a size scan against the loop a user would write, measured side by side.

Run: python benchmarks/debug_sizes.py [--sizes 100..199] [--rounds 3]
For resnet50 it times, alternating rounds so background load hits all alike:
  scan     scan_sizes(): one debug-shapes pass per size on meta (module, function and operator records,
           residual marks, the silent-problem rules), the target being 100 sizes in under 10 s on 2 cores;
  meta     the bare loop `model(torch.empty(1, 3, s, s, device="meta"))`, no hooks: the floor;
  cpu      the same loop on the CPU with real tensors (what a user runs without resnet-cli), on every 10th size.
It prints medians, seconds per size and the ratios scan/meta and cpu/scan (per size).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from resnet_cli.analysis.diagnosis.sizes import scan_sizes
from resnet_cli.model import build_model
from resnet_cli.spec import parse_sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100..199")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sizes = parse_sizes(args.sizes)
    meta = build_model("resnet50", device="meta").eval()
    cpu = build_model("resnet50").eval()
    cpu_sizes = sizes[::10]
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {len(sizes)} sizes")
    times: dict[str, list[float]] = {"scan": [], "meta": [], "cpu": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        scan = scan_sizes(meta, sizes)
        times["scan"].append(time.perf_counter() - start)
        assert scan.ok, "resnet50 runs at every size"
        start = time.perf_counter()
        with torch.no_grad():
            for h, w in sizes:
                meta(torch.empty(1, 3, h, w, device="meta"))
        times["meta"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            for h, w in cpu_sizes:
                cpu(torch.randn(1, 3, h, w))
        times["cpu"].append(time.perf_counter() - start)
    scan_s, meta_s, cpu_s = (statistics.median(times[k]) for k in ("scan", "meta", "cpu"))
    per = {"scan": scan_s / len(sizes), "meta": meta_s / len(sizes), "cpu": cpu_s / len(cpu_sizes)}
    print(f"scan   {scan_s:7.2f} s for {len(sizes)} sizes  ({per['scan'] * 1000:6.1f} ms per size)  target < 10 s")
    print(f"meta   {meta_s:7.2f} s for {len(sizes)} sizes  ({per['meta'] * 1000:6.1f} ms per size)  bare forward, no hooks")
    print(f"cpu    {cpu_s:7.2f} s for {len(cpu_sizes)} sizes  ({per['cpu'] * 1000:6.1f} ms per size)  real tensors")
    print(f"scan / meta per size: {per['scan'] / per['meta']:.1f}x;  cpu / scan per size: {per['cpu'] / per['scan']:.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
