"""A ResNet-18 backbone in the style of timm's `features_only=True` / torchvision's
IntermediateLayerGetter: no pooling, no classifier; forward returns the four stage outputs
(strides 4, 8, 16, 32) as a list, the way FPN / detection necks consume them.
"""

import torch.nn as nn


class BasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class ResNetFeatures(nn.Module):
    def __init__(self, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), out_indices=(1, 2, 3, 4)):
        super().__init__()
        self.out_indices = out_indices
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = 64
        for i, (planes, n) in enumerate(zip(widths, layers, strict=True)):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(inplanes, planes, stride)] + [BasicBlock(planes, planes) for _ in range(1, n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes
        self.feature_info = [dict(num_chs=w, reduction=4 * 2**i, module=f"layer{i + 1}") for i, w in enumerate(widths)]

    def forward(self, x):
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        features = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            if i in self.out_indices:
                features.append(x)
        return features


def resnet18_features():
    return ResNetFeatures()
