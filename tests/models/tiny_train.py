"""Two tiny models whose training-step cost is computed by hand in tests/test_training.py."""

import torch
from torch import nn


class ConvNet(nn.Module):
    """conv a (3 -> 4, 3x3, pad 1) -> ReLU -> conv b (4 -> 4, 3x3, pad 1) -> ReLU -> global mean -> fc (4 -> 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        x = self.b(self.a(x).relu()).relu()
        return self.fc(x.mean((2, 3)))


def conv_net() -> nn.Module:
    return ConvNet()


def mlp() -> nn.Module:
    """Linear(64, 128) -> ReLU -> Linear(128, 10)."""
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


class LinearProbe(nn.Module):
    """A frozen-by-no_grad backbone (conv 3 -> 8, 3x3, pad 1, ReLU, global mean) and a trained head (8 -> 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        with torch.no_grad():
            features = self.backbone(x).relu().mean((2, 3))
        return self.head(features)


def probe() -> nn.Module:
    return LinearProbe()
