"""A residual network whose blocks lost their residual add: the shortcut is computed and never used.

    resnet-cli debug-training docs/examples/train_no_residual.py:plain_resnet
"""

from healthy_resnet import BasicBlock, SmallResNet


class ForgetfulBlock(BasicBlock):
    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)  # computed ... (noqa: a linter flags it: F841)
        return self.relu(out)  # ... but `out += identity` was deleted


def plain_resnet(num_classes: int = 10) -> SmallResNet:
    return SmallResNet(num_classes, block=ForgetfulBlock, blocks=9)
