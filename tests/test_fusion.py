"""Conv+BN fusion (`summary`/`flops`/`bench --fuse-bn`): pairs found by data flow, folded exactly, counted right.

Expected numbers come from the test itself: torch running the unfused model (float64, where folding is exact up to
rounding), closed forms over the model's modules, forward hooks of plain torch, and fvcore counting the fused model.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import warnings
from pathlib import Path

import pytest
import torch
from cli_runner import one_error_line, run, run_json
from torch import nn

from resnet_cli import build_model
from resnet_cli.analysis.fusion import ROUNDING_FACTOR, fuse_and_check, fuse_conv_bn, plan_fusion
from resnet_cli.errors import UserError
from resnet_cli.trace import trace_model

USER_MODELS = '''
import torch
import torch.nn.functional as F
from torch import nn


class ReluThenBn(nn.Module):
    """conv -> ReLU -> BN: the BatchNorm follows a ReLU, not a convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.relu(self.conv(x)))


class ConvUsedTwice(nn.Module):
    """The conv's output feeds the BatchNorm and, functionally, an add."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class SharedNorm(nn.Module):
    """One BatchNorm after two convolutions."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.conv_b = nn.Conv2d(3, 8, 1, bias=False)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x):
        return self.bn(self.conv_a(x)) + self.bn(self.conv_b(x))


class StdConv2d(nn.Conv2d):
    """Weight standardisation: the weight the convolution uses is not its parameter."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean((1, 2, 3), keepdim=True)) / (w.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class Mixed(nn.Module):
    """Conv1d + BatchNorm1d (the conv has a bias) and Conv2d + BatchNorm2d fold; after a transposed conv, a
    weight-standardised conv, and a BatchNorm without running statistics nothing folds."""

    def __init__(self):
        super().__init__()
        self.conv1d = nn.Conv1d(3, 4, 3, padding=1)
        self.bn1d = nn.BatchNorm1d(4)
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.up = nn.ConvTranspose2d(6, 6, 2, stride=2)
        self.bn_up = nn.BatchNorm2d(6)
        self.std = StdConv2d(6, 6, 3, padding=1, bias=False)
        self.bn_std = nn.BatchNorm2d(6)
        self.conv_free = nn.Conv2d(6, 6, 1, bias=False)
        self.bn_free = nn.BatchNorm2d(6, track_running_stats=False)

    def forward(self, x):
        seq = self.bn1d(self.conv1d(x.mean(3)))
        y = self.bn(self.conv(x))
        y = self.bn_up(self.up(y))
        y = self.bn_std(self.std(y))
        y = self.bn_free(self.conv_free(y))
        return y.mean((2, 3)).sum(1) + seq.mean((1, 2))


class HiddenCall(nn.Module):
    """forward calls the BatchNorm through a plain list, which replacing the registered module does not reach."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.bn.running_mean.fill_(0.5)
        self.bn.running_var.fill_(4.0)
        self.norms = [self.bn]

    def forward(self, x):
        return self.norms[0](self.conv(x)).mean((2, 3))
'''


@pytest.fixture(scope="module")
def user_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fusion") / "fusion_models.py"
    path.write_text(USER_MODELS)
    return path


def user_class(path: Path, name: str) -> type[nn.Module]:
    spec = importlib.util.spec_from_file_location("fusion_models", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["fusion_models"] = module
    spec.loader.exec_module(module)
    return getattr(module, name)


def randomise_batch_norms(model: nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters far from their defaults, so that a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.running_mean is not None:
            channels = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(torch.rand(channels, generator=generator) - 0.5)
                module.running_var.copy_(torch.rand(channels, generator=generator) * 1.5 + 0.5)
                if module.affine:
                    module.weight.copy_(torch.rand(channels, generator=generator) + 0.5)
                    module.bias.copy_(torch.rand(channels, generator=generator) - 0.5)


def batch_norms(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}


def fused_in_float64(model: nn.Module, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, object]:
    """(unfused output, fused output, FusionResult) of `model` in float64 with randomised batch norms."""
    randomise_batch_norms(model)
    model = model.double().eval()
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(x)
    result = fuse_conv_bn(model, trace_model(model, x))
    with torch.no_grad():
        fused = model(x)
    return reference, fused, result


# ---------------------------------------------------------------- the fold is exact: outputs on real tensors

PRESET_CASES = {
    "resnet18 (basic)": ("resnet18", {}, (2, 3, 64, 64)),
    "resnet50 (bottleneck)": ("resnet50", {"layers": (1, 1, 1, 1)}, (2, 3, 64, 64)),
    "resnext50 deep stem (grouped, conv-BN inside the stem's Sequential)": (
        "resnext50_32x4d", {"layers": (1, 1, 1, 1), "stem": "deep"}, (2, 3, 64, 64)),
    "preact_resnet164 (pre-activation bottleneck)": ("preact_resnet164", {"layers": (2, 2, 2)}, (2, 3, 32, 32)),
    "resnet20 (CIFAR)": ("resnet20", {}, (2, 3, 32, 32)),
}  # fmt: skip


@pytest.mark.parametrize("case", PRESET_CASES.values(), ids=PRESET_CASES.keys())
def test_fused_preset_computes_what_the_unfused_one_does_in_eval(case):
    name, overrides, shape = case
    reference, fused, result = fused_in_float64(build_model(name, **overrides), shape)
    assert result.fused
    # float64: the fold is exact in real arithmetic, so only rounding of ~1e-16 relative is left (amplified by depth)
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-9 * reference.abs().max().item())


def test_a_wrong_fold_would_show(monkeypatch):
    """The equality above can fail: dropping beta from the fold moves the output far beyond its tolerance."""
    import resnet_cli.analysis.fusion as fusion

    original = fusion.fold_into_conv

    def without_beta(conv, bn):
        original(conv, bn)
        with torch.no_grad():
            conv.bias.sub_(bn.bias.to(conv.bias.dtype))

    monkeypatch.setattr(fusion, "fold_into_conv", without_beta)
    reference, fused, _ = fused_in_float64(build_model("resnet18"), (2, 3, 64, 64))
    assert (fused - reference).abs().max() > 1e-3 * reference.abs().max()


def test_every_fused_batch_norm_is_replaced_by_identity_and_its_conv_gets_the_bias():
    model = build_model("resnet18")
    result = fuse_conv_bn(model, trace_model(model, torch.randn(1, 3, 64, 64)))
    modules = dict(model.named_modules())
    assert not batch_norms(model)
    assert {(p.conv, p.bn) for p in result.fused} >= {("conv1", "bn1"), ("layer1.0.conv2", "layer1.0.bn2"),
                                                      ("layer2.0.downsample.0", "layer2.0.downsample.1")}  # fmt: skip
    for pair in result.fused:
        assert isinstance(modules[pair.bn], nn.Identity)
        assert modules[pair.conv].bias is not None and modules[pair.conv].bias.shape == (pair.channels,)
    assert all(not m.training for m in model.modules())


def test_fusion_on_meta_changes_the_structure_only():
    model = build_model("resnet50", device="meta")
    result = fuse_conv_bn(model, trace_model(model, torch.empty(1, 3, 224, 224, device="meta")))
    assert len(result.fused) == 53 and not result.left
    assert all(p.device.type == "meta" for p in model.parameters())


# ---------------------------------------------------------------- counting: closed forms and fvcore


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet56", "wide_resnet50_2"])
def test_params_after_fusion_drop_by_each_batch_norms_affine_parameters_and_gain_the_conv_biases(name):
    model = build_model(name, device="meta")
    norms = batch_norms(model)
    biasless = sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is None)
    before = sum(p.numel() for p in model.parameters())
    # every BatchNorm of these presets follows a bias-free conv: - 2C per BatchNorm, + C for the conv's new bias
    expected = before - sum(2 * bn.num_features for bn in norms.values()) + sum(bn.num_features for bn in norms.values())
    assert biasless >= sum(bn.num_features for bn in norms.values())
    data = run_json("summary", name, "--fuse-bn", "--depth", "0")
    assert data["totals"]["params"] == expected
    assert (data["fusion"]["params_before"], data["fusion"]["params_after"]) == (before, expected)
    assert len(data["fusion"]["fused"]) == len(norms) and data["fusion"]["left"] == []


def bn_output_elements(name: str, shape: tuple[int, ...], **overrides) -> dict[str, int]:
    """Elements of every BatchNorm's output, from plain torch forward hooks on a real CPU model."""
    model = build_model(name, **overrides).eval()
    seen: dict[str, int] = {}
    handles = [m.register_forward_hook(lambda m, a, out, n=n: seen.__setitem__(n, out.numel()))
               for n, m in batch_norms(model).items()]  # fmt: skip
    with torch.no_grad():
        model(torch.zeros(shape))
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize(
    ("name", "shape"), [("resnet50", (2, 3, 64, 64)), ("preact_resnet164", (1, 3, 32, 32))], ids=["resnet50", "preact"]
)
def test_fvcore_macs_drop_by_exactly_the_folded_batch_norms_and_conv_linear_macs_stay(name, shape):
    args = ["flops", name, "--input", "x".join(map(str, shape))]
    plain, fused = run_json(*args), run_json(*args, "--fuse-bn")
    elements = bn_output_elements(name, shape)
    folded = {pair["bn"] for pair in fused["fusion"]["fused"]}
    # fvcore's batch_norm rule in eval: 2 MACs per element of an affine BatchNorm (mac_rules.OPERATOR_FORMULAS)
    assert plain["totals"]["macs"] - fused["totals"]["macs"] == sum(2 * elements[bn] for bn in folded)
    assert fused["totals"]["macs_conv_linear"] == plain["totals"]["macs_conv_linear"]
    assert fused["totals"]["acts"] == plain["totals"]["acts"]  # conv and linear outputs: the same tensors
    left = {bn["name"] for bn in fused["fusion"]["left"]}
    assert fused["by_operator"].get("batch_norm", 0) == sum(2 * elements[bn] for bn in left)


def test_fvcore_counts_the_fused_model_too(one_thread):
    args = ["flops", "resnet18", "--input", "1x3x64x64", "--fuse-bn"]
    fast, fvcore = run_json(*args), run_json(*args, "--counter", "fvcore")
    assert fvcore["counter"] == "fvcore"
    assert fvcore["totals"] == fast["totals"]
    assert "batch_norm" not in fvcore["by_operator"]


def test_fvcore_itself_agrees_on_a_fused_model():
    """fvcore's FlopCountAnalysis on a model fused here equals `flops --fuse-bn` (fvcore convention)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import touches deprecated torch.jit APIs
        from fvcore.nn import FlopCountAnalysis

    model = build_model("resnet18").eval()
    x = torch.zeros(1, 3, 64, 64)
    fuse_conv_bn(model, trace_model(model, x))
    analysis = FlopCountAnalysis(model, x).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = analysis.total()
    assert run_json("flops", "resnet18", "--input", "1x3x64x64", "--fuse-bn")["totals"]["macs"] == expected


# ---------------------------------------------------------------- what is left as it is, and why


def test_preact_lists_the_batch_norms_after_residual_adds_as_left():
    layers = (2, 2, 2)
    data = run_json("summary", "preact_resnet164", "--layers", "2,2,2", "--fuse-bn", "--depth", "0")
    fusion = data["fusion"]
    # He et al. 2016: a block starts with BN-ReLU on the previous block's output (a residual add), and the network
    # ends with BN-ReLU on the last one; only the first block's BN follows a convolution (the stem's)
    after_adds = [f"layer{s + 1}.{b}.bn1" for s, n in enumerate(layers) for b in range(n) if (s, b) != (0, 0)]
    assert [left["name"] for left in fusion["left"]] == [*after_adds, "final_bn"]
    assert all("aten.add" in left["reason"] and "not by a convolution" in left["reason"] for left in fusion["left"])
    assert ("conv1", "layer1.0.bn1") in {(p["conv"], p["bn"]) for p in fusion["fused"]}
    assert len(fusion["fused"]) == 3 * sum(layers) - len(after_adds)


def test_preact_table_names_what_is_left():
    result = run("summary", "preact_resnet164", "--layers", "2,2,2", "--fuse-bn", "--depth", "0",
                 env={"COLUMNS": "300"})  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "13 folded, 6 left" in result.stdout
    assert ("Left as they are (6): layer1.1.bn1, layer2.0.bn1, layer2.1.bn1, layer3.0.bn1, layer3.1.bn1, final_bn: "
            "its input is made by aten.add in a PreActBottleneck's own forward, not by a convolution.") in result.stdout


def test_a_batch_norm_after_a_relu_is_left(user_file):
    data = run_json("summary", f"{user_file}:ReluThenBn", "--input", "1x3x16x16", "--fuse-bn")
    assert data["fusion"]["fused"] == []
    assert data["fusion"]["left"] == [
        {"name": "bn", "reason": "its input is made by aten.relu (a ReLU), not by a convolution"}
    ]


@pytest.mark.parametrize(
    ("factory", "left"),
    [
        ("ConvUsedTwice", [("bn", "conv's output is also read by aten.add in the model's own forward")]),
        ("SharedNorm", [("bn", "is called 2 times: folded into one convolution it would change the others")]),
        ("Mixed", [
            ("bn_up", "follows up (ConvTranspose2d), a transposed convolution"),
            ("bn_std", "follows std, a StdConv2d whose forward is its own, not Conv2d's"),
            ("bn_free", "has no running statistics (track_running_stats=False): it normalises with each batch's own "
                        "statistics, in eval too"),
        ]),
    ],
)  # fmt: skip
def test_user_models_fold_only_what_data_flow_allows(user_file, factory, left):
    model = user_class(user_file, factory)()
    reference, fused, result = fused_in_float64(model, (2, 3, 8, 8))
    assert [(n.name, n.reason) for n in result.left] == left
    torch.testing.assert_close(fused, reference, rtol=0, atol=1e-12 * reference.abs().max().item())


def test_mixed_user_model_folds_conv1d_and_conv2d_pairs_and_keeps_an_existing_bias(user_file):
    model = user_class(user_file, "Mixed")()
    result = plan_fusion(model, trace_model(model, torch.zeros(2, 3, 8, 8)))
    assert [(p.conv, p.bn, p.bias_added) for p in result.fused] == [("conv1d", "bn1d", False), ("conv", "bn", True)]
    before = sum(p.numel() for p in model.parameters())
    # BatchNorm1d(4): -8; BatchNorm2d(6): -12 and +6 for conv's new bias; conv1d keeps its bias
    assert (result.params_before, result.params_after) == (before, before - 8 - 12 + 6)


def test_functional_batch_norms_are_listed_as_left():
    data = run_json("summary", "tests/models/functional_resnet.py:functional_resnet", "--fuse-bn", "--depth", "0")
    fusion = data["fusion"]
    assert fusion["fused"] == []
    # the stem's, two per block and one per projection shortcut (blocks 1 and 2): 1 + 3 x 2 + 2
    assert len(fusion["left"]) == 9
    assert fusion["left"][0] == {
        "name": "(model): F.batch_norm",
        "reason": "a functional batch norm in the model's own forward code, not a BatchNorm module to replace",
    }
    assert fusion["left"][2]["name"] == "blocks.0: F.batch_norm (call 2)"


# ---------------------------------------------------------------- the check bench runs on a really fused model


def test_fuse_and_check_reports_a_difference_within_its_tolerance():
    torch.manual_seed(0)
    model = build_model("resnet18")
    randomise_batch_norms(model)
    check = fuse_and_check(model, torch.randn(2, 3, 64, 64))
    assert len(check.fusion.fused) == 20 and check.dtype == "float32"
    assert 0 < check.max_abs_diff <= check.tolerance
    # the allowance is float32 rounding, not a loose constant: well under 1e-4 of the largest output
    assert check.tolerance < 1e-4 * check.max_abs_output
    assert check.rounding_error * ROUNDING_FACTOR <= check.tolerance


def test_fuse_and_check_refuses_a_model_whose_batch_norm_fusion_cannot_reach(user_file):
    model = user_class(user_file, "HiddenCall")()
    with pytest.raises(UserError, match=r"--fuse-bn: the fused model's outputs differ from the unfused model's"):
        fuse_and_check(model, torch.randn(2, 3, 8, 8))


def test_the_check_catches_a_wrong_fold_even_with_freshly_initialised_batch_norms(user_file):
    # fresh statistics (mean 0, var 1, weight 1, bias 0) make a BatchNorm the identity in eval mode: the check runs
    # on a copy with random statistics, so the hidden second call still shows
    model = user_class(user_file, "HiddenCall")()
    nn.init.ones_(model.bn.weight)
    model.bn.reset_running_stats()
    with pytest.raises(UserError, match=r"--fuse-bn: the fused model's outputs differ from the unfused model's"):
        fuse_and_check(model, torch.randn(2, 3, 8, 8))
    assert torch.equal(model.bn.running_mean, torch.zeros(8))  # the model's own statistics are not changed


# ---------------------------------------------------------------- the CLI

QUICK = ["--iters", "2", "--warmup", "1", "--threads", "1"]


def test_summary_json_has_the_fused_lists_and_the_table_says_so():
    data = run_json("summary", "resnet18", "--fuse-bn", "--depth", "1")
    assert len(data["fusion"]["fused"]) == 20
    assert data["fusion"]["fused"][0] == {"conv": "conv1", "bn": "bn1", "channels": 64, "bias_added": True}
    assert "fusion" not in run_json("summary", "resnet18", "--depth", "0")
    result = run("summary", "resnet18", "--fuse-bn", "--depth", "1", env={"COLUMNS": "200"})
    assert "(depth <= 1, device meta, BN fused)" in result.stdout.splitlines()[0]
    assert "20 folded, 0 left; params 11,689,512 -> 11,684,712" in result.stdout
    assert "BatchNorm2d" not in result.stdout


def test_flops_json_and_table_carry_the_fusion():
    data = run_json("flops", "resnet18", "--fuse-bn")
    assert data["fusion"]["params_after"] == data["totals"]["params"] == 11_689_512 - 4_800
    result = run("flops", "resnet18", "--fuse-bn", env={"COLUMNS": "200"})
    assert result.stdout.splitlines()[0] == "resnet18  input 1x3x224x224  MACs by stage (BN fused)"


def test_bench_fuse_bn_times_a_checked_fused_model():
    data = run_json("bench", "resnet18", "--input", "1x3x32x32", *QUICK, "--fuse-bn")
    [row] = data["rows"]
    assert row["label"] == "fuse-bn" and row["fuse_bn"] is True and row["checkpoint"] == "none"
    fusion = row["fusion"]
    assert len(fusion["fused"]) == 20 and fusion["left"] == [] and fusion["dtype"] == "float32"
    assert 0 <= fusion["max_abs_diff"] <= fusion["tolerance"] < 1e-4 * fusion["max_abs_output"]
    assert len(row["latencies_ms"]) == 2


def test_bench_grid_has_a_fuse_bn_row_with_its_speedup():
    data = run_json("bench", "resnet18", "--input", "1x3x32x32", *QUICK, "--grid", "--fuse-bn")
    assert [r["label"] for r in data["rows"]] == ["baseline", "fuse-bn"]
    baseline, fused = data["rows"]
    assert baseline["fusion"] is None and fused["fusion"] is not None
    assert fused["speedup"] == pytest.approx(baseline["median_ms"] / fused["median_ms"])
    result = run("bench", "resnet18", "--input", "1x3x32x32", *QUICK, "--grid", "--fuse-bn", env={"COLUMNS": "300"})
    assert "fuse-bn: 20 BatchNorms folded into the conv before them, 0 left; checked against the unfused model" in (
        result.stdout
    )


def test_bench_refuses_a_model_whose_fused_outputs_differ(user_file):
    result = run("bench", f"{user_file}:HiddenCall", "--input", "2x3x8x8", *QUICK, "--fuse-bn")
    assert result.exit_code == 2
    assert one_error_line(result).startswith("Error: --fuse-bn: the fused model's outputs differ")


def test_bench_checkpoint_runs_the_segments_through_torch_utils_checkpoint(monkeypatch):
    import resnet_cli.analysis.checkpointing as checkpointing

    calls = []
    original = checkpointing.checkpoint

    def counting(function, *args, **kwargs):
        calls.append(function)
        return original(function, *args, **kwargs)

    monkeypatch.setattr(checkpointing, "checkpoint", counting)
    data = run_json("bench", "resnet20", "--input", "2x3x32x32", *QUICK, "--mode", "train", "--grid",
                    "--checkpoint", "block")  # fmt: skip
    assert [r["label"] for r in data["rows"]] == ["baseline", "checkpoint block"]
    assert [r["checkpoint"] for r in data["rows"]] == ["none", "block"]
    # resnet20 has 9 blocks, checkpointed in each of the row's 1 warm-up and 2 timed steps
    assert len(calls) == 9 * 3
    assert all(r["peak_memory_bytes"] is None or r["peak_memory_bytes"] >= 0 for r in data["rows"])


def test_bench_checkpoint_stage_on_a_bottleneck():
    data = run_json("bench", "resnet50", "--layers", "1,1,1,1", "--input", "2x3x32x32", *QUICK, "--mode", "train",
                    "--checkpoint", "stage")  # fmt: skip
    assert data["rows"][0]["label"] == "checkpoint stage" and data["loss"] == "cross-entropy"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fuse-bn", "--mode", "train"], "--fuse-bn with --mode train: fusion folds BatchNorm's running statistics"),
        (["--checkpoint", "block"], "--checkpoint block with --mode infer"),
        (["--checkpoint", "sometimes", "--mode", "train"], "'sometimes' is not one of 'none', 'block', 'stage'"),
        (["--grid"], "add at least one of --channels-last, --amp, --compile, --fuse-bn (infer), --checkpoint (train)"),
    ],
)
def test_bench_fusion_and_checkpoint_mistakes_exit_2_in_one_line(args, message):
    result = run("bench", "resnet18", "--input", "2x3x32x32", "--iters", "1", "--warmup", "0", *args)
    assert result.exit_code == 2, result.output
    assert message in one_error_line(result)


def test_bench_checkpoint_of_a_model_without_stages_exits_2(user_file):
    result = run("bench", f"{user_file}:ConvUsedTwice", "--input", "2x3x8x8", *QUICK, "--mode", "train",
                 "--checkpoint", "block")  # fmt: skip
    assert result.exit_code == 2
    assert "has no recognisable stages" in one_error_line(result)


def test_closed_form_sanity_of_the_bn_element_count():
    """The hook-based element counts used above match the closed form for resnet50's stem BN: N x 64 x H/2 x W/2."""
    assert bn_output_elements("resnet50", (2, 3, 64, 64))["bn1"] == 2 * 64 * math.prod((32, 32))
