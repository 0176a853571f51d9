"""A small residual network whose module names are longer than an 80-column table can show whole (a newcomer's
descriptive naming): the table must fold names, never cut a number."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlockWithProjection(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.first_convolution_with_a_long_name = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.projection_shortcut_sequence = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.first_convolution_with_a_long_name(x) + self.projection_shortcut_sequence(x))


class Net(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.encoder_backbone_residual_stage_one = nn.Sequential(*(ResidualBlockWithProjection(64) for _ in range(2)))
        self.classifier_head = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder_backbone_residual_stage_one(self.stem(x))
        return self.classifier_head(x.mean((2, 3)))
