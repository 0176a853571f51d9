"""--weights: checked against a meta build before anything is allocated; every bad file is one line, exit 2."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_runner import run

import resnet_cli.model
import resnet_cli.user_model
from resnet_cli import build_model
from resnet_cli.errors import UserError
from resnet_cli.model import instantiate
from resnet_cli.spec import request_from_flags
from resnet_cli.user_model import build_user_model, user_model_request

SAVE_ADVICE = "torch.save(model.state_dict(), path)"
# About 380 M parameters (1.5 GB in float32): building it on the CPU would be plain in the peak RSS.
BIG = ("resnet50", "--widths", "256,512,1024,2048")

TINY = """
from torch import nn


def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
"""


@pytest.fixture
def r18_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return build_model("resnet18").state_dict()


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_for_weights.py"
    path.write_text(TINY)
    return path


def save(tmp_path: Path, state: object, name: str = "w.pt") -> str:
    path = tmp_path / name
    torch.save(state, path)
    return str(path)


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output and "\x1b" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def test_weights_load_on_cpu(tmp_path, r18_state):
    request = request_from_flags("resnet18", device="cpu", weights=save(tmp_path, r18_state))
    model, _ = instantiate(request)
    loaded = model.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in r18_state.items())


def test_weights_load_in_the_requested_dtype(tmp_path, r18_state):
    request = request_from_flags("resnet18", device="cpu", dtype="bfloat16", weights=save(tmp_path, r18_state))
    model, _ = instantiate(request)
    assert model.fc.weight.dtype == torch.bfloat16
    assert model.bn1.num_batches_tracked.dtype == torch.int64
    assert torch.equal(model.fc.weight, r18_state["fc.weight"].to(torch.bfloat16))


def test_fitting_weights_on_meta_allocate_nothing(tmp_path, r18_state):
    model, _ = instantiate(request_from_flags("resnet18", weights=save(tmp_path, r18_state)))
    assert {t.device.type for t in model.state_dict().values()} == {"meta"}


def test_a_file_that_does_not_fit_is_refused_before_any_allocation(tmp_path, r18_state, monkeypatch):
    built_on = []
    real_build = resnet_cli.model.build_model

    def recording_build(spec, *, device=None, **overrides):
        built_on.append(str(device))
        return real_build(spec, device=device, **overrides)

    def no_allocation(*args, **kwargs):
        raise AssertionError("allocated before the file was checked")

    monkeypatch.setattr(resnet_cli.model, "build_model", recording_build)
    monkeypatch.setattr(torch.nn.Module, "to_empty", no_allocation)
    request = request_from_flags("resnet34", device="cpu", weights=save(tmp_path, r18_state))
    with pytest.raises(UserError, match=r"does not fit the model: missing keys: layer1\.2\.conv1\.weight"):
        instantiate(request)
    assert built_on and set(built_on) == {"meta"}


def _peak_rss_bytes(args: list[str]) -> int:
    process = subprocess.Popen(
        [sys.executable, "-m", "resnet_cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[1],
    )
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) in (0, 2), args
    return usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)


@pytest.mark.skipif(not hasattr(os, "wait4"), reason="needs os.wait4")
def test_a_file_that_does_not_fit_a_big_model_costs_no_memory(tmp_path, r18_state):
    params = sum(p.numel() for p in build_model(BIG[0], device="meta", widths=(256, 512, 1024, 2048)).parameters())
    path = save(tmp_path, r18_state)
    baseline = _peak_rss_bytes(["summary", *BIG, "--depth", "0"])
    with_weights = _peak_rss_bytes(["summary", *BIG, "--depth", "0", "--weights", path])
    assert with_weights - baseline < params * 4 // 2, (baseline, with_weights, params)  # half the float32 bytes


def test_a_user_model_is_built_on_the_device_only_once_the_file_fits(tmp_path, tiny_file, monkeypatch):
    built_on = []
    real_build = resnet_cli.user_model.build_user_model

    def recording_build(request):
        built_on.append(request.device)
        return real_build(request)

    monkeypatch.setattr(resnet_cli.user_model, "build_user_model", recording_build)
    reference = f"{tiny_file}:make"
    good = real_build(user_model_request(reference, [], device="cpu")).state_dict()
    bad = {**good, "0.weight": torch.zeros(4, 3, 5, 5)}
    with pytest.raises(UserError, match=r"shape mismatch: 0\.weight \(4, 3, 5, 5\) vs \(4, 3, 3, 3\)"):
        real_build(user_model_request(reference, [], device="cpu", weights=save(tmp_path, bad)))
    assert built_on == ["meta"]

    built_on.clear()
    model = real_build(user_model_request(reference, [], device="cpu", weights=save(tmp_path, good)))
    assert built_on == ["meta", "cpu"]
    assert torch.equal(model[0].weight, good["0.weight"])


def test_a_user_model_on_meta_is_checked_but_not_allocated(tmp_path, tiny_file):
    reference = f"{tiny_file}:make"
    state = build_user_model(user_model_request(reference, [], device="cpu")).state_dict()
    model = build_user_model(user_model_request(reference, [], weights=save(tmp_path, state)))
    assert {p.device.type for p in model.parameters()} == {"meta"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: {**s, "fc.weight": s["fc.weight"].to(torch.int32)}, "fc.weight is int32 but the model's is float32"),
        (lambda s: {**s, "conv1.weight": s["conv1.weight"].to(torch.complex64)}, "conv1.weight is complex64"),
        (lambda s: {**s, "fc.bias": s["fc.bias"].bool()}, "fc.bias is bool but the model's is float32"),
        (lambda s: {**s, "bn1.num_batches_tracked": torch.tensor(0.5)}, "bn1.num_batches_tracked is float32"),
    ],
)
def test_values_of_another_kind_of_dtype_are_refused(tmp_path, r18_state, change, message):
    assert_one_line_error(run("summary", "resnet18", "--weights", save(tmp_path, change(r18_state))), message)


def test_floating_values_of_another_precision_load(tmp_path, r18_state):
    half = {k: v.half() if v.is_floating_point() else v for k, v in r18_state.items()}
    model, _ = instantiate(request_from_flags("resnet18", device="cpu", weights=save(tmp_path, half)))
    assert model.fc.weight.dtype == torch.float32
    assert torch.equal(model.fc.weight, half["fc.weight"].float())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: {**s, "fc.weight": s["fc.weight"].tolist()}, "fc.weight holds a list, not a tensor"),
        (lambda s: {**s, "fc.bias": 3.0}, "fc.bias holds a float, not a tensor"),
        (lambda s: {**s, 7: s["fc.bias"]}, "key 7 (int) is not a parameter name"),
        (lambda s: {**s, ("fc", "bias"): s["fc.bias"]}, "key ('fc', 'bias') (tuple)"),
        (lambda s: list(s.values()), "expected a state dict (mapping of names to tensors), got list"),
        (lambda s: s["fc.weight"], "got Tensor"),
    ],
)
def test_a_file_that_is_not_a_mapping_of_names_to_tensors_is_one_line(tmp_path, r18_state, change, message):
    assert_one_line_error(run("summary", "resnet18", "--weights", save(tmp_path, change(r18_state))), message, SAVE_ADVICE)


class _Unsafe:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _write(tmp_path: Path, kind: str) -> str:
    path = tmp_path / f"{kind}.pt"
    if kind == "module":
        torch.save(build_model("resnet18", device="meta"), path)
    elif kind == "unsafe":
        torch.save(_Unsafe(), path)
    elif kind == "plain_pickle":
        path.write_bytes(pickle.dumps({"fc.weight": [1.0]}, protocol=4))
    elif kind == "random":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "text":
        path.write_text("fc.weight: 0.1 0.2\n")
    elif kind == "empty":
        path.write_bytes(b"")
    return str(path)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("module", "holds a pickled resnet_cli.model.ResNet, not only tensors"),
        ("unsafe", "holds a pickled posix.system" if os.name == "posix" else "holds a pickled"),
        ("plain_pickle", "is a Python pickle"),
        ("random", "is not a readable PyTorch state dict (torch.save did not write it)"),
        ("text", "is a text file, not a readable PyTorch state dict"),
        ("empty", "is empty"),
    ],
)
def test_files_torch_load_refuses_are_one_line_saying_what_to_save(tmp_path, kind, message):
    result = run("summary", "resnet18", "--weights", _write(tmp_path, kind))
    assert_one_line_error(result, message, SAVE_ADVICE)
    assert "weights_only=False" not in result.stderr


def test_an_empty_weights_path_is_refused(tiny_file):
    assert_one_line_error(run("summary", "resnet18", "--weights", ""), "--weights '': empty path")
    assert_one_line_error(run("summary", f"{tiny_file}:make", "--weights", ""), "--weights '': empty path")


def test_a_directory_is_not_a_weights_file(tmp_path):
    assert_one_line_error(run("summary", "resnet18", "--weights", str(tmp_path)), "is a directory")
