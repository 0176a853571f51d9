"""Healthy ResNet patterns at initialisation (found by the debug-training review): no finding may fire on them."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def kaiming(model, zero_last=False):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


# 1. torchvision style with functional F.relu
class FBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + identity)


class FResNet(nn.Module):
    def __init__(self, block=FBlock, layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), num_classes=1000, cifar=False):
        super().__init__()
        if cifar:
            self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.bn1 = nn.BatchNorm2d(widths[0])
        cin = widths[0]
        for i, (n, w) in enumerate(zip(layers, widths, strict=False)):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = blocks[-1].out_channels if hasattr(blocks[-1], "out_channels") else w
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.nstages = len(layers)
        self.fc = nn.Linear(cin, num_classes)
        kaiming(self)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(self.nstages):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def functional_resnet18(num_classes=1000):
    return FResNet(num_classes=num_classes)


def functional_cifar(num_classes=10):
    return FResNet(layers=(3, 3, 3), widths=(16, 32, 64), num_classes=num_classes, cifar=True)


# 2. ResNeXt bottleneck
class XBlock(nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride=1, groups=32, base_width=4):
        super().__init__()
        width = int(planes * base_width / 64) * groups
        cout = planes * 4
        self.out_channels = cout
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


def resnext(num_classes=100):
    return FResNet(block=XBlock, layers=(1, 1, 1, 1), widths=(64, 128, 256, 512), num_classes=num_classes)


# 3. SE-ResNet, healthy sigmoid gate (module-based)
class SE(nn.Module):
    def __init__(self, c, r=16):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, max(c // r, 8), 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(max(c // r, 8), c, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.pool(x)))))


class SEBlock(FBlock):
    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.se = SE(cout)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return F.relu(out + identity)


def se_resnet(num_classes=10):
    m = FResNet(block=SEBlock, num_classes=num_classes)
    return m


# 4. pre-activation ResNet
class PreBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        sc = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + sc


class PreResNet(nn.Module):
    def __init__(self, depth_per_stage=3, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        cin, stages = 16, []
        for i, w in enumerate((16, 32, 64)):
            blocks = [PreBlock(cin if j == 0 else w, w, 2 if (i and j == 0) else 1) for j in range(depth_per_stage)]
            stages.append(nn.Sequential(*blocks))
            cin = w
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, num_classes)
        kaiming(self)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.conv1(x))))
        return self.fc(F.relu(self.bn(x)).mean((2, 3)))


def preact(num_classes=10):
    return PreResNet(num_classes=num_classes)


def preact_deep(num_classes=10):
    return PreResNet(depth_per_stage=18, num_classes=num_classes)


# 5. GroupNorm
class GNBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.gn1 = nn.GroupNorm(8, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.gn2 = nn.GroupNorm(8, cout)
        self.act = nn.ReLU()
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(8, cout))
        )

    def forward(self, x):
        out = self.act(self.gn1(self.conv1(x)))
        out = self.gn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


def gn_resnet(num_classes=10):
    return FResNet(block=GNBlock, layers=(2, 2, 2), widths=(32, 64, 128), num_classes=num_classes, cifar=True)


# 6. dropout + drop path
class DropPath(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.p = p

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
        return x * mask / keep


class DPBlock(FBlock):
    def __init__(self, cin, cout, stride=1, p=0.2):
        super().__init__(cin, cout, stride)
        self.drop_path = DropPath(p)
        self.dropout = nn.Dropout2d(0.1)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.dropout(F.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return F.relu(self.drop_path(out) + identity)


class DPResNet(FResNet):
    def __init__(self, **kw):
        super().__init__(block=DPBlock, layers=(2, 2, 2), widths=(16, 32, 64), cifar=True, **kw)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.drop(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)))


def dp_resnet(num_classes=10):
    return DPResNet(num_classes=num_classes)


# 7. frozen backbone on purpose
def frozen_backbone(num_classes=10):
    m = FResNet(layers=(2, 2, 2), widths=(16, 32, 64), cifar=True, num_classes=num_classes)
    for n, p in m.named_parameters():
        if not n.startswith("fc"):
            p.requires_grad_(False)
    return m


def frozen_backbone_eval(num_classes=10):
    """frozen backbone, BN frozen by train() override: the standard fine-tune recipe"""

    class M(FResNet):
        def train(self, mode=True):
            super().train(mode)
            for _n, mod in self.named_modules():
                if isinstance(mod, nn.BatchNorm2d):
                    mod.eval()
            return self

    m = M(layers=(2, 2, 2), widths=(16, 32, 64), cifar=True, num_classes=num_classes)
    for n, p in m.named_parameters():
        if not n.startswith("fc"):
            p.requires_grad_(False)
    return m


# 8. tuple output (logits, aux)
class AuxResNet(FResNet):
    def __init__(self, num_classes=10):
        super().__init__(layers=(2, 2, 2), widths=(16, 32, 64), cifar=True, num_classes=num_classes)
        self.aux = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        aux = self.aux(x.mean((2, 3)))
        x = self.layer3(x)
        return self.fc(x.mean((2, 3))), aux


def aux_resnet(num_classes=10):
    return AuxResNet(num_classes)


class DictResNet(AuxResNet):
    def forward(self, x):
        a, b = super().forward(x)
        return {"logits": a, "aux": b}


def dict_resnet(num_classes=10):
    return DictResNet(num_classes)


# 9. nn.Identity shortcuts
class IdBlock(FBlock):
    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.shortcut = self.downsample if self.downsample is not None else nn.Identity()
        del self.downsample
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def identity_resnet(num_classes=10):
    return FResNet(block=IdBlock, layers=(2, 2, 2), widths=(16, 32, 64), cifar=True, num_classes=num_classes)


# 10. ModuleList blocks
class MLResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.ModuleList()
        cin = 16
        for i, w in enumerate((16, 32, 64)):
            for j in range(3):
                self.blocks.append(IdBlock(cin, w, 2 if (i and j == 0) else 1))
                cin = w
        self.head = nn.Linear(64, num_classes)
        kaiming(self)

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x.mean((2, 3)))


def modulelist_resnet(num_classes=10):
    return MLResNet(num_classes)


# 11. timm-style stages.N.blocks.M
class Stage(nn.Module):
    def __init__(self, cin, cout, n, stride):
        super().__init__()
        self.blocks = nn.Sequential(
            *[IdBlock(cin if i == 0 else cout, cout, stride if i == 0 else 1) for i in range(n)]
        )

    def forward(self, x):
        return self.blocks(x)


class TimmResNet(nn.Module):
    def __init__(self, num_classes=10, imagenet=False):
        super().__init__()
        if imagenet:
            self.stem = nn.Sequential(
                nn.Conv2d(3, 32, 7, 2, 3, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            )
        else:
            self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.stages = nn.Sequential(
            Stage(32, 32, 2, 1), Stage(32, 64, 2, 2), Stage(64, 128, 2, 2), Stage(128, 256, 2, 2)
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, num_classes))
        kaiming(self)

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


def timm_resnet(num_classes=10):
    return TimmResNet(num_classes)


def timm_resnet_in(num_classes=1000):
    return TimmResNet(num_classes, imagenet=True)


# default PyTorch init (no kaiming) variants: what most people write
def default_init_resnet18(num_classes=1000):
    m = FResNet(num_classes=num_classes)
    for mod in m.modules():
        if isinstance(mod, nn.Conv2d):
            mod.reset_parameters()
    return m


# fully convolutional head: 1x1 conv to classes, default init
class ConvHead(FResNet):
    def __init__(self, num_classes=10):
        super().__init__(layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), num_classes=num_classes)
        del self.fc
        self.head = nn.Conv2d(512, num_classes, 1)

    def forward(self, x):
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.head(F.adaptive_avg_pool2d(x, 1)).flatten(1)


def convhead_resnet(num_classes=10):
    return ConvHead(num_classes)


# SE with reduction 32 and conv default init
class SE32Block(SEBlock):
    def __init__(self, cin, cout, stride=1):
        super().__init__(cin, cout, stride)
        self.se = SE(cout, r=32)
        self.se.fc1.reset_parameters()
        self.se.fc2.reset_parameters()


def se32_resnet(num_classes=10):
    m = FResNet(block=SE32Block, num_classes=num_classes)
    for b in m.modules():
        if isinstance(b, SE):
            b.fc1.reset_parameters()
            b.fc2.reset_parameters()
    return m


# depthwise (MobileNet-ish inverted residual) default init
class DWBlock(nn.Module):
    def __init__(self, cin, cout, stride=1, expand=4):
        super().__init__()
        mid = cin * expand
        self.conv = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(),
            nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU6(),
            nn.Conv2d(mid, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class DWNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6())
        self.layer1 = nn.Sequential(DWBlock(32, 64, 1), DWBlock(64, 64))
        self.layer2 = nn.Sequential(DWBlock(64, 128, 2), DWBlock(128, 128))
        self.layer3 = nn.Sequential(DWBlock(128, 256, 2), DWBlock(256, 256))
        self.fc = nn.Linear(256, num_classes)

    def forward(self, x):
        return self.fc(self.layer3(self.layer2(self.layer1(self.stem(x)))).mean((2, 3)))


def dwnet(num_classes=10):
    return DWNet(num_classes)


# zero-init residual with SE after the last BN (timm seresnet zero_init_last) and with drop path
def se_resnet_zero_last(num_classes=10):
    m = FResNet(block=SEBlock, layers=(2, 2, 2), widths=(16, 32, 64), cifar=True, num_classes=num_classes)
    for b in m.modules():
        if isinstance(b, SEBlock):
            nn.init.zeros_(b.bn2.weight)
    return m


def dp_resnet_zero_last(num_classes=10):
    m = DPResNet(num_classes=num_classes)
    for b in m.modules():
        if isinstance(b, DPBlock):
            nn.init.zeros_(b.bn2.weight)
    return m


def gn_zero_last(num_classes=10):
    m = gn_resnet(num_classes)
    for b in m.modules():
        if isinstance(b, GNBlock):
            nn.init.zeros_(b.gn2.weight)
    return m


def wrapped_normalize(num_classes=10):
    """common: a Normalize layer in front, model in nn.Sequential"""

    class Normalize(nn.Module):
        def forward(self, x):
            return (x - 0.5) / 0.25

    return nn.Sequential(
        Normalize(), FResNet(layers=(2, 2, 2), widths=(16, 32, 64), cifar=True, num_classes=num_classes)
    )


def mnist_resnet(num_classes=10):
    m = FResNet(layers=(1, 1), widths=(16, 32), cifar=True, num_classes=num_classes)
    m.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
    return m


class Layer0ResNet(nn.Module):
    """Cadene pretrainedmodels SENet style: the stem is `layer0`"""

    def __init__(self, num_classes=10):
        super().__init__()
        from collections import OrderedDict

        self.layer0 = nn.Sequential(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(3, 16, 3, 1, 1, bias=False)),
                    ("bn1", nn.BatchNorm2d(16)),
                    ("relu1", nn.ReLU(inplace=True)),
                ]
            )
        )
        self.layer1 = nn.Sequential(IdBlock(16, 16), IdBlock(16, 16))
        self.layer2 = nn.Sequential(IdBlock(16, 32, 2), IdBlock(32, 32))
        self.layer3 = nn.Sequential(IdBlock(32, 64, 2), IdBlock(64, 64))
        self.last_linear = nn.Linear(64, num_classes)
        kaiming(self)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.layer0(x))))
        return self.last_linear(x.mean((2, 3)))


def layer0_resnet(num_classes=10):
    return Layer0ResNet(num_classes)


# every block in one flat nn.Sequential, no stage names (a common CIFAR layout): `self.blocks = nn.Sequential(...)`
class FlatResNet(nn.Module):
    def __init__(self, block=FBlock, widths=(16, 32, 64), per_stage=3, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU())
        blocks, cin = [], widths[0]
        for i, w in enumerate(widths):
            for j in range(per_stage):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, num_classes)
        kaiming(self)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1))


def flat_resnet(num_classes=10):
    return FlatResNet(num_classes=num_classes)
