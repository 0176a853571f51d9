"""Broken training patterns at initialisation (found by the debug-training review): each is found or refused."""

import sys

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "docs" / "examples"))
import torch
import torch.nn as nn
import torch.nn.functional as F
from healthy_resnet import BasicBlock, SmallResNet  # noqa: E402  (docs/examples, put on the path above)
from training_healthy import FBlock, FlatResNet, IdBlock, Stage, TimmResNet  # noqa: E402


class TimesZero(BasicBlock):  # out = out * 1 + 0 * identity
    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = out * 1 + 0 * identity
        return self.relu(out)


def times_zero(num_classes=10):
    return SmallResNet(num_classes, block=TimesZero, blocks=3)


class ReturnsIdentity(BasicBlock):  # out = identity typo
    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out = identity
        return self.relu(out)


def returns_identity(num_classes=10):
    return SmallResNet(num_classes, block=ReturnsIdentity, blocks=3)


class Overwritten(BasicBlock):  # identity = out
    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        identity = out
        out = out + identity
        return self.relu(out)


def overwritten(num_classes=10):
    return SmallResNet(num_classes, block=Overwritten, blocks=3)


class DetachedIdentity(BasicBlock):
    def forward(self, x):
        identity = x.detach()
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x.detach())
        return self.relu(out + identity)


def detached_identity(num_classes=10):
    return SmallResNet(num_classes, block=DetachedIdentity, blocks=3)


def bn_negative_running(num_classes=10):
    """BN with a huge negative bias-like running mean... in train mode running stats are unused."""
    m = SmallResNet(num_classes)
    m.bn1.running_mean.fill_(1e3)
    return m


class SigmoidZeroBlock(BasicBlock):
    def __init__(self, in_ch, out_ch, stride=1):
        super().__init__(in_ch, out_ch, stride)
        self.fc1 = nn.Conv2d(out_ch, max(out_ch // 4, 1), 1)
        self.fc2 = nn.Conv2d(max(out_ch // 4, 1), out_ch, 1)
        self.gate = nn.Sigmoid()
        nn.init.constant_(self.fc2.bias, -10.0)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        w = self.gate(self.fc2(torch.relu(self.fc1(out.mean((2, 3), keepdim=True)))))
        return self.relu(out * w + identity)


def gate_zero(num_classes=10):
    return SmallResNet(num_classes, block=SigmoidZeroBlock)


class FunctionalGateBlock(SigmoidZeroBlock):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        w = torch.sigmoid(self.fc2(torch.relu(self.fc1(out.mean((2, 3), keepdim=True)))))
        return self.relu(out * w + identity)


def gate_zero_functional(num_classes=10):
    return SmallResNet(num_classes, block=FunctionalGateBlock)


def linear_zero(num_classes=10):
    m = SmallResNet(num_classes)
    nn.init.zeros_(m.fc.weight)
    return m


def linear_zero_bias_zero(num_classes=10):
    m = SmallResNet(num_classes)
    nn.init.zeros_(m.fc.weight)
    nn.init.zeros_(m.fc.bias)
    return m


def stem_zero(num_classes=10):
    m = SmallResNet(num_classes)
    nn.init.zeros_(m.conv1.weight)
    return m


class NoGradStage(SmallResNet):
    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        with torch.no_grad():
            x = self.layer1(x)
        x = self.layer3(self.layer2(x))
        return self.fc(self.avgpool(x).flatten(1))


def no_grad_stage(num_classes=10):
    return NoGradStage(num_classes)


class DataUse(SmallResNet):
    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x.data)
        x = self.layer3(x)
        return self.fc(self.avgpool(x).flatten(1))


def data_use(num_classes=10):
    return DataUse(num_classes)


class Uncalled(SmallResNet):
    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.layer4 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.fc = nn.Linear(64, num_classes)


def uncalled(num_classes=10):
    return Uncalled(num_classes)


def one_conv_frozen(num_classes=10):
    m = SmallResNet(num_classes)
    m.layer2[0].conv1.weight.requires_grad = False
    return m


def sub_eval(num_classes=10):
    m = SmallResNet(num_classes)
    m.layer2.eval()  # a submodule's eval() call in the factory
    return m


def tiny_init(num_classes=10):
    m = SmallResNet(num_classes)
    for mod in m.modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(mod.weight, 0, 0.001)
    return m


# without BN, tiny init really vanishes
class NoBNBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(x + self.conv2(self.relu(self.conv1(x))))


class NoBNNet(nn.Module):
    def __init__(self, num_classes=10, std=None):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1)
        self.layer1 = nn.Sequential(*[NoBNBlock(16) for _ in range(3)])
        self.down1 = nn.Conv2d(16, 16, 3, 2, 1)
        self.layer2 = nn.Sequential(*[NoBNBlock(16) for _ in range(3)])
        self.down2 = nn.Conv2d(16, 16, 3, 2, 1)
        self.layer3 = nn.Sequential(*[NoBNBlock(16) for _ in range(3)])
        self.fc = nn.Linear(16, num_classes)
        if std is not None:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.normal_(m.weight, 0, std)
                    nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.layer1(self.stem(x))
        x = self.layer2(self.down1(x))
        x = self.layer3(self.down2(x))
        return self.fc(x.mean((2, 3)))


def nobn_tiny(num_classes=10):
    return NoBNNet(num_classes, std=0.001)


def nobn_huge(num_classes=10):
    return NoBNNet(num_classes, std=1.0)


class PlainNoBN(nn.Module):
    """plain deep (no residual), nobn, tiny init -> vanishing"""

    def __init__(self, num_classes=10, std=0.001):
        super().__init__()

        def stage(n):
            return nn.Sequential(*[m for _ in range(n) for m in (nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU())])

        self.stem = nn.Conv2d(3, 16, 3, 1, 1)
        self.layer1, self.layer2, self.layer3 = stage(3), stage(3), stage(3)
        self.fc = nn.Linear(16, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(m.weight, 0, std)

    def forward(self, x):
        return self.fc(self.layer3(self.layer2(self.layer1(self.stem(x)))).mean((2, 3)))


def plain_nobn_tiny(num_classes=10):
    return PlainNoBN(num_classes)


# the whole model wrapped: add of the input in the stem wrapper - a "block" with a bad...
class ResidualAddsZeroBranch(BasicBlock):
    """branch multiplied by 0 -> block is identity forever (branch gets no grad)"""

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(0 * out + identity)


def zero_branch(num_classes=10):
    return SmallResNet(num_classes, block=ResidualAddsZeroBranch)


# timm-style broken: no residual, stages in nn.Sequential


class NoResIdBlock(IdBlock):
    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out)


class NoResStage(Stage):
    def __init__(self, cin, cout, n, stride):
        nn.Module.__init__(self)
        self.blocks = nn.Sequential(
            *[NoResIdBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)]
        )


class TimmNoRes(TimmResNet):
    def __init__(self, num_classes=10):
        super().__init__(num_classes)
        self.stages = nn.Sequential(
            NoResStage(32, 32, 6, 1), NoResStage(32, 64, 6, 2), NoResStage(64, 128, 6, 2), NoResStage(128, 256, 6, 2)
        )


def timm_nores(num_classes=10):
    return TimmNoRes(num_classes)


class FailsForward(SmallResNet):
    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        raise RuntimeError("boom in forward\nsecond line")


def fails_forward(num_classes=10):
    return FailsForward(num_classes)


def failing_in_backward(fail):
    """An identity autograd Function whose backward calls `fail()`: it raises, or exits."""

    class FailsInBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, g):
            fail()

    return FailsInBackward


def raising(error):
    def fail():
        raise error

    return fail


BadBackward = failing_in_backward(raising(RuntimeError("boom in backward")))


class FailsBackward(SmallResNet):
    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = BadBackward.apply(self.layer1(x))
        x = self.layer3(self.layer2(x))
        return self.fc(self.avgpool(x).flatten(1))


def fails_backward(num_classes=10):
    return FailsBackward(num_classes)


class IntOut(SmallResNet):
    def forward(self, x):
        return super().forward(x).argmax(1)


def int_out(num_classes=10):
    return IntOut(num_classes)


class FourD(SmallResNet):
    def forward(self, x):
        return self.layer3(self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x))))))


def four_d(num_classes=10):
    return FourD(num_classes)


def factory_fails(num_classes=10):
    raise ValueError("factory exploded\nwith two lines")


class NaNOut(SmallResNet):
    def forward(self, x):
        return super().forward(x) * float("nan")


def nan_out(num_classes=10):
    return NaNOut(num_classes)


def nan_weights(num_classes=10):
    m = SmallResNet(num_classes)
    m.layer2[0].conv1.weight.data[0, 0, 0, 0] = float("nan")
    return m


class ReturnsNone(SmallResNet):
    def forward(self, x):
        super().forward(x)
        return None


def returns_none(num_classes=10):
    return ReturnsNone(num_classes)


class SysExit(SmallResNet):
    def forward(self, x):
        sys.exit(3)


def sys_exit(num_classes=10):
    return SysExit(num_classes)


ExitInBackward = failing_in_backward(lambda: sys.exit(4))


class SysExitBackward(SmallResNet):
    def forward(self, x):
        return ExitInBackward.apply(super().forward(x))


def sys_exit_backward(num_classes=10):
    return SysExitBackward(num_classes)


MemoryErrorInBackward = failing_in_backward(raising(MemoryError("oom in backward")))


class MemErrBackward(SmallResNet):
    def forward(self, x):
        return MemoryErrorInBackward.apply(super().forward(x))


def memerr_backward(num_classes=10):
    return MemErrBackward(num_classes)


class ItemInForward(SmallResNet):
    def forward(self, x):
        if x.mean().item() > 100:  # data-dependent: cannot run on meta
            x = x * 0
        return super().forward(x)


def item_in_forward(num_classes=10):
    return ItemInForward(num_classes)


def gn_all_zero(num_classes=10):
    from training_healthy import gn_resnet

    m = gn_resnet(num_classes)
    for mod in m.modules():
        if isinstance(mod, nn.GroupNorm):
            nn.init.zeros_(mod.weight)
    return m


def wrapped_no_residual(num_classes=10):
    sys.path.insert(0, "/work/main/docs/examples")
    from train_no_residual import plain_resnet

    class Normalize(nn.Module):
        def forward(self, x):
            return (x - 0.5) / 0.25

    return nn.Sequential(Normalize(), plain_resnet(num_classes))


def linear_huge(num_classes=10):
    m = SmallResNet(num_classes)
    nn.init.normal_(m.fc.weight, 0, 50.0)
    return m


def functional_dead(num_classes=10):
    from training_healthy import functional_cifar

    m = functional_cifar(num_classes)
    nn.init.constant_(m.bn1.bias, -5.0)
    return m


class NoResFBlock(FBlock):  # the shortcut forgotten in every block
    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)))


def flat_nores(num_classes=10):
    return FlatResNet(block=NoResFBlock, num_classes=num_classes)
