"""debug-training: each training problem found on a broken model of its own (docs/examples/train_*.py), no false
alarm on the presets and the model corpus, and the model left exactly as it was found."""

from __future__ import annotations

import json

import pytest
import torch
from cli_runner import one_error_line, run
from models.corpus import CORPUS, IMAGENET
from torch import nn

from resnet_cli.analysis.train_diagnosis import diagnose_training
from resnet_cli.analysis.train_diagnosis.rules import EXPLODING_RATIO, RULES, VANISHING_RATIO
from resnet_cli.model import build_model
from resnet_cli.render.debug_training import KIND_TITLES
from resnet_cli.spec import PRESETS

E = "docs/examples/"
CIFAR_BATCH = "8x3x32x32"

pytestmark = pytest.mark.usefixtures("one_thread")


def findings_of(*args: str) -> tuple[int, dict]:
    result = run("debug-training", *args, "--format", "json")
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize(
    ("reference", "extra", "kind", "modules"),
    [
        ("train_no_residual.py:plain_resnet", (), "residual_disabled", ["layer1.0", "layer3.8"]),
        ("train_zero_init.py:zeroed_resnet", (), "zero_weights", ["bn1", "layer1.0.bn1", "layer3.1.bn2"]),
        ("train_no_gradient.py:cut_resnet", (), "no_gradient", ["aux_head"]),
        ("train_dead_relu.py:dead_resnet", (), "dead_relu", ["relu"]),
        ("train_saturated_gate.py:se_resnet", (), "saturated_gate", ["layer1.0.gate", "layer3.1.gate"]),
        ("train_frozen_bn.py:frozen_bn_resnet", (), "batch_norm_eval", ["bn1", "layer3.1.bn2"]),
        ("train_zero_init_missing.py:resnet", ("--arg", "zero_init_residual=True"), "zero_init_missing",
         ["layer1.0.bn2", "layer3.1.bn2"]),
        ("train_plain_deep.py:plain_net", (), "gradients_vanish", ["layer1", "layer3"]),
    ],
)  # fmt: skip
def test_each_problem_is_found_on_its_broken_model(reference, extra, kind, modules):
    code, data = findings_of(E + reference, "--input", CIFAR_BATCH, *extra)
    assert code == 1 and not data["ok"]
    found = [f for f in data["findings"] if f["kind"] == kind]
    assert found, [f["kind"] for f in data["findings"]]
    assert set(modules) <= {m for f in found for m in f["modules"]}
    assert all(f["evidence"] and f["why"] and f["fix"] for f in found)


def test_bad_init_flags_exactly_the_convs_more_than_10x_off_kaiming():
    # every conv drawn from N(0, 1): std 1 is more than 10x above both Kaiming scales, sqrt(2 / (Cin k k)) and
    # sqrt(2 / (Cout k k)), when Cin k k > 200 and Cout k k > 200: the 3x3 convs from 32 to 32 or more channels
    _, data = findings_of(E + "train_bad_init.py:badly_initialised", "--input", CIFAR_BATCH)
    finding = next(f for f in data["findings"] if f["kind"] == "init_scale")
    convs = [(f"layer{s}.{b}.conv{c}", cin, cout) for s, (w_in, w) in ((1, (16, 16)), (2, (16, 32)), (3, (32, 64)))
             for b in (0, 1) for c, cin, cout in ((1, w_in if b == 0 else w, w), (2, w, w))]  # fmt: skip
    expected = [name for name, cin, cout in convs if min(cin, cout) * 9 > 200]
    assert expected == ["layer2.0.conv2", "layer2.1.conv1", "layer2.1.conv2", "layer3.0.conv1", "layer3.0.conv2",
                        "layer3.1.conv1", "layer3.1.conv2"]  # fmt: skip
    assert finding["modules"] == expected


def test_the_detach_is_located_in_the_users_code():
    _, data = findings_of(E + "train_no_gradient.py:cut_resnet", "--input", CIFAR_BATCH)
    cut = [f for f in data["findings"] if f["kind"] == "no_gradient" and "layer1.0.conv1" in f["modules"]]
    assert cut and ".detach() in the model at docs/examples/train_no_gradient.py:" in cut[0]["evidence"]


def test_a_missing_residual_add_shows_in_the_data_flow_and_the_unused_shortcut():
    _, data = findings_of(E + "train_no_residual.py:plain_resnet", "--input", CIFAR_BATCH)
    finding = next(f for f in data["findings"] if f["kind"] == "residual_disabled")
    assert finding["evidence"].startswith("27 of 27 blocks (ForgetfulBlock) return no residual sum")
    assert "their shortcut runs but its output reaches nothing the block returns (layer2.0.downsample" in finding["evidence"]
    assert "train_no_residual.py:10 (ForgetfulBlock.forward)" in finding["fix"]


def test_zero_init_residual_is_recognised_as_intended():
    code, data = findings_of("resnet50", "--zero-init-residual", "--input", "8x3x64x64")
    assert code == 0 and data["findings"] == []
    assert any("zero-initialised on purpose: the last layer of 16 residual blocks" in n for n in data["notes"])


def test_a_classifier_of_zeros_is_not_zero_init_residual():
    code, data = findings_of("resnet18", "--input", "8x3x64x64", "--num-classes", "10")
    assert code == 0
    model = build_model("resnet18", num_classes=10)
    nn.init.zeros_(model.layer1[0].conv1.weight)
    report = diagnose_training(model, torch.randn(8, 3, 64, 64))
    zero = next(f for f in report.findings if f.kind == "zero_weights")
    assert zero.modules == ("layer1.0.conv1",)


@pytest.mark.parametrize("name", [n for n in PRESETS if n not in ("resnet1202", "preact_resnet1001", "resnet152",
                                                                   "resnext101_64x4d", "wide_resnet101_2")])  # fmt: skip
def test_no_false_alarm_on_presets(name):
    side = 32 if PRESETS[name].spec.stem == "cifar" else 64
    code, data = findings_of(name, "--input", f"8x3x{side}x{side}")
    assert code == 0, data["findings"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet152", "preact_resnet1001"])
def test_no_false_alarm_on_the_deepest_presets_at_their_natural_size(name):
    # at the natural size (224x224 for resnet152, 32x32 for preact_resnet1001), two images (eight take 4-5x as long
    # and find the same): resnet152's gradient at layer1 is about 300x layer4's and preact_resnet1001's about 940x,
    # healthy for post- and pre-activation ResNets, well within EXPLODING_RATIO
    code, data = findings_of(name, "--input", "2x3x224x224" if name == "resnet152" else "2x3x32x32")
    assert code == 0, data["findings"]
    rows = [r for r in data["rows"] if r["depth"] == 1]
    assert 1 < rows[0]["grad_rms"] / rows[-1]["grad_rms"] < EXPLODING_RATIO


@pytest.mark.parametrize("entry", CORPUS, ids=[m.id for m in CORPUS])
def test_no_false_alarm_on_the_model_corpus(entry):
    side = 64 if entry.input_shape == IMAGENET else entry.input_shape[-1]
    args = [a for key, value in entry.kwargs for a in ("--arg", f"{key}={value!r}")]
    if "features" in entry.reference:  # returns feature maps, not logits
        args += ["--loss", "mse"]
    code, data = findings_of(entry.reference, "--input", f"8x3x{side}x{side}", *args)
    assert code == 0, data["findings"]


def test_healthy_example_passes_and_shows_scales():
    code, data = findings_of(E + "healthy_resnet.py:small_resnet", "--input", CIFAR_BATCH)
    assert code == 0 and data["ok"]
    stages = [r for r in data["rows"] if r["depth"] == 1]
    assert [r["name"] for r in stages] == ["layer1", "layer2", "layer3"]
    assert all(r["output_rms"] > 0 and r["grad_rms"] > 0 and 0 < r["residual_share"] < 1 for r in stages)


def test_the_model_is_left_exactly_as_it_was_found():
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=10)
    model.train()
    model.layer2.eval()  # a mixed state, as a user may leave it
    for module in model.modules():  # running statistics away from their 0 / 1 start
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
    model.fc.weight.grad = torch.ones_like(model.fc.weight)  # a gradient from before
    hook = model.layer1.register_forward_hook(lambda *args: None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {name: m.training for name, m in model.named_modules()}
    grads = {name: p.grad for name, p in model.named_parameters()}
    hooks = {name: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
             for name, m in model.named_modules()}  # fmt: skip
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    report = diagnose_training(model, torch.randn(8, 3, 32, 32))
    assert report.loss_value is not None
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert all(p.grad is grads[name] for name, p in model.named_parameters())
    assert {name: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for name, m in model.named_modules()} == hooks  # fmt: skip
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    hook.remove()


def test_every_finding_kind_has_a_title():
    import inspect

    from resnet_cli.analysis.train_diagnosis import rules

    source = inspect.getsource(rules)
    kinds = {k for k in KIND_TITLES}
    for rule in (*RULES, rules.step_failed):
        for literal in inspect.getsource(rule).split('"'):
            if literal in ("residual_disabled", "zero_weights", "init_scale", "activation_scale", "no_gradient",
                           "frozen", "dead_relu", "saturated_gate", "batch_norm_eval", "zero_init_missing",
                           "step_failed", "batch_norm_single_value"):  # fmt: skip
                assert literal in kinds
    assert "gradients_{direction}" in source and {"gradients_vanish", "gradients_explode"} <= kinds
    assert VANISHING_RATIO == 100 and EXPLODING_RATIO == 10_000  # the figures docs/debug-training.md states


def test_a_step_that_fails_is_a_finding_with_exit_1():
    # batch 1 and layer4 at 1x1: batch norm in training mode has one value per channel
    code, data = findings_of("resnet18", "--input", "1x3x32x32")
    assert code == 1
    assert [f["kind"] for f in data["findings"]] == ["batch_norm_single_value"]
    assert data["findings"][0]["modules"] == ["layer4.0.bn1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resnet18", "--device", "meta"], "--device meta: debug-training runs one real training step"),
        (["resnet18", "--loss", "hinge"], "'hinge' is not one of 'ce', 'mse'"),
        (["resnet18", "--depth", "3"], "--depth 3: debug-training shows stages (1) and blocks (2)"),
        (["resnet18", "--input", "100000x3x224x224"], "one training step needs 2.02 TiB on cpu (measured on meta)"),
        (["tests/models/features_only.py:resnet18_features", "--input", "2x3x64x64"], "--loss ce needs N x classes logits"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args, message):
    result = run("debug-training", *args)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)


def test_mse_runs_a_model_without_a_classifier():
    code, data = findings_of("tests/models/features_only.py:resnet18_features", "--input", "8x3x64x64", "--loss", "mse")
    assert code == 0 and data["loss"] == "mean squared error against random targets, summed over the 4 outputs"


def test_csv_and_markdown_carry_the_rows_and_findings():
    result = run("debug-training", E + "train_dead_relu.py:dead_resnet", "--input", CIFAR_BATCH, "--format", "csv")
    assert result.exit_code == 1
    assert result.stdout.startswith("Stage,Type,Act RMS,Grad RMS,Branch share\n")
    assert 'dead ReLUs,"relu, layer1.0.relu, layer1.1.relu' in result.stdout
    result = run("debug-training", "resnet20", "--input", CIFAR_BATCH, "--format", "markdown", "--depth", "2")
    assert result.exit_code == 0 and "layer1.0 | BasicBlock |" in result.stdout


HEALTHY = "tests/models/training_healthy.py:"
HEALTHY_PATTERNS = [
    "functional_resnet18", "resnext", "se_resnet", "preact", "gn_resnet", "dp_resnet", "frozen_backbone",
    "frozen_backbone_eval", "aux_resnet", "dict_resnet", "identity_resnet", "modulelist_resnet", "timm_resnet",
    "convhead_resnet", "se32_resnet", "dwnet", "se_resnet_zero_last", "dp_resnet_zero_last", "gn_zero_last",
    "layer0_resnet", "flat_resnet",
]  # fmt: skip


@pytest.mark.parametrize("factory", HEALTHY_PATTERNS)
def test_no_false_alarm_on_healthy_patterns(factory):
    # blocks in a ModuleList, a stem named layer0, zero-init-last under SE or drop-path, auxiliary heads, a frozen
    # backbone (a prefix of the parameters), inverted residuals that change shape, default init of 1x1 heads and
    # depthwise convs: all healthy
    code, data = findings_of(HEALTHY + factory, "--input", "4x3x32x32")
    assert code == 0, data["findings"]


BROKEN = "tests/models/training_broken.py:"


@pytest.mark.parametrize(
    ("factory", "kind"),
    [
        ("returns_identity", "residual_disabled"), ("overwritten", "residual_disabled"),
        ("detached_identity", "residual_disabled"), ("timm_nores", "residual_disabled"),
        ("flat_nores", "residual_disabled"),
        ("gate_zero", "saturated_gate"), ("linear_zero", "zero_weights"), ("stem_zero", "zero_weights"),
        ("no_grad_stage", "no_gradient"), ("data_use", "no_gradient"), ("uncalled", "no_gradient"),
        ("one_conv_frozen", "frozen"), ("tiny_init", "init_scale"), ("nobn_tiny", "gradients_vanish"),
        ("nobn_huge", "gradients_explode"), ("gn_all_zero", "zero_weights"), ("nan_weights", "non_finite"),
        ("fails_backward", "step_failed"), ("sys_exit_backward", "step_failed"), ("memerr_backward", "step_failed"),
    ],
)  # fmt: skip
def test_broken_patterns_are_found(factory, kind):
    code, data = findings_of(BROKEN + factory, "--input", "4x3x32x32")
    assert code == 1 and kind in [f["kind"] for f in data["findings"]], data["findings"]


def test_blocks_in_one_flat_sequential_are_checked_as_a_stage():
    # no stage names: the container of blocks is the stage, so the residual and per-block checks still run
    _, data = findings_of(HEALTHY + "flat_resnet", "--input", "4x3x32x32", "--depth", "2")
    assert [r["name"] for r in data["rows"]][:2] == ["blocks", "blocks.0"]
    assert all(r["residual_share"] is not None for r in data["rows"])
    _, broken = findings_of(BROKEN + "flat_nores", "--input", "4x3x32x32")
    finding = next(f for f in broken["findings"] if f["kind"] == "residual_disabled")
    assert finding["evidence"].startswith("9 of 9 blocks (NoResFBlock) return no residual sum")


def test_a_zero_gradient_is_not_called_a_missing_one():
    _, data = findings_of(BROKEN + "linear_zero", "--input", "4x3x32x32")
    finding = next(f for f in data["findings"] if f["kind"] == "no_gradient")
    assert "every element of their gradient is 0" in finding["evidence"] and ".detach()" not in finding["fix"]


def test_untouched_also_restores_parameters_changed_in_place_and_the_rng():
    class MaxNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)
            self.register_buffer("count", torch.zeros(()))

        def forward(self, x):
            with torch.no_grad():
                self.fc.weight.mul_(0.5)  # an in-place max-norm step
            self.count = self.count + 1  # a buffer reassigned
            return self.fc(torch.nn.functional.dropout(x, 0.5, self.training))

    model, inputs = MaxNorm(), torch.randn(8, 4)
    weight, count, rng = model.fc.weight.detach().clone(), model.count, torch.get_rng_state()
    with torch.no_grad():  # the API also works for a caller under no_grad
        report = diagnose_training(model, inputs)
    assert report.loss_value is not None
    assert torch.equal(model.fc.weight, weight) and model.count is count and torch.equal(torch.get_rng_state(), rng)
