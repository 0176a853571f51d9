"""Broken: a downsampling block concatenates a strided 3x3 conv branch with a max-pool branch, and the pool uses
`ceil_mode=True`: at 32x32 the conv gives 16x16 and the pool 17x17, so `torch.cat` fails.

    resnet-cli debug-shapes docs/examples/cat_mismatch.py:two_branch_net --input 1x3x32x32
"""

import torch
from torch import nn


class ReductionBlock(nn.Module):
    """Halves the map and doubles the channels: half of them from a strided conv, half from a max-pool + 1x1."""

    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(in_ch, in_ch, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(in_ch))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)  # ceil_mode gives one row and column more
        self.proj = nn.Conv2d(in_ch, in_ch, 1, bias=False)

    def forward(self, x):
        return torch.cat([self.conv(x), self.proj(self.pool(x))], dim=1)


class TwoBranchNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.reduce1 = ReductionBlock(16)
        self.reduce2 = ReductionBlock(32)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.reduce2(self.reduce1(self.stem(x)))
        return self.fc(x.mean((2, 3)))


def two_branch_net(num_classes: int = 10) -> TwoBranchNet:
    return TwoBranchNet(num_classes)
