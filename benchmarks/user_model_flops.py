"""`resnet-cli flops` on a user's model file against the same architecture as a preset, whole processes.

Run: python benchmarks/user_model_flops.py [--rounds 5]
The user model is tests/models/torchvision_resnet.py:resnet50 (torchvision's code pattern, imported from a file,
built and traced as user code); the preset is resnet50. Both count the same MACs. For each input size it prints
both medians, the ratio user/preset (target: under 1.3x) and both peak RSS (target: under 1 GB for the user
model at 256x3x1024x1024), then whether the user model's time stays flat from the smallest input to the largest.
Runs alternate between the two so background load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flops_vs_fvcore import cli, run_process  # noqa: E402  (the same child-process timer)

USER_MODEL = "tests/models/torchvision_resnet.py:resnet50"
PRESET = "resnet50"
SHAPES = ["1x3x224x224", "32x3x224x224", "256x3x1024x1024"]


def timed(model: str, shape: str) -> tuple[float, int, int]:
    seconds, peak, out = run_process(cli(model, shape))
    return seconds, peak, json.loads(out)["totals"]["macs"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    user_medians = []
    for shape in SHAPES:
        runs: dict[str, list[tuple[float, int, int]]] = {USER_MODEL: [], PRESET: []}
        for _ in range(args.rounds):
            for model in runs:
                runs[model].append(timed(model, shape))
        (user_s, user_peak, user_macs), (preset_s, preset_peak, preset_macs) = (
            (statistics.median(r[0] for r in rs), max(r[1] for r in rs), rs[0][2]) for rs in runs.values()
        )
        user_medians.append(user_s)
        print(
            f"{shape:>16}: user file {user_s:5.2f} s ({user_peak / 2**20:5.0f} MiB peak), preset {preset_s:5.2f} s "
            f"({preset_peak / 2**20:5.0f} MiB), ratio {user_s / preset_s:4.2f}x (target < 1.3x), "
            f"MACs {'equal' if user_macs == preset_macs else f'DIFFER {user_macs} vs {preset_macs}'}"
        )
    print(f"user model, largest / smallest input: {user_medians[-1] / user_medians[0]:.2f}x (flat = 1.0)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
