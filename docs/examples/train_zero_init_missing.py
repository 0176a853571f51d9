"""zero_init_residual=True that zeroes nothing: the init code only knows a block class this model does not use.

    resnet-cli debug-training docs/examples/train_zero_init_missing.py:resnet --arg zero_init_residual=True
"""

from healthy_resnet import BasicBlock, SmallResNet
from torch import nn


class Bottleneck(nn.Module):  # the init code's block class, unused here
    bn3: nn.BatchNorm2d


def resnet(num_classes: int = 10, zero_init_residual: bool = False) -> SmallResNet:
    model = SmallResNet(num_classes, block=BasicBlock)
    if zero_init_residual:
        for module in model.modules():
            if isinstance(module, Bottleneck):  # should also handle BasicBlock: nn.init.zeros_(module.bn2.weight)
                nn.init.zeros_(module.bn3.weight)
    return model
