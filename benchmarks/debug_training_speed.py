"""`resnet-cli debug-training resnet50` end to end, against a bare training step measured in the same run.

Run: python benchmarks/debug_training_speed.py [--rounds 3]
Prints, from one run on this machine: the median seconds of the whole command (a process: imports, building the
model, the meta memory check, the observed step, the rules) at its default batch (8x3x224x224; target: under 15 s
on 2 CPU cores), and of a bare `model(x)`, cross-entropy, `backward()` in a process doing the same imports and
build, so the overhead of the observation is the difference. Rounds alternate between the two.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

from flops_vs_fvcore import run_process

BARE = """
import torch, torch.nn.functional as F
from resnet_cli.model import build_model
torch.manual_seed(0)
model = build_model("resnet50").train()
x = torch.randn(8, 3, 224, 224)
F.cross_entropy(model(x), torch.randint(0, 1000, (8,))).backward()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"resnet50, 8x3x224x224, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    command = [sys.executable, "-m", "resnet_cli", "debug-training", "resnet50", "--format", "json"]
    tool, bare = [], []
    for _ in range(args.rounds):
        tool.append(run_process(command)[0])
        bare.append(run_process([sys.executable, "-c", BARE])[0])
    tool_s, bare_s = statistics.median(tool), statistics.median(bare)
    print(f"   debug-training resnet50       {tool_s:6.2f} s  (target < 15 s)")
    print(f"   bare forward + backward       {bare_s:6.2f} s")
    print(f"   ratio: {tool_s / bare_s:.2f}x")


if __name__ == "__main__":
    main()
