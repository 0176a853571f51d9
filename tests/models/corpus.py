"""The corpus of real-world-style ResNet model files used by the differential MAC-count tests.

Each entry names a factory as "tests/models/FILE.py:factory" (relative to the repo root), the input
it is run on, the factory kwargs, the pattern it exercises and, where one exists, the published
parameter count of that architecture (exact figures only; see README.md).
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class CorpusModel:
    reference: str  # "tests/models/FILE.py:factory", relative to the repo root
    input_shape: tuple[int, int, int, int]
    kwargs: tuple[tuple[str, object], ...] = ()
    pattern: str = ""  # the real-world pattern it exercises, one line
    published_params: int | None = None  # a published parameter count when one exists

    @property
    def path(self) -> str:
        return self.reference.rpartition(":")[0]

    @property
    def factory(self) -> str:
        return self.reference.rpartition(":")[2]

    @property
    def id(self) -> str:
        """A short test id, e.g. "torchvision_resnet:resnet50"."""
        name = self.path.rpartition("/")[2].removesuffix(".py")
        return f"{name}:{self.factory}" + "".join(f"[{k}={v}]" for k, v in self.kwargs)


_M = "tests/models/"
IMAGENET = (1, 3, 224, 224)
CIFAR = (1, 3, 32, 32)

CORPUS: list[CorpusModel] = [
    CorpusModel(
        _M + "torchvision_resnet.py:resnet18",
        IMAGENET,
        pattern="torchvision BasicBlock ResNet, a shared self.relu called twice per block",
        published_params=11_689_512,
    ),
    CorpusModel(
        _M + "torchvision_resnet.py:resnet34",
        IMAGENET,
        pattern="torchvision BasicBlock ResNet, deeper stages",
        published_params=21_797_672,
    ),
    CorpusModel(
        _M + "torchvision_resnet.py:resnet50",
        IMAGENET,
        pattern="torchvision Bottleneck (v1.5: stride on the 3x3), conv1x1+BN downsample",
        published_params=25_557_032,
    ),
    CorpusModel(
        _M + "torchvision_resnet.py:resnet101",
        IMAGENET,
        pattern="torchvision Bottleneck, 23-block third stage",
        published_params=44_549_160,
    ),
    CorpusModel(
        _M + "torchvision_resnet.py:resnet50_stride_on_1x1",
        IMAGENET,
        pattern="the paper's v1 bottleneck: stride on the first 1x1 (same params, fewer MACs)",
        published_params=25_557_032,
    ),
    CorpusModel(
        _M + "torchvision_resnet.py:resnet50_renamed",
        IMAGENET,
        pattern="resnet50 with stages named stage1..stage4 and the classifier head",
        published_params=25_557_032,
    ),
    CorpusModel(
        _M + "torchvision_resnet.py:resnet18",
        IMAGENET,
        kwargs=(("num_classes", 10),),
        pattern="factory kwargs: a 10-class classifier on the torchvision ResNet-18",
    ),
    CorpusModel(
        _M + "cifar_resnet.py:ResNet18",
        CIFAR,
        pattern="kuangliu CIFAR ResNet: F.relu, empty nn.Sequential shortcut, F.avg_pool2d + view",
        published_params=11_173_962,
    ),
    CorpusModel(
        _M + "cifar_resnet.py:ResNet50",
        CIFAR,
        pattern="kuangliu CIFAR Bottleneck ResNet",
        published_params=23_520_842,
    ),
    CorpusModel(
        _M + "cifar_option_a.py:resnet20",
        CIFAR,
        pattern="akamaster option-A shortcut: LambdaLayer with strided slicing + F.pad",
        published_params=269_722,
    ),
    CorpusModel(
        _M + "cifar_option_a.py:resnet32",
        CIFAR,
        pattern="akamaster option-A, 15 blocks",
        published_params=464_154,
    ),
    CorpusModel(
        _M + "cifar_option_a.py:resnet56",
        CIFAR,
        pattern="akamaster option-A, 27 blocks",
        published_params=853_018,
    ),
    CorpusModel(
        _M + "se_resnet.py:se_resnet18",
        IMAGENET,
        pattern="SE block: adaptive_avg_pool2d + Linear/ReLU/Linear/Sigmoid, expand_as rescale",
    ),
    CorpusModel(
        _M + "se_resnet.py:se_resnet20",
        CIFAR,
        pattern="CIFAR SE block: x.mean((2, 3)) squeeze, broadcast rescale",
    ),
    CorpusModel(
        _M + "preact_resnet.py:PreActResNet18",
        CIFAR,
        pattern="pre-activation: shortcut from the pre-activated tensor, hasattr(self, 'shortcut')",
    ),
    CorpusModel(
        _M + "preact_resnet.py:PreActResNet50",
        CIFAR,
        pattern="pre-activation bottleneck",
    ),
    CorpusModel(
        _M + "wide_resnet.py:wrn_16_4",
        CIFAR,
        pattern="Wide ResNet: pre-act, F.dropout between the convs, convShortcut, view(-1, C)",
        published_params=2_748_890,
    ),
    CorpusModel(
        _M + "wide_resnet.py:wide_resnet",
        CIFAR,
        pattern="WRN-28-10: 36.5M params, 5.2 GMACs at 32x32",
        published_params=36_479_194,
    ),
    CorpusModel(
        _M + "resnext.py:resnext50_32x4d",
        IMAGENET,
        pattern="ResNeXt: grouped 3x3 conv (32 groups x 4 channels)",
        published_params=25_028_904,
    ),
    CorpusModel(
        _M + "res2net.py:res2net50_26w_4s",
        IMAGENET,
        pattern="Res2Net: torch.split, hierarchical adds, torch.cat, AvgPool2d on the last split",
    ),
    CorpusModel(
        _M + "split_attention.py:resnest_small",
        IMAGENET,
        pattern="ResNeSt split attention: split + sum, 1x1-conv fc, rSoftMax, deep stem, avg-down",
    ),
    CorpusModel(
        _M + "features_only.py:resnet18_features",
        IMAGENET,
        pattern="a backbone returning a list of 4 feature maps, no pooling or head",
    ),
    CorpusModel(
        _M + "resnet_d.py:resnet50d",
        IMAGENET,
        pattern="ResNet-D: 3x3 deep stem in a Sequential, avg-pool-then-1x1 shortcut",
    ),
    CorpusModel(
        _M + "functional_resnet.py:functional_resnet",
        CIFAR,
        pattern="functional forward over its own Parameters: F.conv2d, F.batch_norm, x @ W.t() + b",
    ),
    CorpusModel(
        _M + "groupnorm_resnet.py:bit_resnet_small",
        IMAGENET,
        pattern="BiT ResNet-v2: GroupNorm, weight-standardised StdConv2d (var_mean), 1x1-conv head",
    ),
    CorpusModel(
        _M + "modulelist_stages.py:looped_resnet",
        CIFAR,
        pattern="stages in an nn.ModuleList that forward loops over (the list itself is never called)",
    ),
]

SCRIPTED = CorpusModel("tests/models/jit_submodule.py:scripted_block_resnet", (1, 3, 32, 32))
