"""A CIFAR ResNet whose stages live in an nn.ModuleList that forward loops over (a common hand-written layout):
the ModuleList itself is never called, so its stages are the calls the model makes, not its children."""

import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class LoopedResNet(nn.Module):
    def __init__(self, depths=(2, 2, 2), widths=(16, 32, 64), num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, widths[0], 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        self.stages = nn.ModuleList()
        in_planes = widths[0]
        for index, (depth, width) in enumerate(zip(depths, widths, strict=True)):
            blocks = [Block(in_planes if i == 0 else width, width, 2 if index and i == 0 else 1) for i in range(depth)]
            self.stages.append(nn.Sequential(*blocks))
            in_planes = width
        self.head = nn.Linear(widths[-1], num_classes)

    def forward(self, x):
        x = F.relu(self.stem_bn(self.stem(x)))
        for stage in self.stages:
            x = stage(x)
        return self.head(F.avg_pool2d(x, x.shape[-1]).flatten(1))


def looped_resnet(num_classes=10):
    return LoopedResNet(num_classes=num_classes)
