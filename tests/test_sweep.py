"""`sweep`: --vary parsing, the grid, counts against published figures, skipped variants, output and plots."""

from __future__ import annotations

import csv
import io
import itertools
import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from resnet_cli.analysis.sweep import (
    VARY_FLAGS,
    Measurement,
    Variant,
    mark_pareto,
    measure_request,
    parse_vary,
    run_sweep,
)
from resnet_cli.cli import app
from resnet_cli.errors import UserError
from resnet_cli.spec import request_from_flags

runner = CliRunner()

# torchvision's model docs: params and GFLOPS (which are conv + linear MACs, in billions) at 224x224
PUBLISHED = {
    ("basic", "2,2,2,2"): (11_689_512, 1.81),  # resnet18
    ("basic", "3,4,6,3"): (21_797_672, 3.66),  # resnet34
    ("bottleneck", "3,4,6,3"): (25_557_032, 4.09),  # resnet50
    ("bottleneck", "3,4,23,3"): (44_549_160, 7.80),  # resnet101
}


def sweep_json(*args: str) -> dict:
    result = runner.invoke(app, ["sweep", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_list_flags_separate_values_with_slashes():
    vary = parse_vary("layers=2,2,2,2/3,4,6,3/3,4,23,3")
    assert vary.flag.name == "layers" and vary.labels == ("2,2,2,2", "3,4,6,3", "3,4,23,3")
    assert parse_vary("layers=3,4,6,3").labels == ("3,4,6,3",)  # one value, not four


def test_scalar_flags_separate_values_with_commas_or_slashes():
    assert parse_vary("expansion=2,4").values == (2, 4)
    assert parse_vary("--drop-path=0/0.1").values == (0.0, 0.1)
    assert parse_vary("se=off,on").values == (False, True)
    assert parse_vary("width_per_group=4,8").flag.name == "width-per-group"
    assert parse_vary("dilate-stages=none/4/3,4").labels == ("none", "4", "3,4")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("depth=18,34", "--vary depth: not a build flag; valid: block, layers"),
        ("expansion", "use FLAG=v1,v2"),
        ("expansion=2,x", "'x' is not an integer"),
        ("drop-path=0,big", "'big' is not a number"),
        ("se=maybe", "'maybe' is not on or off"),
        ("block=basic,tiny", "'tiny' is not one of basic, bottleneck"),
        ("layers=2,2/2,a", "'a' is not an integer"),
        ("expansion=2,2", "value 2 is listed twice"),
        ("groups=1,,2", "empty value"),
    ],
)  # fmt: skip
def test_bad_vary_values_are_user_errors_naming_the_flag(text, message):
    with pytest.raises(UserError, match=None) as error:
        parse_vary(text)
    assert message in str(error.value)


@settings(max_examples=60, deadline=None)
@given(
    flag=st.sampled_from(["expansion", "groups", "se-ratio", "num-classes", "in-channels", "width-per-group"]),
    values=st.lists(st.integers(1, 4096), min_size=1, max_size=6, unique=True),
    separator=st.sampled_from([",", "/"]),
)
def test_integer_values_round_trip(flag, values, separator):
    vary = parse_vary(f"{flag}={separator.join(map(str, values))}")
    assert vary.values == tuple(values) and vary.labels == tuple(map(str, values))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=6).map(tuple), min_size=1, max_size=5, unique=True))
def test_layer_lists_round_trip(layer_lists):
    vary = parse_vary("layers=" + "/".join(",".join(map(str, ls)) for ls in layer_lists))
    assert vary.labels == tuple(",".join(map(str, ls)) for ls in layer_lists)


@settings(max_examples=25, deadline=None)
@given(
    flag=st.sampled_from(sorted(VARY_FLAGS)),
    junk=st.text(alphabet="xyz!?", min_size=1, max_size=4),
)
def test_junk_values_never_escape_as_other_errors(flag, junk):
    """Junk is refused, naming it: when --vary is parsed, or when no variant can be built from it."""
    with pytest.raises(UserError) as caught:
        run_sweep(request_from_flags("resnet20"), [parse_vary(f"{flag}={junk}")], workers=1)
    assert junk in str(caught.value)


VARY_CHOICES = {
    "block": ["basic", "bottleneck"],
    "layers": ["1,1", "2,2,2,2", "1,2,1"],
    "expansion": ["1", "2", "4"],
    "groups": ["1", "2", "3"],
    "stem": ["imagenet", "deep", "cifar"],
    "se": ["off", "on"],
    "dilate-stages": ["none", "2", "3,4"],
    "shortcut": ["A", "B", "C"],
}
FLAG_KEYWORDS = {"dilate-stages": "dilate_stages"}


@settings(max_examples=12, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(sorted(VARY_CHOICES)),
        st.integers(1, 2),
        min_size=1,
        max_size=3,
    ).flatmap(
        lambda sizes: st.fixed_dictionaries(
            {flag: st.lists(st.sampled_from(VARY_CHOICES[flag]), min_size=n, max_size=n, unique=True)
             for flag, n in sizes.items()}
        )
    )
)  # fmt: skip
def test_every_variant_is_measured_as_the_same_flags_would_be_or_skipped_with_their_error(grid):
    base = request_from_flags("resnet20", input="1x3x32x32")
    varies = [parse_vary(f"{flag}={'/'.join(values)}") for flag, values in grid.items()]
    result = run_sweep(base, varies, workers=1, sort="order")
    assert len(result.variants) + len(result.skipped) == len([*itertools.product(*grid.values())])
    for variant in [*result.variants, *result.skipped]:
        flags = {}
        for flag, label in variant.labels.items():
            value = {"on": True, "off": False, "none": ""}.get(label, label)
            if flag in ("expansion", "groups"):
                value = int(value)
            flags[FLAG_KEYWORDS.get(flag, flag)] = value
        try:
            expected = measure_request(request_from_flags("resnet20", input="1x3x32x32", **flags))
        except UserError as exc:
            assert variant.skipped_reason == str(exc)
        else:
            assert variant.measurement == expected


def test_block_by_layers_reproduces_torchvision_params_and_gflops():
    data = sweep_json("resnet50", "--vary", "block=basic,bottleneck", "--vary", "layers=2,2,2,2/3,4,6,3/3,4,23,3")
    assert len(data["variants"]) == 6 and data["skipped"] == []
    found = {(v["values"]["block"], v["values"]["layers"]): v for v in data["variants"]}
    for key, (params, gflops) in PUBLISHED.items():
        assert found[key]["params"] == params
        assert round(found[key]["macs_conv_linear"] / 1e9, 2) == gflops
    assert found[("bottleneck", "3,4,6,3")]["macs"] == 4_111_512_576  # fvcore's resnet50 count


def test_every_variant_is_counted_at_the_input_without_allocating():
    data = sweep_json("resnet18", "--input", "2x3x64x64", "--vary", "se=off,on", "--sort", "order")
    plain, with_se = data["variants"]
    expected = measure_request(request_from_flags("resnet18", input="2x3x64x64", se=True))
    assert with_se["params"] == expected.params and with_se["macs"] == expected.macs
    assert with_se["activation_bytes"] == expected.activation_bytes > plain["activation_bytes"]
    assert data["input_shape"] == [2, 3, 64, 64]


def test_shape_only_meta_does_not_change_any_count(monkeypatch):
    from resnet_cli import trace

    requests = [
        request_from_flags("resnet18", input="1x3x64x64"),
        request_from_flags("resnext50_32x4d", input="2x3x96x96", dtype="bfloat16"),
        request_from_flags("resnet50", se=True, stem="deep", avg_down=True, dilate_stages="3,4", input="1x3x80x80"),
        request_from_flags("resnet20", drop_path=0.1, zero_init_residual=True),
        request_from_flags("resnet50", stride_on="1x1", shortcut="C", input="2x3x61x47"),  # odd sizes: floor
        request_from_flags("resnet18", shortcut="A", stem="cifar", input="1x3x33x35"),
    ]
    fast = [measure_request(r) for r in requests]
    monkeypatch.setattr(trace, "answer_from_shapes", lambda func, args, kwargs: None)
    assert [measure_request(r) for r in requests] == fast


def test_invalid_combinations_are_skipped_with_the_reason():
    data = sweep_json("resnet18", "--vary", "block=basic,bottleneck", "--vary", "groups=1,32", "--sort", "order")
    measured = [v["values"] for v in data["variants"]]
    assert measured == [
        {"block": "basic", "groups": "1"},
        {"block": "bottleneck", "groups": "1"},
        {"block": "bottleneck", "groups": "32"},
    ]
    [skipped] = data["skipped"]
    assert skipped["values"] == {"block": "basic", "groups": "32"}
    assert (
        skipped["reason"]
        == "--groups 32 needs --block bottleneck; a basic block supports only groups=1, width-per-group=64"
    )


def test_skipped_variants_are_listed_under_the_table():
    result = runner.invoke(app, ["sweep", "resnet18", "--vary", "groups=1,32"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "1 measured, 1 skipped" in result.stdout
    assert "skipped #2 groups=32: --groups 32 needs --block bottleneck" in result.stdout


def test_base_flags_apply_to_every_variant_and_widths_follow_varied_layers():
    data = sweep_json("resnet50", "--layers", "2,2,2,2,2", "--se", "--vary", "layers=2,2/3,4,6,3", "--sort", "order")
    assert data["skipped"] == [] and data["base_spec"]["se"] is True
    two_stage, four_stage = data["variants"]
    expected = measure_request(request_from_flags("resnet50", layers="2,2", se=True))
    assert two_stage["params"] == expected.params
    assert four_stage["params"] == measure_request(request_from_flags("resnet50", se=True)).params


def test_explicit_widths_that_do_not_fit_skip_the_variant():
    data = sweep_json("resnet50", "--widths", "32,64,128,256", "--vary", "layers=2,2/3,4,6,3")
    assert [v["values"]["layers"] for v in data["variants"]] == ["3,4,6,3"]
    assert "has 4 values but --layers 2,2 has 2 stages" in data["skipped"][0]["reason"]


def test_input_channels_follow_a_varied_in_channels():
    data = sweep_json("resnet18", "--input", "1x3x64x64", "--vary", "in-channels=1,3", "--sort", "order")
    one, three = data["variants"]
    assert three["params"] - one["params"] == 2 * 64 * 7 * 7  # the stem conv's extra input channels


@pytest.mark.parametrize("sort", ["macs", "params", "memory", "order"])
def test_rows_are_sorted_by_the_sort_key(sort):
    data = sweep_json("resnet50", "--vary", "layers=3,4,23,3/2,2,2,2", "--vary", "expansion=4,2", "--sort", sort)
    key = {"macs": "macs", "params": "params", "memory": "activation_bytes", "order": "index"}[sort]
    values = [v[key] for v in data["variants"]]
    assert values == sorted(values)


def _variant(index: int, macs: int, params: int) -> Variant:
    return Variant(index, {}, Measurement(params, macs, macs, 0, 0))


def test_pareto_front_keeps_variants_nothing_beats_on_both_axes():
    variants = [_variant(0, 10, 50), _variant(1, 20, 30), _variant(2, 30, 40), _variant(3, 40, 10), _variant(4, 20, 30)]
    mark_pareto(variants)
    assert [v.pareto for v in variants] == [True, True, False, True, True]


def test_pareto_flags_in_the_output_match_the_definition():
    data = sweep_json(
        "resnet50", "--vary", "stem=imagenet,cifar,deep", "--vary", "expansion=2,4", "--vary", "se=off,on"
    )
    points = [(v["macs"], v["params"]) for v in data["variants"]]
    for v in data["variants"]:
        dominated = any(m <= v["macs"] and p <= v["params"] and (m, p) != (v["macs"], v["params"]) for m, p in points)
        assert v["pareto"] == (not dominated)
    assert sum(v["pareto"] for v in data["variants"]) >= 2  # the cifar stem trades params for MACs


def test_csv_has_one_column_per_varied_flag():
    result = runner.invoke(app, ["sweep", "resnet18", "--vary", "se=off,on", "--vary", "expansion=1,2", "-f", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["#", "se", "expansion", "Params (M)", "GMACs", "Act. MiB", "Pareto"]
    assert len(rows) == 5 and rows[1][3] == "11.69"


GOLDEN_MARKDOWN = """\
**sweep of resnet18  input 1x3x224x224  (float32, sorted by macs)**

| # | block | groups | Params (M) | GMACs | Act. MiB | Pareto |
|---:|---|---|---:|---:|---:|---|
| 1 | basic | 1 | 11.69 | 1.82 | 22.59 | yes |
| 3 | bottleneck | 1 | 15.99 | 2.36 | 68.34 |  |
| 4 | bottleneck | 32 | 361.48 | 60.22 | 548.96 |  |

- Variants: 4 in the grid: 3 measured, 1 skipped

GMACs: multiply-accumulates / 1e9, fvcore convention (conv, linear, batch norm, adaptive pool); FLOPs = 2 x MACs.

Act. MiB: forward activations at the input, counted on the meta device (nothing allocated).

Pareto: no other variant has both fewer MACs and fewer params.

skipped #2 block=basic groups=32: --groups 32 needs --block bottleneck; a basic block supports only groups=1, width-per-group=64
"""


def test_markdown_rendering_matches_the_golden_output():
    from resnet_cli.render.sweep import sweep_table
    from resnet_cli.render.table import to_markdown

    varies = [parse_vary("block=basic,bottleneck"), parse_vary("groups=1,32")]
    result = run_sweep(request_from_flags("resnet18"), varies, workers=1)
    assert to_markdown(sweep_table(result)) == GOLDEN_MARKDOWN


def test_timing_goes_to_a_separate_line_not_the_table():
    from resnet_cli.render.sweep import sweep_table, timing_line

    result = run_sweep(request_from_flags("resnet18"), [parse_vary("groups=1,32")], workers=1)
    result.seconds = 1.25
    assert timing_line(result) == "2 variants in 1.2 s on 1 worker"
    assert not any(label == "Time" for label, _ in sweep_table(result).footer)


def test_markdown_output_is_a_table_with_notes():
    result = runner.invoke(app, ["sweep", "resnet18", "--vary", "se=off,on", "-f", "markdown"])
    assert result.exit_code == 0, result.output
    assert "| # | se | Params (M) | GMACs | Act. MiB | Pareto |" in result.stdout
    assert "fvcore convention" in result.stdout


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_is_written_in_the_suffix_format(tmp_path, suffix):
    path = tmp_path / f"sweep{suffix}"
    result = runner.invoke(app, ["sweep", "resnet18", "--vary", "expansion=1,2", "--plot", str(path), "-f", "json"])
    assert result.exit_code == 0, result.output
    data = path.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    else:
        assert b"<svg" in data[:2000]


def test_plot_with_an_unsupported_suffix_exits_2(tmp_path):
    result = runner.invoke(app, ["sweep", "resnet18", "--vary", "se=off,on", "--plot", str(tmp_path / "p.jpg")])
    assert result.exit_code == 2
    assert "use a .png or .svg file name" in result.output


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = runner.invoke(app, ["sweep", "resnet18", "--vary", "se=off,on", "--plot", str(tmp_path / "p.png")])
    assert result.exit_code == 2
    assert "pip install 'resnet-cli[plot]'" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "sweep needs at least one --vary"),
        (["--vary", "depth=1,2"], "--vary depth: not a build flag"),
        (["--vary", "se=off,on", "--vary", "se=on"], "--vary se is given twice"),
        (["--vary", "se=off,on", "--device", "cpu"], "--device cpu: sweep counts every variant on the meta device"),
        (["--vary", "se=off,on", "--weights", "w.pt"], "--weights does not apply to sweep"),
        (["--vary", "se=off,on", "--workers", "0"], "--workers 0 must be at least 1"),
        (["--vary", "se=off,on", "--sort", "speed"], "speed"),
    ],
)  # fmt: skip
def test_bad_sweep_options_exit_2_in_one_line(args, message):
    result = runner.invoke(app, ["sweep", "resnet18", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_worker_processes_give_the_same_results_as_one_process():
    base = request_from_flags("resnet18", input="1x3x64x64")
    varies = [parse_vary("expansion=1,2"), parse_vary("se=off,on"), parse_vary("groups=1,2")]
    progress = []
    pooled = run_sweep(base, varies, workers=2, sort="order", progress=lambda *a: progress.append(a))
    single = run_sweep(base, varies, workers=1, sort="order")
    assert pooled.workers == 2 and single.workers == 1
    assert [(v.labels, v.measurement) for v in pooled.variants] == [(v.labels, v.measurement) for v in single.variants]
    assert [v.skipped_reason for v in pooled.skipped] == [v.skipped_reason for v in single.skipped]
    assert progress[-1] == (4, 4)  # groups=2 needs a bottleneck: 4 of 8 measured


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("Storage size calculation overflowed with sizes=[1000000000000, 3, 7, 7]\nException raised from ..."),
        OverflowError("Python int too large to convert to C long"),
        MemoryError(),
    ],
    ids=["torch-runtime-error", "overflow", "memory"],
)
def test_a_variant_that_fails_in_any_way_is_skipped_and_the_rest_measured(monkeypatch, error):
    import resnet_cli.analysis.sweep as sweep_module

    measure = sweep_module.measure_request

    def fail_on_expansion_2(request):
        if request.spec.expansion == 2:
            raise error
        return measure(request)

    monkeypatch.setattr(sweep_module, "measure_request", fail_on_expansion_2)
    result = run_sweep(request_from_flags("resnet18"), [parse_vary("expansion=1,2,4")], workers=1, sort="order")
    assert [v.labels["expansion"] for v in result.variants] == ["1", "4"]
    [skipped] = result.skipped
    assert skipped.labels == {"expansion": "2"}
    assert skipped.skipped_reason == {
        RuntimeError: "RuntimeError: Storage size calculation overflowed with sizes=[1000000000000, 3, 7, 7]",
        OverflowError: "OverflowError: Python int too large to convert to C long",
        MemoryError: "MemoryError",
    }[type(error)]


def test_an_impossible_variant_is_listed_as_skipped_and_the_rest_measured():
    data = sweep_json("resnet18", "--vary", "widths=1000000000000,1,1,1/64,128,256,512")
    assert [v["values"] for v in data["variants"]] == [{"widths": "64,128,256,512"}]
    [skipped] = data["skipped"]
    assert skipped["values"] == {"widths": "1000000000000,1,1,1"}
    assert "1000000000000" in skipped["reason"] and "\n" not in skipped["reason"]


@pytest.mark.parametrize(
    "vary",
    ["widths=1000000000000,1,1,1", "groups=2,4"],  # too big for any device; a grouped basic block
    ids=["impossible-size", "refused-by-the-spec"],
)
def test_a_sweep_whose_every_variant_is_skipped_exits_2_in_one_line(vary):
    result = runner.invoke(app, ["sweep", "resnet18", "--vary", vary, "--format", "json"])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: no variant could be measured: all ") and "#1 " in line
