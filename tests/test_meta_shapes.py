"""shape_only_meta: the same records, counts, shapes, dtypes and strides as torch's meta kernels, no torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_strategies import valid_specs
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from resnet_cli.analysis.counting import MacCounter
from resnet_cli.meta_shapes import _broadcast, shape_only_meta
from resnet_cli.model import build_model
from resnet_cli.spec import PRESETS, ResNetSpec
from resnet_cli.trace import make_input, trace_model


class OutputRecorder(TorchDispatchMode):
    """Records each operator's output shapes, strides and dtypes as the next mode (or kernel) returns them."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        tensors = out if isinstance(out, (tuple, list)) else (out,)
        self.calls.append(
            (str(func), [(tuple(t.shape), t.stride(), t.dtype) for t in tensors if isinstance(t, torch.Tensor)])
        )
        return out


def run_on_meta(spec: ResNetSpec | str, shape: tuple[int, ...], fast: bool, dtype=torch.float32):
    """Build and trace on meta, with or without shape_only_meta; records, MACs and every operator's outputs."""
    recorder = OutputRecorder()
    counter = MacCounter()
    with shape_only_meta() if fast else torch.no_grad():
        with recorder:
            model = build_model(spec, device="meta").to(dtype)
            trace = trace_model(model, make_input(shape, "meta", dtype), observers=[counter])
    assert trace.ok, trace.error
    records = [(r.name, r.output_shapes, r.output_dtypes, r.params, r.output_bytes) for r in trace.records]
    return records, counter.own, recorder.calls


def assert_same_on_meta(spec, shape, dtype=torch.float32):
    assert run_on_meta(spec, shape, True, dtype) == run_on_meta(spec, shape, False, dtype)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_traces_identically(name):
    shape = (1, 3, 16, 16) if name == "resnet1202" else (2, 3, 64, 64)
    assert_same_on_meta(name, shape)


def test_bfloat16_and_odd_sizes_trace_identically():
    assert_same_on_meta("resnext50_32x4d", (1, 3, 61, 47), torch.bfloat16)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=valid_specs(), size=st.integers(1, 40), batch=st.integers(1, 3))
def test_drawn_specs_trace_identically(spec, size, batch):
    assert_same_on_meta(spec, (batch, spec.in_channels, size, size))


def test_channels_last_batch_norm_keeps_the_kernels_strides():
    bn = nn.BatchNorm2d(6, device="meta").eval()
    x = make_input((2, 6, 5, 7), "meta").to(memory_format=torch.channels_last)
    expected = bn(x)
    with torch.no_grad(), shape_only_meta():
        out = bn(x)
    assert (out.shape, out.stride(), out.dtype) == (expected.shape, expected.stride(), expected.dtype)


@pytest.mark.parametrize(
    "call",
    [
        lambda: nn.Conv2d(4, 8, 3, device="meta")(make_input((1, 3, 8, 8))),  # wrong input channels
        lambda: nn.Conv2d(4, 8, 3, groups=2, device="meta")(make_input((1, 2, 8, 8))),
        lambda: nn.Conv2d(3, 8, 7, device="meta")(make_input((1, 3, 4, 4))),  # output smaller than 1
        lambda: nn.MaxPool2d(3, 2)(make_input((1, 3, 1, 1))),
        lambda: nn.AvgPool2d(4, 4)(make_input((1, 3, 2, 2))),
        lambda: nn.BatchNorm2d(5, device="meta").eval()(make_input((1, 3, 4, 4))),
        lambda: nn.Linear(7, 2, device="meta")(make_input((2, 6))),
        lambda: make_input((2, 3, 4, 4)) * make_input((2, 5, 1, 1)),  # broadcasting impossible
    ],
)
def test_invalid_inputs_still_raise(call):
    with torch.no_grad(), shape_only_meta(), pytest.raises(RuntimeError):
        call()


def test_flops_on_meta_never_imports_dynamo_or_sympy():
    script = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from resnet_cli.cli import app\n"
        "result = CliRunner().invoke(app, ['flops', 'resnet152', '--input', '64x3x224x224', '--format', 'json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy', 'torch.fx.experimental.symbolic_shapes') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


shapes = st.lists(st.sampled_from([0, 1, 2, 3]), max_size=4).map(tuple)


@given(a=shapes, b=shapes)
def test_broadcast_agrees_with_torch(a, b):
    try:
        expected = tuple(torch.broadcast_shapes(a, b))
    except RuntimeError:
        expected = None
    assert _broadcast(a, b) == expected
