"""A deep plain network (no residual adds, no normalisation, PyTorch's default init): gradients vanish.

    resnet-cli debug-training docs/examples/train_plain_deep.py:plain_net
"""

from torch import nn


class PlainNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32, layers_per_stage: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        stages = []
        for i in range(3):
            layers = [nn.Conv2d(width, width, 3, stride=2 if i else 1, padding=1), nn.ReLU()]
            for _ in range(layers_per_stage - 1):
                layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(x.mean((2, 3)))


def plain_net(num_classes: int = 10) -> PlainNet:
    return PlainNet(num_classes)
