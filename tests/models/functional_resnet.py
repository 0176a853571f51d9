"""A small ResNet written functionally over parameters and buffers it registers itself (the style
of hand-rolled / meta-learning code such as MAML or functorch ports): `F.conv2d`, `F.batch_norm`,
`F.relu`, a residual add, `F.adaptive_avg_pool2d`, `torch.flatten` and a matmul classifier
`x @ self.fc_w.t() + self.fc_b` -- no nn.Conv2d, nn.BatchNorm2d or nn.Linear submodules.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def _conv_weight(cout, cin, k):
    w = nn.Parameter(torch.empty(cout, cin, k, k))
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    return w


class FunctionalBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a (1x1 conv + BN) projection when the shape changes."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.stride = stride
        self.w1, self.w2 = _conv_weight(cout, cin, 3), _conv_weight(cout, cout, 3)
        self.project = stride != 1 or cin != cout
        norms = ("1", "2", "s") if self.project else ("1", "2")
        if self.project:
            self.ws = _conv_weight(cout, cin, 1)
        for n in norms:
            self.register_parameter(f"g{n}", nn.Parameter(torch.ones(cout)))
            self.register_parameter(f"b{n}", nn.Parameter(torch.zeros(cout)))
            self.register_buffer(f"rm{n}", torch.zeros(cout))
            self.register_buffer(f"rv{n}", torch.ones(cout))

    def bn(self, x, n):
        return F.batch_norm(
            x,
            getattr(self, f"rm{n}"),
            getattr(self, f"rv{n}"),
            getattr(self, f"g{n}"),
            getattr(self, f"b{n}"),
            training=self.training,
            momentum=0.1,
            eps=1e-5,
        )

    def forward(self, x):
        out = F.conv2d(x, self.w1, stride=self.stride, padding=1)
        out = F.relu(self.bn(out, "1"))
        out = self.bn(F.conv2d(out, self.w2, stride=1, padding=1), "2")
        identity = self.bn(F.conv2d(x, self.ws, stride=self.stride), "s") if self.project else x
        return F.relu(out + identity)


class FunctionalResNet(nn.Module):
    def __init__(self, widths=(16, 32, 64), num_classes=10):
        super().__init__()
        self.w1 = _conv_weight(widths[0], 3, 3)
        self.g = nn.Parameter(torch.ones(widths[0]))
        self.b = nn.Parameter(torch.zeros(widths[0]))
        self.register_buffer("rm", torch.zeros(widths[0]))
        self.register_buffer("rv", torch.ones(widths[0]))
        cins = (widths[0],) + tuple(widths[:-1])
        self.blocks = nn.ModuleList(
            [
                FunctionalBlock(cin, cout, 1 if i == 0 else 2)
                for i, (cin, cout) in enumerate(zip(cins, widths, strict=True))
            ]
        )
        self.fc_w = nn.Parameter(torch.empty(num_classes, widths[-1]))
        self.fc_b = nn.Parameter(torch.zeros(num_classes))
        nn.init.uniform_(self.fc_w, -1 / math.sqrt(widths[-1]), 1 / math.sqrt(widths[-1]))

    def forward(self, x):
        x = F.conv2d(x, self.w1, stride=1, padding=1)
        x = F.relu(F.batch_norm(x, self.rm, self.rv, self.g, self.b, training=self.training))
        for block in self.blocks:
            x = block(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = torch.flatten(x, 1)
        return x @ self.fc_w.t() + self.fc_b


def functional_resnet(num_classes=10):
    return FunctionalResNet(num_classes=num_classes)
