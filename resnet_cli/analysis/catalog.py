"""The preset catalogue: one row per preset, measured from the built model."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from resnet_cli.analysis.counting import build_and_count
from resnet_cli.spec import PRESETS, ModelRequest, default_input_shape


@dataclass(frozen=True)
class PresetInfo:
    """A preset's defining choices and its size at its default input."""

    name: str
    block: str
    layers: tuple[int, ...]
    groups: int
    width_per_group: int
    stem: str
    input_shape: tuple[int, int, int, int]
    params: int
    macs: int  # at input_shape, fvcore convention (analysis.counting, fast engine)
    reference: str
    acts: int = 0  # at input_shape: output elements of conv and linear layers (MacCount.acts)


@functools.cache  # the presets never change within a process: one count each (an in-process caller lists often)
def preset_catalog() -> tuple[PresetInfo, ...]:
    """Every preset, built and counted on the meta device (no weights or activations allocated)."""
    rows = []
    for preset in PRESETS.values():
        spec = preset.spec
        input_shape = default_input_shape(spec)
        # presets: no functional rows to show, so the trace skips torch-call tracking (as sweep does)
        count = build_and_count(ModelRequest(preset.name, spec, input_shape), functions=False).count
        rows.append(
            PresetInfo(
                name=preset.name,
                block=spec.block,
                layers=spec.layers,
                groups=spec.groups,
                width_per_group=spec.width_per_group,
                stem=spec.stem,
                input_shape=input_shape,
                params=count.params,
                macs=count.macs,
                reference=preset.reference,
                acts=count.acts,
            )
        )
    return tuple(rows)
