"""fvcore's MAC rules, applied to the aten operators the tracer records.

fvcore counts the operators of a TorchScript trace (`aten::_convolution`, `aten::linear`, `aten::batch_norm`, ...):
roughly, the torch function the model's code called. The tracer records lower-level aten operators (what
`TorchDispatchMode` sees) and, for each, the torch function it ran in (`OpRecord.function`). A rule here takes one
operator record and returns fvcore's operator name and MAC count, so the sum over a model equals
`FlopCountAnalysis(...).by_operator()` and, attributed to modules, `.by_module()`.

Every operator is in exactly one of three classes, so no number is silently zero:
* a rule (`RULES`): counted;
* `ZERO_BY_CONVENTION`: elementwise arithmetic, activations, pooling other than adaptive average, reductions,
  data movement, factories: fvcore's convention counts them as 0 MACs (they are not multiply-accumulates of
  weights, and cost memory traffic rather than arithmetic);
* anything else: no rule, not counted, and named in every report (which then says `partial`).
"""

from __future__ import annotations

from collections.abc import Callable

from resnet_cli.trace import OpRecord, TensorInfo

# Operator names (fvcore's) in the conv + linear convention: He et al. 2015 Table 1, torchvision's GFLOPS, and
# torch's FlopCounterMode (which counts convolutions and matrix products only, as 2 FLOPs per MAC).
CONV_LINEAR_OPS = frozenset({"conv", "linear", "addmm", "mm", "matmul", "bmm", "einsum"})
# Operator names whose output elements are "activations" (Radosavovic et al. 2020), as fvcore's
# ActivationCountAnalysis counts them: the output of every conv, linear and matrix product (not torch.mm).
ACTIVATION_OPS = frozenset({"conv", "linear", "addmm", "matmul", "bmm", "einsum"})

# What each fvcore operator name counts, in MACs, for docs and the `--by operator` view.
OPERATOR_FORMULAS = {
    "conv": "N x Cout x Cin/groups x kH x kW x Hout x Wout (bias not counted)",
    "linear": "input elements x out_features (bias not counted)",
    "matmul": "elements of the first operand x columns of the second",
    "mm": "n x k x m",
    "bmm": "batch x n x k x m",
    "addmm": "n x k x m (the added bias not counted)",
    "einsum": "the matrix products it runs",
    "batch_norm": "2 per element in eval (1 if not affine); 5 (4) with batch statistics",
    "group_norm": "5 per element (4 if not affine)",
    "layer_norm": "5 per element (4 if not affine)",
    "instance_norm": "5 per element (4 if not affine)",
    "adaptive_avg_pool2d": "1 per input element",
    "upsample_nearest2d": "1 per output element",
    "upsample_bilinear2d": "4 per output element",
    "grid_sampler": "4 per output element",
}

MacRule = Callable[[OpRecord, "str | None"], "tuple[str, int] | None"]
"""(operator record, the torch function it ran in, e.g. "F.linear", if known) -> (fvcore name, MACs) or None."""

# What torch's own modules call in forward: the torch function of an operator that ran directly in one of them,
# for traces made without function tracking (`trace_model(functions=False)`).
MODULE_CALLS = {
    "Linear": "F.linear", "AdaptiveAvgPool2d": "F.adaptive_avg_pool2d", "InstanceNorm1d": "F.instance_norm",
    "InstanceNorm2d": "F.instance_norm", "InstanceNorm3d": "F.instance_norm",
}  # fmt: skip


def _numel(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total


def _conv(op: OpRecord, caller: str | None) -> tuple[str, int]:
    # fvcore conv_flop_count: batch x prod(weight shape) x prod(output spatial dims; input's if transposed)
    x, w, transposed = op.args[0], op.args[1], op.args[6]
    spatial = (x.shape if transposed else op.output_shapes[0])[2:]
    return "conv", x.shape[0] * _numel(w.shape) * _numel(spatial)


# The torch function a matrix product ran in decides fvcore's name for it (the value does not depend on it).
_GEMM_NAMES = {
    "F.linear": "linear", "Tensor.matmul": "matmul", "torch.matmul": "matmul", "Tensor.__matmul__": "matmul",
    "Tensor.__rmatmul__": "matmul", "torch.mm": "mm", "Tensor.mm": "mm", "torch.bmm": "bmm", "Tensor.bmm": "bmm",
    "torch.addmm": "addmm", "Tensor.addmm": "addmm", "torch.einsum": "einsum",
}  # fmt: skip


def _mm(op: OpRecord, caller: str | None) -> tuple[str, int]:
    a, b = op.inputs[-2:]  # addmm's first argument is the bias
    return _GEMM_NAMES.get(caller or "", op.op), _numel(a.shape) * b.shape[-1]


def _batch_norm(op: OpRecord, caller: str | None) -> tuple[str, int]:
    # fvcore batchnorm_flop_jit (and norm_flop_counter(1) for instance_norm, which runs as a batch norm)
    x, weight = op.args[0], op.args[1]
    affine = isinstance(weight, TensorInfo)
    if op.op == "_native_batch_norm_legit_no_training":
        training = False
    elif op.overload == "no_stats":
        training = True
    else:
        training = bool(op.args[5])
    if caller == "F.instance_norm":
        return "instance_norm", x.numel() * (5 if affine else 4)
    if training:
        return "batch_norm", x.numel() * (5 if affine else 4)
    return "batch_norm", x.numel() * (2 if affine else 1)


def _norm(name: str, weight_index: int) -> MacRule:
    def rule(op: OpRecord, caller: str | None) -> tuple[str, int]:
        affine = len(op.args) > weight_index and isinstance(op.args[weight_index], TensorInfo)
        return name, op.args[0].numel() * (5 if affine else 4)

    return rule


def _adaptive_avg_pool(op: OpRecord, caller: str | None) -> tuple[str, int]:
    return "adaptive_avg_pool2d", op.args[0].numel()


def _mean(op: OpRecord, caller: str | None) -> tuple[str, int] | None:
    # F.adaptive_avg_pool2d(x, 1) runs as a mean (so does F.interpolate(mode="area") to size 1, through it); fvcore
    # counts it, but not a mean the model's code takes itself
    if caller in ("F.adaptive_avg_pool2d", "F.interpolate"):
        return _adaptive_avg_pool(op, caller)
    return None


def _per_output(name: str, scale: int) -> MacRule:
    def rule(op: OpRecord, caller: str | None) -> tuple[str, int]:
        return name, scale * _numel(op.output_shapes[0])

    return rule


RULES: dict[str, MacRule] = {
    "convolution": _conv,
    "addmm": _mm,
    "mm": _mm,
    "bmm": _mm,
    "native_batch_norm": _batch_norm,
    "_native_batch_norm_legit": _batch_norm,
    "_native_batch_norm_legit_no_training": _batch_norm,
    "cudnn_batch_norm": _batch_norm,
    "miopen_batch_norm": _batch_norm,
    "native_group_norm": _norm("group_norm", 1),
    "native_layer_norm": _norm("layer_norm", 2),
    "_adaptive_avg_pool2d": _adaptive_avg_pool,
    "mean": _mean,
    "upsample_nearest2d": _per_output("upsample_nearest2d", 1),
    "upsample_bilinear2d": _per_output("upsample_bilinear2d", 4),
    "grid_sampler_2d": _per_output("grid_sampler", 4),
}
"""aten operator -> rule; a rule may return None for a call its operator's convention does not count (`mean`)."""

ZERO_ARITHMETIC = frozenset(
    """
    add add_ sub sub_ rsub mul mul_ div div_ neg abs sign pow sqrt rsqrt exp log reciprocal square addcmul addcdiv
    relu relu_ relu6 hardtanh hardtanh_ leaky_relu leaky_relu_ elu elu_ gelu silu silu_ mish sigmoid sigmoid_ tanh
    tanh_ hardswish hardswish_ hardsigmoid hardsigmoid_ softplus prelu _prelu_kernel threshold clamp clamp_
    clamp_min clamp_min_ clamp_max clamp_max_ _softmax softmax _log_softmax log_softmax maximum minimum where
    max_pool2d max_pool2d_with_indices max_pool1d max_pool3d max_pool3d_with_indices avg_pool1d avg_pool2d avg_pool3d
    adaptive_max_pool2d adaptive_max_pool1d adaptive_avg_pool1d mean sum amax amin max min var var_mean std
    std_mean norm linalg_vector_norm logsumexp cumsum prod erf erfinv expm1 log1p celu selu glu log_sigmoid_forward
    argmax argmin topk sort isnan isinf nan_to_num
    native_dropout dropout feature_dropout alpha_dropout bernoulli bernoulli_
    eq ne lt le gt ge logical_and logical_or logical_not bitwise_and bitwise_or bitwise_not floor floor_divide
    ceil round remainder fmod
    """.split()
)
"""Arithmetic that is not a multiply-accumulate with weights (elementwise, activations, pooling, reductions)."""

VIEWS_AND_ALLOCATION = frozenset(
    """
    view _unsafe_view reshape view_as flatten unflatten t transpose transpose_ permute expand expand_as squeeze
    squeeze_ unsqueeze unsqueeze_ slice select narrow split split_with_sizes unbind chunk clone contiguous copy_
    _to_copy to detach alias lift_fresh as_strided as_strided_ empty empty_like empty_strided new_empty new_zeros
    new_ones new_full zeros zeros_like ones ones_like full full_like fill_ zero_ scalar_tensor _local_scalar_dense
    """.split()
)
"""Views, copies and allocation: they compute nothing a model's structure is made of."""

DATA_MOVEMENT = VIEWS_AND_ALLOCATION | frozenset(
    """
    cat stack repeat constant_pad_nd pad reflection_pad2d replication_pad2d roll flip index index_select gather
    masked_fill masked_fill_ scatter arange normal_ uniform_ rand rand_like randn randn_like pixel_shuffle
    pixel_unshuffle index_put_ _index_put_impl_ nonzero masked_select
    """.split()
)
"""Views, copies, concatenation, padding, indexing and allocation: no arithmetic at all."""

ZERO_BY_CONVENTION = ZERO_ARITHMETIC | DATA_MOVEMENT
"""aten operators (and their TorchScript names, for fvcore's own report) that fvcore's convention counts as 0."""


def operator_macs(op: OpRecord, caller: str | None) -> tuple[str, int] | None:
    """(fvcore operator name, MACs) for a counted call; None when the call counts 0 (by convention or no rule).

    `caller` is the torch function the operator ran in (FunctionRecord.name), or None if unknown.
    """
    rule = RULES.get(op.op)
    return rule(op, caller) if rule is not None else None
