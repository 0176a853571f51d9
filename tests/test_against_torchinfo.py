"""The tracer's per-layer records agree with torchinfo, the reference for shapes and params."""

from __future__ import annotations

import pytest
import torchinfo

from resnet_cli import build_model
from resnet_cli.trace import make_input, trace_model

CASES = [
    ("resnet18", {}, (1, 3, 224, 224)),
    ("resnet50", {}, (2, 3, 160, 160)),
    ("resnext50_32x4d", {}, (1, 3, 224, 224)),
    ("resnet20", {}, (1, 3, 32, 32)),
    ("resnet50", {"se": True, "stem": "deep", "avg_down": True, "dilate_stages": (3, 4)}, (1, 3, 96, 96)),
    ("resnet18", {"shortcut": "C", "num_classes": 7, "in_channels": 1}, (1, 1, 64, 48)),
]


@pytest.mark.parametrize(("name", "flags", "shape"), CASES)
def test_layers_match_torchinfo_call_by_call(name, flags, shape):
    model = build_model(name, device="meta", **flags)
    reference = torchinfo.summary(model, input_size=shape, device="meta", verbose=0, depth=100)
    trace = trace_model(model, make_input(shape))
    modules = dict(model.named_modules())
    ours = [(type(modules[r.name]).__name__, r.depth, list(r.output_shape)) for r in trace.records]
    theirs = [(type(info.module).__name__, info.depth, list(info.output_size)) for info in reference.summary_list]
    assert ours == theirs
    assert trace.records[0].params == reference.total_params
    # ResNets call every module once, so params line up call by call
    assert [r.params for r in trace.records] == [info.num_params for info in reference.summary_list]
