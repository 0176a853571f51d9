"""Broken in every block at once: one SE class builds its excitation with `channels // reduction` hidden units
but its second Linear expects `channels // 4`. Every SE built from this formula fails; the first to run is the
one reported, and the fix belongs in the shared constructor, not in layer1.0.se alone.

    resnet-cli debug-shapes docs/examples/se_ratio.py:se_resnet --input 1x3x32x32
"""

from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(channels, channels // reduction)
        self.fc2 = nn.Linear(channels // 4, channels)  # should be channels // reduction, fc1's output

    def forward(self, x):
        w = self.pool(x).flatten(1)
        w = self.fc2(self.fc1(w).relu()).sigmoid()
        return x * w[:, :, None, None]


class SEBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.se = SqueezeExcite(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = self.bn1(self.conv1(x)).relu()
        out = self.se(self.bn2(self.conv2(out)))
        return (out + self.shortcut(x)).relu()


class SEResNet(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.layer1 = nn.Sequential(SEBlock(64, 64), SEBlock(64, 64))
        self.layer2 = nn.Sequential(SEBlock(64, 128, 2), SEBlock(128, 128))
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        return self.fc(self.layer2(self.layer1(self.conv1(x))).mean((2, 3)))


def se_resnet(num_classes: int = 10) -> SEResNet:
    return SEResNet(num_classes)
