"""ResNetSpec: every knob of a ResNet as one immutable value, the presets, and flag parsing.

This module does not import torch, so the CLI can validate flags and show help instantly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from resnet_cli.errors import SpecError
from resnet_cli.units import plural

BLOCKS = ("basic", "bottleneck")
STEMS = ("imagenet", "deep", "cifar")
STRIDE_PLACES = ("3x3", "1x1")
SHORTCUTS = ("A", "B", "C")
DEFAULT_EXPANSION = {"basic": 1, "bottleneck": 4}


def _flag(help: str, default: Any, choices: tuple[str, ...] = ()) -> Any:
    """A ResNetSpec field that is also a build flag: its help and choices, declared once (see BUILD_FLAGS)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass(frozen=True)
class ResNetSpec:
    """Every choice that defines a ResNet; validated on construction. Each field is a build flag (BUILD_FLAGS)."""

    block: str = _flag("Residual block type.", "bottleneck", BLOCKS)
    layers: tuple[int, ...] = _flag("Blocks per stage, e.g. 3,4,6,3 (any number of stages).", (3, 4, 6, 3))
    widths: tuple[int, ...] = _flag("Base planes per stage, one per stage, e.g. 64,128,256,512.", (64, 128, 256, 512))
    width_factor: float = _flag("Multiply every stage's width by K, rounded down: int(width x K).", 1.0)
    expansion: int | None = _flag("Block output channels = planes x N (1 basic, 4 bottleneck).", None)  # None: default
    groups: int = _flag("ResNeXt cardinality of the 3x3 conv.", 1)
    width_per_group: int = _flag("Inner width = planes x W/64 x groups (torchvision).", 64)
    stem: str = _flag("7x7/2 + maxpool; three 3x3 + maxpool; one 3x3/1.", "imagenet", STEMS)
    stem_channels: int | None = _flag("Channels leaving the stem (default: the first stage's width; WRN: 16).", None)
    stride_on: str = _flag("Bottleneck stride on the 3x3 (v1.5) or first 1x1 (paper).", "3x3", STRIDE_PLACES)
    shortcut: str = _flag("A zero-pad identity; B project on shape change; C project always.", "B", SHORTCUTS)
    avg_down: bool = _flag("ResNet-D shortcut: avg-pool then 1x1 conv.", False)
    se: bool = _flag("Squeeze-excitation on each block's output.", False)
    se_ratio: int = _flag("SE reduction ratio R (hidden channels C/R).", 16)
    dilate_stages: tuple[int, ...] = _flag("Stages whose stride becomes dilation, e.g. 3,4.", ())
    drop_path: float = _flag("Stochastic depth rate, rising 0 -> P over blocks.", 0.0)
    preact: bool = _flag("Pre-activation blocks (BN-ReLU-conv, He et al. 2016) and a final BN-ReLU.", False)
    block_dropout: float = _flag("Dropout with rate P before each block's last conv (Wide ResNets).", 0.0)
    zero_init_residual: bool = _flag("Start each block's last BN at zero.", False)
    num_classes: int = _flag("Classifier outputs.", 1000)
    in_channels: int = _flag("Input channels.", 3)

    def __post_init__(self) -> None:
        # Accept lists from Python callers; store tuples so the spec stays hashable.
        for name in ("layers", "widths", "dilate_stages"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        _validate(self)

    @property
    def block_expansion(self) -> int:
        """Output channels of a block divided by its planes."""
        return self.expansion if self.expansion is not None else DEFAULT_EXPANSION[self.block]

    @property
    def num_stages(self) -> int:
        return len(self.layers)

    @property
    def num_blocks(self) -> int:
        return sum(self.layers)

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """Planes of each stage: `widths` times `width_factor`, rounded down (int(width x K), as config-driven ResNets
        compute it; a tiny epsilon keeps 0.3 x 10 at 3)."""
        if self.width_factor == 1:
            return self.widths
        return tuple(int(w * self.width_factor + 1e-9) for w in self.widths)

    @property
    def stem_width(self) -> int:
        """Channels leaving the stem: --stem-channels, else the first stage's planes (64 in every torchvision ResNet)."""
        return self.stem_channels if self.stem_channels is not None else self.stage_widths[0]

    def inner_width(self, stage: int) -> int:
        """Channels of a bottleneck's 3x3 conv in stage `stage` (0-based), as torchvision computes it."""
        return int(self.stage_widths[stage] * (self.width_per_group / 64.0)) * self.groups

    def out_channels(self, stage: int) -> int:
        """Channels leaving stage `stage` (0-based)."""
        return self.stage_widths[stage] * self.block_expansion

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields, with the expansion resolved."""
        data = dataclasses.asdict(self)
        data["expansion"] = self.block_expansion
        for name in ("layers", "widths", "dilate_stages"):
            data[name] = list(data[name])
        return data

    def replace(self, **changes: Any) -> ResNetSpec:
        """A copy with some fields changed; a new block type without an explicit expansion gets its default."""
        changes = {k: v for k, v in changes.items() if v is not None}
        if "block" in changes and "expansion" not in changes and changes["block"] != self.block:
            changes["expansion"] = None
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise SpecError(f"unknown spec field {unknown[0]!r}; valid fields: {', '.join(sorted(known))}")
        return dataclasses.replace(self, **changes)


# How a field's type reads on the command line: the kind every surface (Typer options, compare operands,
# sweep --vary, labels, docs) derives its parsing and printing from.
_KINDS = {"str": "choice", "int": "int", "int | None": "int", "float": "float", "bool": "bool",
          "tuple[int, ...]": "int-list"}  # fmt: skip
BOOL_WORDS = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}


@dataclass(frozen=True)
class BuildFlag:
    """A ResNetSpec field as a build flag: `field` is also request_from_flags' keyword; `name` is how users write it."""

    field: str
    kind: str  # "choice" | "int" | "float" | "bool" | "int-list"
    help: str
    choices: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """'width-per-group': the option without its dashes, as compare operands and sweep --vary write it."""
        return self.field.replace("_", "-")

    @property
    def option(self) -> str:
        return f"--{self.name}"

    @property
    def example(self) -> str:
        """Two values of this flag as --vary separates them, for messages."""
        lists = {"layers": "2,2,2,2/3,4,6,3", "widths": "32,64,128,256/64,128,256,512", "dilate_stages": "none/3,4"}
        examples = {"int": "2,4", "float": "0,0.1", "bool": "off,on", "choice": ",".join(self.choices)}
        if self.field == "width_factor":
            return "0.5,1"
        return lists[self.field] if self.kind == "int-list" else examples[self.kind]

    def parse(self, text: str) -> Any:
        """The value of this flag written as `text`, as request_from_flags takes it (a list stays text, normalised).

        A SpecError says what is wrong with `text` alone; callers prefix where it was written.
        """
        part = text.strip()
        if self.kind == "int-list":
            if self.field == "dilate_stages" and part.lower() in ("", "none"):
                return ""
            return ",".join(str(v) for v in parse_int_list(self.option, part))
        if not part:
            raise SpecError("empty value")
        if self.kind == "int":
            try:
                return int(part)
            except ValueError:
                raise SpecError(f"{part!r} is not an integer") from None
        if self.kind == "float":
            try:
                return float(part)
            except ValueError:
                raise SpecError(f"{part!r} is not a number") from None
        if self.kind == "bool":
            if part.lower() in BOOL_WORDS:
                return BOOL_WORDS[part.lower()]
            raise SpecError(f"{part!r} is not on or off (true/false, yes/no and 1/0 work too)")
        if part not in self.choices:
            raise SpecError(f"{part!r} is not one of {', '.join(self.choices)}")
        return part


BUILD_FLAGS: dict[str, BuildFlag] = {
    f.name: BuildFlag(f.name, _KINDS[str(f.type)], f.metadata["help"], f.metadata["choices"])
    for f in dataclasses.fields(ResNetSpec)
}


def flag_text(value: Any) -> str:
    """A field's value as a build flag writes it: true/false, 3,4,6,3, 0.1."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def changed_flags(spec: ResNetSpec, base: ResNetSpec) -> dict[str, Any]:
    """The fields of `spec` that differ from `base`, as request_from_flags keywords (lists as text).

    The expansion counts as changed only when it differs from its block's default, so a block change alone
    does not carry the old block's expansion along.
    """
    changed: dict[str, Any] = {}
    for name in BUILD_FLAGS:
        value = getattr(spec, name)
        if name == "expansion":
            if spec.block_expansion != DEFAULT_EXPANSION[spec.block]:
                changed[name] = spec.block_expansion
        elif value != getattr(base, name):
            changed[name] = flag_text(value) if isinstance(value, tuple) else value
    return changed


# Every size is bounded at validation, before anything is built: a bound keeps memory, time and torch's int64
# sizes in range on any device (meta included), and the message names it.
LIMITS = {
    "blocks": 2_000,  # total blocks over all stages (resnet1202 has 600)
    "stages": 16,
    "width": 65_536,  # planes of a stage, and channels after expansion
    "width_factor": 1_024,
    "expansion": 64,
    "groups": 4_096,
    "width_per_group": 4_096,
    "num_classes": 1_000_000,
    "in_channels": 4_096,
    "se_ratio": 65_536,
    "batch": 1 << 20,
    "spatial": 1 << 20,  # input height and width
    "input_elements": 1 << 40,  # N x C x H x W
}


def _round_up(value: float, digits: int = 4) -> str:
    """`value` rounded up to `digits` significant digits, as text: a bound that still holds once typed back in."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(value)))
    return f"{math.ceil(value * scale) / scale:g}"


def _width_text(spec: ResNetSpec, stage: int) -> str:
    """'24', or '24 (48 x --width-factor 0.5)' when a width factor made it."""
    scaled = spec.stage_widths[stage]
    return f"{scaled}" if spec.width_factor == 1 else f"{scaled} ({spec.widths[stage]} x --width-factor {spec.width_factor:g})"


def _check_limit(text: str, value: float, limit_key: str) -> None:
    """Raise a SpecError 'TEXT is above the limit of N' when `value` exceeds LIMITS[limit_key]."""
    limit = LIMITS[limit_key]
    if value > limit:
        raise SpecError(f"{text} is above the limit of {limit:,}")


def _validate(spec: ResNetSpec) -> None:
    if spec.block not in BLOCKS:
        raise SpecError(f"--block {spec.block!r} is not one of {', '.join(BLOCKS)}")
    if spec.stem not in STEMS:
        raise SpecError(f"--stem {spec.stem!r} is not one of {', '.join(STEMS)}")
    if spec.stride_on not in STRIDE_PLACES:
        raise SpecError(f"--stride-on {spec.stride_on!r} is not one of {', '.join(STRIDE_PLACES)}")
    if spec.shortcut not in SHORTCUTS:
        raise SpecError(f"--shortcut {spec.shortcut!r} is not one of {', '.join(SHORTCUTS)}")
    if not spec.layers:
        raise SpecError("--layers needs at least one stage, e.g. 3,4,6,3")
    for i, n in enumerate(spec.layers, 1):
        if not isinstance(n, int) or n < 1:
            raise SpecError(f"--layers {flag_text(spec.layers)}: stage {i} has {n} blocks; every stage needs at least 1")
    if len(spec.widths) != len(spec.layers):
        raise SpecError(
            f"--widths {flag_text(spec.widths)} has {len(spec.widths)} values but --layers {flag_text(spec.layers)} "
            f"has {len(spec.layers)} stages; give one width per stage"
        )
    for i, w in enumerate(spec.widths, 1):
        if not isinstance(w, int) or w < 1:
            raise SpecError(f"--widths {flag_text(spec.widths)}: stage {i} width {w} must be a positive integer")
    factor = spec.width_factor
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 0:
        raise SpecError(f"--width-factor {factor} must be a number above 0 (it multiplies every stage's width)")
    _check_limit(f"--width-factor {factor:g}", factor, "width_factor")
    for i, (w, scaled) in enumerate(zip(spec.widths, spec.stage_widths, strict=True), 1):
        if scaled < 1:
            raise SpecError(
                f"--width-factor {factor:g}: stage {i} width {w} x {factor:g} = {w * factor:g} rounds down to 0 "
                f"channels; every stage needs at least 1 (use a factor of at least {_round_up(1 / w)})"
            )
    if spec.expansion is not None and spec.expansion < 1:
        raise SpecError(f"--expansion {spec.expansion} must be a positive integer")
    if spec.groups < 1:
        raise SpecError(f"--groups {spec.groups} must be a positive integer")
    if spec.width_per_group < 1:
        raise SpecError(f"--width-per-group {spec.width_per_group} must be a positive integer")
    if spec.block == "basic" and (spec.groups != 1 or spec.width_per_group != 64):
        flag = "--groups" if spec.groups != 1 else "--width-per-group"
        value = spec.groups if spec.groups != 1 else spec.width_per_group
        raise SpecError(
            f"{flag} {value} needs --block bottleneck; a basic block supports only groups=1, width-per-group=64"
        )
    if spec.block == "bottleneck":
        # torchvision: inner width = int(planes * W / 64) * groups, so each group gets planes * W / 64
        # channels; a fraction would be silently truncated, so it is refused.
        for i, planes in enumerate(spec.stage_widths):
            if planes * spec.width_per_group % 64:
                raise SpecError(
                    f"--groups {spec.groups} --width-per-group {spec.width_per_group}: stage {i + 1} width "
                    f"{_width_text(spec, i)} "
                    f"gives {planes * spec.width_per_group / 64:g} channels per group; each group needs a whole "
                    f"number, so use widths that are multiples of {64 // math.gcd(64, spec.width_per_group)}"
                )
    if spec.se_ratio < 1:
        raise SpecError(f"--se-ratio {spec.se_ratio} must be an integer >= 1 (the SE bottleneck is C / ratio)")
    if not 0.0 <= spec.drop_path < 1.0:
        raise SpecError(f"--drop-path {spec.drop_path} must be in [0, 1)")
    if not 0.0 <= spec.block_dropout < 1.0:
        raise SpecError(f"--block-dropout {spec.block_dropout} must be in [0, 1): the fraction of channels dropped")
    if spec.stem_channels is not None and spec.stem_channels < 1:
        raise SpecError(f"--stem-channels {spec.stem_channels} must be a positive integer")
    if spec.stem_channels is not None:
        _check_limit(f"--stem-channels {spec.stem_channels}", spec.stem_channels, "width")

    for s in spec.dilate_stages:
        if not 2 <= s <= spec.num_stages:
            raise SpecError(
                f"--dilate-stages {flag_text(spec.dilate_stages)}: stage {s} cannot be dilated; "
                f"valid stages are 2..{spec.num_stages} (stage 1 has no stride)"
            )
    if len(set(spec.dilate_stages)) != len(spec.dilate_stages):
        raise SpecError(f"--dilate-stages {flag_text(spec.dilate_stages)} names a stage twice")
    if spec.num_classes < 1:
        raise SpecError(f"--num-classes {spec.num_classes} must be a positive integer")
    if spec.in_channels < 1:
        raise SpecError(f"--in-channels {spec.in_channels} must be a positive integer")
    layers = flag_text(spec.layers)
    _check_limit(f"--layers {layers}: {spec.num_stages} stages", spec.num_stages, "stages")
    _check_limit(f"--layers {layers}: {spec.num_blocks:,} blocks in all", spec.num_blocks, "blocks")
    for i, w in enumerate(spec.stage_widths):
        _check_limit(f"--widths {flag_text(spec.widths)}: width {_width_text(spec, i)}", w, "width")
        channels = w * spec.block_expansion
        _check_limit(f"--widths {flag_text(spec.widths)}: width {_width_text(spec, i)} x expansion "
                     f"{spec.block_expansion} = {channels:,} channels", channels, "width")  # fmt: skip
    _check_limit(f"--expansion {spec.block_expansion}", spec.block_expansion, "expansion")
    _check_limit(f"--groups {spec.groups}", spec.groups, "groups")
    _check_limit(f"--width-per-group {spec.width_per_group}", spec.width_per_group, "width_per_group")
    if spec.block == "bottleneck":
        inner = max(spec.inner_width(i) for i in range(spec.num_stages))
        _check_limit(f"--groups {spec.groups} --width-per-group {spec.width_per_group}: {inner:,} inner channels",
                     inner, "width")  # fmt: skip
    _check_limit(f"--num-classes {spec.num_classes}", spec.num_classes, "num_classes")
    _check_limit(f"--in-channels {spec.in_channels}", spec.in_channels, "in_channels")
    _check_limit(f"--se-ratio {spec.se_ratio}", spec.se_ratio, "se_ratio")


@dataclass(frozen=True)
class Preset:
    """A named spec with where its reference figures come from."""

    name: str
    spec: ResNetSpec
    reference: str = field(default="torchvision", compare=False)


def _cifar(n: int) -> ResNetSpec:
    return ResNetSpec(
        block="basic", layers=(n, n, n), widths=(16, 32, 64), stem="cifar", shortcut="A", num_classes=10
    )


def _wide(depth: int, k: int) -> ResNetSpec:
    """WRN-depth-k: pre-activation basic blocks, (depth - 4) / 6 per stage, widths 16k, 32k, 64k, a 16-channel stem."""
    n = (depth - 4) // 6
    return ResNetSpec(block="basic", layers=(n, n, n), widths=(16, 32, 64), width_factor=k, stem="cifar",
                      stem_channels=16, preact=True, num_classes=10)  # fmt: skip


def _preact_cifar(depth: int) -> ResNetSpec:
    """Pre-activation bottleneck ResNet for CIFAR: (depth - 2) / 9 blocks per stage, planes 16, 32, 64 (x4 out)."""
    n = (depth - 2) // 9
    return ResNetSpec(block="bottleneck", layers=(n, n, n), widths=(16, 32, 64), stem="cifar", stem_channels=16,
                      preact=True, num_classes=10)  # fmt: skip


_TV_BASIC = dict(block="basic")
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("resnet18", ResNetSpec(layers=(2, 2, 2, 2), **_TV_BASIC)),
        Preset("resnet34", ResNetSpec(layers=(3, 4, 6, 3), **_TV_BASIC)),
        Preset("resnet50", ResNetSpec(layers=(3, 4, 6, 3))),
        Preset("resnet101", ResNetSpec(layers=(3, 4, 23, 3))),
        Preset("resnet152", ResNetSpec(layers=(3, 8, 36, 3))),
        Preset("resnext50_32x4d", ResNetSpec(layers=(3, 4, 6, 3), groups=32, width_per_group=4)),
        Preset("resnext101_32x8d", ResNetSpec(layers=(3, 4, 23, 3), groups=32, width_per_group=8)),
        Preset("resnext101_64x4d", ResNetSpec(layers=(3, 4, 23, 3), groups=64, width_per_group=4)),
        Preset("wide_resnet50_2", ResNetSpec(layers=(3, 4, 6, 3), width_per_group=128)),
        Preset("wide_resnet101_2", ResNetSpec(layers=(3, 4, 23, 3), width_per_group=128)),
        *(
            Preset(f"resnet{6 * n + 2}", _cifar(n), reference="He et al. 2015, Table 6 (CIFAR-10)")
            for n in (3, 5, 7, 9, 18, 200)
        ),
        *(
            Preset(f"wrn{depth}_{k}", _wide(depth, k), reference="Zagoruyko & Komodakis 2016 (CIFAR-10)")
            for depth, k in ((28, 10), (40, 4), (16, 8))
        ),
        *(
            Preset(f"preact_resnet{depth}", _preact_cifar(depth), reference="He et al. 2016, Identity Mappings (CIFAR-10)")
            for depth in (164, 1001)
        ),
    ]
}
DEFAULT_MODEL = "resnet50"
CUSTOM = "custom"


def resolve_spec(model: str | None, **overrides: Any) -> ResNetSpec:
    """The preset named `model` (None or 'custom' = resnet50) with flag overrides applied (None = keep)."""
    name = model or CUSTOM
    if name == CUSTOM:
        base = PRESETS[DEFAULT_MODEL].spec
    elif name in PRESETS:
        base = PRESETS[name].spec
    else:
        raise SpecError(f"unknown model {name!r}; valid: {', '.join(PRESETS)}, custom (see `resnet-cli list`)")
    return base.replace(**overrides)


def parse_int_list(flag: str, text: str, *, allow_empty: bool = False) -> tuple[int, ...]:
    """Parse '3,4,6,3' into (3, 4, 6, 3); errors name `flag`."""
    parts = [p.strip() for p in text.replace(" ", "").split(",") if p.strip()]
    if not parts:
        if allow_empty:
            return ()
        raise SpecError(f"{flag} {text!r} is empty; give comma-separated integers such as 3,4,6,3")
    values = []
    for p in parts:
        try:
            values.append(int(p))
        except ValueError:
            raise SpecError(
                f"{flag} {text}: {p!r} is not an integer; give comma-separated integers such as 3,4,6,3"
            ) from None
    return tuple(values)


def default_input_shape(spec: ResNetSpec) -> tuple[int, int, int, int]:
    """1x3x224x224, or 1x3x32x32 for the cifar stem (channels follow --in-channels)."""
    size = 32 if spec.stem == "cifar" else 224
    return (1, spec.in_channels, size, size)


def parse_input_shape(text: str | None, spec: ResNetSpec) -> tuple[int, int, int, int]:
    """Parse --input for a spec: 'NxCxHxW', 'CxHxW' (batch 1) or 'S' (1 x in_channels x S x S); None gives the default."""
    if text is None:
        return default_input_shape(spec)
    return parse_shape(text, spec.in_channels)


def parse_shape(text: str, in_channels: int | None = None) -> tuple[int, int, int, int]:
    """Parse an NxCxHxW shape ('CxHxW' means batch 1, 'S' means 1 x C x S x S with C = in_channels or 3).

    With `in_channels`, a shape with other channels is refused, naming --in-channels.
    """
    parts = text.lower().replace("×", "x").replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise SpecError(f"--input {text!r} is not a shape; use NxCxHxW such as 1x3x224x224") from None
    channels = in_channels or 3
    if len(dims) == 1:
        dims = (1, channels, dims[0], dims[0])
    elif len(dims) == 3:
        if in_channels is not None and dims[0] != in_channels:
            raise SpecError(
                f"--input {text}: the model needs a 4-D NxCxHxW input; read as CxHxW this gives "
                f"{plural(dims[0], 'channel')} but the model takes {in_channels} (--in-channels); "
                f"use e.g. 1x{in_channels}x224x224"
            )
        dims = (1, *dims)
    elif len(dims) != 4:
        raise SpecError(
            f"--input {text} has {len(dims)} dimensions; the model needs a 4-D NxCxHxW input such as 1x3x224x224"
        )
    for name, value in zip("NCHW", dims, strict=True):
        if value < 1:
            raise SpecError(f"--input {text}: {name}={value}; every dimension must be at least 1")
    for name, value, key in (("N", dims[0], "batch"), ("C", dims[1], "in_channels"), ("H", dims[2], "spatial"),
                             ("W", dims[3], "spatial")):  # fmt: skip
        _check_limit(f"--input {text}: {name}={value}", value, key)
    _check_limit(f"--input {text}: {math.prod(dims):,} elements", math.prod(dims), "input_elements")
    if in_channels is not None and dims[1] != in_channels:
        raise SpecError(
            f"--input {text} has {dims[1]} channels but the model takes {in_channels}; "
            f"change --input or --in-channels"
        )
    return dims  # type: ignore[return-value]


MAX_SIZES = 1_000  # sizes one `debug-shapes --sizes` may try


def parse_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """Parse --sizes: comma-separated parts, each 'A..B' (every side from A to B), 'A..B:S' (step S), a side 'S'
    (S x S) or 'HxW'; the sizes in order, each once."""
    usage = "use A..B, A..B:STEP, sides such as 32,64,224, or HxW such as 224x240 (comma-separated)"
    text = text.strip().lower().replace(" ", "")
    sizes: list[tuple[int, int]] = []
    try:
        for part in filter(None, text.split(",")):
            if ".." in part:
                first, _, rest = part.partition("..")
                last, _, step = rest.partition(":")
                start, stop, stride = int(first), int(last), int(step) if step else 1
                if stride < 1 or stop < start:
                    raise SpecError(f"--sizes {text}: in {part}, give A..B with A <= B and a step of at least 1; {usage}")
                if (stop - start) // stride + 1 > MAX_SIZES:
                    raise SpecError(f"--sizes {text} gives {(stop - start) // stride + 1:,} sizes; at most "
                                    f"{MAX_SIZES:,} (use a step: A..B:STEP)")  # fmt: skip
                sizes += [(side, side) for side in range(start, stop + 1, stride)]
            else:
                height, _, width = part.partition("x")
                sizes.append((int(height), int(width or height)))
    except ValueError:
        raise SpecError(f"--sizes {text!r} is not a list of sizes; {usage}") from None
    if not sizes:
        raise SpecError(f"--sizes {text!r} is empty; {usage}")
    if len(sizes) > MAX_SIZES:
        raise SpecError(f"--sizes {text} gives {len(sizes):,} sizes; at most {MAX_SIZES:,}")
    for height, width in sizes:
        if height < 1 or width < 1:
            raise SpecError(f"--sizes {text}: {height}x{width}; every side must be at least 1")
        _check_limit(f"--sizes {text}: side {max(height, width):,}", max(height, width), "spatial")
    return tuple(dict.fromkeys(sizes))


BYTE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip
MAX_BYTES = 2**60  # an exbibyte: a memory budget above it is a typo


def parse_bytes(flag: str, text: str) -> int:
    """A memory size such as '16GiB', '12GB', '800 MiB' or '1e9B' as bytes; SI units are powers of 1000, binary ones
    (KiB, MiB, GiB, TiB) of 1024. The unit is required: a bare '16' is more likely meant as GiB than as bytes."""
    usage = f"give a number and a unit: 16GiB, 12GB, 800MiB, 1e9B (units: {', '.join(_unit_names())})"
    cleaned = text.strip().replace(" ", "").replace("_", "")
    number = cleaned.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    unit = cleaned[len(number) :].lower()
    if number.lower().endswith("e"):  # '1e' + unit is not a number
        number, unit = number[:-1], "e" + unit
    try:
        value = float(number)
    except ValueError:
        raise SpecError(f"{flag} {text!r} is not a size; {usage}") from None
    if not unit:
        raise SpecError(f"{flag} {text!r} has no unit; {usage}")
    if unit not in BYTE_UNITS:
        raise SpecError(f"{flag} {text!r}: unknown unit {cleaned[len(number):]!r}; {usage}")
    size = value * BYTE_UNITS[unit]
    if not size >= 1 or size > MAX_BYTES:  # `not >=` also catches nan
        raise SpecError(f"{flag} {text!r} must be between 1 B and {MAX_BYTES // 2**60} EiB")
    return int(size)


def _unit_names() -> list[str]:
    return [name.upper() if len(name) == 1 else name[0].upper() + name[1:-1] + name[-1].upper() for name in BYTE_UNITS]


COUNT_SUFFIXES = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}  # SI: powers of 1000, any case
MAX_COUNT = 10**18  # a count budget above it (an exa-MAC) is a typo


def parse_count(flag: str, text: str) -> int:
    """A count such as '25M', '4.2G', '25557032', '25,557,032' or '2.5e7' as an integer (rounded down); K, M, G
    and T are powers of 1000."""
    import decimal
    import re

    suffixes = ", ".join(f"{s.upper()} = 10^{len(str(v)) - 1}" for s, v in COUNT_SUFFIXES.items())
    usage = f"give a number with an optional suffix: 25M, 4.2G, 25557032, 2.5e7 ({suffixes})"
    cleaned = text.strip().replace(" ", "").replace("_", "")
    if re.fullmatch(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?[a-zA-Z]*", cleaned):  # digit groups, as the output prints them
        cleaned = cleaned.replace(",", "")
    number = cleaned.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    suffix = cleaned[len(number) :]
    if number.lower().endswith("e"):  # '1e' + suffix is not a number
        number, suffix = number[:-1], "e" + suffix
    try:
        value = decimal.Decimal(number)
    except decimal.InvalidOperation:
        value = decimal.Decimal("nan")
    if not value.is_finite():
        raise SpecError(f"{flag} {text!r} is not a count; {usage}")
    if suffix.lower() not in ("", *COUNT_SUFFIXES):
        raise SpecError(f"{flag} {text!r}: unknown suffix {suffix!r}; {usage}")
    # exact decimal arithmetic (4.35K is 4,350, not float's 4,349.999...); 10^30 and above is out of range unscaled
    count = value * COUNT_SUFFIXES.get(suffix.lower(), 1) if value.adjusted() < 30 else value
    if not 1 <= count <= MAX_COUNT:
        raise SpecError(f"{flag} {text!r} must be between 1 and 10^{len(str(MAX_COUNT)) - 1}")
    return int(count)


DEVICES = ("meta", "cpu", "cuda")
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ModelRequest:
    """A model to build and the input to run it on, as the build flags describe them."""

    name: str
    spec: ResNetSpec
    input_shape: tuple[int, int, int, int]
    device: str = "meta"
    dtype: str = "float32"
    weights: str | None = None
    default_input: bool = False  # no --input: input_shape is the preset's default (batch 1)

    @property
    def label(self) -> str:
        """The model as MODEL[flag=value,...]: the preset's name and the fields the build flags changed."""
        base = (PRESETS[self.name] if self.name in PRESETS else PRESETS[DEFAULT_MODEL]).spec
        changed = [f"{BUILD_FLAGS[k].name}={flag_text(v)}" for k, v in changed_flags(self.spec, base).items()]
        return f"{self.name}[{','.join(changed)}]" if changed else self.name


def request_from_flags(
    model: str | None,
    *,
    input: str | None = None,
    device: str = "meta",
    dtype: str = "float32",
    weights: str | None = None,
    layers: str | None = None,
    widths: str | None = None,
    dilate_stages: str | None = None,
    **fields: Any,
) -> ModelRequest:
    """A ModelRequest from raw flag values; None means 'keep the preset's value'."""
    lists = {"layers": layers, "widths": widths, "dilate_stages": dilate_stages}
    for name, text in lists.items():
        if text is not None:
            fields[name] = parse_int_list(BUILD_FLAGS[name].option, text, allow_empty=name == "dilate_stages")
    if "layers" in fields and "widths" not in fields:
        fields["widths"] = default_widths(model, len(fields["layers"]))
    spec = resolve_spec(model, **fields)
    if device not in DEVICES:
        raise SpecError(f"--device {device!r} is not one of {', '.join(DEVICES)}")
    if dtype not in DTYPES:
        raise SpecError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    return ModelRequest(
        name=model or CUSTOM,
        spec=spec,
        input_shape=parse_input_shape(input, spec),
        device=device,
        dtype=dtype,
        weights=weights,
        default_input=input is None,
    )


def default_widths(model: str | None, num_stages: int) -> tuple[int, ...]:
    """Widths for --layers given without --widths: the preset's, extended by doubling or cut to length."""
    base = list(PRESETS.get(model or DEFAULT_MODEL, PRESETS[DEFAULT_MODEL]).spec.widths)
    while len(base) < num_stages:
        base.append(base[-1] * 2)
    return tuple(base[:num_stages])


# Network operands for `compare`: MODEL[flag=value,...], e.g. resnet50[se=true,layers=2,2,2,2].
def parse_model_operand(text: str) -> tuple[str, dict[str, Any]]:
    """Split 'resnet50[se=true,layers=2,2,2,2]' into the model name and build-flag values for request_from_flags.

    A piece without '=' continues the previous list value, so list flags keep their commas; a bare flag name
    (`resnet50[se]`) means true.
    """
    text = text.strip()
    if "[" not in text:
        return text, {}
    name, _, rest = text.partition("[")
    if not rest.endswith("]") or "[" in rest[:-1] or "]" in rest[:-1]:
        raise SpecError(f"{text!r}: write build flags as MODEL[flag=value,...], e.g. resnet50[se=true,stem=deep]")
    pairs: list[list[str]] = []
    for piece in (p.strip() for p in rest[:-1].split(",")):
        if not piece:
            continue
        if "=" in piece:
            key, _, value = piece.partition("=")
            pairs.append([key.strip().replace("-", "_"), value.strip()])
        elif pairs and pairs[-1][0] in BUILD_FLAGS and BUILD_FLAGS[pairs[-1][0]].kind == "int-list":
            pairs[-1][1] += "," + piece
        else:
            pairs.append([piece.replace("-", "_"), "true"])
    flags: dict[str, Any] = {}
    for key, value in pairs:
        flag = BUILD_FLAGS.get(key)
        if flag is None:
            valid = ", ".join(f.name for f in BUILD_FLAGS.values())
            raise SpecError(f"{text!r}: unknown build flag {key.replace('_', '-')!r}; valid: {valid}")
        try:
            flags[key] = flag.parse(value)
        except SpecError as exc:
            raise SpecError(f"{text!r}: {flag.name}={value}: {exc}") from None
    return name.strip() or CUSTOM, flags


# Specs as files: `--spec FILE` (YAML or JSON) holds spec fields over a base preset; `resnet-cli spec` prints every
# field in the same form, so what it prints reads back unchanged.
SPEC_MODEL_KEY = "model"  # the file's base preset; the other keys are ResNetSpec fields
MAX_SPEC_FILE_BYTES = 1 << 20  # a spec is a few dozen lines; anything larger is the wrong file
# Fields whose None means "the default" (expansion: the block's; stem_channels: the first stage's width). In a file,
# null keeps the preset's value, as an absent key or an unset flag does; every preset leaves both at None except
# the Wide and pre-activation CIFAR nets' stem_channels, which `resnet-cli spec` prints as a number.
_NULLABLE = tuple(f.name for f in dataclasses.fields(ResNetSpec) if f.default is None)


@dataclass(frozen=True)
class SpecFile:
    """A --spec file, read and checked field by field: its `model:` (None when absent) and its fields as
    request_from_flags keywords (lists as text)."""

    path: str
    model: str | None
    fields: dict[str, Any]


def spec_document(model: str, spec: ResNetSpec) -> dict[str, Any]:
    """Every field of `spec` as plain data, `model` first (lists; null where a field follows its default): what
    `resnet-cli spec` prints and --spec reads back."""
    data: dict[str, Any] = {SPEC_MODEL_KEY: model}
    for name in BUILD_FLAGS:
        value = getattr(spec, name)
        data[name] = list(value) if isinstance(value, tuple) else value
    return data


def import_yaml(purpose: str) -> Any:
    """PyYAML, or a SpecError saying that `purpose` needs it and what works without it."""
    try:
        import yaml
    except ImportError:
        raise SpecError(f"{purpose} needs PyYAML (pip install pyyaml)") from None
    return yaml


def read_spec_file(path: str) -> SpecFile:
    """Read and check a --spec file (.json as JSON, anything else as YAML); every problem is a SpecError naming
    the file, and the key when there is one."""
    where = f"--spec {path}"
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_SPEC_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SpecError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{where} is a directory; give a YAML or JSON file of spec fields") from None
    except OSError as exc:
        raise SpecError(f"{where} cannot be read: {exc.strerror or exc}") from None
    if len(raw) > MAX_SPEC_FILE_BYTES:
        raise SpecError(f"{where} is larger than {MAX_SPEC_FILE_BYTES >> 20} MiB; a spec file holds a few fields")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{where} is not a UTF-8 text file; give a YAML or JSON file of spec fields") from None
    return parse_spec_text(text, path)


def parse_spec_text(text: str, path: str) -> SpecFile:
    """A spec file's text, parsed as JSON when `path` ends in .json, else as YAML, and checked field by field."""
    where = f"--spec {path}"
    if path.lower().endswith(".json"):
        import json

        try:
            data = json.loads(text) if text.strip() else None
        except json.JSONDecodeError as exc:
            raise SpecError(f"{where} is not valid JSON: line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    else:
        yaml = import_yaml(f"{where}: reading YAML")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
            raise SpecError(f"{where} is not valid YAML: {at}{problem}") from None
    return spec_file_from_data(data, path)


def spec_file_from_data(data: Any, path: str) -> SpecFile:
    """Check a parsed spec file: a mapping of `model` and spec fields (flag spellings with dashes work too), each
    value parsed by its build flag as if it had been typed on the command line."""
    where = f"--spec {path}"
    example = "write spec fields such as `layers: [3, 4, 6, 3]` (`resnet-cli spec MODEL` prints them all)"
    if data is None:
        raise SpecError(f"{where} is empty; {example}")
    if not isinstance(data, dict):
        raise SpecError(f"{where} holds {_value_kind(data)}, not a mapping of spec fields; {example}")
    model: str | None = None
    fields: dict[str, Any] = {}
    seen: set[str] = set()
    for key, value in data.items():
        name = str(key).strip().replace("-", "_")
        if name != SPEC_MODEL_KEY and name not in BUILD_FLAGS:
            raise SpecError(f"{where}: key {str(key)!r} is not a spec field; valid: {SPEC_MODEL_KEY}, {', '.join(BUILD_FLAGS)}")
        if name in seen:
            raise SpecError(f"{where}: {name} is given twice")
        seen.add(name)
        if name == SPEC_MODEL_KEY:
            if not isinstance(value, str) or not value.strip():
                raise SpecError(f"{where}: {SPEC_MODEL_KEY}: {_shown(value)} is not a preset name (see `resnet-cli list`)")
            model = value.strip()
            continue
        flag = BUILD_FLAGS[name]
        if value is None and name in _NULLABLE:
            continue  # null keeps the preset's value, as an absent key does
        try:
            fields[name] = flag.parse(_flag_text_of(flag, value))
        except SpecError as exc:
            message = str(exc).removeprefix(f"{flag.option} ")  # parse_int_list names the flag; the key does here
            if value == []:
                message = f"[] is empty; give {_expected(flag)}"
            raise SpecError(f"{where}: {name}: {message}") from None
    return SpecFile(path, model, fields)


def _expected(flag: BuildFlag) -> str:
    """What a spec file's value for `flag` must be, for messages."""
    if flag.kind == "choice":
        return f"one of {', '.join(flag.choices)}"
    return {"int": "an integer", "float": "a number", "bool": "true or false",
            "int-list": "a list of integers such as [3, 4, 6, 3]"}[flag.kind]  # fmt: skip


def _value_kind(value: Any) -> str:
    """'a list', 'a mapping', 'the text "x"': what a YAML/JSON value is, for messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"the value {_shown(value)}"


def _shown(value: Any) -> str:
    """A YAML/JSON value as JSON writes it (null, true, "text", [3, 4]), for messages."""
    import json

    return json.dumps(value, default=str)


def _flag_text_of(flag: BuildFlag, value: Any) -> str:
    """A spec file's value written as its build flag takes it (true, 3,4,6,3, 0.1); a mapping, a nested list or a
    list for a single value is refused."""
    if value is None:
        raise SpecError(f"null (an empty value) is not {_expected(flag)}")
    if isinstance(value, list) and flag.kind == "int-list":
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int):
                raise SpecError(f"{_shown(item)} in {_shown(value)} is not an integer; give {_expected(flag)}")
        return ",".join(str(item) for item in value)
    if isinstance(value, (dict, list)) or not isinstance(value, (str, int, float)):
        raise SpecError(f"{_value_kind(value)} is not {_expected(flag)}")
    return flag_text(value)


def with_file_fields(spec_file: SpecFile, flags: dict[str, Any]) -> dict[str, Any]:
    """`flags` (request_from_flags keywords, None = not given) with the file's fields where no flag was given."""
    return {**flags, **{name: value for name, value in spec_file.fields.items() if flags.get(name) is None}}


def request_with_spec_file(spec_file: SpecFile, model: str | None, **flags: Any) -> ModelRequest:
    """A ModelRequest from --spec FILE beside MODEL and flags: the preset (MODEL or the file's `model:`, else
    resnet50's spec), then the file's fields, then the flags given (not None). The file is first checked on its
    preset alone, so its errors name it."""
    if model is not None and spec_file.model is not None and model != spec_file.model:
        raise SpecError(
            f"MODEL {model} and --spec {spec_file.path} (model: {spec_file.model}) name different presets; "
            f"give one of them"
        )
    if model is not None:
        resolve_spec(model)  # an unknown MODEL is the command line's error, not the file's
    base = model or spec_file.model
    try:
        request_from_flags(base, **spec_file.fields)
    except SpecError as exc:
        raise SpecError(f"--spec {spec_file.path}: {exc}") from None
    return request_from_flags(base, **with_file_fields(spec_file, flags))
