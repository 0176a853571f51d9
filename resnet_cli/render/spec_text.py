"""`resnet-cli spec`'s text: a spec as YAML or JSON (what --spec reads back), and the same network as a torchvision or
timm constructor call, or the fields those libraries cannot express. Nothing here builds a model or imports torch,
torchvision or timm: the calls are text, written from the libraries' documented signatures (cited below)."""

from __future__ import annotations

import json
from typing import Any

from resnet_cli.spec import BUILD_FLAGS, DEFAULT_EXPANSION, PRESETS, ResNetSpec, flag_text, import_yaml

LIBRARIES = ("torchvision", "timm")


def spec_yaml(document: dict[str, Any]) -> str:
    """A spec document (`spec_document`) as YAML: one key per line, lists in brackets (`layers: [3, 4, 6, 3]`)."""
    yaml = import_yaml("--format yaml")
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None)


def spec_json(document: dict[str, Any]) -> str:
    """A spec document as JSON, two-space indented, lists on one line each."""
    lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in document.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def library_call_line(spec: ResNetSpec, library: str) -> str:
    """The constructor call in `library` (torchvision or timm) that builds the same network, or one line naming the
    fields it has no equivalent for: `no timm equivalent: stem=cifar (...), ...`."""
    gaps = _torchvision_gaps(spec) if library == "torchvision" else _timm_gaps(spec)
    if gaps:
        listed = ", ".join(f"{BUILD_FLAGS[name].name}={_value_text(spec, name)} ({why})" for name, why in gaps)
        return f"no {library} equivalent: {listed}"
    return _torchvision_call(spec) if library == "torchvision" else _timm_call(spec)


class _Code(str):
    """A keyword value written as Python source as it is (`dict(attn_layer="se")`), not quoted."""


def _python(value: Any) -> str:
    if isinstance(value, _Code):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_python(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _call(function: str, *args: Any, **kwargs: Any) -> str:
    parts = [_python(a) for a in args] + [f"{k}={_python(v)}" for k, v in kwargs.items()]
    return f"{function}({', '.join(parts)})"


def _value_text(spec: ResNetSpec, name: str) -> str:
    """A field's value as a build flag writes it; the expansion resolved."""
    return str(spec.block_expansion) if name == "expansion" else flag_text(getattr(spec, name))


def _width_gaps(spec: ResNetSpec, why: str) -> list[tuple[str, str]]:
    """The field(s) that give the stages their widths, each with `why`."""
    named = [name for name, default in (("widths", ResNetSpec().widths), ("width_factor", 1)) if getattr(spec, name) != default]
    return [(name, why) for name in named or ["widths"]]


def _stem_width_gaps(spec: ResNetSpec, why: str) -> list[tuple[str, str]]:
    """--stem-channels when it sets the stem's width, else the fields behind the first stage's width."""
    return [("stem_channels", why)] if spec.stem_channels is not None else _width_gaps(spec, why)


def _shared_gaps(spec: ResNetSpec) -> list[tuple[str, str]]:
    """Fields neither library's ResNet expresses: both follow torchvision's blocks (post-activation, stride on the
    bottleneck's 3x3, projection shortcuts where the shape changes, the block's own expansion, no dropout inside)."""
    gaps = []
    if spec.block_expansion != DEFAULT_EXPANSION[spec.block]:
        gaps.append(("expansion", f"a {spec.block} block expands by {DEFAULT_EXPANSION[spec.block]}"))
    if spec.block == "bottleneck" and spec.stride_on != "3x3":
        gaps.append(("stride_on", "the stride is on the 3x3 conv (ResNet v1.5)"))
    if spec.shortcut != "B":
        gaps.append(("shortcut", "projection shortcuts only where the shape changes: B"))
    if spec.preact:
        gaps.append(("preact", "post-activation blocks only"))
    if spec.block_dropout:
        gaps.append(("block_dropout", "no dropout inside blocks"))
    return gaps


# torchvision.models.resnet.ResNet(block, layers, num_classes=1000, zero_init_residual=False, groups=1,
# width_per_group=64, replace_stride_with_dilation=None, norm_layer=None): four stages of 64, 128, 256, 512 planes
# after a 64-channel 7x7 stem on 3 input channels; BasicBlock raises NotImplementedError for dilation > 1.
# The builders (resnet50(*, weights=None, progress=True, **kwargs), ...) pass **kwargs to it
# (https://pytorch.org/vision/stable/models/resnet.html, torchvision/models/resnet.py).
_TORCHVISION_WIDTHS = (64, 128, 256, 512)


def _torchvision_gaps(spec: ResNetSpec) -> list[tuple[str, str]]:
    gaps = []
    if spec.num_stages != 4:
        gaps.append(("layers", "4 stages only"))
    if spec.stage_widths != _TORCHVISION_WIDTHS:
        gaps += _width_gaps(spec, "planes 64, 128, 256, 512 only")
    if spec.stem != "imagenet":
        gaps.append(("stem", "the 7x7 stem only"))
    if spec.stem_channels is not None and spec.stem_width != 64:
        gaps.append(("stem_channels", "a 64-channel stem only"))
    gaps += _shared_gaps(spec)
    if spec.avg_down:
        gaps.append(("avg_down", "no average-pool shortcut"))
    if spec.se:
        gaps.append(("se", "no squeeze-excitation"))
    if spec.dilate_stages and spec.block == "basic":
        gaps.append(("dilate_stages", "its BasicBlock refuses dilation"))
    if spec.drop_path:
        gaps.append(("drop_path", "no stochastic depth"))
    if spec.in_channels != 3:
        gaps.append(("in_channels", "3 input channels only"))
    return sorted(gaps, key=lambda gap: list(BUILD_FLAGS).index(gap[0]))


def _torchvision_call(spec: ResNetSpec) -> str:
    kwargs: dict[str, Any] = {"num_classes": spec.num_classes, "zero_init_residual": spec.zero_init_residual}
    if spec.dilate_stages:
        kwargs["replace_stride_with_dilation"] = [stage in spec.dilate_stages for stage in (2, 3, 4)]
    # The presets from torchvision carry its builders' names (resnet50, resnext50_32x4d, wide_resnet50_2, ...).
    arch = (spec.block, spec.layers, spec.groups, spec.width_per_group)
    for preset in PRESETS.values():
        theirs = preset.spec
        if preset.reference == "torchvision" and (theirs.block, theirs.layers, theirs.groups, theirs.width_per_group) == arch:
            return _call(f"torchvision.models.{preset.name}", **kwargs)
    if spec.groups != 1:
        kwargs["groups"] = spec.groups
    if spec.width_per_group != 64:
        kwargs["width_per_group"] = spec.width_per_group
    block = _Code(f"torchvision.models.resnet.{'BasicBlock' if spec.block == 'basic' else 'Bottleneck'}")
    return _call("torchvision.models.resnet.ResNet", block, list(spec.layers), **kwargs)


# timm.models.resnet.ResNet(block, layers, num_classes=1000, in_chans=3, output_stride=32, global_pool='avg',
# cardinality=1, base_width=64, stem_width=64, stem_type='', replace_stem_pool=False, block_reduce_first=1,
# down_kernel_size=1, avg_down=False, channels=(64, 128, 256, 512), ..., drop_rate=0.0, drop_path_rate=0.,
# drop_block_rate=0., zero_init_last=True, block_args=None) in huggingface/pytorch-image-models
# timm/models/resnet.py. Its forward runs layer1..layer4; the 7x7 stem has 64 channels whatever stem_width says,
# the 'deep' stem has stem_width, stem_width, 2 x stem_width; output_stride 16 dilates stage 4, 8 stages 3 and 4;
# drop_path_rate rises linearly from 0 (first block) to the rate (last block), as --drop-path does;
# block_args=dict(attn_layer="se") is timm.layers.SEModule(channels, rd_ratio=1/16, rd_divisor=8), whose hidden
# width make_divisible(channels * rd_ratio, 8) equals channels // R only where that is a multiple of 8.
_TIMM_DEFAULTS = dict(channels=(64, 128, 256, 512), cardinality=1, base_width=64, stem_width=64, stem_type="",
                      avg_down=False)  # fmt: skip
_TIMM_SE = _Code('dict(attn_layer="se")')
_C = dict(stem_width=32, stem_type="deep")
_D = dict(_C, avg_down=True)
_S = dict(stem_type="deep")  # stem_width=64, timm's default
_BASIC, _BOTTLENECK = _Code("timm.models.resnet.BasicBlock"), _Code("timm.models.resnet.Bottleneck")


def _timm(block: _Code, layers: tuple[int, ...], **kwargs: Any) -> dict[str, Any]:
    return dict(block=block, layers=layers, **kwargs)


# The registered models our specs can express, with their model_args as timm/models/resnet.py declares them.
_TIMM_MODELS: dict[str, dict[str, Any]] = {
    "resnet18": _timm(_BASIC, (2, 2, 2, 2)), "resnet18d": _timm(_BASIC, (2, 2, 2, 2), **_D),
    "resnet34": _timm(_BASIC, (3, 4, 6, 3)), "resnet34d": _timm(_BASIC, (3, 4, 6, 3), **_D),
    "resnet26": _timm(_BOTTLENECK, (2, 2, 2, 2)), "resnet26d": _timm(_BOTTLENECK, (2, 2, 2, 2), **_D),
    "resnet50": _timm(_BOTTLENECK, (3, 4, 6, 3)), "resnet50c": _timm(_BOTTLENECK, (3, 4, 6, 3), **_C),
    "resnet50d": _timm(_BOTTLENECK, (3, 4, 6, 3), **_D), "resnet50s": _timm(_BOTTLENECK, (3, 4, 6, 3), **_S),
    "resnet101": _timm(_BOTTLENECK, (3, 4, 23, 3)), "resnet101c": _timm(_BOTTLENECK, (3, 4, 23, 3), **_C),
    "resnet101d": _timm(_BOTTLENECK, (3, 4, 23, 3), **_D), "resnet101s": _timm(_BOTTLENECK, (3, 4, 23, 3), **_S),
    "resnet152": _timm(_BOTTLENECK, (3, 8, 36, 3)), "resnet152c": _timm(_BOTTLENECK, (3, 8, 36, 3), **_C),
    "resnet152d": _timm(_BOTTLENECK, (3, 8, 36, 3), **_D), "resnet152s": _timm(_BOTTLENECK, (3, 8, 36, 3), **_S),
    "resnet200": _timm(_BOTTLENECK, (3, 24, 36, 3)), "resnet200d": _timm(_BOTTLENECK, (3, 24, 36, 3), **_D),
    "wide_resnet50_2": _timm(_BOTTLENECK, (3, 4, 6, 3), base_width=128),
    "wide_resnet101_2": _timm(_BOTTLENECK, (3, 4, 23, 3), base_width=128),
    "resnext50_32x4d": _timm(_BOTTLENECK, (3, 4, 6, 3), cardinality=32, base_width=4),
    "resnext50d_32x4d": _timm(_BOTTLENECK, (3, 4, 6, 3), cardinality=32, base_width=4, **_D),
    "resnext101_32x4d": _timm(_BOTTLENECK, (3, 4, 23, 3), cardinality=32, base_width=4),
    "resnext101_32x8d": _timm(_BOTTLENECK, (3, 4, 23, 3), cardinality=32, base_width=8),
    "resnext101_32x16d": _timm(_BOTTLENECK, (3, 4, 23, 3), cardinality=32, base_width=16),
    "resnext101_32x32d": _timm(_BOTTLENECK, (3, 4, 23, 3), cardinality=32, base_width=32),
    "resnext101_64x4d": _timm(_BOTTLENECK, (3, 4, 23, 3), cardinality=64, base_width=4),
    "seresnet18": _timm(_BASIC, (2, 2, 2, 2), block_args=_TIMM_SE),
    "seresnet34": _timm(_BASIC, (3, 4, 6, 3), block_args=_TIMM_SE),
    "seresnet50": _timm(_BOTTLENECK, (3, 4, 6, 3), block_args=_TIMM_SE),
    "seresnet101": _timm(_BOTTLENECK, (3, 4, 23, 3), block_args=_TIMM_SE),
    "seresnet152": _timm(_BOTTLENECK, (3, 8, 36, 3), block_args=_TIMM_SE),
    "seresnet152d": _timm(_BOTTLENECK, (3, 8, 36, 3), block_args=_TIMM_SE, **_D),
    "seresnet200d": _timm(_BOTTLENECK, (3, 24, 36, 3), block_args=_TIMM_SE, **_D),
    "seresnet269d": _timm(_BOTTLENECK, (3, 30, 48, 8), block_args=_TIMM_SE, **_D),
    "seresnext26d_32x4d": _timm(_BOTTLENECK, (2, 2, 2, 2), cardinality=32, base_width=4, block_args=_TIMM_SE, **_D),
    "seresnext50_32x4d": _timm(_BOTTLENECK, (3, 4, 6, 3), cardinality=32, base_width=4, block_args=_TIMM_SE),
    "seresnext101_32x4d": _timm(_BOTTLENECK, (3, 4, 23, 3), cardinality=32, base_width=4, block_args=_TIMM_SE),
    "seresnext101_32x8d": _timm(_BOTTLENECK, (3, 4, 23, 3), cardinality=32, base_width=8, block_args=_TIMM_SE),
    "seresnext101d_32x8d": _timm(_BOTTLENECK, (3, 4, 23, 3), cardinality=32, base_width=8, block_args=_TIMM_SE,
                                 **_D),
    "seresnext101_64x4d": _timm(_BOTTLENECK, (3, 4, 23, 3), cardinality=64, base_width=4, block_args=_TIMM_SE),
}  # fmt: skip
_TIMM_OUTPUT_STRIDES = {(): 32, (4,): 16, (3, 4): 8}  # --dilate-stages -> output_stride


def _timm_gaps(spec: ResNetSpec) -> list[tuple[str, str]]:
    gaps = []
    if spec.num_stages != 4:
        gaps.append(("layers", "4 stages only"))
    if spec.stem == "cifar":
        gaps.append(("stem", "the 7x7 and deep stems only"))
    elif spec.stem == "imagenet" and spec.stem_width != 64:
        gaps += _stem_width_gaps(spec, f"the 7x7 stem has 64 channels, this one {spec.stem_width}")
    elif spec.stem == "deep" and spec.stem_width % 2:
        gaps += _stem_width_gaps(spec, f"the deep stem's width is even, this one {spec.stem_width}")
    gaps += _shared_gaps(spec)
    dilated = tuple(sorted(spec.dilate_stages))
    if spec.avg_down and dilated:
        gaps.append(("avg_down", "in a dilated stage its shortcut pools 2x2 at stride 1"))
    if spec.se:
        odd = next((c for c in (spec.out_channels(i) for i in range(spec.num_stages))
                    if c % spec.se_ratio or c // spec.se_ratio % 8), None)  # fmt: skip
        if odd is not None:
            gaps.append(("se", f"its SE widths are rounded to multiples of 8: {odd} / {spec.se_ratio} = "
                               f"{odd / spec.se_ratio:g}"))
    if dilated not in _TIMM_OUTPUT_STRIDES:
        gaps.append(("dilate_stages", "dilates stage 4 (output_stride=16) or stages 3,4 (8) only"))
    elif dilated and spec.block == "basic":
        gaps.append(("dilate_stages", "its BasicBlock dilates a stage's first block differently"))
    return sorted(gaps, key=lambda gap: list(BUILD_FLAGS).index(gap[0]))


def _timm_call(spec: ResNetSpec) -> str:
    arch: dict[str, Any] = _timm(_BASIC if spec.block == "basic" else _BOTTLENECK, spec.layers,
                                 channels=spec.stage_widths, cardinality=spec.groups, base_width=spec.width_per_group)
    if spec.stem == "deep":
        arch.update(stem_width=spec.stem_width // 2, stem_type="deep")
    arch["avg_down"] = spec.avg_down
    if spec.se:
        arch["block_args"] = _TIMM_SE if spec.se_ratio == 16 else _Code(
            f"dict(attn_layer=functools.partial(timm.layers.SEModule, rd_ratio=1 / {spec.se_ratio}))")
    arch = {k: v for k, v in arch.items() if _TIMM_DEFAULTS.get(k, object()) != v}
    kwargs: dict[str, Any] = {"num_classes": spec.num_classes}
    if spec.in_channels != 3:
        kwargs["in_chans"] = spec.in_channels
    if spec.dilate_stages:
        kwargs["output_stride"] = _TIMM_OUTPUT_STRIDES[tuple(sorted(spec.dilate_stages))]
    if spec.drop_path:
        kwargs["drop_path_rate"] = spec.drop_path
    kwargs["zero_init_last"] = spec.zero_init_residual  # timm's default is True, ours False
    name = next((name for name, model_args in _TIMM_MODELS.items() if model_args == arch), None)
    if name is not None:
        return _call("timm.create_model", name, **kwargs)
    return _call("timm.models.resnet.ResNet", **arch, **kwargs)
