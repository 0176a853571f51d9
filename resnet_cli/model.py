"""ResNet blocks and the network built from a ResNetSpec.

Module and parameter names follow torchvision (`conv1`, `bn1`, `layer1.0.downsample.0`, `fc`)
because checkpoints depend on them. Disabled options are `nn.Identity`, so `forward` has no branches.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnet_cli.errors import UserError
from resnet_cli.spec import ResNetSpec, resolve_spec
from resnet_cli.trace import make_input, parameter_count
from resnet_cli.units import shape_text
from resnet_cli.user_model import UserModelRequest, build_user_model

Device = torch.device | None
# Builders pass `device` to every layer instead of building under `with torch.device(...)`: that context mode
# intercepts every torch call made while building, about a fifth of a meta build.


def conv3x3(
    in_ch: int, out_ch: int, stride: int = 1, groups: int = 1, dilation: int = 1, device: Device = None
) -> nn.Conv2d:
    """3x3 convolution without bias, padded to keep the size at stride 1."""
    return nn.Conv2d(
        in_ch, out_ch, 3, stride=stride, padding=dilation, groups=groups, dilation=dilation, bias=False, device=device
    )


def conv1x1(in_ch: int, out_ch: int, stride: int = 1, device: Device = None) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False, device=device)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: channel gates from global context (Hu et al. 2018)."""

    def __init__(self, channels: int, ratio: int, device: Device = None) -> None:
        super().__init__()
        reduced = max(1, channels // ratio)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1, bias=True, device=device)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, 1, bias=True, device=device)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class DropPath(nn.Module):
    """Stochastic depth: zero the residual branch of whole samples with probability `rate` in training."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.3f}"


class PaddedIdentity(nn.Module):
    """Shortcut option A: strided subsampling and zero-padded extra channels, no parameters."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        extra = self.out_ch - self.in_ch
        return nn.functional.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))

    def extra_repr(self) -> str:
        return f"{self.in_ch}->{self.out_ch}, stride={self.stride}"


def make_shortcut(spec: ResNetSpec, in_ch: int, out_ch: int, stride: int, device: Device = None) -> nn.Module:
    """The shortcut path of one block, per --shortcut and --avg-down."""
    changes_shape = stride != 1 or in_ch != out_ch
    if spec.shortcut == "A" or (spec.shortcut == "B" and not changes_shape):
        return PaddedIdentity(in_ch, out_ch, stride) if changes_shape else nn.Identity()
    if spec.avg_down:
        pool = (
            nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False) if stride > 1 else nn.Identity()
        )
        return nn.Sequential(pool, conv1x1(in_ch, out_ch, device=device), nn.BatchNorm2d(out_ch, device=device))
    return nn.Sequential(conv1x1(in_ch, out_ch, stride, device), nn.BatchNorm2d(out_ch, device=device))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (He et al. 2015, Fig. 2)."""

    def __init__(
        self, spec: ResNetSpec, in_ch: int, planes: int, stride: int, dilation: int, drop_path: float,
        device: Device = None,
    ) -> None:  # fmt: skip
        super().__init__()
        out_ch = planes * spec.block_expansion
        self.conv1 = conv3x3(in_ch, planes, stride, dilation=dilation, device=device)
        self.bn1 = nn.BatchNorm2d(planes, device=device)
        self.relu1 = nn.ReLU(inplace=True)
        self.dropout = block_dropout(spec)
        self.conv2 = conv3x3(planes, out_ch, dilation=dilation, device=device)
        self.bn2 = nn.BatchNorm2d(out_ch, device=device)
        self.se = SqueezeExcite(out_ch, spec.se_ratio, device) if spec.se else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.downsample = make_shortcut(spec, in_ch, out_ch, stride, device)
        self.relu2 = nn.ReLU(inplace=True)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.relu1(self.bn1(self.conv1(x))))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu2(self.drop_path(out) + self.downsample(x))


def bottleneck_sizes(spec: ResNetSpec, planes: int, stride: int, stage: int) -> tuple[int, int, int, int]:
    """(inner width, output channels, stride of the first 1x1, stride of the 3x3) of a bottleneck in `stage`."""
    stride_1x1, stride_3x3 = (stride, 1) if spec.stride_on == "1x1" else (1, stride)
    return spec.inner_width(stage), planes * spec.block_expansion, stride_1x1, stride_3x3


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt), 1x1 expand, and a shortcut (He et al. 2015, Fig. 5)."""

    def __init__(
        self, spec: ResNetSpec, in_ch: int, planes: int, stride: int, dilation: int, drop_path: float, stage: int,
        device: Device = None,
    ) -> None:  # fmt: skip
        super().__init__()
        width, out_ch, stride_1x1, stride_3x3 = bottleneck_sizes(spec, planes, stride, stage)
        self.conv1 = conv1x1(in_ch, width, stride_1x1, device)
        self.bn1 = nn.BatchNorm2d(width, device=device)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride_3x3, spec.groups, dilation, device)
        self.bn2 = nn.BatchNorm2d(width, device=device)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = block_dropout(spec)
        self.conv3 = conv1x1(width, out_ch, device=device)
        self.bn3 = nn.BatchNorm2d(out_ch, device=device)
        self.se = SqueezeExcite(out_ch, spec.se_ratio, device) if spec.se else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.downsample = make_shortcut(spec, in_ch, out_ch, stride, device)
        self.relu3 = nn.ReLU(inplace=True)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.dropout(self.relu2(self.bn2(self.conv2(out))))
        out = self.se(self.bn3(self.conv3(out)))
        return self.relu3(self.drop_path(out) + self.downsample(x))


def block_dropout(spec: ResNetSpec) -> nn.Module:
    """Dropout before a block's last conv (--block-dropout, as Wide ResNets place it), or Identity."""
    return nn.Dropout(spec.block_dropout) if spec.block_dropout > 0 else nn.Identity()


def preact_shortcut(spec: ResNetSpec, in_ch: int, out_ch: int, stride: int, device: Device = None) -> nn.Module:
    """A pre-activation block's projection: a 1x1 conv (after an average pool with --avg-down) and no BN, fed the
    pre-activated input (He et al. 2016, Wide ResNets); Identity when the shortcut is the input itself."""
    changes_shape = stride != 1 or in_ch != out_ch
    if spec.shortcut == "A" or (spec.shortcut == "B" and not changes_shape):
        return nn.Identity()
    if spec.avg_down and stride > 1:
        return nn.Sequential(nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                             conv1x1(in_ch, out_ch, device=device))  # fmt: skip
    return conv1x1(in_ch, out_ch, stride, device)


def add_preact_residual(
    block: nn.Module, spec: ResNetSpec, in_ch: int, out_ch: int, stride: int, drop_path: float, device: Device
) -> None:  # fmt: skip
    """The parts every pre-activation block ends with: SE, drop-path, the projection (fed the pre-activated input)
    and option A's padding (of the raw input), each nn.Identity when off."""
    block.se = SqueezeExcite(out_ch, spec.se_ratio, device) if spec.se else nn.Identity()
    block.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
    block.downsample = preact_shortcut(spec, in_ch, out_ch, stride, device)
    padded = spec.shortcut == "A" and (stride != 1 or in_ch != out_ch)
    block.pad = PaddedIdentity(in_ch, out_ch, stride) if padded else nn.Identity()
    block.projects = not isinstance(block.downsample, nn.Identity)


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv twice (He et al. 2016, "Identity Mappings"); a projection takes the pre-activated input."""

    def __init__(
        self, spec: ResNetSpec, in_ch: int, planes: int, stride: int, dilation: int, drop_path: float,
        device: Device = None,
    ) -> None:  # fmt: skip
        super().__init__()
        out_ch = planes * spec.block_expansion
        self.bn1 = nn.BatchNorm2d(in_ch, device=device)
        self.relu1 = nn.ReLU(inplace=False)  # its input is also the identity shortcut
        self.conv1 = conv3x3(in_ch, planes, stride, dilation=dilation, device=device)
        self.bn2 = nn.BatchNorm2d(planes, device=device)
        self.relu2 = nn.ReLU(inplace=True)
        self.dropout = block_dropout(spec)
        self.conv2 = conv3x3(planes, out_ch, dilation=dilation, device=device)
        add_preact_residual(self, spec, in_ch, out_ch, stride, drop_path, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.conv2(self.dropout(self.relu2(self.bn2(self.conv1(pre)))))
        return self.drop_path(self.se(out)) + (self.downsample(pre) if self.projects else self.pad(x))


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv for the 1x1 reduce, the 3x3 and the 1x1 expand (He et al. 2016); projection as PreActBasicBlock."""

    def __init__(
        self, spec: ResNetSpec, in_ch: int, planes: int, stride: int, dilation: int, drop_path: float, stage: int,
        device: Device = None,
    ) -> None:  # fmt: skip
        super().__init__()
        width, out_ch, stride_1x1, stride_3x3 = bottleneck_sizes(spec, planes, stride, stage)
        self.bn1 = nn.BatchNorm2d(in_ch, device=device)
        self.relu1 = nn.ReLU(inplace=False)  # its input is also the identity shortcut
        self.conv1 = conv1x1(in_ch, width, stride_1x1, device)
        self.bn2 = nn.BatchNorm2d(width, device=device)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(width, width, stride_3x3, spec.groups, dilation, device)
        self.bn3 = nn.BatchNorm2d(width, device=device)
        self.relu3 = nn.ReLU(inplace=True)
        self.dropout = block_dropout(spec)
        self.conv3 = conv1x1(width, out_ch, device=device)
        add_preact_residual(self, spec, in_ch, out_ch, stride, drop_path, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu1(self.bn1(x))
        out = self.conv2(self.relu2(self.bn2(self.conv1(pre))))
        out = self.conv3(self.dropout(self.relu3(self.bn3(out))))
        return self.drop_path(self.se(out)) + (self.downsample(pre) if self.projects else self.pad(x))


def make_stem(spec: ResNetSpec, device: Device = None) -> dict[str, nn.Module]:
    """Stem modules by name: conv1, bn1, relu, maxpool."""
    width, in_ch = spec.stem_width, spec.in_channels
    if spec.stem == "imagenet":
        conv: nn.Module = nn.Conv2d(in_ch, width, 7, stride=2, padding=3, bias=False, device=device)
    elif spec.stem == "deep":
        half = max(1, width // 2)
        conv = nn.Sequential(
            conv3x3(in_ch, half, stride=2, device=device), nn.BatchNorm2d(half, device=device), nn.ReLU(inplace=True),
            conv3x3(half, half, device=device), nn.BatchNorm2d(half, device=device), nn.ReLU(inplace=True),
            conv3x3(half, width, device=device),
        )  # fmt: skip
    else:
        conv = conv3x3(in_ch, width, device=device)
    pool = nn.Identity() if spec.stem == "cifar" else nn.MaxPool2d(3, stride=2, padding=1)
    if spec.preact and spec.stem == "cifar":  # He et al. 2016 and WRN: the first block's BN-ReLU follows the conv
        return {"conv1": conv, "bn1": nn.Identity(), "relu": nn.Identity(), "maxpool": pool}
    bn = nn.BatchNorm2d(width, device=device)
    return {"conv1": conv, "bn1": bn, "relu": nn.ReLU(inplace=True), "maxpool": pool}


def make_stages(spec: ResNetSpec, device: Device = None) -> dict[str, nn.Sequential]:
    """Stages layer1..layerN built from the spec alone (no state carried between calls)."""
    drop_rates = [spec.drop_path * i / max(spec.num_blocks - 1, 1) for i in range(spec.num_blocks)]
    stages: dict[str, nn.Sequential] = {}
    in_ch, dilation, block_index = spec.stem_width, 1, 0
    for stage, (depth, planes) in enumerate(zip(spec.layers, spec.stage_widths, strict=True)):
        stride = 1 if stage == 0 else 2
        first_dilation = dilation
        if stage + 1 in spec.dilate_stages:
            dilation, stride = dilation * stride, 1
        blocks = []
        for i in range(depth):
            args = dict(
                in_ch=in_ch if i == 0 else spec.out_channels(stage),
                planes=planes,
                stride=stride if i == 0 else 1,
                dilation=first_dilation if i == 0 else dilation,
                drop_path=drop_rates[block_index],
                device=device,
            )
            if spec.block == "basic":
                blocks.append((PreActBasicBlock if spec.preact else BasicBlock)(spec, **args))
            else:
                blocks.append((PreActBottleneck if spec.preact else Bottleneck)(spec, stage=stage, **args))
            block_index += 1
        stages[f"layer{stage + 1}"] = nn.Sequential(*blocks)
        in_ch = spec.out_channels(stage)
    return stages


class ResNet(nn.Module):
    """A ResNet of any depth, width, block, stem and shortcut, built from a ResNetSpec."""

    def __init__(self, spec: ResNetSpec, device: Device = None) -> None:
        super().__init__()
        self.spec = spec
        for name, module in make_stem(spec, device).items():
            self.add_module(name, module)
        for name, module in make_stages(spec, device).items():
            self.add_module(name, module)
        out_ch = spec.out_channels(spec.num_stages - 1)
        # pre-activation: the last block ends in a conv, so BN-ReLU come before pooling (He et al. 2016)
        self.final_bn = nn.BatchNorm2d(out_ch, device=device) if spec.preact else nn.Identity()
        self.final_relu = nn.ReLU(inplace=True) if spec.preact else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(out_ch, spec.num_classes, device=device)
        self.stage_names = list(make_stage_names(spec))
        if self.fc.weight.device.type != "meta":  # meta tensors hold no values to initialise
            init_weights(self, spec.zero_init_residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.fc(self.flatten(self.avgpool(self.final_relu(self.final_bn(x)))))


def make_stage_names(spec: ResNetSpec) -> list[str]:
    """layer1..layerN."""
    return [f"layer{i + 1}" for i in range(spec.num_stages)]


def init_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """torchvision's initialisation: He-normal convs, unit BN; optionally zero each block's last BN (a
    pre-activation block's last conv, which ends it, as timm does), so every block starts as the identity."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, (BasicBlock, Bottleneck)):
                nn.init.zeros_(m.last_bn.weight)
            elif isinstance(m, PreActBasicBlock):
                nn.init.zeros_(m.conv2.weight)
            elif isinstance(m, PreActBottleneck):
                nn.init.zeros_(m.conv3.weight)


def build_model(model: str | ResNetSpec | None = None, *, device: str | torch.device | None = None, **overrides) -> ResNet:
    """Build a ResNet from a preset name or spec, with spec fields overridden by keyword.

    `build_model("resnet50", se=True)`; `device="meta"` builds without allocating weights.
    """
    spec = model.replace(**overrides) if isinstance(model, ResNetSpec) else resolve_spec(model, **overrides)
    return ResNet(spec, torch.device(device or "cpu"))


SAVED_WITH = "torch.save(model.state_dict(), path)"
SAVE_WEIGHTS = f"save the weights with {SAVED_WITH}"


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a state dict from `path` strictly; a file that does not fit is a UserError naming the keys."""
    state = read_state_dict(path)
    check_state_dict(model, state, path)
    model.load_state_dict(state, strict=True)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict saved at `path` (memory-mapped where the format allows), or a one-line UserError saying what
    the file is instead. Nothing in the file is run: it loads with `weights_only=True`."""
    if not str(path).strip():
        raise UserError(f"--weights '': empty path; give the file written by {SAVED_WITH}")
    path = Path(path)
    if path.is_dir():
        raise UserError(f"--weights {path} is a directory; give the file written by {SAVED_WITH}")
    if not path.is_file():
        raise UserError(f"--weights {path}: no such file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols on stderr
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except OSError as exc:
        raise UserError(f"--weights {path}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    except Exception as exc:  # torch raises many types for unreadable files, with multi-line advice
        raise UserError(f"--weights {path} {_unloadable_file(path, exc)}; {SAVE_WEIGHTS}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(
            f"--weights {path}: expected a state dict (mapping of names to tensors), got {type(state).__name__}; "
            f"{SAVE_WEIGHTS}"
        )
    for key, value in state.items():
        if not isinstance(key, str):
            raise UserError(f"--weights {path}: key {key!r} ({type(key).__name__}) is not a parameter name; {SAVE_WEIGHTS}")
        if not isinstance(value, torch.Tensor):
            raise UserError(f"--weights {path}: {key} holds a {type(value).__name__}, not a tensor; {SAVE_WEIGHTS}")
    return state


def _unloadable_file(path: Path, exc: Exception) -> str:
    """What a file torch.load refused is, as the middle of a sentence ('is a text file')."""
    found = re.search(r"GLOBAL ([\w.]+)", str(exc))
    if found:
        return f"holds a pickled {found.group(1)}, not only tensors (weights are loaded without running code from the file)"
    with path.open("rb") as file:
        head = file.read(4096)
    if not head:
        return "is empty, not a readable PyTorch state dict"
    if head.startswith(b"\x80"):
        return "is a Python pickle that does not load without running code from the file"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "is not a readable PyTorch state dict (torch.save did not write it)"
    return "is a text file, not a readable PyTorch state dict"


# How a user sets the classifier's outputs and the input channels: the build flags for a preset (the user's own
# model gets its factory's --arg, when it takes one).
PRESET_SIZE_FLAGS = {"classes": "--num-classes {}", "channels": "--in-channels {}"}


def check_state_dict(
    model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, size_flags: dict[str, str] = PRESET_SIZE_FLAGS
) -> None:
    """Raise a UserError unless `state` loads strictly into `model` (keys, shapes, and floating values for floating
    tensors). Works on a meta model, so a file is checked before anything is allocated. When only the classifier's
    outputs or the first conv's input channels differ, the message names the `size_flags` entry that fits."""
    problems = state_dict_problems(model, state)
    if problems:
        raise UserError(f"--weights {path} does not fit the model: {problems}{_size_hint(model, state, size_flags)}")
    for key, own in model.state_dict().items():
        if _dtype_kind(state[key].dtype) != _dtype_kind(own.dtype):
            raise UserError(
                f"--weights {path}: {key} is {str(state[key].dtype).removeprefix('torch.')} but the model's is "
                f"{str(own.dtype).removeprefix('torch.')}; load a file with the model's own kinds of dtype, as "
                f"model.state_dict() gives"
            )


def _dtype_kind(dtype: torch.dtype) -> str:
    return "complex" if dtype.is_complex else "floating" if dtype.is_floating_point else "integer"


@dataclasses.dataclass
class StateDictFit:
    """Whether a state_dict loads strictly into a model: the model's keys it lacks, its keys the model lacks, shapes
    that differ."""

    keys: int  # entries in the state_dict
    missing: list[str]  # in the model's state_dict, not in the loaded one
    unexpected: list[str]  # in the loaded one, not in the model's
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]]  # (key, the model's shape, the loaded shape)

    @property
    def loads(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self) -> str:
        """One line: missing, unexpected and mis-shaped keys, three of each named; empty if it loads."""
        shapes = [f"{key} {loaded} vs {own}" for key, own, loaded in self.mismatched]
        parts = []
        for label, items in (("missing keys", self.missing), ("unexpected keys", self.unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
                parts.append(f"{label}: {', '.join(items[:3])}{more}")
        return "; ".join(parts)


def state_dict_fit(into: dict[str, tuple[int, ...]], state: dict[str, tuple[int, ...]]) -> StateDictFit:
    """Whether a state_dict with these key shapes (`state`) loads strictly into a model with `into`'s."""
    return StateDictFit(
        keys=len(state),
        missing=[key for key in into if key not in state],
        unexpected=[key for key in state if key not in into],
        mismatched=[(key, shape, state[key]) for key, shape in into.items() if key in state and state[key] != shape],
    )


def _size_hint(model: nn.Module, state: dict, size_flags: dict[str, str]) -> str:
    """'; the file has 10 classes: add --num-classes 10' when only those sizes keep the file from fitting."""
    own = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    loaded = {key: tuple(value.shape) for key, value in state.items() if hasattr(value, "shape")}
    if set(own) != set(loaded):
        return ""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    sizes: dict[str, int] = {}
    for key in (k for k in own if own[k] != loaded[k]):
        owner, differs = key.rpartition(".")[0], [i for i, (a, b) in enumerate(zip(own[key], loaded[key], strict=False)) if a != b]
        if linears and owner == linears[-1] and differs == [0] and len(own[key]) == len(loaded[key]):
            sizes["classes"] = loaded[key][0]
        elif convs and key == f"{convs[0]}.weight" and differs == [1] and len(own[key]) == 4:
            sizes["channels"] = loaded[key][1]
        else:
            return ""
    said = {"classes": "{} classes", "channels": "{}-channel inputs"}
    hints = [f"the file has {said[k].format(n)}: " + (f"add {size_flags[k].format(n)}" if k in size_flags
             else f"build the model for {n}") for k, n in sizes.items()]  # fmt: skip
    return "; " + "; ".join(hints) if hints else ""


def state_dict_problems(model: nn.Module, state: dict) -> str:
    """A one-line description of missing, unexpected and mis-shaped keys; empty if `state` fits."""
    own = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    loaded = {key: tuple(value.shape) if hasattr(value, "shape") else () for key, value in state.items()}
    return state_dict_fit(own, loaded).describe()


def resolve_device(device: str) -> torch.device:
    """A torch device for --device, or a UserError when it is not available here."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available here; use --device cpu or meta")
    try:
        return torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device!r} is not a device; valid: meta, cpu, cuda") from None


def instantiate(request: Any, device: str | None = None) -> tuple[nn.Module, torch.Tensor]:
    """Build the requested model and its input on the requested device (or `device`), weights loaded if given.

    `request` is a preset's ModelRequest or a UserModelRequest (the user's own code, built without touching it).
    A model resnet-cli cannot trace (a TorchScript submodule) is refused here, naming the module.
    """
    if device is not None and device != request.device:
        request = dataclasses.replace(request, device=device)
    target = resolve_device(request.device)
    dtype = getattr(torch, request.dtype)
    if isinstance(request, UserModelRequest):
        check_fits(request, params=0)  # its size is known only once built
        model = build_user_model(request)  # the user's model keeps its own dtypes; the input gets --dtype
        refuse_untraceable(model, request.label)  # resnet-cli's own modules are always traceable
    else:
        # A preset is built on meta first: its size is checked before anything is allocated, and so is --weights
        # (meta keeps no values to load).
        model = build_model(request.spec, device="meta")
        if dtype != torch.get_default_dtype():  # a no-op .to() still visits every parameter
            model = model.to(dtype)
        check_fits(request, params=parameter_count(model))
        if request.weights is not None:
            state = read_state_dict(request.weights)
            check_state_dict(model, state, request.weights)
            if target.type != "meta":
                model = model.to_empty(device=target)
                model.load_state_dict(state, strict=True)
        elif target.type != "meta":
            model = build_model(request.spec, device=target).to(dtype)  # initialised weights, as torchvision's
    return model, make_input(request.input_shape, target, dtype)


def check_fits(request: Any, params: int) -> None:
    """On a real device, refuse before allocating what cannot fit: `params` parameters and the input, in the
    request's dtype, against the memory this machine (or GPU) has. Failures to allocate what could not be known in
    advance (a user model's own size) are turned into one line by the CLI."""
    if request.device == "meta":
        return
    needed = (params + math.prod(request.input_shape)) * getattr(torch, request.dtype).itemsize
    available = device_memory(request.device)
    if available is not None and needed > available:
        raise UserError(
            f"--device {request.device}: the parameters and --input {shape_text(request.input_shape)} need "
            f"{needed / 2**30:,.1f} GiB, more than the {available / 2**30:,.1f} GiB available; use --device meta "
            f"(shapes, counts and memory without allocating), a smaller --input or a smaller model"
        )


def device_memory(device: str) -> int | None:
    """Bytes available for new tensors on `device` (cpu: MemAvailable, else physical memory), None if unknown."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def refuse_untraceable(model: nn.Module, label: str) -> None:
    """Raise a UserError naming the first module resnet-cli cannot trace: a TorchScript module (forward hooks, which
    every command needs, do not run on `torch.jit.ScriptModule`s) or one with uninitialised lazy parameters."""
    for name, module in model.named_modules():
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in module.parameters(recurse=False)):
            raise UserError(
                f"{label}: {name or 'the model'} ({type(module).__name__}) has lazy parameters that are not initialised "
                f"yet; give it its sizes (e.g. nn.Linear instead of nn.LazyLinear) or run one forward pass in the factory"
            )
        if isinstance(module, torch.jit.ScriptModule):
            where = f"its submodule {name}" if name else "the model itself"
            raise UserError(
                f"{label}: {where} is a TorchScript module ({type(module).__name__}); resnet-cli traces with forward "
                f"hooks, which TorchScript modules do not run: build the model without torch.jit.script/trace"
            )
