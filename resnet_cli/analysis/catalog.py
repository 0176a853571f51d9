"""The preset catalogue: one row per preset, measured from the built model."""

from __future__ import annotations

from dataclasses import dataclass

from resnet_cli.spec import PRESETS, default_input_shape


@dataclass
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
    reference: str


def preset_catalog() -> list[PresetInfo]:
    """Every preset, built on the meta device (no weights allocated)."""
    from resnet_cli.model import build_model

    rows = []
    for preset in PRESETS.values():
        spec = preset.spec
        model = build_model(spec, device="meta")
        rows.append(
            PresetInfo(
                name=preset.name,
                block=spec.block,
                layers=spec.layers,
                groups=spec.groups,
                width_per_group=spec.width_per_group,
                stem=spec.stem,
                input_shape=default_input_shape(spec),
                params=sum(p.numel() for p in model.parameters()),
                reference=preset.reference,
            )
        )
    return rows
