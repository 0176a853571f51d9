"""A small ResNet with one TorchScript submodule: `self.layer2 = torch.jit.script(Block(...))`, as
code that scripts parts of a model for deployment does. Hooks and tracing-based counters cannot see
inside a ScriptModule, so this model exists to check that the tool refuses it cleanly.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + x)


class ScriptedBlockResNet(nn.Module):
    def __init__(self, channels: int = 16, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, channels, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = Block(channels)
        self.layer2 = torch.jit.script(Block(channels))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def scripted_block_resnet(num_classes=10):
    return ScriptedBlockResNet(num_classes=num_classes)
