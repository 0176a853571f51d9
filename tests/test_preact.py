"""Pre-activation blocks, block dropout, the stem's channels, and the Wide ResNet and pre-activation presets, checked
against independent constructions (tests/models/wide_resnet.py, and a pre-activation CIFAR net written below)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from cli_runner import one_error_line, run, run_json
from torch import nn

from resnet_cli.model import PreActBasicBlock, PreActBottleneck, build_model

sys.path.insert(0, str(Path(__file__).resolve().parent / "models"))
from wide_resnet import wide_resnet  # noqa: E402  (xternalz's WideResNet, the reference implementation's layout)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "depth", "k", "published"), [("wrn28_10", 28, 10, 36.5e6), ("wrn40_4", 40, 4, 8.9e6),
                                                               ("wrn16_8", 16, 8, 11.0e6)])  # fmt: skip
def test_wide_resnets_match_an_independent_implementation(name, depth, k, published):
    ours = n_params(build_model(name, device="meta"))
    assert ours == n_params(wide_resnet(depth=depth, widen_factor=k, num_classes=10))
    assert round(ours / 1e5) == round(published / 1e5)


class _PreActBottleneck(nn.Module):
    """He et al. 2016's CIFAR bottleneck, written here independently of resnet_cli."""

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        cout = planes * 4
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, planes, 1, bias=False),
            nn.BatchNorm2d(planes), nn.ReLU(), nn.Conv2d(planes, planes, 3, stride, 1, bias=False),
            nn.BatchNorm2d(planes), nn.ReLU(), nn.Conv2d(planes, cout, 1, bias=False),
        )  # fmt: skip
        self.proj = nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None

    def forward(self, x):
        return self.body(x) + (x if self.proj is None else self.proj(torch.relu(self.body[0](x))))


def _preact_cifar(n: int) -> nn.Module:
    layers, cin = [nn.Conv2d(3, 16, 3, padding=1, bias=False)], 16
    for stage, planes in enumerate((16, 32, 64)):
        for block in range(n):
            layers.append(_PreActBottleneck(cin, planes, 2 if stage and not block else 1))
            cin = planes * 4
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize(("name", "n", "published"), [("preact_resnet164", 18, 1.7e6), ("preact_resnet1001", 111, 10.2e6)])
def test_preact_cifar_nets_match_an_independent_implementation(name, n, published):
    ours = build_model(name, device="meta")
    assert n_params(ours) == n_params(_preact_cifar(n))
    # He et al. 2016 quote the count without BN's scale and shift
    no_bn = n_params(ours) - sum(n_params(m) for m in ours.modules() if isinstance(m, nn.BatchNorm2d))
    assert round(no_bn / 1e5) == round(published / 1e5)


def test_a_preact_block_runs_bn_relu_before_each_conv_and_projects_the_preactivated_input():
    model = build_model("preact_resnet164", device="cpu").eval()
    block = model.layer2[0]
    assert isinstance(block, PreActBottleneck) and isinstance(block.downsample, nn.Conv2d)
    x = torch.randn(2, 64, 8, 8)
    pre = torch.relu(block.bn1(x))
    expected = block.conv3(torch.relu(block.bn3(block.conv2(torch.relu(block.bn2(block.conv1(pre)))))))
    torch.testing.assert_close(block(x), expected + block.downsample(pre))
    identity = model.layer2[1]
    y = torch.randn(2, 128, 4, 4)
    inner = identity.conv3(torch.relu(identity.bn3(identity.conv2(torch.relu(identity.bn2(identity.conv1(
        torch.relu(identity.bn1(y)))))))))  # fmt: skip
    torch.testing.assert_close(identity(y), inner + y)


def test_the_final_bn_relu_comes_before_pooling_and_post_activation_nets_have_none():
    assert isinstance(build_model("wrn16_8", device="meta").final_bn, nn.BatchNorm2d)
    resnet18 = build_model("resnet18", device="meta")
    assert not any("final" in key for key in resnet18.state_dict())  # torchvision's keys unchanged


def test_every_preact_block_is_marked_residual_with_its_projection():
    report = run_json("debug-shapes", "wrn16_8", "--depth", "2")
    marks = [(layer["name"], layer["residual"]["shortcut_from"]) for layer in report["layers"] if layer["residual"]]
    assert marks == [(f"layer{s}.{b}", f"layer{s}.0.downsample" if b == 0 else None) for s in (1, 2, 3) for b in (0, 1)]


def test_block_dropout_sits_before_the_last_conv_and_changes_no_count():
    model = build_model("wrn16_8", block_dropout=0.3, device="meta")
    assert all(isinstance(m.dropout, nn.Dropout) and m.dropout.p == 0.3 for m in model.modules()
               if isinstance(m, PreActBasicBlock))  # fmt: skip
    plain = run_json("flops", "wrn16_8")["totals"]
    dropped = run_json("flops", "wrn16_8", "--block-dropout", "0.3")["totals"]
    assert plain == dropped


def test_zero_init_residual_zeroes_a_preact_blocks_last_conv():
    model = build_model("preact_resnet164", zero_init_residual=True)
    assert all(not m.conv3.weight.any() for m in model.modules() if isinstance(m, PreActBottleneck))


def test_a_preact_imagenet_resnet_runs():
    data = run_json("summary", "resnet50", "--preact", "--depth", "0")
    # same convs, BNs moved before them (bn1 on the block input), plus the final BN: torchvision's 25,557,032
    # minus each block's last-BN (2 x out) plus its first BN (2 x in), plus 2 x 2048 for the final BN
    bn_change = sum(2 * (cin - cout) for cin, cout in
                    [(64, 256), (256, 256), (256, 256), (256, 512), *[(512, 512)] * 3, (512, 1024), *[(1024, 1024)] * 5,
                     (1024, 2048), (2048, 2048), (2048, 2048)])  # fmt: skip
    # projections lose their BN (2 x out each, 4 of them)
    assert data["totals"]["params"] == 25_557_032 + bn_change + 2 * 2048 - 2 * (256 + 512 + 1024 + 2048)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--block-dropout", "1.5"], "--block-dropout 1.5 must be in [0, 1)"),
        (["--stem-channels", "0"], "--stem-channels 0 must be a positive integer"),
        (["--block", "preact-triple"], "preact-triple"),
    ],
)
def test_bad_values_exit_2_in_one_line(args, message):
    result = run("summary", *args)
    assert result.exit_code == 2
    assert message in (one_error_line(result) if result.stderr.startswith("Error") else result.output)
