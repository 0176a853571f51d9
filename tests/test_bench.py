"""`bench`: the timing loop, its report, the --grid rows and every refused option."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest
import torch
from cli_runner import run

from resnet_cli import build_model
from resnet_cli.analysis.bench import (
    CROSS_ENTROPY,
    OUTPUT_MEAN,
    BenchSettings,
    TrainLoss,
    grid_settings,
    make_step,
    percentile,
    run_bench,
)
from resnet_cli.errors import UserError
from resnet_cli.spec import request_from_flags
from resnet_cli.trace import make_input
from resnet_cli.user_model import user_model_request

TINY = ["resnet18", "--input", "1x3x32x32", "--iters", "3", "--warmup", "1", "--threads", "1"]
ROW_KEYS = {
    "label", "channels_last", "amp", "compile", "median_ms", "p10_ms", "p90_ms", "images_per_s",
    "peak_memory_bytes", "speedup", "latencies_ms", "fuse_bn", "checkpoint", "fusion",
}  # fmt: skip


def bench_json(*args: str) -> dict:
    result = run("bench", *args, "--format", "json")
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
    # resident-set growth while the model and input were built and warmed up: at least resnet18's weights (4 bytes
    # each) whenever the platform reports it (Linux /proc does)
    if row["peak_memory_bytes"] is not None:
        assert row["peak_memory_bytes"] >= 11_689_512 * 4 // 2


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
    result = run("bench", *TINY, "--grid", "--channels-last", env={"COLUMNS": "100"})
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
    result = run("bench", *TINY, "--grid", "--amp", "bf16", "--format", fmt)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "baseline" in text and "amp bf16" in text
    if fmt == "csv":
        lines = text.strip().splitlines()
        assert lines[0].startswith("Config,Median ms,p10 ms,p90 ms,img/s,Peak bytes,Speedup") and len(lines) == 3


def test_train_mode_times_forward_backward_and_step():
    data = bench_json("resnet20", "--input", "2x3x32x32", "--iters", "2", "--warmup", "1", "--mode", "train")
    assert data["mode"] == "train" and len(data["rows"][0]["latencies_ms"]) == 2


def test_train_step_updates_the_weights():
    request = request_from_flags("resnet20", input="2x3x32x32", device="cpu")
    model = build_model("resnet20")
    inputs = make_input(request.input_shape, "cpu")
    before = model.fc.weight.detach().clone()
    make_step(model, inputs, BenchSettings(mode="train"))()
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
    result = run("bench", *TINY, "--compile")
    assert result.exit_code == 2
    assert "--compile: torch.compile failed on this machine (InductorError: no C++ compiler)" in result.output
    assert "Traceback" not in result.output


def test_compile_refused_up_front_is_one_clear_line(monkeypatch):
    def refuse(model, *args, **kwargs):
        raise RuntimeError("Python 3.14+ is not supported")

    monkeypatch.setattr(torch, "compile", refuse)
    result = run("bench", *TINY, "--compile")
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
    result = run("bench", "resnet18", "--iters", "1", "--warmup", "0", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_running_out_of_memory_while_building_is_one_line(monkeypatch):
    import resnet_cli.analysis.bench

    def out_of_memory(request):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 60211200000 bytes.")

    monkeypatch.setattr(resnet_cli.analysis.bench, "instantiate", out_of_memory)
    result = run("bench", "resnet18", "--input", "100000x3x224x224")
    assert result.exit_code == 2
    assert "--input 100000x3x224x224: cannot allocate the model and input on cpu (DefaultCPUAllocator" in result.output
    assert "use a smaller batch or model" in result.output


def test_train_on_a_single_sample_explains_batch_norm():
    result = run("bench", "resnet18", "--input", "1x3x32x32", "--mode", "train", "--iters", "1")
    assert result.exit_code == 2
    assert "use a batch of 2 or more" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_clear_line():
    result = run("bench", "resnet18", "--device", "cuda")
    assert result.exit_code == 2
    assert "--device cuda: no CUDA device is available here; use --device cpu" in result.output


def test_threads_with_cuda_is_refused():
    request = request_from_flags("resnet18", device="cuda")
    with pytest.raises(UserError, match="--threads sets CPU threads"):
        run_bench(request, BenchSettings(threads=2))


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


# The user's own model: tests/models files by path, or as `models.FILE:factory` with tests/ on sys.path.
TESTS = Path(__file__).resolve().parent
RESNET20 = "tests/models/cifar_option_a.py:resnet20"  # 0.27M params: fast at 32x32
QUICK = ["--iters", "2", "--warmup", "1", "--threads", "1"]
USER_SOURCE = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def broken_factory():
    raise ValueError("width must be even, got 7")


def not_a_model():
    return 42


CONSTANT = 3
instance = Tiny().eval()
"""


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "bench_user_model.py"
    path.write_text(USER_SOURCE)
    return path


@pytest.fixture
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    package = tmp_path / "bench_user_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tiny.py").write_text(USER_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "bench_user_pkg.tiny"
    for name in [name for name in sys.modules if name.startswith("bench_user_pkg")]:
        del sys.modules[name]


def test_user_model_by_file_path_is_timed_and_named_in_the_json():
    data = bench_json(RESNET20, "--input", "1x3x32x32", *QUICK)
    assert data["model"] == RESNET20 and "spec" not in data and data["factory_kwargs"] == {}
    assert (data["input_shape"], data["device"], data["dtype"], data["mode"]) == (
        [1, 3, 32, 32],
        "cpu",
        "float32",
        "infer",
    )
    assert data["loss"] is None
    [row] = data["rows"]
    assert set(row) == ROW_KEYS and len(row["latencies_ms"]) == 2


def test_user_model_by_module_path_trains_against_its_own_classes(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    data = bench_json("models.cifar_option_a:resnet20", "--arg", "num_classes=7", "--input", "2x3x32x32",
                      "--mode", "train", *QUICK)  # fmt: skip
    assert data["model"] == "models.cifar_option_a:resnet20" and data["factory_kwargs"] == {"num_classes": "7"}
    assert data["mode"] == "train" and data["loss"] == CROSS_ENTROPY


def test_user_model_grid_has_a_row_per_knob():
    data = bench_json(RESNET20, "--input", "2x3x32x32", *QUICK, "--mode", "train", "--grid", "--channels-last",
                      "--amp", "bf16")  # fmt: skip
    assert [r["label"] for r in data["rows"]] == ["baseline", "channels-last", "amp bf16", "channels-last + amp bf16"]
    assert data["rows"][0]["speedup"] == 1.0


def test_user_model_compile_rows_compile_a_fresh_copy(monkeypatch):
    compiled = []

    def record(model, *args, **kwargs):
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", record)
    data = bench_json(RESNET20, "--input", "1x3x32x32", *QUICK, "--grid", "--compile", "--channels-last")
    assert [r["label"] for r in data["rows"]] == ["baseline", "channels-last", "compile", "channels-last + compile"]
    assert len(compiled) == 2 and compiled[0] is not compiled[1]
    assert all(type(model).__name__ == "ResNet" for model in compiled)


def test_user_model_table_title_names_the_reference_and_the_input_dtype():
    result = run("bench", RESNET20, "--input", "1x3x32x32", *QUICK, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    title = result.stdout.splitlines()[0]
    assert title == f"{RESNET20}  input 1x3x32x32  infer on cpu (float32 input)"


@pytest.mark.parametrize("fmt", ["csv", "markdown"])
def test_user_model_in_csv_and_markdown(fmt):
    result = run("bench", RESNET20, "--input", "1x3x32x32", *QUICK, "--grid", "--amp", "bf16", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert "baseline" in result.stdout and "amp bf16" in result.stdout
    if fmt == "markdown":
        assert result.stdout.startswith(f"**{RESNET20}  input 1x3x32x32")


def test_a_backbone_without_logits_trains_on_the_mean_of_its_outputs():
    data = bench_json("tests/models/features_only.py:resnet18_features", "--input", "2x3x32x32", "--mode", "train",
                      *QUICK)  # fmt: skip
    assert data["loss"] == OUTPUT_MEAN and len(data["rows"][0]["latencies_ms"]) == 2


def test_train_loss_is_cross_entropy_for_logits_and_the_output_mean_otherwise():
    logits = torch.randn(4, 5, requires_grad=True)
    loss = TrainLoss()
    value = loss(logits)
    assert loss.kind == CROSS_ENTROPY and value.shape == () and 0 < value.item() < 20
    features = [torch.ones(2, 3, 4, 4), {"deep": torch.full((2, 8), 3.0)}]
    loss = TrainLoss()
    assert loss(features).item() == pytest.approx(4.0) and loss.kind == OUTPUT_MEAN
    with pytest.raises(UserError, match="--mode train: the model returns tuple with no floating-point tensor"):
        TrainLoss()((torch.ones(2, dtype=torch.long),))


def test_the_users_module_instance_is_left_untouched(user_package):
    original = importlib.import_module(user_package).instance
    state = {name: value.clone() for name, value in original.state_dict().items()}
    data = bench_json(f"{user_package}:instance", "--input", "2x3x8x8", "--mode", "train", "--channels-last", *QUICK)
    assert data["loss"] == CROSS_ENTROPY
    assert importlib.import_module(user_package).instance is original
    assert not original.training
    assert all(torch.equal(value, state[name]) for name, value in original.state_dict().items())
    assert original.conv.weight.is_contiguous() and original.conv.weight.grad is None


@pytest.mark.parametrize(
    ("reference", "extra", "message"),
    [
        (RESNET20, ["--se"], "--se changes a preset, but tests/models/cifar_option_a.py:resnet20 is your own model"),
        (RESNET20, ["--device", "meta"], "--device meta cannot be timed"),
        ("tests/models/missing.py:resnet20", [], "no such file"),
        ("{file}:nothing", [], "has no attribute 'nothing'"),
        ("{file}:broken_factory", [], "broken_factory() raised ValueError: width must be even, got 7"),
        ("{file}:not_a_model", [], "returned a value of type int, not an nn.Module"),
        ("{file}:CONSTANT", [], "is a int, not an nn.Module"),
        ("tests/models/jit_submodule.py:scripted_block_resnet", [], "its submodule layer2 is a TorchScript module"),
        ("no_such_package_for_bench.models:make", [], "no module named 'no_such_package_for_bench'"),
        ("resnet18", ["--arg", "num_classes=10"], "--arg num_classes=10: arguments go to your own model"),
    ],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_user_model_problems_exit_2_in_one_line(user_file, reference, extra, message):
    args = ["bench", reference.format(file=user_file), "--input", "2x3x32x32", *QUICK, *extra]
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_dtype_for_a_user_model_points_to_amp():
    result = run("bench", RESNET20, "--input", "1x3x32x32", "--dtype", "bfloat16", *QUICK)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: --dtype bfloat16: the infer step fails:")
    assert "time mixed precision with --amp instead" in result.stderr


def test_user_model_report_renders_without_running_the_model():
    from resnet_cli.analysis.bench import BenchReport, BenchRow
    from resnet_cli.render.bench import bench_json as render_json
    from resnet_cli.render.bench import bench_table

    request = user_model_request("lab/nets.py:make_net", ["depth=3"], input="4x3x16x16", device="cpu")
    settings = BenchSettings(mode="train", iters=2, warmup=1)
    row = BenchRow("baseline", settings, [10.0, 12.0], None)
    report = BenchReport(request, settings, "cpu", 1, "CPU resident-set growth", "2", rows=[row], loss=OUTPUT_MEAN)
    table = bench_table(report)
    assert table.title == "lab/nets.py:make_net  input 4x3x16x16  train on cpu (float32 input)"
    assert dict(table.footer)["Step"] == "forward + sum of output means + backward + SGD step"
    assert any(
        note.startswith("Train loss: the sum of the means of the model's output tensors") for note in table.notes
    )
    data = render_json(report)
    assert data["model"] == "lab/nets.py:make_net" and data["factory_kwargs"] == {"depth": "3"}
    assert data["loss"] == OUTPUT_MEAN and "spec" not in data


def test_training_a_model_without_trainable_parameters_is_refused_in_one_line(tmp_path):
    (tmp_path / "pool.py").write_text(
        "import torch.nn.functional as F\nfrom torch import nn\n\n\nclass Pooling(nn.Module):\n"
        "    def forward(self, x):\n        return F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1)\n"
    )
    result = run("bench", f"{tmp_path / 'pool.py'}:Pooling", "--mode", "train", "--input", "1x3x8x8")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "Error: --mode train: the model has no trainable parameters, so there is no step to time; use --mode infer"
    )
