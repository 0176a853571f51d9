"""`bench`: the timing loop, its report, the --grid rows and every refused option."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from resnet_cli import build_model
from resnet_cli.analysis.bench import BenchSettings, grid_settings, make_step, percentile, run_bench
from resnet_cli.cli import app
from resnet_cli.errors import UserError
from resnet_cli.spec import request_from_flags
from resnet_cli.trace import make_input

runner = CliRunner()
TINY = ["resnet18", "--input", "1x3x32x32", "--iters", "3", "--warmup", "1", "--threads", "1"]
ROW_KEYS = {
    "label", "channels_last", "amp", "compile", "median_ms", "p10_ms", "p90_ms", "images_per_s",
    "peak_memory_bytes", "speedup", "latencies_ms",
}  # fmt: skip


def bench_json(*args: str) -> dict:
    result = runner.invoke(app, ["bench", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_percentile_interpolates_like_numpy():
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 10) == pytest.approx(1.3)
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    assert percentile([7.0], 90) == 7.0


def test_json_report_has_percentiles_throughput_and_memory():
    data = bench_json(*TINY)
    assert data["model"] == "resnet18" and data["input_shape"] == [1, 3, 32, 32]
    assert (data["device"], data["mode"], data["iters"], data["warmup"], data["threads"]) == ("cpu", "infer", 3, 1, 1)
    assert data["memory_kind"] == "CPU resident-set growth"
    [row] = data["rows"]
    assert set(row) == ROW_KEYS
    assert row["label"] == "baseline" and row["speedup"] is None
    assert len(row["latencies_ms"]) == 3
    assert row["p10_ms"] <= row["median_ms"] <= row["p90_ms"]
    assert row["images_per_s"] == pytest.approx(1 / (row["median_ms"] / 1000))
    assert row["peak_memory_bytes"] is None or row["peak_memory_bytes"] >= 0


def test_grid_has_baseline_each_knob_and_all_with_speedups():
    data = bench_json(*TINY, "--grid", "--channels-last", "--amp", "bf16")
    rows = data["rows"]
    assert [r["label"] for r in rows] == ["baseline", "channels-last", "amp bf16", "channels-last + amp bf16"]
    assert [(r["channels_last"], r["amp"]) for r in rows] == [
        (False, None),
        (True, None),
        (False, "bf16"),
        (True, "bf16"),
    ]
    assert rows[0]["speedup"] == 1.0
    for row in rows:
        assert row["speedup"] == pytest.approx(rows[0]["median_ms"] / row["median_ms"])


def test_grid_table_shows_a_speedup_column():
    result = runner.invoke(app, ["bench", *TINY, "--grid", "--channels-last"], env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "Speedup" in result.stdout and "channels-last" in result.stdout and "baseline" in result.stdout
    assert "Median ms" in result.stdout and "img/s" in result.stdout


def test_a_wide_p10_p90_spread_is_flagged_as_noisy():
    from resnet_cli.analysis.bench import BenchReport, BenchRow
    from resnet_cli.render.bench import bench_table

    request = request_from_flags("resnet18", device="cpu")
    steady = BenchRow("baseline", BenchSettings(), [10.0, 10.1, 10.2], 0)
    noisy = BenchRow("amp bf16", BenchSettings(amp="bf16"), [5.0, 6.0, 20.0], 0)
    report = BenchReport(request, BenchSettings(), "cpu", 2, "CPU resident-set growth", "2", rows=[steady, noisy])
    notes = bench_table(report).notes
    assert any(note.startswith("Noisy: p90 is over 1.5x p10 in amp bf16;") for note in notes)
    report.rows = [steady]
    assert not any(note.startswith("Noisy") for note in bench_table(report).notes)


GOLDEN_MARKDOWN = """\
**resnet50  input 8x3x224x224  infer on cpu (float32)**

| Config | Median ms | p10 ms | p90 ms | img/s | Peak MiB | Speedup |
|---|---:|---:|---:|---:|---:|---:|
| baseline | 100.50 | 98.60 | 101.70 | 79.60 | 300.00 | 1.00 |
| channels-last | 80.50 | 79.30 | 81.70 | 99.38 | 310.00 | 1.25 |

- Device: AMD EPYC
- Loop: 2 warm-up steps (untimed), then 4 timed steps per row
- Step: forward under torch.inference_mode
- CPU threads: 2
- torch: 2.13.0+cpu

Latency is per batch of 8; img/s = batch / median latency.

Peak memory: growth of the process's resident set while building and warming up the row (approximate).

Speedup = baseline median / row median (x); each row has its own model, and the timed steps take the rows in turn.
"""


def test_markdown_rendering_matches_the_golden_output():
    from resnet_cli.analysis.bench import BenchReport, BenchRow
    from resnet_cli.render.bench import bench_table
    from resnet_cli.render.table import to_markdown

    request = request_from_flags("resnet50", input="8x3x224x224", device="cpu")
    settings = BenchSettings(iters=4, warmup=2, channels_last=True)
    rows = [
        BenchRow("baseline", settings.baseline(), [100.0, 102.0, 98.0, 101.0], 300 * 2**20, 1.0),
        BenchRow("channels-last", settings, [80.0, 81.0, 79.0, 82.0], 310 * 2**20, 100.5 / 80.5),
    ]
    report = BenchReport(request, settings, "AMD EPYC", 2, "CPU resident-set growth", "2.13.0+cpu", rows=rows)
    assert to_markdown(bench_table(report)) == GOLDEN_MARKDOWN


def test_without_grid_knobs_apply_to_the_single_row():
    [row] = bench_json(*TINY, "--channels-last", "--amp", "bf16")["rows"]
    assert row["label"] == "channels-last + amp bf16" and row["speedup"] is None


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_csv_and_markdown_have_one_line_per_row(fmt):
    result = runner.invoke(app, ["bench", *TINY, "--grid", "--amp", "bf16", "--format", fmt])
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "baseline" in text and "amp bf16" in text
    if fmt == "csv":
        lines = text.strip().splitlines()
        assert lines[0].startswith("Config,Median ms,p10 ms,p90 ms,img/s,Peak MiB,Speedup") and len(lines) == 3


def test_train_mode_times_forward_backward_and_step():
    data = bench_json("resnet20", "--input", "2x3x32x32", "--iters", "2", "--warmup", "1", "--mode", "train")
    assert data["mode"] == "train" and len(data["rows"][0]["latencies_ms"]) == 2


def test_train_step_updates_the_weights():
    request = request_from_flags("resnet20", input="2x3x32x32", device="cpu")
    model = build_model("resnet20")
    inputs = make_input(request.input_shape, "cpu")
    before = model.fc.weight.detach().clone()
    make_step(model, inputs, BenchSettings(mode="train"), request)()
    assert not torch.equal(before, model.fc.weight)


def test_progress_callback_sees_every_step_and_the_library_prints_nothing(capsys):
    calls = []
    request = request_from_flags("resnet18", input="1x3x32x32", device="cpu")
    run_bench(request, BenchSettings(iters=3, warmup=2), progress=lambda *a: calls.append(a))
    assert calls == [("baseline", i, 5) for i in range(1, 6)]
    assert capsys.readouterr() == ("", "")


def test_grid_rows_warm_up_in_turn_then_take_turns_for_each_timed_step():
    calls = []
    request = request_from_flags("resnet18", input="1x3x32x32", device="cpu")
    run_bench(
        request, BenchSettings(iters=2, warmup=1, channels_last=True), grid=True, progress=lambda *a: calls.append(a)
    )
    assert calls == [
        ("baseline", 1, 3), ("channels-last", 1, 3),
        ("baseline", 2, 3), ("channels-last", 2, 3),
        ("baseline", 3, 3), ("channels-last", 3, 3),
    ]  # fmt: skip


def test_threads_are_restored_after_the_run():
    before = torch.get_num_threads()
    request = request_from_flags("resnet18", input="1x3x32x32", device="cpu")
    report = run_bench(request, BenchSettings(iters=1, warmup=0, threads=1))
    assert report.threads == 1 and torch.get_num_threads() == before


def test_grid_settings_turn_knobs_on_one_at_a_time():
    rows = grid_settings(BenchSettings(channels_last=True, amp="fp16", compile=True))
    assert [r.label for r in rows] == [
        "baseline", "channels-last", "amp fp16", "compile", "channels-last + amp fp16 + compile",
    ]  # fmt: skip
    assert [r.label for r in grid_settings(BenchSettings(amp="bf16"))] == ["baseline", "amp bf16"]


def test_compile_failure_is_one_clear_line(monkeypatch):
    class FailsOnFirstCall(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("InductorError: no C++ compiler\nlong traceback")

    def broken_compile(model, *args, **kwargs):
        return FailsOnFirstCall()

    monkeypatch.setattr(torch, "compile", broken_compile)
    result = runner.invoke(app, ["bench", *TINY, "--compile"])
    assert result.exit_code == 2
    assert "--compile: torch.compile failed on this machine (InductorError: no C++ compiler)" in result.output
    assert "Traceback" not in result.output


def test_compile_refused_up_front_is_one_clear_line(monkeypatch):
    def refuse(model, *args, **kwargs):
        raise RuntimeError("Python 3.14+ is not supported")

    monkeypatch.setattr(torch, "compile", refuse)
    result = runner.invoke(app, ["bench", *TINY, "--compile"])
    assert result.exit_code == 2
    assert "torch.compile is unavailable here (Python 3.14+ is not supported)" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--device", "meta"], "--device meta cannot be timed"),
        (["--iters", "0"], "--iters 0 must be at least 1"),
        (["--warmup", "-1"], "--warmup -1 must be 0 or more"),
        (["--threads", "0"], "--threads 0 must be at least 1"),
        (["--grid"], "--grid compares knobs against the baseline"),
        (["--compile"], "--compile needs --warmup 1 or more"),
        (["--amp", "fp8"], "fp8"),
        (["--mode", "eval"], "eval"),
        (["--input", "1x3x32"], "--input 1x3x32"),
    ],
)  # fmt: skip
def test_bad_options_exit_2_in_one_line(args, message):
    result = runner.invoke(app, ["bench", "resnet18", "--iters", "1", "--warmup", "0", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_running_out_of_memory_while_building_is_one_line(monkeypatch):
    import resnet_cli.model

    def out_of_memory(request):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 60211200000 bytes.")

    monkeypatch.setattr(resnet_cli.model, "instantiate", out_of_memory)
    result = runner.invoke(app, ["bench", "resnet18", "--input", "100000x3x224x224"])
    assert result.exit_code == 2
    assert "--input 100000x3x224x224: cannot allocate the model and input on cpu (DefaultCPUAllocator" in result.output
    assert "use a smaller batch or model" in result.output


def test_train_on_a_single_sample_explains_batch_norm():
    result = runner.invoke(app, ["bench", "resnet18", "--input", "1x3x32x32", "--mode", "train", "--iters", "1"])
    assert result.exit_code == 2
    assert "use a batch of 2 or more" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_clear_line():
    result = runner.invoke(app, ["bench", "resnet18", "--device", "cuda"])
    assert result.exit_code == 2
    assert "--device cuda: no CUDA device is available here; use --device cpu" in result.output


def test_threads_with_cuda_is_refused():
    request = request_from_flags("resnet18", device="cuda")
    with pytest.raises(UserError, match="--threads sets CPU threads"):
        run_bench(request, BenchSettings(threads=2))


def test_bench_help_does_not_import_torch():
    code = (
        "import sys; from resnet_cli.cli import app\n"
        "try:\n    app(['bench', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "--channels-last" in proc.stdout
    assert proc.stdout.strip().endswith("False"), proc.stdout + proc.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_reports_allocator_peak_and_event_timings():
    data = bench_json("resnet18", "--device", "cuda", "--input", "8x3x64x64", "--iters", "5", "--warmup", "2",
                      "--grid", "--channels-last", "--amp", "fp16")  # fmt: skip
    assert data["memory_kind"] == "CUDA allocator peak"
    assert all(row["peak_memory_bytes"] > 0 for row in data["rows"])
    assert len(data["rows"]) == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_train_with_fp16_uses_a_grad_scaler():
    data = bench_json("resnet18", "--device", "cuda", "--input", "4x3x64x64", "--iters", "3", "--warmup", "1",
                      "--mode", "train", "--amp", "fp16")  # fmt: skip
    assert data["rows"][0]["label"] == "amp fp16"
