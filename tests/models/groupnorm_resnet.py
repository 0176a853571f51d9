"""BiT-style ResNet-v2 (Kolesnikov et al. 2020; google-research/big_transfer's PyTorch ResNetV2):
pre-activation bottlenecks with nn.GroupNorm(32, C) and weight-standardised convs (`StdConv2d`
normalises its weight with `torch.var_mean` in every forward), the projection fed the
pre-activated input, a padded max-pool root and a GN-ReLU-pool-1x1-conv head. Kept small: one
unit per stage.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class StdConv2d(nn.Conv2d):
    def forward(self, x):
        w = self.weight
        v, m = torch.var_mean(w, dim=[1, 2, 3], keepdim=True, unbiased=False)
        w = (w - m) / torch.sqrt(v + 1e-10)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)


def conv3x3(cin, cout, stride=1, groups=1, bias=False):
    return StdConv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=bias, groups=groups)


def conv1x1(cin, cout, stride=1, bias=False):
    return StdConv2d(cin, cout, kernel_size=1, stride=stride, padding=0, bias=bias)


class PreActBottleneck(nn.Module):
    def __init__(self, cin, cout=None, cmid=None, stride=1):
        super().__init__()
        cout = cout or cin
        cmid = cmid or cout // 4
        self.gn1 = nn.GroupNorm(32, cin)
        self.conv1 = conv1x1(cin, cmid)
        self.gn2 = nn.GroupNorm(32, cmid)
        self.conv2 = conv3x3(cmid, cmid, stride)
        self.gn3 = nn.GroupNorm(32, cmid)
        self.conv3 = conv1x1(cmid, cout)
        self.relu = nn.ReLU(inplace=True)
        if stride != 1 or cin != cout:
            self.downsample = conv1x1(cin, cout, stride)

    def forward(self, x):
        out = self.relu(self.gn1(x))
        residual = x
        if hasattr(self, "downsample"):
            residual = self.downsample(out)
        out = self.conv1(out)
        out = self.conv2(self.relu(self.gn2(out)))
        out = self.conv3(self.relu(self.gn3(out)))
        return out + residual


class ResNetV2(nn.Module):
    def __init__(self, block_units, width_factor=1, head_size=1000):
        super().__init__()
        wf = width_factor
        self.root = nn.Sequential()
        self.root.add_module("conv", StdConv2d(3, 64 * wf, kernel_size=7, stride=2, padding=3, bias=False))
        self.root.add_module("pad", nn.ConstantPad2d(1, 0))
        self.root.add_module("pool", nn.MaxPool2d(kernel_size=3, stride=2, padding=0))
        self.body = nn.Sequential()
        cin = 64 * wf
        for i, (cmid, n) in enumerate(zip((64, 128, 256, 512), block_units, strict=True)):
            cmid, cout = cmid * wf, cmid * wf * 4
            stage = nn.Sequential()
            stage.add_module("unit01", PreActBottleneck(cin, cout, cmid, stride=1 if i == 0 else 2))
            for j in range(2, n + 1):
                stage.add_module(f"unit{j:02d}", PreActBottleneck(cout, cout, cmid))
            self.body.add_module(f"block{i + 1}", stage)
            cin = cout
        self.head = nn.Sequential()
        self.head.add_module("gn", nn.GroupNorm(32, cin))
        self.head.add_module("relu", nn.ReLU(inplace=True))
        self.head.add_module("avg", nn.AdaptiveAvgPool2d(output_size=1))
        self.head.add_module("conv", nn.Conv2d(cin, head_size, kernel_size=1, bias=True))

    def forward(self, x):
        x = self.head(self.body(self.root(x)))
        return x[..., 0, 0]


def bit_resnet_small(num_classes=1000):
    return ResNetV2([1, 1, 1, 1], width_factor=1, head_size=num_classes)
