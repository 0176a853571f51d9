"""--plot on compare, table, flops and sweep: PNG/SVG files by suffix, and clear errors without them."""

from __future__ import annotations

import struct
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from cli_runner import run

from resnet_cli.errors import UserError
from resnet_cli.render.plots import BarPanel, check_plot_path, save_figure, stage_panels, write_bar_figure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header, after checking the signature and the IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def svg_root(path: Path) -> ElementTree.Element:
    root = ElementTree.parse(path).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    return root


@pytest.mark.parametrize(
    "args",
    [
        ["compare", "basic", "bottleneck", "--channels", "64", "--spatial", "14"],
        ["compare", "resnet18", "resnet34", "--input", "1x3x64x64"],
        ["table", "resnet18", "resnet50"],
        ["flops", "resnet18"],
    ],
    ids=["compare-blocks", "compare-networks", "table", "flops"],
)
def test_plot_writes_a_png(tmp_path, args):
    path = tmp_path / "plot.png"
    result = run(*args, "--plot", str(path))
    assert result.exit_code == 0, result.output
    width, height = png_size(path)
    assert height == 480 and width >= 600  # 4.8 inches high at 100 dpi; width grows with the bars
    assert f"Plot written to {path}" in " ".join(result.stderr.split())


def test_plot_writes_an_svg_by_suffix(tmp_path):
    path = tmp_path / "plot.svg"
    result = run("compare", "resnet18", "resnet34", "--input", "1x3x64x64", "--plot", str(path))
    assert result.exit_code == 0, result.output
    root = svg_root(path)
    assert root.get("height", "").startswith("345.6")  # 4.8 in at 72 pt per inch
    assert "resnet18 vs resnet34" in path.read_text()


def test_json_output_stays_clean_with_a_plot(tmp_path):
    result = run("compare", "basic", "bottleneck", "--format", "json", "--plot", str(tmp_path / "p.png"))
    assert result.exit_code == 0, result.output
    assert result.stdout.lstrip().startswith("{") and "Plot written" not in result.stdout


def test_unsupported_suffix_exits_2_before_any_work(tmp_path):
    result = run("table", "--plot", str(tmp_path / "plot.jpg"))
    assert result.exit_code == 2, result.output
    assert "unsupported file type '.jpg'; use a .png or .svg file name" in result.stderr
    assert result.stdout == "" and not list(tmp_path.iterdir())


def test_missing_folder_exits_2(tmp_path):
    result = run("compare", "basic", "bottleneck", "--plot", str(tmp_path / "missing" / "plot.png"))
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.stderr


def test_without_matplotlib_plot_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib` raise ImportError
    result = run("flops", "resnet18", "--plot", str(tmp_path / "plot.png"))
    assert result.exit_code == 2, result.output
    assert "pip install 'resnet-cli[plot]'" in result.stderr


def test_stacked_panels_write_one_bar_per_category(tmp_path, monkeypatch):
    from matplotlib.axes import Axes

    drawn = []
    original = Axes.bar

    def recording(self, x, height, *args, **kwargs):
        drawn.append((list(x), list(height), list(kwargs.get("bottom", [0.0] * len(x)))))
        return original(self, x, height, *args, **kwargs)

    monkeypatch.setattr(Axes, "bar", recording)
    panel = BarPanel("MACs", "MACs", ["a", "b"], {"x": [1.0, 2.0], "y": [3.0, 0.0]}, stacked=True)
    path = write_bar_figure(tmp_path / "stacked.svg", "stacked", [panel])
    svg_root(path)
    # one bar per category and series, the second series stacked on the first
    assert [(heights, bottoms) for _, heights, bottoms in drawn] == [([1.0, 2.0], [0.0, 0.0]), ([3.0, 0.0], [1.0, 2.0])]
    assert drawn[0][0] == drawn[1][0] and len(drawn[0][0]) == 2


PLOT_COMMANDS = {
    "flops": ["flops", "resnet18"],
    "table": ["table", "resnet18"],
    "compare": ["compare", "basic", "bottleneck"],
    "sweep": ["sweep", "resnet18", "--vary", "se=off,on"],
}


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only one, or /sys for root (who ignores modes)."""
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    for folder in (read_only, Path("/sys")):
        try:
            (folder / "probe").touch()
        except PermissionError:
            return folder
        except OSError:
            continue
        (folder / "probe").unlink()
    pytest.skip("no folder here refuses new files")


@pytest.mark.parametrize("command", list(PLOT_COMMANDS))
@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("folder", "is a folder; give a file name such as"),
        ("read-only", "cannot write the file (Permission denied)"),
        ("name-too-long", "cannot write the file (File name too long)"),
    ],
)
def test_an_unwritable_plot_path_exits_2_in_one_line_before_any_work(tmp_path, command, kind, message):
    if kind == "folder":
        path = tmp_path / "plot.png"
        path.mkdir()
    elif kind == "read-only":
        path = unwritable_folder(tmp_path) / "plot.png"
    else:
        path = tmp_path / ("x" * 300 + ".png")
    result = run(*PLOT_COMMANDS[command], "--plot", str(path))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""  # refused before the work: no table printed
    [line] = result.stderr.splitlines()
    assert line.startswith(f"Error: --plot {path}: ") and message in line


def test_checking_a_plot_path_leaves_the_file_system_as_it_was(tmp_path):
    existing = tmp_path / "old.png"
    existing.write_bytes(b"keep me")
    before = existing.stat().st_mtime_ns
    check_plot_path(existing)
    check_plot_path(tmp_path / "new.svg")
    assert existing.read_bytes() == b"keep me" and existing.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.png"]


def test_a_failure_to_save_is_one_user_error(tmp_path):
    import matplotlib.pyplot as plt

    figure = plt.figure()
    (tmp_path / "taken.png").mkdir()  # appeared after the check
    with pytest.raises(UserError, match=r"--plot .*taken.png: cannot write the file"):
        save_figure(figure, tmp_path / "taken.png")
    assert not plt.fignum_exists(figure.number)


def test_counts_above_int64_are_plotted(tmp_path):
    class Stage:  # a counting.StageCount with MACs no int64 holds
        def __init__(self, name: str, macs: int) -> None:
            self.name, self.params, self.macs, self.macs_conv_linear = name, 10**12, macs, macs

    panels = stage_panels([Stage("stem", 2**63 + 1), Stage("layer1", 10**21)])
    path = write_bar_figure(tmp_path / "huge.svg", "huge", panels)
    svg_root(path)
