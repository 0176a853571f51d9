"""Works only at 32x32: a CIFAR ResNet whose head averages a fixed 8x8 window (`F.avg_pool2d(out, 8)`), as many
public CIFAR ResNets do. At 224x224 the last map is 56x56, the pool leaves 7x7 and the classifier receives
64 x 7 x 7 = 3136 features instead of 64. The fix is the input size (or adaptive pooling), not the classifier.

    resnet-cli debug-shapes docs/examples/cifar_head.py:cifar_resnet
"""

import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, num_classes: int = 10, flatten_batch: bool = False) -> None:
        super().__init__()
        self.flatten_batch = flatten_batch
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.avg_pool2d(out, 8)  # the 8x8 map of a 32x32 input
        out = out.view(-1, 64) if self.flatten_batch else out.view(out.size(0), -1)
        return self.linear(out)


def cifar_resnet(num_classes: int = 10) -> CifarResNet:
    return CifarResNet(num_classes)


def cifar_resnet_view(num_classes: int = 10) -> CifarResNet:
    """The same model flattening with `view(-1, 64)`: at 64x64 it runs, turning batch 1 into batch 4."""
    return CifarResNet(num_classes, flatten_batch=True)
