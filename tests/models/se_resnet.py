"""SE-ResNet in the style of moskomule/senet.pytorch: a squeeze-and-excitation layer (global
average, Linear-ReLU-Linear-Sigmoid, channel-wise rescale) inside each residual branch, before
the add. ImageNet SE-ResNet-18 and the CIFAR SE-ResNet-20.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class SELayer(nn.Module):
    """Squeeze with `F.adaptive_avg_pool2d(x, 1).view(b, c)`, rescale with `expand_as`."""

    def __init__(self, channel, reduction=16):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x):
        b, c, _, _ = x.size()
        y = F.adaptive_avg_pool2d(x, 1).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y.expand_as(x)


class SELayerMean(SELayer):
    """The same layer, squeezing with `x.mean((2, 3))` and rescaling by broadcasting."""

    def forward(self, x):
        b, c = x.shape[:2]
        y = self.fc(x.mean((2, 3)))
        return x * y.view(b, c, 1, 1)


class SEBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, reduction=16, se_layer=SELayer):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = se_layer(planes, reduction)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        out += residual
        return self.relu(out)


def _downsample(inplanes, planes, stride):
    if stride == 1 and inplanes == planes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))


class SEResNet(nn.Module):
    """ImageNet layout: 7x7/2 stem, max pool, four stages of widths 64..512."""

    def __init__(self, layers, num_classes=1000, reduction=16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes, stages = 64, []
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [SEBasicBlock(inplanes, planes, stride, _downsample(inplanes, planes, stride), reduction)]
            blocks += [SEBasicBlock(planes, planes, reduction=reduction) for _ in range(1, n)]
            stages.append(nn.Sequential(*blocks))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))


class CifarSEResNet(nn.Module):
    """CIFAR layout: 3x3 stem with 16 channels, three stages of widths 16, 32, 64."""

    def __init__(self, n_size, num_classes=10, reduction=16):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.inplane = 16
        self.layer1 = self._make_layer(16, n_size, 1, reduction)
        self.layer2 = self._make_layer(32, n_size, 2, reduction)
        self.layer3 = self._make_layer(64, n_size, 2, reduction)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    def _make_layer(self, planes, blocks, stride, reduction):
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            ds = _downsample(self.inplane, planes, s)
            layers.append(SEBasicBlock(self.inplane, planes, s, ds, reduction, se_layer=SELayerMean))
            self.inplane = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(x).view(x.size(0), -1)
        return self.fc(x)


def se_resnet18(num_classes=1000):
    return SEResNet([2, 2, 2, 2], num_classes)


def se_resnet20(num_classes=10):
    return CifarSEResNet(3, num_classes)
