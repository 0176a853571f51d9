"""The training step (`flops --mode train`): backward MACs against torch's FlopCounterMode, saved-tensor memory
against torch's own CPU allocator (profiler memory events), checkpointing against real torch.utils.checkpoint,
--freeze and --fit-memory against cases computed by hand."""

from __future__ import annotations

import gc
import math

import pytest
import torch
import torch.nn.functional as F
from cli_runner import one_error_line, run, run_json
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from models.corpus import CORPUS, IMAGENET
from spec_strategies import valid_specs
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from resnet_cli.analysis.checkpointing import checkpoint_segments, checkpointed
from resnet_cli.analysis.training import TrainSettings, activation_storages, training_report
from resnet_cli.model import build_model
from resnet_cli.spec import PRESETS, ModelRequest, request_from_flags
from resnet_cli.trace import trace_model
from resnet_cli.user_model import UserModelRequest

TINY = "tests/models/tiny_train.py"


def small_input(name: str) -> str:
    """A small input for a preset: 2 images at its CIFAR size or at 64x64 (ImageNet nets keep a 2x2 layer4)."""
    spec = PRESETS[name].spec
    side = 32 if spec.stem == "cifar" else 64
    return f"2x3x{side}x{side}"


def total(output) -> torch.Tensor:
    """A scalar to run backward from, whatever the model returns."""
    if isinstance(output, torch.Tensor):
        return output.float().sum()
    values = output.values() if isinstance(output, dict) else output
    return sum(total(v) for v in values)


def flop_counter_step(model: nn.Module, inputs: torch.Tensor) -> tuple[int, int]:
    """(FlopCounterMode's forward + backward FLOPs / 2, what it over-counts on grouped convolutions' weight
    gradients). Its conv_backward formula ignores `groups` for the weight gradient (it counts Cin, not Cin/groups,
    per output channel), so it counts groups x the forward MACs there; the excess is computed here in closed form
    from each grouped conv's shapes: (groups - 1) x N x Cout x Cin/groups x kH x kW x Hout x Wout."""
    excess = 0

    def grouped(module: nn.Conv2d, args: tuple, output: torch.Tensor) -> None:
        nonlocal excess
        if module.groups > 1 and module.weight.requires_grad:
            n, c_out, h, w = output.shape
            forward = n * c_out * (module.in_channels // module.groups) * math.prod(module.kernel_size) * h * w
            excess += (module.groups - 1) * forward

    handles = [m.register_forward_hook(grouped) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        model.train()
        with FlopCounterMode(display=False) as counter:
            total(model(inputs)).backward()
    finally:
        for handle in handles:
            handle.remove()
    return counter.get_total_flops() // 2, excess


@pytest.mark.parametrize("name", [n for n in PRESETS if n not in ("resnet1202", "preact_resnet1001")])
def test_step_macs_equal_flop_counter_mode_on_every_preset(name):
    request = request_from_flags(name, input=small_input(name))
    report = training_report(request, TrainSettings())
    model = build_model(request.spec, device="meta")
    expected, grouped_excess = flop_counter_step(model, torch.empty(request.input_shape, device="meta"))
    assert report.step_macs == expected - grouped_excess
    assert report.backward.weight_grad_macs == report.forward.conv_linear_macs  # nothing frozen


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet1202", "preact_resnet1001"])
def test_step_macs_equal_flop_counter_mode_on_the_deepest_presets(name):
    test_step_macs_equal_flop_counter_mode_on_every_preset(name)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(spec=valid_specs(), size=st.sampled_from([16, 24]), freeze_stages=st.sampled_from([None, 0, 1]))
def test_step_macs_equal_flop_counter_mode_on_drawn_specs(spec, size, freeze_stages):
    request = ModelRequest("custom", spec, (2, spec.in_channels, size, size))
    report = training_report(request, TrainSettings(freeze_stages=freeze_stages))
    model = build_model(spec, device="meta")
    if freeze_stages is not None:
        for name in report.frozen:
            model.get_submodule(name).requires_grad_(False)
    expected, grouped_excess = flop_counter_step(model, torch.empty(request.input_shape, device="meta"))
    assert report.step_macs == expected - grouped_excess


@pytest.mark.parametrize("entry", CORPUS, ids=[m.id for m in CORPUS])
def test_step_macs_equal_flop_counter_mode_on_the_model_corpus(entry):
    shape = (2, 3, 64, 64) if entry.input_shape == IMAGENET else (2, *entry.input_shape[1:])
    request = UserModelRequest(entry.reference, entry.kwargs, shape)
    report = training_report(request, TrainSettings())
    from resnet_cli.model import instantiate

    model, inputs = instantiate(request)
    expected, grouped_excess = flop_counter_step(model, inputs)
    assert report.step_macs == expected - grouped_excess


def test_step_is_three_forwards_less_the_first_convs_input_gradient():
    report = training_report(request_from_flags("resnet50"), TrainSettings())
    # the stem conv (7x7, 3 -> 64, stride 2, 224 -> 112): its input gradient is the only one not computed
    stem_conv = 1 * 64 * 3 * 7 * 7 * 112 * 112
    assert report.step_macs == 3 * report.forward.conv_linear_macs - stem_conv
    assert report.backward.input_grad_macs == report.forward.conv_linear_macs - stem_conv


# ---------------------------------------------------------------- --freeze on a case computed by hand


def test_freeze_on_a_tiny_model_computed_by_hand():
    # tiny_train.py:conv_net: conv a (3 -> 4, 3x3, pad 1) -> ReLU -> conv b (4 -> 4, 3x3, pad 1) -> ReLU -> global
    # mean -> fc (4 -> 2), on 1x3x8x8
    conv_a = 1 * 4 * 3 * 9 * 8 * 8  # 6,912
    conv_b = 1 * 4 * 4 * 9 * 8 * 8  # 9,216
    fc = 1 * 4 * 2  # 8
    request = UserModelRequest(f"{TINY}:conv_net", (), (1, 3, 8, 8))
    full = training_report(request, TrainSettings())
    assert full.forward.conv_linear_macs == conv_a + conv_b + fc
    # a: weight only (the image needs no gradient); b and fc: input and weight
    assert full.backward.macs == conv_a + 2 * conv_b + 2 * fc
    frozen = training_report(request, TrainSettings(freeze=("a",)))
    # a frozen: no gradient at all; b's input (from frozen a) needs none: weight only; fc both
    assert frozen.backward.macs == conv_b + 2 * fc
    assert frozen.backward.input_grad_macs == fc and frozen.backward.weight_grad_macs == conv_b + fc
    assert frozen.frozen == ["a"] and frozen.frozen_params == 4 * 3 * 9 + 4
    head_only = training_report(request, TrainSettings(freeze=("a", "b")))
    assert head_only.backward.macs == fc  # fc's weight; its input comes from frozen layers


def test_freeze_stages_agrees_with_flop_counter_mode():
    request = request_from_flags("resnet50", input="2x3x64x64")
    report = training_report(request, TrainSettings(freeze_stages=2))
    assert report.frozen == ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2"]
    model = build_model(request.spec, device="meta")
    for name in ("conv1", "bn1", "layer1", "layer2"):
        model.get_submodule(name).requires_grad_(False)
    expected, _ = flop_counter_step(model, torch.empty(request.input_shape, device="meta"))
    assert report.step_macs == expected
    assert report.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------- saved tensors against the CPU allocator


def allocated_during(step) -> tuple[int, int]:
    """(net bytes allocated, peak bytes allocated) on CPU while `step()` runs, from torch's profiler memory events."""
    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = step()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns())
    now = peak = 0
    for event in events:
        now += event.nbytes()
        peak = max(peak, now)
    del result
    return now, peak


@pytest.mark.parametrize(
    "name, shape, amp",
    [("resnet18", "4x3x64x64", None), ("resnet50", "2x3x64x64", None), ("resnet20", "8x3x32x32", None),
     ("preact_resnet164", "2x3x32x32", None), ("resnet18", "4x3x64x64", "bf16")],
)  # fmt: skip
def test_saved_bytes_equal_what_the_cpu_forward_pass_keeps_allocated(name, shape, amp, one_thread):
    request = request_from_flags(name, input=shape)
    report = training_report(request, TrainSettings(amp=amp))
    torch.manual_seed(0)
    model = build_model(request.spec).train()
    inputs = torch.randn(request.input_shape)
    kept = []

    def forward():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp is not None):
            output = model(inputs)
        kept.append(output)  # the graph and what it saved stay alive, as between forward and backward
        return None

    net, _ = allocated_during(forward)
    output_bytes = kept[0].untyped_storage().nbytes()
    # the allocator's net growth over the forward pass is exactly what autograd saved (the input batch was allocated
    # before) plus the output: to the byte
    assert net - output_bytes == report.memory.saved_bytes - report.memory.input_bytes
    if amp:
        # the bf16 casts of conv and linear weights are saved (not the fc bias's: addmm's backward does not need it)
        weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
        assert report.memory.weight_copy_bytes == 2 * weights


def test_training_step_peak_lies_within_the_reported_bounds(one_thread):
    # A real SGD-momentum step (zero_grad(set_to_none=True), the default) on CPU: its peak holds parameters, buffers,
    # momentum, the input and saved tensors, plus gradients as they are made while saved tensors are freed. The
    # report counts every gradient as held throughout, so the real peak is at most the report's total and at least
    # the total without gradients.
    request = request_from_flags("resnet18", input="8x3x64x64")
    report = training_report(request, TrainSettings(optimizer="sgd-momentum"))
    torch.manual_seed(0)
    model = build_model(request.spec).train()
    inputs, labels = torch.randn(request.input_shape), torch.randint(0, 1000, (8,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()

    step()  # creates the momentum buffers
    optimizer.zero_grad(set_to_none=True)
    held = sum(t.untyped_storage().nbytes() for t in (*model.parameters(), *model.buffers()))
    held += sum(s["momentum_buffer"].untyped_storage().nbytes() for s in optimizer.state.values())
    _, peak = allocated_during(step)
    real_peak = held + inputs.untyped_storage().nbytes() + peak
    memory = report.memory
    assert memory.param_bytes + memory.buffer_bytes + memory.optimizer_state_bytes == held
    assert memory.total_bytes - memory.grad_bytes <= real_peak <= memory.total_bytes


# ---------------------------------------------------------------- checkpointing against torch.utils.checkpoint


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "preact_resnet164", "resnext50_32x4d"])
@pytest.mark.parametrize("choice", ["block", "stage"])
def test_checkpoint_what_if_equals_really_checkpointed_pass(name, choice):
    request = request_from_flags(name, input=small_input(name))
    report = training_report(request, TrainSettings(checkpoint=choice))
    cost = next(c for c in report.checkpoints if c.choice == choice)
    model = build_model(request.spec, device="meta")
    inputs = torch.empty(request.input_shape, device="meta")
    segments = checkpoint_segments(model, choice)
    with checkpointed(model, segments):
        trace = trace_model(model, inputs, train=True, autograd=True)
    assert trace.ok
    assert cost.kept_bytes == sum(trace.storage_bytes[s] for s in activation_storages(trace))
    assert cost.segments == len(segments)
    assert "forward" not in model.__dict__ and all("forward" not in m.__dict__ for m in model.modules())
    # the MACs recomputing costs: FlopCounterMode over a really checkpointed step, less over a plain one (torch's
    # early stop: a pre-activation block's last conv, whose output nothing saves, is not run again)
    plain, _ = flop_counter_step(model, inputs)
    with checkpointed(model, segments):
        wrapped, _ = flop_counter_step(model, inputs)
    assert cost.extra_macs_conv_linear == wrapped - plain > 0


def test_checkpointed_cpu_forward_keeps_what_the_what_if_says(one_thread):
    request = request_from_flags("resnet18", input="4x3x64x64")
    report = training_report(request, TrainSettings(checkpoint="block"))
    cost = next(c for c in report.checkpoints if c.choice == "block")
    torch.manual_seed(0)
    model = build_model(request.spec).train()
    inputs = torch.randn(request.input_shape)
    kept = []
    with checkpointed(model, checkpoint_segments(model, "block")):
        net, _ = allocated_during(lambda: kept.append(model(inputs)))
    assert net - kept[0].untyped_storage().nbytes() == cost.kept_bytes - report.memory.input_bytes


def test_checkpointing_trades_memory_for_recomputed_forward_macs():
    report = training_report(request_from_flags("resnet50", input="8x3x224x224"), TrainSettings(checkpoint="block"))
    none, block, stage = report.checkpoints
    assert none.peak_saved_bytes == report.memory.saved_bytes and none.extra_macs == 0
    assert block.peak_saved_bytes < none.peak_saved_bytes and stage.peak_saved_bytes < none.peak_saved_bytes
    assert block.segments == 16 and stage.segments == 4
    assert block.extra_macs_conv_linear == stage.extra_macs_conv_linear  # every block, recomputed once either way
    assert report.memory.peak_saved_bytes == block.peak_saved_bytes


# ---------------------------------------------------------------- --fit-memory on a case computed by hand


def test_fit_memory_on_a_case_computed_by_hand():
    # tiny_train.py:mlp: Linear(64, 128) -> ReLU -> Linear(128, 10) on N x 64. Autograd keeps the input (N x 64) and
    # the ReLU output (N x 128, which the second linear saves too: one block), float32: 768 bytes per sample, nothing
    # per batch. State: params P = 64*128 + 128 + 128*10 + 10 = 9,610; with Adam, params + grads + 2 moments = 16 P.
    params = 64 * 128 + 128 + 128 * 10 + 10
    state = 16 * params
    per_sample = 4 * (64 + 128)
    budget = 1_000_000
    expected = (budget - state) // per_sample  # 1,101
    request = UserModelRequest(f"{TINY}:mlp", (), (4, 64))
    report = training_report(request, TrainSettings(optimizer="adam", fit_memory=budget))
    assert report.memory.state_bytes == state
    assert report.memory.saved_bytes == 4 * per_sample
    assert report.fit.per_sample_bytes == per_sample and report.fit.fixed_bytes == state
    assert report.fit.batch == expected == 1_101
    assert report.fit.bytes_at_batch == state + expected * per_sample <= budget < report.fit.bytes_at_next
    assert all(line == measured for _, line, measured in report.fit.checks)


def test_fit_memory_when_not_even_one_sample_fits():
    request = UserModelRequest(f"{TINY}:mlp", (), (4, 64))
    report = training_report(request, TrainSettings(fit_memory=1000))
    assert report.fit.batch == 0 and report.fit.bytes_at_batch is None


# ---------------------------------------------------------------- the command


def test_flops_train_json_totals_add_up():
    data = run_json("flops", "resnet50", "--mode", "train", "--input", "2x3x64x64", "--checkpoint", "stage")
    totals, memory = data["totals"], data["memory"]
    assert data["mode"] == "train" and data["settings"]["checkpoint"] == "stage"
    assert totals["step_macs_conv_linear"] == totals["forward_macs_conv_linear"] + totals["backward_macs_conv_linear"]
    assert sum(s["backward_macs_conv_linear"] for s in data["by_stage"].values()) == totals["backward_macs_conv_linear"]
    assert sum(s["saved_bytes"] for s in data["by_stage"].values()) == memory["saved_bytes"]
    assert memory["total_bytes"] == memory["state_bytes"] + memory["peak_saved_bytes"]
    assert [c["choice"] for c in data["checkpointing"]] == ["none", "block", "stage"]
    assert 2.9 < totals["step_to_forward"] < 3


def test_flops_train_table_names_what_is_not_counted():
    result = run("flops", "resnet18", "--mode", "train", "--input", "2x3x64x64")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "backward not counted (not conv or matrix products): add x8, max_pool2d_with_indices x1" in text
    assert "native_batch_norm x20" in text and "not 3" in text
    assert "Gradient checkpointing side by side" in text


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mode", "train", "--checkpoint", "sometimes"], "'sometimes' is not one of 'none', 'block', 'stage'"),
        (["--mode", "train", "--fit-memory", "12XB"], "--fit-memory '12XB': unknown unit 'XB'"),
        (["--mode", "train", "--fit-memory", "16"], "--fit-memory '16' has no unit; give a number and a unit: 16GiB"),
        (["--mode", "train", "--freeze", "nosuchmodule"], "--freeze 'nosuchmodule' names no module; valid: conv1,"),
        (["--mode", "train", "--freeze-stages", "5"], "--freeze-stages 5: the model has 4 stages; give 0 to 4"),
        (["--mode", "train", "--counter", "fvcore"], "fvcore does not count backward passes"),
        (["--mode", "train", "--amp", "bf16", "--dtype", "float16"], "--amp bf16 with --dtype float16"),
        (["--checkpoint", "block"], "--checkpoint applies to the training step; add --mode train"),
        (["--optimizer", "adam"], "--optimizer applies to the training step; add --mode train"),
        (["--mode", "train", "--freeze", "conv1,bn1,layer1,layer2,layer3,layer4,fc"], "no trainable parameters"),
    ],
)
def test_bad_training_options_exit_2_with_one_line(args, message):
    result = run("flops", "resnet18", *args)
    assert result.exit_code == 2
    assert message in one_error_line(result)


def test_checkpoint_needs_stages():
    result = run("flops", f"{TINY}:conv_net", "--input", "1x3x8x8", "--mode", "train", "--checkpoint", "block")
    assert result.exit_code == 2
    assert "no recognisable stages" in one_error_line(result)


def test_no_grad_in_forward_gets_no_backward_and_no_gradient_memory():
    # tiny_train.py:probe: the backbone runs under torch.no_grad(); only the head (8 -> 2, with bias) trains
    request = UserModelRequest(f"{TINY}:probe", (), (4, 3, 8, 8))
    report = training_report(request, TrainSettings())
    from resnet_cli.model import instantiate

    model, inputs = instantiate(request)
    expected, _ = flop_counter_step(model, inputs)
    assert report.step_macs == expected
    assert report.backward.macs == 4 * 8 * 2  # the head's weight gradient; its input needs none
    assert report.memory.grad_bytes == 4 * (8 * 2 + 2)


def test_stage_rows_add_up_with_functional_code_in_the_models_own_forward():
    data = run_json("flops", "tests/models/cifar_resnet.py:ResNet18", "--mode", "train", "--input", "2x3x32x32")
    stages = data["by_stage"]
    assert "(own forward)" in stages  # F.relu(self.bn1(self.conv1(x))) in the model's forward saves its output
    assert sum(s["saved_bytes"] for s in stages.values()) == data["memory"]["saved_bytes"]
    assert sum(s["backward_macs_conv_linear"] for s in stages.values()) == data["totals"]["backward_macs_conv_linear"]


def test_block_checkpointing_finds_the_blocks_inside_a_wide_resnet_stage_wrapper():
    from resnet_cli.user_model import build_user_model

    model = build_user_model(UserModelRequest("tests/models/wide_resnet.py:wrn_16_4", (), (1, 3, 32, 32)))
    assert checkpoint_segments(model, "stage") == ["block1", "block2", "block3"]
    assert checkpoint_segments(model, "block") == [f"block{s}.layer.{b}" for s in (1, 2, 3) for b in (0, 1)]


def test_a_train_override_that_keeps_batch_norm_in_eval_is_honoured():
    # at 4x4, layer3's map is 1x1: batch norm with batch statistics over one value per channel cannot run, in eval
    # mode (the override) it can
    frozen = run("flops", "docs/examples/train_frozen_bn.py:frozen_bn_resnet", "--input", "1x3x4x4", "--mode", "train")
    assert frozen.exit_code == 0, frozen.output
    healthy = run("flops", "docs/examples/healthy_resnet.py:small_resnet", "--input", "1x3x4x4", "--mode", "train")
    assert healthy.exit_code == 2
    assert "batch norm in training mode needs more than one value per channel" in one_error_line(healthy)
