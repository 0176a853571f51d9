"""The builder: published parameter counts, torchvision names, and each build flag's effect."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from resnet_cli import ResNetSpec, build_model
from resnet_cli.errors import UserError
from resnet_cli.model import SqueezeExcite, load_weights
from resnet_cli.spec import PRESETS
from resnet_cli.trace import make_input, trace_model

# torchvision's published figures; He et al. 2015 Table 6 for the CIFAR nets.
PUBLISHED_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    "resnet1202": 19_421_274,
    # Zagoruyko & Komodakis 2016: WRN-28-10 36.5 M, WRN-40-4 8.9 M, WRN-16-8 11.0 M; checked against an independent
    # Wide ResNet (tests/models/wide_resnet.py) in tests/test_preact.py
    "wrn28_10": 36_479_194,
    "wrn40_4": 8_949_210,
    "wrn16_8": 10_961_370,
    # He et al. 2016: ResNet-164 1.7 M, ResNet-1001 10.2 M (without BN's parameters: 1,679,034 and 10,178,490)
    "preact_resnet164": 1_703_258,
    "preact_resnet1001": 10_327_706,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def output_shapes(model: nn.Module, shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    trace = trace_model(model, make_input(shape))
    assert trace.ok, trace.error
    return {r.name: r.output_shape for r in trace.first_calls()}


def test_every_preset_has_a_published_count():
    assert set(PRESETS) == set(PUBLISHED_PARAMS)


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS))
def test_preset_parameter_count_matches_published(name):
    assert n_params(build_model(name, device="meta")) == PUBLISHED_PARAMS[name]


# Key names and shapes as torchvision's resnet50 / resnext50_32x4d / wide_resnet50_2 state dicts have them.
TORCHVISION_KEYS = {
    "resnet50": {
        "conv1.weight": (64, 3, 7, 7),
        "bn1.running_mean": (64,),
        "layer1.0.conv1.weight": (64, 64, 1, 1),
        "layer1.0.conv2.weight": (64, 64, 3, 3),
        "layer1.0.conv3.weight": (256, 64, 1, 1),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.0.downsample.1.num_batches_tracked": (),
        "layer2.0.downsample.0.weight": (512, 256, 1, 1),
        "layer4.2.bn3.weight": (2048,),
        "fc.weight": (1000, 2048),
        "fc.bias": (1000,),
    },
    "resnext50_32x4d": {
        "layer1.0.conv1.weight": (128, 64, 1, 1),
        "layer1.0.conv2.weight": (128, 4, 3, 3),
        "layer4.0.conv2.weight": (1024, 32, 3, 3),
        "layer4.2.conv3.weight": (2048, 1024, 1, 1),
    },
    "wide_resnet50_2": {
        "layer1.0.conv1.weight": (128, 64, 1, 1),
        "layer1.0.conv2.weight": (128, 128, 3, 3),
        "layer4.0.conv2.weight": (1024, 1024, 3, 3),
        "fc.weight": (1000, 2048),
    },
}
TORCHVISION_KEY_COUNT = {"resnet50": 320, "resnext50_32x4d": 320, "wide_resnet50_2": 320}


@pytest.mark.parametrize("name", list(TORCHVISION_KEYS))
def test_torchvision_state_dict_names_and_shapes(name):
    state = build_model(name, device="meta").state_dict()
    assert len(state) == TORCHVISION_KEY_COUNT[name]
    for key, shape in TORCHVISION_KEYS[name].items():
        assert tuple(state[key].shape) == shape, key
    stage_blocks = {k.split(".")[0] + "." + k.split(".")[1] for k in state if k.startswith("layer")}
    assert len(stage_blocks) == 16


def test_resnet50_state_dict_has_no_keys_beyond_torchvision():
    # torchvision resnet50: 53 convs + 53 BNs (x5 entries each) + fc weight/bias = 320 entries
    state = build_model("resnet50", device="meta").state_dict()
    convs = [k for k in state if k.endswith(".weight") and state[k].ndim == 4]
    assert len(convs) == 53 and len(state) == 53 + 53 * 5 + 2
    assert not [k for k in state if ".se." in k or "drop_path" in k]
    # and exactly the keys and shapes of a torchvision-style file written apart from resnet-cli
    from resnet_cli.model import instantiate
    from resnet_cli.user_model import UserModelRequest

    reference, _ = instantiate(UserModelRequest("tests/models/torchvision_resnet.py:resnet50", (), (1, 3, 224, 224)))
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: tuple(v.shape) for k, v in reference.state_dict().items()}


def test_weights_round_trip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    source = build_model("resnet18").eval()
    path = tmp_path / "r18.pt"
    torch.save(source.state_dict(), path)
    target = build_model("resnet18").eval()
    load_weights(target, path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    path = tmp_path / "r18.pt"
    torch.save(build_model("resnet18", device="cpu").state_dict(), path)
    with pytest.raises(UserError, match=r"missing keys: .*layer1\.0\.conv3\.weight"):
        load_weights(build_model("resnet50"), path)


def test_missing_weights_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_weights(build_model("resnet18", device="meta"), tmp_path / "nope.pt")


def test_build_model_api_accepts_overrides():
    model = build_model("resnet50", se=True, device="meta")
    assert isinstance(model.layer1[0].se, SqueezeExcite)
    # SE on a 256-channel block: two 1x1 convs 256 -> 16 -> 256 with biases
    assert sum(p.numel() for p in model.layer1[0].se.parameters()) == 256 * 16 + 16 + 16 * 256 + 256
    assert model.spec == PRESETS["resnet50"].spec.replace(se=True)


# ---- each build flag changes a shape or a count ----------------------------------------------


def test_block_basic_changes_stage_channels():
    shapes = output_shapes(build_model("resnet50", block="basic", device="meta"), (1, 3, 224, 224))
    assert shapes["layer4"] == (1, 512, 7, 7)


def test_layers_set_blocks_per_stage_and_stage_count():
    model = build_model(None, layers=(1, 2), widths=(64, 128), device="meta")
    assert len(model.layer1) == 1 and len(model.layer2) == 2
    assert not hasattr(model, "layer3")
    assert model.fc.in_features == 512


def test_widths_set_stage_planes():
    shapes = output_shapes(build_model("resnet18", widths=(32, 64, 128, 256), device="meta"), (1, 3, 64, 64))
    assert shapes["layer1"] == (1, 32, 16, 16)
    assert shapes["layer4"] == (1, 256, 2, 2)


def test_expansion_sets_block_output_channels():
    model = build_model("resnet50", expansion=2, device="meta")
    assert model.layer1[0].conv3.out_channels == 128
    assert model.fc.in_features == 1024


def test_groups_make_the_3x3_grouped():
    model = build_model("resnet50", groups=32, width_per_group=4, device="meta")
    assert model.layer1[0].conv2.groups == 32
    assert n_params(model) == PUBLISHED_PARAMS["resnext50_32x4d"]


def test_width_per_group_widens_the_3x3():
    model = build_model("resnet50", width_per_group=128, device="meta")
    assert model.layer1[0].conv2.in_channels == 128


@pytest.mark.parametrize(
    ("stem", "after_stem", "names"),
    [
        ("imagenet", (1, 64, 56, 56), {"conv1": (1, 64, 112, 112)}),
        ("deep", (1, 64, 56, 56), {"conv1.0": (1, 32, 112, 112), "conv1.3": (1, 32, 112, 112)}),
        ("cifar", (1, 64, 224, 224), {"conv1": (1, 64, 224, 224)}),
    ],
)
def test_stem_shapes(stem, after_stem, names):
    shapes = output_shapes(build_model("resnet18", stem=stem, device="meta"), (1, 3, 224, 224))
    assert shapes["maxpool"] == after_stem
    for name, shape in names.items():
        assert shapes[name] == shape


def test_deep_stem_has_three_convs():
    stem = build_model("resnet50", stem="deep", device="meta").conv1
    convs = [m for m in stem if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.stride[0]) for c in convs] == [(3, 32, 2), (32, 32, 1), (32, 64, 1)]


def test_stride_on_1x1_moves_the_stride():
    v15 = build_model("resnet50", device="meta").layer2[0]
    paper = build_model("resnet50", stride_on="1x1", device="meta").layer2[0]
    assert (v15.conv1.stride, v15.conv2.stride) == ((1, 1), (2, 2))
    assert (paper.conv1.stride, paper.conv2.stride) == ((2, 2), (1, 1))
    assert n_params(build_model("resnet50", stride_on="1x1", device="meta")) == PUBLISHED_PARAMS["resnet50"]


def test_shortcut_a_has_no_parameters_and_pads_channels():
    model = build_model("resnet20")
    block = model.layer2[0]
    assert sum(p.numel() for p in block.downsample.parameters()) == 0
    out = block.downsample(torch.ones(1, 16, 8, 8))
    assert out.shape == (1, 32, 4, 4)
    assert out[:, :8].abs().sum() == 0 and out[:, 8:24].sum() == 16 * 16 and out[:, 24:].abs().sum() == 0


def test_shortcut_c_projects_every_block():
    b = build_model("resnet18", shortcut="B", device="meta")
    c = build_model("resnet18", shortcut="C", device="meta")
    assert isinstance(b.layer1[0].downsample, nn.Identity)
    assert isinstance(c.layer1[0].downsample, nn.Sequential)
    # C projects all 8 blocks, B only the 3 stage transitions: 5 extra 1x1 conv + BN of c channels
    assert n_params(c) - n_params(b) == sum(ch * ch + 2 * ch for ch in (64, 64, 128, 256, 512))


def test_avg_down_pools_before_a_stride_1_projection():
    ds = build_model("resnet50", avg_down=True, device="meta").layer2[0].downsample
    assert isinstance(ds[0], nn.AvgPool2d) and ds[0].ceil_mode and not ds[0].count_include_pad
    assert ds[1].stride == (1, 1)
    assert isinstance(build_model("resnet50", avg_down=True, device="meta").layer1[0].downsample[0], nn.Identity)


def test_se_adds_squeeze_excitation_parameters():
    plain = n_params(build_model("resnet50", device="meta"))
    se = n_params(build_model("resnet50", se=True, device="meta"))
    # per block: C*(C/16) + C/16 + (C/16)*C + C
    per_stage = [(256, 3), (512, 4), (1024, 6), (2048, 3)]
    assert se - plain == sum(n * (2 * c * (c // 16) + c // 16 + c) for c, n in per_stage)


def test_se_ratio_sets_the_hidden_width():
    model = build_model("resnet50", se=True, se_ratio=4, device="meta")
    assert model.layer1[0].se.fc1.out_channels == 64


def test_dilate_stages_keep_resolution():
    shapes = output_shapes(build_model("resnet50", dilate_stages=(3, 4), device="meta"), (1, 3, 224, 224))
    assert shapes["layer4"] == (1, 2048, 28, 28)
    model = build_model("resnet50", dilate_stages=(3, 4), device="meta")
    assert model.layer4[1].conv2.dilation == (4, 4) and model.layer4[0].conv2.dilation == (2, 2)


def test_drop_path_rises_linearly_to_p():
    model = build_model("resnet50", drop_path=0.2, device="meta")
    blocks = [b for stage in (model.layer1, model.layer2, model.layer3, model.layer4) for b in stage]
    assert isinstance(blocks[0].drop_path, nn.Identity)
    assert blocks[-1].drop_path.rate == pytest.approx(0.2)
    assert blocks[8].drop_path.rate == pytest.approx(0.2 * 8 / 15)


def test_drop_path_drops_whole_samples_in_training_only():
    from resnet_cli.model import DropPath

    torch.manual_seed(0)
    layer = DropPath(0.5).train()
    out = layer(torch.ones(64, 4, 2, 2))
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert torch.equal(layer.eval()(torch.ones(2, 3)), torch.ones(2, 3))


def test_zero_init_residual_zeroes_last_bn():
    model = build_model("resnet50", zero_init_residual=True)
    assert model.layer1[0].bn3.weight.abs().sum() == 0
    assert model.layer1[0].bn2.weight.abs().sum() > 0
    assert build_model("resnet18", zero_init_residual=True).layer1[0].bn2.weight.abs().sum() == 0


def test_num_classes_and_in_channels():
    model = build_model("resnet18", num_classes=10, in_channels=1, device="meta")
    assert model.fc.out_features == 10 and model.conv1.in_channels == 1
    assert output_shapes(model, (2, 1, 64, 64))[""] == (2, 10)


def test_spec_is_immutable_and_hashable():
    spec = ResNetSpec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.block = "basic"  # type: ignore[misc]
    assert hash(spec) == hash(ResNetSpec(layers=[3, 4, 6, 3]))


def test_real_forward_matches_meta_shapes():
    model = build_model("resnet18").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == output_shapes(build_model("resnet18", device="meta"), (2, 3, 64, 64))[""]
