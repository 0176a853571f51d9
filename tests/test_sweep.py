"""`sweep`: --vary parsing, the grid, counts against published figures, skipped variants, output and plots.

Expected values come from outside the sweep: torchvision's published figures, closed forms, fvcore and a real
forward pass measured in the test, and `resnet-cli flops` run with the same flags.
"""

from __future__ import annotations

import csv
import functools
import io
import itertools
import json
import sys

import pytest
import torch
from cli_runner import one_error_line, run, run_json
from fvcore.nn import FlopCountAnalysis
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from resnet_cli import build_model
from resnet_cli.analysis.sweep import Measurement, Variant, mark_pareto, parse_vary, run_sweep
from resnet_cli.errors import UserError
from resnet_cli.spec import request_from_flags

# torchvision's model docs: params and GFLOPS (which are conv + linear MACs, in billions) at 224x224
PUBLISHED = {
    ("basic", "2,2,2,2"): (11_689_512, 1.81),  # resnet18
    ("basic", "3,4,6,3"): (21_797_672, 3.66),  # resnet34
    ("bottleneck", "3,4,6,3"): (25_557_032, 4.09),  # resnet50
    ("bottleneck", "3,4,23,3"): (44_549_160, 7.80),  # resnet101
}
SE_RESNET50_PARAMS = 28_088_024  # Hu et al. 2018 (28.09M; timm's seresnet50): reduction 16, biased 1x1 convs


def se_params(channels: int, ratio: int = 16) -> int:
    """Squeeze-excitation on `channels`: a 1x1 conv down to channels / ratio and one back up, both with biases."""
    hidden = channels // ratio
    return channels * hidden + hidden + hidden * channels + channels


def bottleneck_resnet_params(layers: tuple[int, ...], widths: tuple[int, ...], se: bool = False) -> int:
    """Closed form: 7x7 stem, bottlenecks of expansion 4 (each stage's first one projects), a 1000-class fc."""
    total, channels = 3 * 64 * 7 * 7 + 2 * 64, 64
    for blocks, width in zip(layers, widths, strict=True):
        out = 4 * width
        for block in range(blocks):
            total += channels * width + 9 * width * width + width * out + 2 * (width + width + out)  # convs and BNs
            total += (channels * out + 2 * out if block == 0 else 0) + (se_params(out) if se else 0)
            channels = out
    return total + channels * 1000 + 1000


def test_the_closed_form_gives_the_published_counts():
    assert bottleneck_resnet_params((3, 4, 6, 3), (64, 128, 256, 512)) == PUBLISHED[("bottleneck", "3,4,6,3")][0]
    assert bottleneck_resnet_params((3, 4, 23, 3), (64, 128, 256, 512)) == PUBLISHED[("bottleneck", "3,4,23,3")][0]
    assert bottleneck_resnet_params((3, 4, 6, 3), (64, 128, 256, 512), se=True) == SE_RESNET50_PARAMS


def fvcore_macs(model: nn.Module, inputs: torch.Tensor) -> int:
    """fvcore's total on CPU: conv, linear, batch norm and adaptive pooling, as MACs."""
    analysis = FlopCountAnalysis(model.eval(), inputs)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    return analysis.total()


def module_output_bytes(model: nn.Module, inputs: torch.Tensor) -> int:
    """A real forward pass: bytes of every distinct tensor a module returns (in-place results and views once)."""
    kept: dict[int, torch.Tensor] = {}  # kept alive, so no address is reused during the pass

    def keep(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        kept.setdefault(output.data_ptr(), output)

    handles = [module.register_forward_hook(keep) for module in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(inputs)
    finally:
        for handle in handles:
            handle.remove()
    kept.pop(inputs.data_ptr(), None)
    return sum(t.numel() * t.element_size() for t in kept.values())


def test_list_flags_separate_values_with_slashes():
    assert parse_vary("layers=2,2,2,2/3,4,6,3/3,4,23,3").labels == ("2,2,2,2", "3,4,6,3", "3,4,23,3")
    assert parse_vary("layers=3,4,6,3").labels == ("3,4,6,3",)  # one value, not four


def test_scalar_flags_separate_values_with_commas_or_slashes():
    assert parse_vary("expansion=2,4").values == (2, 4)
    assert parse_vary("--drop-path=0/0.1").values == (0.0, 0.1)
    assert parse_vary("se=off,on").values == (False, True)
    assert parse_vary("dilate-stages=none/4/3,4").labels == ("none", "4", "3,4")


def test_flags_are_named_as_users_write_them():
    data = run_json("sweep", "resnet50", "--input", "1x3x32x32", "--vary", "width_per_group=4,8", "--vary", "--se=on")
    assert data["vary"] == {"width-per-group": ["4", "8"], "se": ["on"]}
    assert data["variants"][0]["values"].keys() == {"width-per-group", "se"}


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


@functools.cache
def vary_flags() -> list[str]:
    """Every flag --vary takes, as `sweep` itself lists them when given one it does not know."""
    line = one_error_line(run("sweep", "resnet20", "--vary", "nope=1"))
    assert "valid: " in line, line
    return line.rpartition("valid: ")[2].split(", ")


def test_vary_takes_the_build_flags_of_the_other_commands():
    assert {"block", "layers", "width-per-group", "dilate-stages", "se"} <= set(vary_flags())
    shown = run("summary", "--help", env={"COLUMNS": "400"}).stdout
    assert [flag for flag in vary_flags() if f" --{flag} " not in shown] == []


@settings(max_examples=25, deadline=None)
@given(
    flag=st.deferred(lambda: st.sampled_from(vary_flags())),
    junk=st.text(alphabet="xyz!?", min_size=1, max_size=4),
)
def test_junk_values_never_escape_as_other_errors(flag, junk):
    """Junk is refused, naming it: when --vary is parsed, or when no variant can be built from it."""
    result = run("sweep", "resnet20", "--vary", f"{flag}={junk}")
    assert result.exit_code == 2, result.output
    assert junk in one_error_line(result)


@functools.cache
def flops_of(flags: tuple[str, ...]) -> tuple[int, ...] | str:
    """`resnet-cli flops resnet20 FLAGS` at 1x3x32x32: params, both MACs and activation bytes, or the error it
    refuses the flags with."""
    result = run("flops", "resnet20", "--input", "1x3x32x32", *flags, "--format", "json")
    if result.exit_code == 2:
        return one_error_line(result).removeprefix("Error: ")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    totals, memory = data["totals"], data["memory"]
    return totals["params"], totals["macs"], totals["macs_conv_linear"], memory["activation_bytes"]


def as_flags(labels: dict[str, str]) -> tuple[str, ...]:
    """A variant's values as the build flags a user would type."""
    flags: list[str] = []
    for flag, label in labels.items():
        if flag == "se":
            flags.append("--se" if label == "on" else "--no-se")
        else:
            flags += [f"--{flag}", "" if label == "none" else label]
    return tuple(flags)


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
        expected = flops_of(as_flags(variant.labels))
        if variant.measurement is None:
            assert variant.skipped_reason == expected
        else:
            m = variant.measurement
            assert (m.params, m.macs, m.conv_linear_macs, m.activation_bytes) == expected


def test_block_by_layers_reproduces_torchvision_params_and_gflops():
    layers = "layers=2,2,2,2/3,4,6,3/3,4,23,3"
    data = run_json("sweep", "resnet50", "--vary", "block=basic,bottleneck", "--vary", layers)
    assert len(data["variants"]) == 6 and data["skipped"] == []
    found = {(v["values"]["block"], v["values"]["layers"]): v for v in data["variants"]}
    for key, (params, gflops) in PUBLISHED.items():
        assert found[key]["params"] == params
        assert round(found[key]["macs_conv_linear"] / 1e9, 2) == gflops
    assert found[("bottleneck", "3,4,6,3")]["macs"] == 4_111_512_576  # fvcore's resnet50 count


def test_every_variant_is_counted_at_the_input_without_allocating(one_thread):
    data = run_json("sweep", "resnet18", "--input", "2x3x64x64", "--vary", "se=off,on", "--sort", "order")
    plain, with_se = data["variants"]
    assert data["input_shape"] == [2, 3, 64, 64]
    # resnet18 has two blocks per stage, each with SE on its output
    assert with_se["params"] == PUBLISHED[("basic", "2,2,2,2")][0] + 2 * sum(map(se_params, (64, 128, 256, 512)))
    model, inputs = build_model("resnet18", se=True), torch.zeros(2, 3, 64, 64)
    assert with_se["macs"] == fvcore_macs(model, inputs)
    assert with_se["activation_bytes"] == module_output_bytes(model, inputs) > plain["activation_bytes"]


def test_invalid_combinations_are_skipped_with_the_reason():
    data = run_json("sweep", "resnet18", "--vary", "block=basic,bottleneck", "--vary", "groups=1,32", "--sort", "order")
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
    result = run("sweep", "resnet18", "--vary", "groups=1,32", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "1 measured, 1 skipped" in result.stdout
    assert "skipped #2 groups=32: --groups 32 needs --block bottleneck" in result.stdout


def test_base_flags_apply_to_every_variant_and_widths_follow_varied_layers():
    data = run_json("sweep", "resnet50", "--layers", "2,2,2,2,2", "--se", "--vary", "layers=2,2/3,4,6,3", "--sort",
                    "order")  # fmt: skip
    assert data["skipped"] == [] and data["base_spec"]["se"] is True
    two_stage, four_stage = data["variants"]
    assert two_stage["params"] == bottleneck_resnet_params((2, 2), (64, 128), se=True)  # resnet50's first two widths
    assert four_stage["params"] == SE_RESNET50_PARAMS


def test_explicit_widths_that_do_not_fit_skip_the_variant():
    data = run_json("sweep", "resnet50", "--widths", "32,64,128,256", "--vary", "layers=2,2/3,4,6,3")
    assert [v["values"]["layers"] for v in data["variants"]] == ["3,4,6,3"]
    assert "has 4 values but --layers 2,2 has 2 stages" in data["skipped"][0]["reason"]


def test_input_channels_follow_a_varied_in_channels():
    data = run_json("sweep", "resnet18", "--input", "1x3x64x64", "--vary", "in-channels=1,3", "--sort", "order")
    one, three = data["variants"]
    assert three["params"] - one["params"] == 2 * 64 * 7 * 7  # the stem conv's extra input channels


@pytest.mark.parametrize("sort", ["macs", "params", "memory", "order"])
def test_rows_are_sorted_by_the_sort_key(sort):
    data = run_json("sweep", "resnet50", "--vary", "layers=3,4,23,3/2,2,2,2", "--vary", "expansion=4,2", "--sort", sort)
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
    data = run_json(
        "sweep", "resnet18", "--vary", "stem=imagenet,cifar,deep", "--vary", "expansion=2,4", "--vary", "se=off,on"
    )
    points = [(v["macs"], v["params"]) for v in data["variants"]]
    for v in data["variants"]:
        dominated = any(m <= v["macs"] and p <= v["params"] and (m, p) != (v["macs"], v["params"]) for m, p in points)
        assert v["pareto"] == (not dominated)
    assert sum(v["pareto"] for v in data["variants"]) >= 2  # the cifar stem trades params for MACs


def test_csv_has_one_column_per_varied_flag():
    result = run("sweep", "resnet18", "--vary", "se=off,on", "--vary", "expansion=1,2", "-f", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["#", "se", "expansion", "Params", "MACs", "Act. bytes", "Acts", "Pareto"]
    assert len(rows) == 5 and rows[1][3] == "11689512"


GOLDEN_MARKDOWN = """\
**sweep of resnet18  input 1x3x224x224  (float32, sorted by macs)**

| # | block | groups | Params (M) | GMACs | Act. MiB | Acts (M) | Pareto |
|---:|---|---|---:|---:|---:|---:|---|
| 1 | basic | 1 | 11.69 | 1.82 | 22.59 | 2.48 | yes |
| 3 | bottleneck | 1 | 15.99 | 2.36 | 68.34 | 7.35 |  |
| 4 | bottleneck | 32 | 361.48 | 60.22 | 548.96 | 70.35 |  |

- Variants: 4 in the grid: 3 measured, 1 skipped

GMACs: multiply-accumulates / 1e9, fvcore convention (conv, linear, batch norm, adaptive pool); FLOPs = 2 x MACs.

Act. MiB: forward activations at the input, counted on the meta device (nothing allocated).

Acts: output elements of conv and linear layers (Radosavovic et al. 2020; fvcore's ActivationCountAnalysis).

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
    result = run("sweep", "resnet18", "--vary", "se=off,on", "-f", "markdown")
    assert result.exit_code == 0, result.output
    assert "| # | se | Params (M) | GMACs | Act. MiB | Acts (M) | Pareto |" in result.stdout
    assert "fvcore convention" in result.stdout


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot_is_written_in_the_suffix_format(tmp_path, suffix):
    path = tmp_path / f"sweep{suffix}"
    result = run("sweep", "resnet18", "--vary", "expansion=1,2", "--plot", str(path), "-f", "json")
    assert result.exit_code == 0, result.output
    data = path.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    else:
        assert b"<svg" in data[:2000]


def test_plot_with_an_unsupported_suffix_exits_2(tmp_path):
    result = run("sweep", "resnet18", "--vary", "se=off,on", "--plot", str(tmp_path / "p.jpg"))
    assert result.exit_code == 2
    assert "use a .png or .svg file name" in result.output


def test_plot_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = run("sweep", "resnet18", "--vary", "se=off,on", "--plot", str(tmp_path / "p.png"))
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
    result = run("sweep", "resnet18", *args)
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
    data = run_json("sweep", "resnet18", "--vary", "widths=1000000000000,1,1,1/64,128,256,512")
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
    result = run("sweep", "resnet18", "--vary", vary, "--format", "json")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: no variant could be measured: all ") and "#1 " in line


def test_pareto_on_macs_and_acts():
    data = run_json("sweep", "resnet18", "--vary", "width-factor=0.5,1", "--vary", "block=basic,bottleneck",
                    "--pareto", "macs,acts")  # fmt: skip
    assert data["pareto"] == ["macs", "acts"]
    points = [(v["macs"], v["acts"]) for v in data["variants"]]
    for v in data["variants"]:
        dominated = any(m <= v["macs"] and a <= v["acts"] and (m, a) != (v["macs"], v["acts"]) for m, a in points)
        assert v["pareto"] == (not dominated)
    # resnet18's acts, fvcore's ActivationCountAnalysis convention: the conv outputs plus the classifier's 1,000
    full = next(v for v in data["variants"] if v["values"] == {"width-factor": "1", "block": "basic"})
    assert full["acts"] == 2_484_712
    # halving every width halves every conv output; the classifier keeps its 1,000 outputs
    half = next(v for v in data["variants"] if v["values"] == {"width-factor": "0.5", "block": "basic"})
    assert half["acts"] == (2_484_712 - 1_000) // 2 + 1_000


@pytest.mark.parametrize("text", ["macs", "macs,macs", "macs,speed", "macs,params,acts"])
def test_bad_pareto_axes_exit_2_in_one_line(text):
    result = run("sweep", "resnet18", "--vary", "se=off,on", "--pareto", text)
    assert result.exit_code == 2
    assert "give two of macs, params, acts, memory" in one_error_line(result)
