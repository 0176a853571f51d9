"""Shape-only answers on meta: the same records, counts, shapes, dtypes and strides as torch's meta kernels, and no
torch._dynamo."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models.corpus import CORPUS
from spec_strategies import valid_specs
from torch import nn

from resnet_cli import meta_shapes, trace
from resnet_cli.analysis.counting import count_trace
from resnet_cli.meta_shapes import _broadcast
from resnet_cli.model import build_model, instantiate
from resnet_cli.spec import PRESETS, ResNetSpec
from resnet_cli.trace import make_input, trace_model
from resnet_cli.user_model import UserModelRequest


def _layout(value):
    tensors = value if isinstance(value, (tuple, list)) else (value,)
    return [(tuple(t.shape), t.stride(), t.dtype) for t in tensors if isinstance(t, torch.Tensor)]


@contextlib.contextmanager
def checked_answers():
    """Within it, every operator answered from shapes is also run by torch's own meta kernel, and both must agree
    on shapes, strides and dtypes. Yields the list of operators answered."""
    answered = []

    def answer(func, args, kwargs):
        result = meta_shapes.answer_from_shapes(func, args, kwargs)
        if result is not None:
            assert _layout(result) == _layout(func(*args, **kwargs)), func
            answered.append(func)
        return result

    original = trace.answer_from_shapes
    trace.answer_from_shapes = answer
    try:
        yield answered
    finally:
        trace.answer_from_shapes = original


def run_on_meta(spec: ResNetSpec | str, shape: tuple[int, ...], fast: bool, dtype=torch.float32):
    """Build and trace on meta, with or without shape-only answers; records, MACs and every operator's outputs."""
    model = build_model(spec, device="meta").to(dtype)
    traced = trace_model(model, make_input(shape, "meta", dtype), shape_only=fast)
    assert traced.ok, traced.error
    count = count_trace(model, traced)
    records = [(r.name, r.output_shapes, r.output_dtypes, r.params, r.output_bytes) for r in traced.records]
    ops = [(o.op, o.overload, o.module, o.output_shapes, o.output_dtypes, o.input_from) for o in traced.ops]
    return records, ops, count.by_module_and_operator


def assert_same_on_meta(spec, shape, dtype=torch.float32):
    with checked_answers() as answered:
        fast = run_on_meta(spec, shape, True, dtype)
    assert answered, "no operator was answered from shapes"
    assert fast == run_on_meta(spec, shape, False, dtype)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_traces_identically(name):
    shape = (1, 3, 16, 16) if name == "resnet1202" else (2, 3, 64, 64)
    assert_same_on_meta(name, shape)


def test_bfloat16_and_odd_sizes_trace_identically():
    assert_same_on_meta("resnext50_32x4d", (1, 3, 61, 47), torch.bfloat16)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=valid_specs(), size=st.integers(1, 40), batch=st.integers(1, 3))
def test_drawn_specs_trace_identically(spec, size, batch):
    shape = (batch, spec.in_channels, size, size)
    model = build_model(spec, device="meta")
    if not trace_model(model, make_input(shape), shape_only=False).ok:
        return  # too small for this spec: both fail (test_invalid_inputs_still_raise)
    assert_same_on_meta(spec, shape)


def test_channels_last_batch_norm_keeps_the_kernels_strides():
    bn = nn.BatchNorm2d(6, device="meta")
    x = make_input((2, 6, 5, 7), "meta").to(memory_format=torch.channels_last)
    with checked_answers():  # answered from shapes only where the layout is the kernel's; checked if so
        assert trace_model(bn, x, shape_only=True).ok


class Multiply(nn.Module):
    def forward(self, x):
        return x * make_input((2, 5, 1, 1))


@pytest.mark.parametrize(
    ("module", "shape"),
    [
        (nn.Conv2d(4, 8, 3, device="meta"), (1, 3, 8, 8)),  # wrong input channels
        (nn.Conv2d(4, 8, 3, groups=2, device="meta"), (1, 2, 8, 8)),
        (nn.Conv2d(3, 8, 7, device="meta"), (1, 3, 4, 4)),  # output smaller than 1
        (nn.MaxPool2d(3, 2), (1, 3, 1, 1)),
        (nn.AvgPool2d(4, 4), (1, 3, 2, 2)),
        (nn.BatchNorm2d(5, device="meta"), (1, 3, 4, 4)),
        (nn.Linear(7, 2, device="meta"), (2, 6)),
        (Multiply(), (2, 3, 4, 4)),  # broadcasting impossible
    ],
)
def test_invalid_inputs_still_raise(module, shape):
    traced = trace_model(module, make_input(shape), shape_only=True)
    assert isinstance(traced.error, RuntimeError)


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


@pytest.mark.parametrize("entry", CORPUS, ids=[m.id for m in CORPUS])
def test_corpus_models_trace_identically(entry):
    """Real-world code (expand_as, split, cat, views, functional calls): every answer from shapes is torch's."""
    model, inputs = instantiate(UserModelRequest(entry.reference, entry.kwargs, entry.input_shape))
    with checked_answers():
        fast = trace_model(model, inputs, shape_only=True)
    slow = trace_model(model, inputs, shape_only=False)
    assert fast.ok and slow.ok
    assert [(o.op, o.output_shapes, o.output_dtypes) for o in fast.ops] == [
        (o.op, o.output_shapes, o.output_dtypes) for o in slow.ops
    ]


def test_counting_the_corpus_never_imports_dynamo_or_sympy():
    script = (
        "import sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from models.corpus import CORPUS\n"
        "from resnet_cli.analysis.counting import count_request\n"
        "from resnet_cli.user_model import UserModelRequest\n"
        "for e in CORPUS:\n"
        "    count_request(UserModelRequest(e.reference, e.kwargs, e.input_shape))\n"
        "print(sorted(m for m in ('torch._dynamo', 'sympy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


class Coordinates(nn.Module):
    """Integer arithmetic that promotes (CoordConv-style channels): only floating operands are answered from shapes."""

    def forward(self, x):
        w = x.shape[-1]
        ramp = torch.arange(w, device=x.device) / w + torch.arange(w, device=x.device) * 2.5
        return x + ramp.sqrt().sigmoid()


def test_integer_operands_keep_torchs_promotion():
    with checked_answers():
        fast = trace_model(Coordinates(), make_input((1, 2, 4, 5)), shape_only=True)
    slow = trace_model(Coordinates(), make_input((1, 2, 4, 5)), shape_only=False)
    assert fast.ok and [o.output_dtypes for o in fast.ops] == [o.output_dtypes for o in slow.ops]
    assert fast.records[0].output_dtypes == ("float32",)
