"""A squeeze-and-excitation gate saturated at 1: the layer before the sigmoid starts with a bias of +10.

    resnet-cli debug-training docs/examples/train_saturated_gate.py:se_resnet
"""

import torch
from healthy_resnet import BasicBlock, SmallResNet
from torch import nn


class SEBlock(BasicBlock):
    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__(in_ch, out_ch, stride)
        self.fc1 = nn.Conv2d(out_ch, max(out_ch // 4, 1), 1)
        self.fc2 = nn.Conv2d(max(out_ch // 4, 1), out_ch, 1)
        self.gate = nn.Sigmoid()
        nn.init.constant_(self.fc2.bias, 10.0)  # meant to be 0: sigmoid(10) = 0.99995

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        weight = self.gate(self.fc2(torch.relu(self.fc1(out.mean((2, 3), keepdim=True)))))
        return self.relu(out * weight + identity)


def se_resnet(num_classes: int = 10) -> SmallResNet:
    return SmallResNet(num_classes, block=SEBlock)
