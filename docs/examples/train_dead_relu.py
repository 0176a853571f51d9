"""Dead ReLUs: the stem's BatchNorm bias starts at -5, so the ReLU after it outputs 0 almost everywhere.

    resnet-cli debug-training docs/examples/train_dead_relu.py:dead_resnet
"""

from healthy_resnet import SmallResNet
from torch import nn


def dead_resnet(num_classes: int = 10) -> SmallResNet:
    model = SmallResNet(num_classes)
    nn.init.constant_(model.bn1.bias, -5.0)  # a sign slip: meant +0.0
    return model
