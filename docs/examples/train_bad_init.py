"""Convolutions initialised with a standard deviation of 1, far from Kaiming's sqrt(2 / fan_out).

    resnet-cli debug-training docs/examples/train_bad_init.py:badly_initialised
"""

from healthy_resnet import SmallResNet
from torch import nn


def badly_initialised(num_classes: int = 10) -> SmallResNet:
    model = SmallResNet(num_classes)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 1.0)  # should be kaiming_normal_(..., mode="fan_out")
    return model
