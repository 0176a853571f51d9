"""Broken: the classifier of a Bottleneck ResNet is built for widths[-1] = 128 features, but the last block
outputs 128 x 4 = 512 channels.

    resnet-cli debug-shapes docs/examples/classifier_mismatch.py:bottleneck_resnet --input 1x3x64x64
"""

from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.downsample(x))


def make_stage(in_ch: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    layers = [Bottleneck(in_ch, planes, stride)]
    for _ in range(1, blocks):
        layers.append(Bottleneck(planes * Bottleneck.expansion, planes))
    return nn.Sequential(*layers)


class BottleneckResNet(nn.Module):
    def __init__(self, num_classes: int = 10, layers: tuple = (2, 2), widths: tuple = (64, 128)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = make_stage(64, widths[0], layers[0], stride=1)
        self.layer2 = make_stage(widths[0] * 4, widths[1], layers[1], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[1], num_classes)  # forgets the expansion: 512 features arrive

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(self.avgpool(x).flatten(1))


def bottleneck_resnet(num_classes: int = 10) -> BottleneckResNet:
    return BottleneckResNet(num_classes)
