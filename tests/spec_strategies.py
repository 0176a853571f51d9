"""Hypothesis strategies over the spec space, shared by the tests that draw models."""

from __future__ import annotations

from hypothesis import assume
from hypothesis import strategies as st

from resnet_cli.errors import SpecError
from resnet_cli.spec import ResNetSpec


@st.composite
def valid_specs(draw) -> ResNetSpec:
    """Small valid specs: every block, stem, shortcut and stride option, SE, dilation, groups, odd widths,
    pre-activation, width factors, stem channels and block dropout."""
    block = draw(st.sampled_from(["basic", "bottleneck"]))
    stages = draw(st.integers(1, 4))
    layers = draw(st.lists(st.integers(1, 2), min_size=stages, max_size=stages))
    widths = draw(st.lists(st.sampled_from([4, 8, 16]), min_size=stages, max_size=stages))
    fields = dict(
        block=block,
        layers=layers,
        widths=widths,
        expansion=draw(st.sampled_from([None, 1, 2, 4])),
        stem=draw(st.sampled_from(["imagenet", "deep", "cifar"])),
        stride_on=draw(st.sampled_from(["3x3", "1x1"])),
        shortcut=draw(st.sampled_from(["A", "B", "C"])),
        avg_down=draw(st.booleans()),
        se=draw(st.booleans()),
        se_ratio=draw(st.sampled_from([2, 4, 16])),
        dilate_stages=draw(st.sets(st.integers(2, stages)) if stages > 1 else st.just(set())),
        drop_path=draw(st.sampled_from([0.0, 0.2])),
        num_classes=draw(st.sampled_from([1, 10])),
        in_channels=draw(st.sampled_from([1, 3])),
        preact=draw(st.booleans()),
        width_factor=draw(st.sampled_from([1.0, 1.0, 0.5, 1.5])),
        stem_channels=draw(st.sampled_from([None, None, 8])),
        block_dropout=draw(st.sampled_from([0.0, 0.2])),
    )
    if block == "bottleneck":
        fields["groups"] = draw(st.sampled_from([1, 2, 4]))
        fields["width_per_group"] = draw(st.sampled_from([16, 32, 64, 128]))
    try:
        return ResNetSpec(**fields)
    except SpecError:
        assume(False)
        raise
