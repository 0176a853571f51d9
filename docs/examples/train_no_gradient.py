"""Parameters no gradient reaches: a `.detach()` in forward, and a head defined but never called.

    resnet-cli debug-training docs/examples/train_no_gradient.py:cut_resnet
"""

from healthy_resnet import SmallResNet
from torch import nn


class CutResNet(SmallResNet):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes)
        self.aux_head = nn.Linear(32, num_classes)  # meant for layer2's output, never called

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x).detach()  # left over from a feature-extraction experiment
        x = self.layer3(self.layer2(x))
        return self.fc(self.avgpool(x).flatten(1))


def cut_resnet(num_classes: int = 10) -> CutResNet:
    return CutResNet(num_classes)
