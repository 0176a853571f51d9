"""Broken: a pre-activation block builds its second BatchNorm on `in_planes` instead of `planes`. Blocks that keep
their width run; the first block that widens (layer2.0: 16 -> 32 channels) hands 32 channels to a BatchNorm2d(16).

    resnet-cli debug-shapes docs/examples/bn_channels.py:preact_resnet --input 1x3x32x32
"""

import torch.nn.functional as F
from torch import nn


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(in_planes)  # should be planes: it normalises conv1's output
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths: tuple = (16, 32, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        stages, in_planes = [], widths[0]
        for i, planes in enumerate(widths):
            stages.append(nn.Sequential(PreActBlock(in_planes, planes, 1 if i == 0 else 2), PreActBlock(planes, planes)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(widths[-1])
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        out = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1)
        return self.fc(out.flatten(1))


def preact_resnet(num_classes: int = 10) -> PreActResNet:
    return PreActResNet(num_classes)
