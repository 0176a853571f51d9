"""The user's own model: by file path or module path, factories, classes and instances, --arg, errors at the boundary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from cli_runner import run

from resnet_cli.errors import UserError
from resnet_cli.user_model import (
    build_user_model,
    is_user_model_reference,
    parse_model_args,
    parse_user_input_shape,
    user_model_request,
)

TINY = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, num_classes=10, width=8):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x)).flatten(1))


def make(num_classes=10, width=8):
    return Tiny(num_classes, width)


def needs_real_tensors():
    model = Tiny()
    scale = float(torch.ones(1).sum().item())  # .item() cannot run on meta
    model.fc.weight.data.mul_(scale)
    return model


def broken_factory():
    raise ValueError("width must be even, got 7")


def not_a_model():
    return 42


instance = Tiny(num_classes=5)
'''


def debug_json(*args: str):
    """`resnet-cli debug-shapes ARGS --format json`."""
    return run("debug-shapes", *args, "--format", "json", env={"COLUMNS": "100"})


@pytest.fixture
def tiny_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_model.py"
    path.write_text(TINY)
    return path


@pytest.fixture
def tiny_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "pkg_for_debug" / "models"
    package.mkdir(parents=True)
    (tmp_path / "pkg_for_debug" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "tiny.py").write_text(TINY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "pkg_for_debug.models.tiny"
    for name in [n for n in sys.modules if n.startswith("pkg_for_debug")]:
        del sys.modules[name]


def output_shape(result) -> list[int]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["layers"][0]["output_shapes"][0]


def test_factory_by_file_path(tiny_file):
    assert output_shape(debug_json(f"{tiny_file}:make", "--input", "1x3x16x16")) == [1, 10]


def test_arg_reaches_the_factory(tiny_file):
    result = debug_json(f"{tiny_file}:make", "--arg", "num_classes=7", "--arg", "width=4", "--input", "2x3x8x8")
    assert output_shape(result) == [2, 7]
    conv = json.loads(result.stdout)["layers"][1]
    assert conv["output_shapes"] == [[2, 4, 8, 8]]


def test_class_by_module_path(tiny_package):
    assert output_shape(debug_json(f"{tiny_package}:Tiny", "--arg", "num_classes=3")) == [1, 3]


def test_module_path_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "cwd_model_for_debug.py").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    try:
        assert output_shape(debug_json("cwd_model_for_debug:make")) == [1, 10]
    finally:
        sys.modules.pop("cwd_model_for_debug", None)
    assert str(tmp_path) not in sys.path


def test_instance_is_copied_not_moved(tiny_package):
    import importlib

    original = importlib.import_module(tiny_package).instance
    original.train()
    assert output_shape(debug_json(f"{tiny_package}:instance")) == [1, 5]
    assert {p.device.type for p in original.parameters()} == {"cpu"}
    assert original.training
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in original.modules())


def test_factory_is_built_on_meta_without_allocating(tiny_file):
    request = user_model_request(f"{tiny_file}:make", [])
    model = build_user_model(request)
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_factory_that_needs_real_tensors_falls_back_to_cpu_then_meta(tiny_file):
    model = build_user_model(user_model_request(f"{tiny_file}:needs_real_tensors", []))
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_cpu_device_builds_real_weights(tiny_file):
    model = build_user_model(user_model_request(f"{tiny_file}:make", [], device="cpu"))
    assert {p.device.type for p in model.parameters()} == {"cpu"}


def test_weights_are_loaded_into_a_user_model(tiny_file, tmp_path):
    from importlib.util import module_from_spec, spec_from_file_location

    spec = spec_from_file_location("tiny_for_weights", tiny_file)
    module = module_from_spec(spec)
    spec.loader.exec_module(module)
    state = module.make().state_dict()
    torch.save(state, tmp_path / "w.pt")
    model = build_user_model(user_model_request(f"{tiny_file}:make", [], device="cpu", weights=str(tmp_path / "w.pt")))
    assert torch.equal(model.fc.weight, state["fc.weight"])


@pytest.mark.parametrize(
    ("reference", "args", "message"),
    [
        ("{file}:broken_factory", [], "broken_factory() raised ValueError: width must be even, got 7"),
        ("{file}:not_a_model", [], "returned a value of type int, not an nn.Module"),
        ("{file}:missing", [], "has no attribute 'missing'; models and factories there: Tiny, make"),
        ("{file}:instance", ["--arg", "num_classes=3"], "is a module instance, which takes no arguments"),
        ("{file}", [], "name what to build after a colon, e.g."),
        ("{dir}/absent.py:make", [], "no such file"),
        ("no_such_module_for_debug.sub:make", [], "no module named 'no_such_module_for_debug'"),
    ],
)
def test_errors_at_the_boundary_exit_2(tiny_file, reference, args, message):
    reference = reference.format(file=tiny_file, dir=tiny_file.parent)
    result = run("debug-shapes", reference, *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


def test_factory_error_names_the_line_in_the_users_file(tiny_file):
    result = run("debug-shapes", f"{tiny_file}:broken_factory")
    assert f"({tiny_file}:" in result.stderr


def test_import_error_in_the_users_file_exit_2(tmp_path):
    path = tmp_path / "syntax_broken.py"
    path.write_text("def make(:\n    pass\n")
    result = run("debug-shapes", f"{path}:make")
    assert result.exit_code == 2
    assert "importing" in result.stderr and "SyntaxError" in result.stderr and f"{path}:1" in result.stderr


def test_parse_model_args_reads_python_literals():
    assert parse_model_args(["n=10", "rate=0.5", "flag=True", "layers=(2, 2)", "name=resnet"]) == {
        "n": 10, "rate": 0.5, "flag": True, "layers": (2, 2), "name": "resnet",
    }  # fmt: skip
    with pytest.raises(UserError, match="key=value"):
        parse_model_args(["=3"])


def test_user_input_shape_forms():
    assert parse_user_input_shape(None) == (1, 3, 224, 224)
    assert parse_user_input_shape("64") == (1, 3, 64, 64)
    assert parse_user_input_shape("1x32x32") == (1, 1, 32, 32)
    assert parse_user_input_shape("2x4x8x8") == (2, 4, 8, 8)
    with pytest.raises(UserError, match="dimensions"):
        parse_user_input_shape("1x2")


def test_reference_syntax():
    assert is_user_model_reference("models/net.py:build")
    assert is_user_model_reference("pkg.models:ResNet")
    assert is_user_model_reference("net.py")
    assert not is_user_model_reference("resnet50")
    assert not is_user_model_reference(None)


# --- hostile user code: sys.exit, print, shared modules ---------------------------------------------------------

HOSTILE = '''
import sys

from torch import nn

print("chatter in import")


class Loud(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        print("chatter in forward")
        return self.conv(x)


def loud():
    print("chatter in the factory")
    return Loud()


def exits():
    sys.exit(3)


healthy = Loud()
backbone = nn.Linear(4, 4)


def shared():
    return healthy


def wrapped():
    return nn.Sequential(backbone, nn.Linear(4, 2))
'''


@pytest.fixture
def hostile_file(tmp_path: Path) -> Path:
    path = tmp_path / "hostile_model.py"
    path.write_text(HOSTILE)
    return path


def test_sys_exit_in_a_factory_is_one_line_exit_2(hostile_file):
    result = run("summary", f"{hostile_file}:exits")
    assert result.exit_code == 2, result.output
    *chatter, error = result.stderr.strip().splitlines()
    assert chatter == ["chatter in import"]  # the user's own print, on stderr
    assert error.startswith("Error: ") and "exits() raised SystemExit: 3" in error and f"({hostile_file}:" in error


def test_sys_exit_while_importing_the_users_file_is_one_line_exit_2(tmp_path):
    path = tmp_path / "exits_on_import.py"
    path.write_text("import sys\nsys.exit(3)\n")
    result = run("summary", f"{path}:make")
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and "importing" in result.stderr and "SystemExit: 3" in result.stderr


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_print_in_user_code_goes_to_stderr_not_into_the_output(hostile_file, fmt):
    stdout = sys.stdout
    result = run("summary", f"{hostile_file}:loud", "--input", "1x3x4x4", "--format", fmt)
    assert result.exit_code == 0, result.output
    assert "chatter" not in result.stdout
    for where in ("import", "the factory", "forward"):
        assert f"chatter in {where}" in result.stderr
    if fmt == "json":
        assert json.loads(result.stdout)["model"] == f"{hostile_file}:loud"
    assert sys.stdout is stdout


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_a_module_the_factory_did_not_make_is_copied_not_moved(hostile_file, device):
    model = build_user_model(user_model_request(f"{hostile_file}:shared", [], device=device))
    module = next(m for name, m in sys.modules.items() if name.startswith("resnet_cli_user_hostile_model"))
    assert model is not module.healthy and {p.device.type for p in model.parameters()} == {device}
    assert {p.device.type for p in module.healthy.parameters()} == {"cpu"}

    model = build_user_model(user_model_request(f"{hostile_file}:wrapped", [], device=device))
    assert model[0] is not module.backbone and module.backbone.weight.device.type == "cpu"


def test_a_module_the_factory_made_is_not_copied(tiny_file, monkeypatch):
    import copy

    def refuse(*args):
        raise AssertionError("copied")

    monkeypatch.setattr(copy, "deepcopy", refuse)
    assert {p.device.type for p in build_user_model(user_model_request(f"{tiny_file}:make", [])).parameters()} == {"meta"}
