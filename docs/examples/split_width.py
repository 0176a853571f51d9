"""Broken: a Res2Net-style block splits its 1x1 conv's output into `scale` groups with `torch.split`, but computes
the split width from `planes` instead of the conv's `width * scale` channels, so the 3x3 convs receive the wrong
number of channels.

    resnet-cli debug-shapes docs/examples/split_width.py:res2net --input 1x3x32x32
"""

import torch
import torch.nn.functional as F
from torch import nn


class Bottle2neck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, base_width: int = 26, scale: int = 4) -> None:
        super().__init__()
        width = planes * base_width // 64
        self.width = planes // scale  # should be `width`: conv1 gives width * scale channels
        self.scale = scale
        self.conv1 = nn.Conv2d(inplanes, width * scale, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width * scale)
        self.convs = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1, bias=False) for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.conv3 = nn.Conv2d(width * scale, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = nn.Identity()
        if inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * self.expansion, 1, bias=False),
                                            nn.BatchNorm2d(planes * self.expansion))  # fmt: skip

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        spx = torch.split(out, self.width, 1)
        parts, sp = [], None
        for i, conv in enumerate(self.convs):
            sp = spx[i] if i == 0 else sp + spx[i]
            sp = F.relu(self.bns[i](conv(sp)))
            parts.append(sp)
        parts.append(spx[self.scale - 1])
        out = self.bn3(self.conv3(torch.cat(parts, 1)))
        return F.relu(out + self.downsample(x))


class Res2Net(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.layer1 = nn.Sequential(Bottle2neck(64, 64), Bottle2neck(256, 64))
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x):
        return self.fc(self.layer1(self.conv1(x)).mean((2, 3)))


def res2net(num_classes: int = 10) -> Res2Net:
    return Res2Net(num_classes)
