"""Bar charts written to PNG or SVG with matplotlib (an optional extra, imported only when a plot is asked for).

Callers describe a figure as BarPanels (categories on x, one bar series per model or block); this module
only draws them. `check_plot_path` runs before any analysis so a bad --plot fails fast, and `save_figure`
turns a failure at the end into the same one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_cli.errors import UserError

PLOT_SUFFIXES = (".png", ".svg")
INSTALL_HINT = "pip install 'resnet-cli[plot]' (or pip install matplotlib)"


@dataclass
class BarPanel:
    """One subplot: a value per (category, series); stacked series share one bar per category."""

    title: str
    ylabel: str
    categories: list[str]
    series: dict[str, list[float]]
    stacked: bool = False
    log_scale: bool = False


def check_plot_path(path: str | Path, flag: str = "--plot") -> Path:
    """The --plot path as a Path, or a UserError for an unsupported suffix, a missing folder, a path that
    cannot be written (a folder, no permission, a read-only file system, a name too long) or no matplotlib."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise UserError(
            f"{flag} {path}: unsupported file type {path.suffix or '(none)'!r}; use a .png or .svg file name"
        )
    check_writable(path, flag, example="plot.png")
    require_matplotlib(flag)
    return path


def check_writable(path: str | Path, flag: str, example: str) -> None:
    """A UserError naming `flag` for a path in a missing folder, a folder (`example`: a file name to suggest in
    it), or a file that cannot be written (no permission, a read-only file system); the path is left as it was."""
    path = Path(path)
    try:
        if not path.parent.is_dir():
            raise UserError(f"{flag} {path}: folder {path.parent} does not exist")
        _probe_writable(path)
    except IsADirectoryError:
        raise UserError(f"{flag} {path}: is a folder; give a file name such as {path / example}") from None
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write the file ({exc.strerror or exc})") from None


def _probe_writable(path: Path) -> None:
    """Open `path` for writing and leave it as it was: an existing file untouched, a new one removed again."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # O_NONBLOCK: a FIFO without reader fails, not hangs
        return
    os.close(fd)
    os.unlink(path)


def require_matplotlib(flag: str = "--plot") -> Any:
    """matplotlib.pyplot on the non-interactive Agg backend, or a UserError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise UserError(f"{flag} needs matplotlib, which is not installed; install it with {INSTALL_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def write_bar_figure(path: str | Path, title: str, panels: list[BarPanel], flag: str = "--plot") -> Path:
    """Draw the panels side by side and save them; the format follows the file suffix (.png or .svg)."""
    path = check_plot_path(path, flag)
    plt = require_matplotlib(flag)
    width = max(6.0, sum(1.2 + 0.55 * len(p.categories) * (1 if p.stacked else max(1, len(p.series))) for p in panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(min(width, 18.0), 4.8), squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        _draw_panel(ax, panel)
    fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, flag)


def save_figure(figure: Any, path: Path, flag: str = "--plot") -> Path:
    """Save the figure in the suffix's format and close it; a failure to write is one UserError line."""
    try:
        figure.savefig(path, format=path.suffix.lower().lstrip("."), dpi=100)
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot write the file ({exc.strerror or exc})") from None
    finally:
        require_matplotlib(flag).close(figure)
    return path


def _draw_panel(ax: Any, panel: BarPanel) -> None:
    positions = list(range(len(panel.categories)))
    names = list(panel.series)
    # floats: matplotlib stores Python ints as int64, which counts above 2**63 (MACs of huge inputs) overflow
    series = {name: [float(v) for v in values] for name, values in panel.series.items()}
    if panel.stacked:
        bottoms = [0.0] * len(positions)
        for name in names:
            ax.bar(positions, series[name], 0.6, bottom=bottoms, label=name)
            bottoms = [b + v for b, v in zip(bottoms, series[name], strict=True)]
    else:
        width = 0.8 / max(1, len(names))
        for i, name in enumerate(names):
            offset = (i - (len(names) - 1) / 2) * width
            ax.bar([p + offset for p in positions], series[name], width, label=name)
    ax.set_xticks(positions)
    ax.set_xticklabels(
        panel.categories, rotation=30 if len(positions) > 4 else 0, ha="right" if len(positions) > 4 else "center"
    )
    ax.set_title(panel.title)
    ax.set_ylabel(panel.ylabel)
    if panel.log_scale:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
    if len(names) > 1:
        ax.legend(fontsize="small")


def stage_panels(stages: list[Any]) -> list[BarPanel]:
    """Per-stage bars for `flops --plot`: params, and MACs in both conventions side by side.

    `stages` are counting.StageCount values (name, params, macs, macs_conv_linear).
    """
    names = [s.name for s in stages]
    return [
        BarPanel("Parameters per stage", "parameters", names, {"params": [s.params for s in stages]}),
        BarPanel(
            "MACs per stage",
            "MACs",
            names,
            {"fvcore": [s.macs for s in stages], "conv + linear": [s.macs_conv_linear for s in stages]},
        ),
    ]
