"""--depth of summary, flops and debug-shapes: how deep the module tree is shown, checked here once for all three."""

from __future__ import annotations

from resnet_cli.errors import UserError


def check_depth(depth: int | None, lowest: int, levels: str) -> None:
    """A UserError (exit 2) when --depth is below `lowest`; `levels` says what each depth shows, e.g.
    '0 = totals only, 1 = stem layers and stages, 2 = blocks, 3 = layers'."""
    if depth is not None and depth < lowest:
        raise UserError(f"--depth {depth} must be >= {lowest} ({levels})")
