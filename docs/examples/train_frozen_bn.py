"""BatchNorm kept in eval mode while the model trains, by a train() override copied from a detection codebase.

    resnet-cli debug-training docs/examples/train_frozen_bn.py:frozen_bn_resnet
"""

from healthy_resnet import SmallResNet
from torch import nn


class FrozenBNResNet(SmallResNet):
    def train(self, mode: bool = True):
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.eval()  # keeps running statistics, which are 0 and 1 at initialisation
        return self


def frozen_bn_resnet(num_classes: int = 10) -> FrozenBNResNet:
    return FrozenBNResNet(num_classes)
