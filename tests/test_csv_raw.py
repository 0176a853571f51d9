"""CSV carries raw numbers: counts and bytes as integers, ratios and percents as floats, units in the headers (no
thousands separators, no 'x', '%', 'M' or 'MiB' in a cell); summary, flops, compare and table equal their JSON."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.cli_runner import run, run_json

COMMANDS = {
    "list": ["list"],
    "summary": ["summary", "resnet18", "--depth", "2", "--rf"],
    "flops-stage": ["flops", "resnet18"],
    "flops-operator": ["flops", "resnet18", "--by", "operator"],
    "flops-module": ["flops", "resnet18", "--by", "module", "--depth", "2"],
    "flops-train": ["flops", "resnet18", "--mode", "train", "--checkpoint", "block"],
    "flops-train-module": ["flops", "resnet18", "--mode", "train", "--by", "module", "--depth", "1"],
    "compare-blocks": ["compare", "basic", "se-bottleneck"],
    "compare-networks": ["compare", "resnet18", "resnet34"],
    "table": ["table", "resnet18", "resnet20"],
    "debug-shapes": ["debug-shapes", "resnet18", "--depth", "1"],
    "debug-shapes-sizes": ["debug-shapes", "resnet18", "--sizes", "16,224"],
    "debug-training": ["debug-training", "resnet20", "--input", "4x3x32x32", "--depth", "2"],
    "bench": ["bench", "resnet18", "--input", "1x3x32x32", "--iters", "2", "--warmup", "1", "--threads", "1", "--grid",
              "--channels-last"],
    "sweep": ["sweep", "resnet18", "--vary", "se=off,on", "--vary", "expansion=1,2"],
}
NUMBER = re.compile(r"-?\d+(\.\d+)?(e[-+]\d+)?$")
# A number as people write one: with separators, a unit, a multiplier or a percent sign (1,180,672, 15.31 MiB, 0.0596x).
NUMBER_LIKE = re.compile(r"-?\d[\d.,]*(e[-+]?\d+)?\s*([a-zA-Z]{1,3}|%|/\S*)?$")
LISTS = {"Layers"}  # list: the stage depths, 2,2,2,2


def tables(text: str) -> list[list[list[str]]]:
    """The CSV tables of one output (a blank line between two tables)."""
    return [list(csv.reader(io.StringIO(part))) for part in text.split("\n\n") if part.strip()]


def csv_tables(*args: str) -> list[list[list[str]]]:
    result = run(*args, "--format", "csv")
    assert result.exit_code in (0, 1), result.output
    return tables(result.stdout)


def is_raw(cell: str) -> bool:
    """A cell that reads as a number is an int or a float as Python writes it (text and shapes pass)."""
    return not NUMBER_LIKE.match(cell) or bool(NUMBER.match(cell))


@pytest.mark.parametrize("name", COMMANDS)
def test_every_numeric_cell_is_a_raw_number(name):
    for table in csv_tables(*COMMANDS[name]):
        header, *rows = table
        assert rows or name == "debug-training", f"{name}: a header-only table"
        for row in rows:
            for column, cell in zip(header, row, strict=True):
                assert column in LISTS or is_raw(cell), f"{name}: {column} = {cell!r} in {row}"


@pytest.mark.parametrize("cell", ["1,180,672", "0.0596x", "94.0%", "15.31 MiB", "11.69 M", "1.82 G", "435/32"])
def test_display_strings_are_not_raw(cell):
    assert not is_raw(cell)


def number(cell: str) -> int | float | None:
    if cell == "":
        return None
    return int(cell) if re.fullmatch(r"-?\d+", cell) else float(cell)


def test_summary_rows_and_totals_equal_the_json():
    [[header, *rows]] = csv_tables("summary", "resnet18", "--depth", "2")
    data = run_json("summary", "resnet18", "--depth", "2")
    *layers, total = rows
    assert header == ["Layer", "Type", "Output shape", "Params", "MACs"]
    assert len(layers) == len(data["layers"])
    for row, layer in zip(layers, data["layers"], strict=True):
        assert row[0].strip() == layer["name"]
        assert row[2] == "x".join(map(str, layer["output_shape"]))
        assert (number(row[3]), number(row[4])) == (layer["params"], layer["macs"])
    assert total[0] == "total"
    assert (number(total[3]), number(total[4])) == (data["totals"]["params"], data["totals"]["macs"])


def test_summary_rf_splits_into_receptive_field_and_stride_equal_to_the_json():
    [[header, *rows]] = csv_tables("summary", "resnet18", "--depth", "1", "--rf")
    data = run_json("summary", "resnet18", "--depth", "1", "--rf")
    assert header[-2:] == ["RF (px)", "Stride (px)"]
    for row, layer in zip(rows, data["layers"], strict=False):
        rf = layer["receptive_field"] if layer["receptive_field"] == "global" else layer["receptive_field"][0]
        assert (row[-2], row[-1]) == (str(rf), str(layer["effective_stride"][0])), row
    assert rows[-1][-2:] == ["", ""]  # the totals row


def test_summary_depth_0_has_the_model_totals_row():
    [[header, *rows]] = csv_tables("summary", "resnet50", "--depth", "0")
    totals = run_json("summary", "resnet50", "--depth", "0")["totals"]
    assert header[3:] == ["Params", "MACs"]
    assert rows == [["total", "", "", str(totals["params"]), str(totals["macs"])]]


def test_flops_stages_and_operators_equal_the_json():
    data = run_json("flops", "resnet18")
    [[header, *rows]] = csv_tables("flops", "resnet18")
    assert header == ["Stage", "Output shape", "Params", "MACs", "% MACs", "Conv+lin MACs"]
    for row in rows:
        stage = data["by_stage"][row[0]]
        assert (number(row[2]), number(row[3]), number(row[5])) == (stage["params"], stage["macs"],
                                                                    stage["macs_conv_linear"])  # fmt: skip
        assert float(row[4]) == pytest.approx(100 * stage["macs"] / data["totals"]["macs"], rel=1e-12)
    [[_, *ops]] = csv_tables("flops", "resnet18", "--by", "operator")
    assert {row[0]: number(row[1]) for row in ops} == data["by_operator"]


def test_compare_blocks_equal_the_json():
    data = run_json("compare", "basic", "bottleneck")
    [[header, *rows]] = csv_tables("compare", "basic", "bottleneck")
    assert header == ["", "BasicBlock", "Bottleneck", "ratio", "saved %"]
    by_label = {row[0]: row for row in rows}
    a, b = data["blocks"]
    for label, key in (("params", "params"), ("conv MACs/pixel", "macs_per_output_pixel"),
                       ("conv MACs, 56x56 in", "conv_macs"), ("activation bytes f32", "activation_bytes")):  # fmt: skip
        row = by_label[label]
        assert (number(row[1]), number(row[2])) == (a[key], b[key])
        assert float(row[3]) == b[key] / a[key]
    saved = data["saved_percent"]
    for label, key in (("params", "params"), ("conv MACs, 56x56 in", "conv_macs"),
                       ("activation bytes f32", "activation_bytes")):  # fmt: skip
        assert float(by_label[label][4]) == pytest.approx(saved[key], abs=1e-4)


def test_compare_networks_equal_the_json():
    data = run_json("compare", "resnet18", "resnet34", "--depth", "1")
    [[header, *rows]] = csv_tables("compare", "resnet18", "resnet34", "--depth", "1")
    assert header == ["stage", "", "output", "blocks", "params", "params B/A", "MACs", "MACs B/A"]
    a, b = data["networks"]
    stage_rows = rows[:-2]
    for i, stage in enumerate(a["stages"]):
        row_a, row_b = stage_rows[2 * i], stage_rows[2 * i + 1]
        other = b["stages"][i]
        assert (number(row_a[4]), number(row_a[6])) == (stage["params"], stage["macs"])
        assert (number(row_b[4]), number(row_b[6])) == (other["params"], other["macs"])
        assert float(row_b[5]) == other["params"] / stage["params"]
    total_a, total_b = rows[-2:]
    assert (number(total_a[4]), number(total_a[6]), number(total_b[4]), number(total_b[6])) == (
        a["params"], a["macs"], b["params"], b["macs"])  # fmt: skip
    assert (float(total_b[5]), float(total_b[7])) == (data["ratios"]["params"], data["ratios"]["macs"])


def test_table_params_and_macs_equal_the_json():
    data = run_json("table", "resnet18", "resnet20")
    [[header, *rows]] = csv_tables("table", "resnet18", "resnet20")
    by_label = {row[0]: row for row in rows}
    models = data["models"]
    assert header[2:] == [m["label"] for m in models]
    assert [number(c) for c in by_label["params"][2:]] == [m["params"] for m in models]
    assert [number(c) for c in by_label["MACs (conv + linear)"][2:]] == [m["macs_conv_linear"] for m in models]
