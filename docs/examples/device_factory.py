"""Runs on the CPU and on meta, fails on CUDA: the block builds a tensor in `forward` with `torch.ones(...)` and no
`device=`, which lands on the CPU while the activations are on the GPU. debug-shapes flags the call on any device.

    resnet-cli debug-shapes docs/examples/device_factory.py:scaled_resnet --input 1x3x32x32
"""

import torch
from torch import nn


class ScaledBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x):
        scale = torch.ones(x.shape[1], 1, 1)  # should be torch.ones(..., device=x.device), or x.new_ones(...)
        return (self.bn(self.conv(x)) * scale + x).relu()


class ScaledResNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.layer1 = nn.Sequential(ScaledBlock(16), ScaledBlock(16))
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        return self.fc(self.layer1(self.conv1(x)).mean((2, 3)))


def scaled_resnet(num_classes: int = 10) -> ScaledResNet:
    return ScaledResNet(num_classes)
