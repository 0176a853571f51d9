"""The hook tracer: records, failure capture, and leaving the model as it was found."""

from __future__ import annotations

import sys

import torch
from torch import nn

from resnet_cli import build_model
from resnet_cli.trace import ForwardExit, make_input, trace_model


def hook_counts(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_records_follow_call_order_with_parents():
    model = build_model("resnet18", device="meta")
    trace = trace_model(model, make_input((1, 3, 224, 224)))
    names = [r.name for r in trace.records[:8]]
    assert names == ["", "conv1", "bn1", "relu", "maxpool", "layer1", "layer1.0", "layer1.0.conv1"]
    block = next(r for r in trace.records if r.name == "layer1.0")
    assert [c.name for c in trace.children(block)] == [
        "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu1", "layer1.0.dropout", "layer1.0.conv2", "layer1.0.bn2",
        "layer1.0.se", "layer1.0.drop_path", "layer1.0.downsample", "layer1.0.relu2",
    ]  # fmt: skip
    assert block.depth == 2 and block.params == 2 * (64 * 64 * 9 + 128)


def test_in_place_and_identity_outputs_are_not_counted_as_new_memory():
    model = build_model("resnet18", device="meta")
    trace = trace_model(model, make_input((1, 3, 224, 224)))
    by_name = {r.name: r for r in trace.records}
    assert by_name["conv1"].output_bytes == 64 * 112 * 112 * 4
    assert by_name["relu"].output_bytes == 0
    assert by_name["layer1.0.downsample"].output_bytes == 0


def test_hooks_removed_and_mode_restored_after_success():
    model = build_model("resnet18", device="meta").train()
    trace_model(model, make_input((1, 3, 64, 64)))
    assert hook_counts(model) == 0
    assert all(m.training for m in model.modules())


class ChannelMismatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3)
        self.body = nn.Sequential(nn.Conv2d(16, 32, 3), nn.Conv2d(16, 8, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x))


def test_failure_is_returned_with_the_unfinished_stack():
    model = ChannelMismatch().eval()
    trace = trace_model(model, torch.randn(1, 3, 16, 16))
    assert not trace.ok
    assert isinstance(trace.error, RuntimeError)
    assert [r.name for r in trace.unfinished] == ["", "body", "body.1"]
    failing = trace.unfinished[-1]
    assert failing.input_shapes == ((1, 32, 12, 12),)
    assert [c.name for c in trace.children(trace.unfinished[1])] == ["body.0", "body.1"]
    assert hook_counts(model) == 0 and not model.training


def test_repeated_module_calls_are_recorded_once_per_call():
    relu = nn.ReLU()
    model = nn.Sequential(nn.Linear(4, 4), relu, nn.Linear(4, 4), relu)
    trace = trace_model(model, torch.randn(2, 4))
    calls = [r for r in trace.records if r.type == "ReLU"]
    assert [r.call_index for r in calls] == [0, 1]
    assert [r.name for r in calls] == ["1", "1"]
    assert len(trace.first_calls()) == 4


def test_meta_trace_needs_no_memory_for_huge_inputs():
    model = build_model("resnet152", device="meta")
    trace = trace_model(model, make_input((256, 3, 1024, 1024)))
    assert trace.ok and trace.records[0].output_shape == (256, 1000)



def test_each_input_names_the_call_that_produced_it():
    trace = trace_model(build_model("resnet18", device="meta"), make_input((1, 3, 64, 64)))
    by_name = {r.name: r for r in trace.records}
    assert by_name[""].input_from == (None,)  # the model's input
    assert trace.records[by_name["bn1"].input_from[0]].name == "conv1"
    assert trace.records[by_name["layer1"].input_from[0]].name == "maxpool"


class Concat(nn.Module):
    """Functional code in a container: relu, a split, a cat and a view, none of them modules."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(torch.relu(self.conv(x)), 2, dim=1)
        return torch.cat((b, a), 1).view(x.shape[0], -1)


def test_operators_record_their_module_function_and_producers():
    trace = trace_model(Concat(), make_input((2, 3, 5, 5)))
    names = [f.name for f in trace.functions]
    assert names == ["F.conv2d", "torch.relu", "torch.split", "torch.cat", "Tensor.view"]
    cat = next(op for op in trace.ops if op.op == "cat")
    split = next(op for op in trace.ops if op.op == "split")
    assert cat.args[0] == ((((2, 2, 5, 5), "float32"),) * 2)  # a list of tensors, as shapes
    assert cat.input_from == (split.order, split.order)  # both operands came out of the split
    conv = next(op for op in trace.ops if op.op == "convolution")
    assert trace.records[conv.module].name == "conv" and trace.records[cat.module].name == ""
    view = trace.functions[-1]
    assert view.output_shapes == ((2, 100),) and view.input_from[0].kind == "function"


def test_a_failing_operator_is_recorded_with_its_operands():
    class Mismatch(nn.Module):
        def forward(self, x):
            return torch.cat((x, x[:, :, :-1]), 1)

    trace = trace_model(Mismatch(), make_input((1, 2, 4, 4)))
    assert not trace.ok
    cat = trace.functions[-1]
    assert cat.name == "torch.cat" and not cat.finished
    assert cat.input_shapes == ((1, 2, 4, 4), (1, 2, 3, 4))


def test_functional_activations_count_once_each():
    """relu is functional here (not in-place): its output is an activation no module returns; the view is free."""
    trace = trace_model(Concat(), make_input((2, 3, 5, 5)))
    conv_out = 2 * 4 * 5 * 5 * 4  # bytes, returned by the conv module
    relu_out = cat_out = 2 * 4 * 5 * 5 * 4  # new tensors made by torch calls; split gives views, view is free
    assert trace.activation_bytes == conv_out + relu_out + cat_out
    assert [f.output_bytes for f in trace.functions if f.output_bytes] == [relu_out, cat_out]


class Chain(nn.Module):
    """Temporaries that die at once, so their ids are reused by the next ones."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(5):
            x = torch.relu(x + 1)
        return x


def test_every_temporary_counts_once_even_when_its_id_is_reused():
    trace = trace_model(Chain(), make_input((2, 3, 4, 4)))
    assert trace.activation_bytes == 10 * 2 * 3 * 4 * 4 * 4  # 5 adds + 5 relus, the last returned by the model
    assert trace.records[0].output_bytes == 2 * 3 * 4 * 4 * 4


class ExitsInForward(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sys.exit(3)


def test_sys_exit_in_forward_is_returned_as_the_error_not_raised():
    model = ExitsInForward()
    trace = trace_model(model, make_input((1, 3, 4, 4)))
    assert isinstance(trace.error, ForwardExit) and str(trace.error) == "called sys.exit(3)"
    assert isinstance(trace.error.__cause__, SystemExit)
    assert [r.name for r in trace.unfinished] == [""]
    assert hook_counts(model) == 0 and model.training


class SideEffectsInTrain(nn.Module):
    """A train() override that freezes a layer, and a forward that notes the mode it ran in."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.modes: list[bool] = []

    def train(self, mode: bool = True) -> SideEffectsInTrain:
        self.conv.weight.requires_grad_(mode)
        return super().train(mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.conv.training)
        return self.conv(x)


def test_modes_are_set_and_restored_without_calling_train():
    model = SideEffectsInTrain()
    trace_model(model, make_input((1, 3, 4, 4)))
    trace_model(model, make_input((1, 3, 4, 4)), train=True)
    assert model.modes == [False, True]
    assert model.conv.weight.requires_grad and model.training and model.conv.training


def test_print_in_forward_goes_to_stderr(capsys):
    class Loud(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            print("chatter")
            return x + 1

    stdout = sys.stdout
    assert trace_model(Loud(), make_input((1, 3, 4, 4))).ok
    print("after")
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("after\n", "chatter\n")
    assert sys.stdout is stdout
