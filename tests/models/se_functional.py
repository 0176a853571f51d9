"""SE-ResNet blocks that compute the excitation inside the block's own forward (no SE module), as several public
CIFAR SE-ResNets do: `out = out * w` with `w` from functional pooling and two 1x1 convs, and the variant
`residual * excitation.expand_as(residual) + shortcut`.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class InlineSEBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1, reduction=4, expand_as=False):
        super().__init__()
        self.expand_as = expand_as
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.fc1 = nn.Conv2d(planes, planes // reduction, 1)
        self.fc2 = nn.Conv2d(planes // reduction, planes, 1)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        w = F.avg_pool2d(out, out.size(2))
        w = torch.sigmoid(self.fc2(F.relu(self.fc1(w))))
        if self.expand_as:
            out = out * w.expand_as(out) + self.shortcut(x)
        else:
            out = out * w
            out += self.shortcut(x)
        return F.relu(out)


class InlineSEResNet(nn.Module):
    def __init__(self, num_blocks=(2, 2, 2), num_classes=10, expand_as=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for i, (n, planes) in enumerate(zip(num_blocks, (16, 32, 64), strict=True)):
            strides = [1 if i == 0 else 2] + [1] * (n - 1)
            blocks = []
            for stride in strides:
                blocks.append(InlineSEBlock(in_planes, planes, stride, expand_as=expand_as))
                in_planes = planes
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = layers
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def inline_se_resnet(num_classes=10):
    return InlineSEResNet(num_classes=num_classes)


def inline_se_resnet_expand_as(num_classes=10):
    return InlineSEResNet(num_classes=num_classes, expand_as=True)
