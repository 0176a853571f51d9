"""Zero-init residual gone wrong: every BatchNorm weight is zeroed, not only the last one of each block.

    resnet-cli debug-training docs/examples/train_zero_init.py:zeroed_resnet
"""

from healthy_resnet import SmallResNet
from torch import nn


def zeroed_resnet(num_classes: int = 10) -> SmallResNet:
    model = SmallResNet(num_classes)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.zeros_(module.weight)  # meant for each block's bn2 only
    return model
