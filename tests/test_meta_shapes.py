"""Shape-only answers on meta: the same records, counts, shapes, dtypes and strides as torch's meta kernels, and no
torch._dynamo."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

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
from resnet_cli.spec import PRESETS, ResNetSpec, request_from_flags
from resnet_cli.trace import make_input, trace_model
from resnet_cli.user_model import UserModelRequest

TESTS = Path(__file__).resolve().parent


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


def run_on_meta(model: nn.Module, shape: tuple[int, ...], fast: bool, dtype=torch.float32):
    """Trace on meta, with or without shape-only answers; records, MACs and every operator's outputs."""
    traced = trace_model(model, make_input(shape, "meta", dtype), shape_only=fast)
    assert traced.ok, traced.error
    count = count_trace(model, traced)
    records = [(r.name, r.output_shapes, r.output_dtypes, r.params, r.output_bytes) for r in traced.records]
    ops = [(o.op, o.overload, o.module, o.output_shapes, o.output_dtypes, o.input_from) for o in traced.ops]
    return records, ops, count.by_module_and_operator


def assert_same_on_meta(spec: ResNetSpec | str, shape: tuple[int, ...], dtype=torch.float32):
    model = build_model(spec, device="meta").to(dtype)  # built once: tracing leaves it as it was
    with checked_answers() as answered:
        fast = run_on_meta(model, shape, True, dtype)
    assert answered, "no operator was answered from shapes"
    assert fast == run_on_meta(model, shape, False, dtype)


@pytest.mark.parametrize(
    "name",
    # resnet1202 is resnet110 with 200 blocks a stage: ~7 s of per-operator work at any input size
    [pytest.param(name, marks=pytest.mark.slow) if name == "resnet1202" else name for name in sorted(PRESETS)],
)
def test_every_preset_traces_identically(name):
    shape = (1, 3, 16, 16) if name == "resnet1202" else (2, 3, 64, 64)
    assert_same_on_meta(name, shape)


def test_bfloat16_and_odd_sizes_trace_identically():
    assert_same_on_meta("resnext50_32x4d", (1, 3, 61, 47), torch.bfloat16)


@pytest.mark.parametrize(
    ("model", "flags"),
    [
        ("resnet18", dict(input="1x3x64x64")),
        ("resnext50_32x4d", dict(input="2x3x96x96", dtype="bfloat16")),
        ("resnet50", dict(se=True, stem="deep", avg_down=True, dilate_stages="3,4", input="1x3x80x80")),
        ("resnet20", dict(drop_path=0.1, zero_init_residual=True)),
        ("resnet50", dict(stride_on="1x1", shortcut="C", input="2x3x61x47")),  # odd sizes: floor
        ("resnet18", dict(shortcut="A", stem="cifar", input="1x3x33x35")),
    ],
)  # fmt: skip
def test_build_flags_trace_identically(model, flags):
    """The variants `sweep` and the other commands count from shapes only, as the flags build them."""
    request = request_from_flags(model, **flags)
    assert_same_on_meta(request.spec, request.input_shape, getattr(torch, request.dtype))


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


@pytest.fixture(scope="module")
def imported_in_a_fresh_process() -> dict[str, list[str]]:
    """In one fresh interpreter (each one imports torch anew, seconds): `flops` on meta, then counting the corpus;
    which of dynamo, sympy and symbolic shapes each step left imported."""
    script = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(TESTS)!r})\n"
        "def imported(*names):\n"
        "    return sorted(name for name in names if name in sys.modules)\n"
        "from cli_runner import run_json\n"
        "run_json('flops', 'resnet152', '--input', '64x3x224x224')\n"
        "flops = imported('torch._dynamo', 'sympy', 'torch.fx.experimental.symbolic_shapes')\n"
        "from models.corpus import CORPUS\n"
        "from resnet_cli.analysis.counting import count_request\n"
        "from resnet_cli.user_model import UserModelRequest\n"
        "for e in CORPUS:\n"
        "    count_request(UserModelRequest(e.reference, e.kwargs, e.input_shape))\n"
        "print(json.dumps({'flops': flops, 'corpus': imported('torch._dynamo', 'sympy')}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=TESTS.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_flops_on_meta_never_imports_dynamo_or_sympy(imported_in_a_fresh_process):
    assert imported_in_a_fresh_process["flops"] == []


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


def test_counting_the_corpus_never_imports_dynamo_or_sympy(imported_in_a_fresh_process):
    assert imported_in_a_fresh_process["corpus"] == []


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
