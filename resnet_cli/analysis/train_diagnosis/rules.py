"""Why a ResNet will not train, read from one observed step at initialisation: each rule is a side-effect-free
function from the step's context to findings, with the evidence in numbers, why it stops training, and the fix.

Thresholds are the constants below, stated in docs/debug-training.md and checked for no false alarm on every preset
and the model corpus.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from resnet_cli.analysis.residuals import ResidualAdd
from resnet_cli.analysis.train_diagnosis.collect import CallStats, ParamStats, StepRun
from resnet_cli.trace import LayerRecord
from resnet_cli.units import first_line
from resnet_cli.user_model import is_user_file

DEAD_FRACTION = 0.99  # a ReLU whose outputs are 0 this often is dead
SATURATED_FRACTION = 0.99  # a gate whose outputs sit at 0 or 1 this often is saturated
INIT_STD_FACTOR = 10.0  # a conv weight's std this far from Kaiming fan-out's, either way, is a bad init
STAGE_GROWTH = 10.0  # activations growing or shrinking more than this from one stage to the next
# The gradient RMS at the first stage's output against the last's. Below 1 / VANISHING_RATIO: vanishing. Healthy
# post-activation ResNets have the larger gradient early (each block adds its branch's gradient to the identity
# path's: resnet152 337x, preact_resnet1001 740x at initialisation), so exploding needs EXPLODING_RATIO.
VANISHING_RATIO = 100.0
EXPLODING_RATIO = 10_000.0
SHORTCUT_NAMES = re.compile(r"(downsample|shortcut|skip|proj|projection|residual|identity)", re.I)
LISTED = 4  # names listed in a finding before "and N more"
NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass(frozen=True)
class Finding:
    """One training problem: where, the evidence in numbers, why it stops training, and the fix in code."""

    kind: str
    modules: tuple[str, ...]
    evidence: str
    why: str
    fix: str


@dataclass(frozen=True)
class TrainingContext:
    """Everything the rules read: the model (never changed), the observed step, and its residual structure."""

    model: nn.Module
    run: StepRun
    stages: tuple[LayerRecord, ...]  # stage calls, in order
    blocks: tuple[LayerRecord, ...]  # block calls (a stage's children), in order
    adds: dict[int, ResidualAdd]  # module call order -> its residual add
    residual_expected: bool  # the model is meant to be residual (a preset, residual names, or some block adds)
    zero_init_asked: bool  # --zero-init-residual / zero_init_residual=True was given
    intended_zero: frozenset[str] = field(default_factory=frozenset)  # each block's last layer, zeroed (zero-init residual)
    last_layers: dict[int, str] = field(default_factory=dict)  # block call -> the last conv or norm of its main branch

    def stats(self, record: LayerRecord) -> CallStats:
        return self.run.calls.get(record.order) or CallStats(record.order)


Rule = Callable[[TrainingContext], list[Finding]]


def listed(names: list[str]) -> str:
    """'a, b, c and 4 more'."""
    shown = ", ".join(names[:LISTED])
    return shown if len(names) <= LISTED else f"{shown} and {len(names) - LISTED} more"


def _where(module: nn.Module) -> str:
    """'file.py:LINE (Class.forward)' of a module's forward, or its class name."""
    forward = type(module).forward
    try:
        path = inspect.getsourcefile(forward)
        line = inspect.getsourcelines(forward)[1]
    except (OSError, TypeError):
        return f"{type(module).__name__}.forward"
    if path is None or not is_user_file(path):  # torch's own modules: the class is all there is to say
        return f"{type(module).__name__}.forward"
    from resnet_cli.analysis.diagnosis.report import relative_path

    return f"{relative_path(path or '')}:{line} ({type(module).__name__}.forward)"


def _stage_trend(ctx: TrainingContext, attribute: str) -> str:
    parts = []
    for stage in ctx.stages:
        value = getattr(ctx.stats(stage), attribute)
        parts.append(f"{stage.name} {value:.3g}" if value is not None else f"{stage.name} -")
    return ", ".join(parts)


def step_failed(ctx: TrainingContext) -> list[Finding]:
    """The forward or backward pass raised: nothing else can be measured."""
    error = ctx.run.error
    if error is None:
        return []
    unfinished = [r for r in ctx.run.trace.records if not r.finished]
    where = unfinished[-1].name if unfinished else ""
    message = first_line(error)
    if "more than 1 value per channel" in message:
        return [Finding(
            "batch_norm_single_value", (where,), f"{where}: {message}",
            "batch norm in training mode normalises each channel with the batch's own mean and variance; with one "
            "value per channel there is no variance to divide by, so the step cannot run",
            "train with a batch of 2 or more (and a feature map larger than 1x1 where the batch is 1), or use "
            "nn.GroupNorm(32, channels) there, which needs no batch statistics",
        )]  # fmt: skip
    if ctx.run.backward_failed:
        return [Finding(
            "step_failed", ("(backward)",), f"the backward pass fails: {message}",
            "the training step cannot run, so nothing else could be measured",
            "read the error: a custom autograd.Function's backward, an in-place change of a tensor autograd saved "
            "(`x += ...` on a saved activation: use `x = x + ...`), or a non-differentiable operation",
        )]  # fmt: skip
    return [Finding(
        "step_failed", (where or "(model)",), f"{where or 'the model'}: {message}",
        "the training step cannot run, so nothing else could be measured",
        "run `resnet-cli debug-shapes` with the same model and input for where and why the forward pass breaks",
    )]  # fmt: skip


def residual_disabled(ctx: TrainingContext) -> list[Finding]:
    """Blocks that return no residual sum: the add removed, the shortcut overwritten or never used."""
    if not ctx.blocks or not (ctx.residual_expected or ctx.adds):
        return []
    modules = dict(ctx.model.named_modules())
    missing = [b for b in ctx.blocks if b.order not in ctx.adds and (
        b.input_shapes[:1] == b.output_shapes[:1]  # an identity add would fit
        or any(SHORTCUT_NAMES.search(child) for child, _ in modules[b.name].named_children())
    )]  # fmt: skip  (a block that changes the shape and has no shortcut is plain by design, as MobileNetV2's)
    findings = _detached_shortcuts(ctx)
    if not missing:
        return findings
    called = {r.name for r in ctx.run.trace.records}
    by_type: dict[str, list[LayerRecord]] = {}
    for block in missing:
        by_type.setdefault(block.type, []).append(block)
    for block_type, blocks in by_type.items():
        names = [b.name for b in blocks]
        shortcuts = [f"{b.name}.{child}" for b in blocks for child, _ in modules[b.name].named_children()
                     if SHORTCUT_NAMES.search(child)]  # fmt: skip
        unused = [s for s in shortcuts if s in called]
        never = [s for s in shortcuts if s not in called]
        parts = [f"{len(blocks)} of {len(ctx.blocks)} blocks ({block_type}) return no residual sum: {listed(names)}; "
                 f"no operator in them adds the block's input, or its shortcut, to the main branch"]  # fmt: skip
        if unused:
            parts.append(f"their shortcut runs but its output reaches nothing the block returns ({listed(unused)})")
        if never:
            parts.append(f"their shortcut is defined but never called ({listed(never)})")
        if len(ctx.stages) > 1:
            parts.append(f"gradient RMS at stage outputs, first to last: {_stage_trend(ctx, 'grad_rms')}")
        findings.append(Finding(
            "residual_disabled", tuple(names), "; ".join(parts),
            "without the identity path each block is a plain stack of layers: the gradient reaching early layers is "
            "the product of every later layer's, and a deep plain network trains worse than a shallow one (He et "
            "al. 2015, Fig. 1)",
            f"in {_where(modules[blocks[0].name])}, end with `out = out + identity` (identity = x, or "
            "self.downsample(x) when the shape changes), then the final ReLU",
        ))  # fmt: skip
    return findings


def _detached_shortcuts(ctx: TrainingContext) -> list[Finding]:
    """Residual adds whose shortcut operand autograd does not track (`identity = x.detach()`): the block adds the
    identity in forward, but no gradient flows back through it."""
    blocks = []
    for order, add in ctx.adds.items():
        op = ctx.run.trace.ops[add.op]
        grads = op.requires_grad
        sources = list(op.input_from)
        name = ctx.run.trace.records[order].name
        cut_here = any(c.module == name or c.module.startswith(name + ".") for c in ctx.run.cuts)
        if cut_here and add.shortcut_source in sources and len(grads) == len(sources):
            shortcut = sources.index(add.shortcut_source)
            if not grads[shortcut] and any(g for i, g in enumerate(grads) if i != shortcut):
                blocks.append(name)
    if not blocks:
        return []
    return [Finding(
        "residual_disabled", tuple(blocks),
        f"the shortcut reaches the residual add without a gradient path in {len(blocks)} blocks: {listed(blocks)}; "
        + _cut_text(ctx),
        "the forward pass adds the identity, but backward cannot use it: gradients reach early layers only through "
        "every block's layers, as in a plain network",
        "do not detach the shortcut: `identity = x` (not x.detach() or x.data), and no torch.no_grad() around it",
    )]  # fmt: skip


def zero_weights(ctx: TrainingContext) -> list[Finding]:
    """Weights that are all zero and should not be: every layer but each block's last one (zero-init residual)."""
    modules = dict(ctx.model.named_modules())
    zero = [p for p in ctx.run.params if p.name.endswith("weight") and p.all_zero and len(p.shape) >= 1
            and isinstance(modules.get(p.module), (*WEIGHTED, *NORMS))]  # fmt: skip
    norms = [p for p in ctx.run.params if p.name.endswith("weight") and isinstance(modules.get(p.module), NORMS)]
    all_norms_zero = len(norms) > 1 and all(p.all_zero for p in norms)
    wrong = [p for p in zero if all_norms_zero or p.module not in ctx.intended_zero]
    if not wrong:
        return []
    names = [p.module for p in wrong]
    kinds = sorted({type(modules[n]).__name__ for n in names})
    what = "every norm layer's weight is zero, not only each block's last" if all_norms_zero else "weights are all zero"
    return [Finding(
        "zero_weights", tuple(names), f"{what}: {listed(names)} ({', '.join(kinds)})",
        "a layer with zero weights outputs a constant: its input gets no gradient and every unit gets the same "
        "update, so the layers before it never learn (only each block's last BN may start at zero, which makes the "
        "block start as the identity)",
        "nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu') for convs, the default "
        "nn.Linear init (or nn.init.normal_(m.weight, 0, 0.01)) for linear layers, nn.init.ones_(m.weight) and "
        "nn.init.zeros_(m.bias) for norm layers; zero only each block's last norm layer (zero_init_residual)",
    )]  # fmt: skip


def kaiming_fan_out_std(shape: tuple[int, ...]) -> float:
    """The std of nn.init.kaiming_normal_(mode='fan_out', nonlinearity='relu') for a conv weight of `shape`."""
    fan_out = shape[0] * math.prod(shape[2:])
    return math.sqrt(2.0 / fan_out)


def kaiming_fan_in_std(shape: tuple[int, ...]) -> float:
    """The same with mode='fan_in': the weight's second dimension is already in_channels / groups."""
    return math.sqrt(2.0 / (shape[1] * math.prod(shape[2:])))


def init_scale(ctx: TrainingContext) -> list[Finding]:
    """Conv weights far from Kaiming fan-out, and activations growing or shrinking too fast from stage to stage."""
    modules = dict(ctx.model.named_modules())
    findings = []
    bad = []
    for p in ctx.run.params:
        if p.name.endswith("weight") and len(p.shape) >= 3 and not p.all_zero and isinstance(
            modules.get(p.module), nn.modules.conv._ConvNd
        ):
            # between Kaiming's fan-in and fan-out scales is sound (they differ for channel-changing, grouped and
            # depthwise convs, where PyTorch's default init lands between them)
            expected = kaiming_fan_out_std(p.shape)
            low, high = sorted((expected, kaiming_fan_in_std(p.shape)))
            factor = p.std / expected
            if p.std > INIT_STD_FACTOR * high or p.std < low / INIT_STD_FACTOR:
                bad.append((p, expected, factor))
    if bad:
        names = [p.module for p, _, _ in bad]
        evidence = "; ".join(f"{p.module}: std {p.std:.3g}, Kaiming fan-out {expected:.3g} ({factor:.3g}x)"
                             for p, expected, factor in bad[:LISTED])  # fmt: skip
        if len(bad) > LISTED:
            evidence += f"; and {len(bad) - LISTED} more"
        findings.append(Finding(
            "init_scale", tuple(names), f"conv weights more than {INIT_STD_FACTOR:g}x from Kaiming fan-out: {evidence}",
            "each conv multiplies the scale of what flows through it by about std / Kaiming's: far off, activations "
            "and gradients explode or vanish with depth unless every conv is followed by a normalisation",
            "nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu') for every nn.Conv2d m",
        ))  # fmt: skip
    scales = [(s.name, ctx.stats(s).output_rms) for s in ctx.stages]
    jumps = [(a, b, vb / va) for (a, va), (b, vb) in zip(scales, scales[1:], strict=False) if va and vb is not None]
    jumps = [j for j in jumps if j[2] > STAGE_GROWTH or j[2] < 1 / STAGE_GROWTH]
    if jumps:
        findings.append(Finding(
            "activation_scale", tuple(b for _, b, _ in jumps),
            f"activation RMS changes more than {STAGE_GROWTH:g}x between stages: "
            + "; ".join(f"{a} -> {b}: {r:.3g}x" for a, b, r in jumps)
            + f" (stage outputs: {_stage_trend(ctx, 'output_rms')})",
            "at initialisation each stage should keep activations at a similar scale; growth or decay compounds with "
            "depth and pushes later layers into overflow or underflow, and their gradients with them",
            "initialise convs with Kaiming fan-out, keep a BatchNorm after each conv, and start each block near the "
            "identity (zero_init_residual)",
        ))  # fmt: skip
    return findings


def no_gradient(ctx: TrainingContext) -> list[Finding]:
    """Parameters that require grad but whose .grad stayed None or zero, with the reason where it can be found."""
    called = {r.name for r in ctx.run.trace.records}
    expected_zero = _zero_init_shadow(ctx)
    frozen = [p for p in ctx.run.params if not p.requires_grad]
    missing = [p for p in ctx.run.params if p.requires_grad and p.grad != "ok" and p.module not in expected_zero]
    findings = []
    never = [p for p in missing if p.module not in called]
    if never:
        modules = sorted({p.module for p in never})
        findings.append(Finding(
            "no_gradient", tuple(modules), f"{len(never)} parameters get no gradient: their modules are defined but "
            f"never called in forward: {listed(modules)}",
            "a module forward never calls takes no part in the loss: its parameters never change (and DDP fails "
            "with 'parameters that were not used in producing loss')",
            "call it in forward (e.g. `x = self.layer4(x)` was left out), or delete it from __init__",
        ))  # fmt: skip
    cut = [p for p in missing if p.module in called]
    if cut:
        modules = sorted({p.module for p in cut}, key=[p.module for p in ctx.run.params].index)
        state = "None" if any(p.grad == "none" for p in cut) else "zero"
        dead = _dead_relus(ctx)
        if state == "zero" and dead and not ctx.run.cuts:
            reasons = f"ReLUs after them output 0 everywhere ({listed([r.name for r, _ in dead])}), which passes no gradient"
            why = "a gradient of exactly zero everywhere: they do not change, however long the model trains"
            fix = "fix what makes those ReLUs dead (see the dead ReLU and zero-weight findings); the gradient then flows"
        elif state == "zero":
            reasons = "autograd reaches them, but every element of their gradient is 0"
            why = ("something after them multiplies their contribution by zero (a zero weight, `0 *`, a mask): they do "
                   "not learn at this step, and do not learn at all while it stays zero")  # fmt: skip
            fix = "find the zero factor after them (see the zero-weight findings); initialise it away from zero"
        else:
            reasons = _cut_text(ctx)
            why = "the loss does not depend on them through a path autograd can follow, so they never change"
            fix = ("remove the .detach() / .data / torch.no_grad() from forward (keep it only where the gradient must "
                   "stop), and make sure the module's output reaches the model's output")  # fmt: skip
        findings.append(Finding(
            "no_gradient", tuple(modules), f"{len(cut)} parameters of modules that ran get a {state} gradient: "
            f"{listed(modules)}; {reasons}", why, fix,
        ))  # fmt: skip
    if frozen and not frozen_prefix(ctx):  # a frozen stem and early stages is fine-tuning: a note, not a finding
        modules = sorted({p.module for p in frozen}, key=[p.module for p in ctx.run.params].index)
        findings.append(Finding(
            "frozen", tuple(modules), f"{len(frozen)} parameters have requires_grad=False: {listed(modules)}",
            "a parameter with requires_grad=False is never updated; on purpose when fine-tuning, a bug otherwise",
            "drop the `requires_grad_(False)` / `p.requires_grad = False` (or ignore this if freezing is intended)",
        ))  # fmt: skip
    return findings


def frozen_prefix(ctx: TrainingContext) -> bool:
    """Whether the parameters with requires_grad=False are exactly the first ones of the model (its stem and early
    stages): fine-tuning with a frozen backbone, on purpose."""
    flags = [p.requires_grad for p in ctx.run.params]
    if all(flags) or not any(flags):
        return False
    first_trainable = flags.index(True)
    return not any(not flag for flag in flags[first_trainable:])


def _cut_text(ctx: TrainingContext) -> str:
    if not ctx.run.cuts:
        return "their output does not reach the loss"
    from resnet_cli.analysis.diagnosis.report import relative_path

    words = {"detach": ".detach()", "data": ".data", "no_grad": "torch.no_grad()"}
    places = [f"{words[c.kind]} in {c.module or 'the model'}"
              + (f" at {relative_path(c.location[0])}:{c.location[1]}" if c.location else "") for c in ctx.run.cuts]  # fmt: skip
    return "the forward pass stops gradients: " + listed(list(dict.fromkeys(places)))


def _zero_init_shadow(ctx: TrainingContext) -> set[str]:
    """Modules whose gradient is zero at the first step because a zero-initialised last layer follows them in the
    same block's main branch (expected with zero_init_residual; they learn from the second step on)."""
    shadow: set[str] = set()
    for order, add in ctx.adds.items():
        block = ctx.run.trace.records[order]
        last = ctx.last_layers.get(order)
        if last is None or last not in ctx.intended_zero:
            continue
        shortcut = add.shortcut_from
        for name, _ in dict(ctx.model.named_modules())[block.name].named_modules():
            full = f"{block.name}.{name}" if name else block.name
            if full != last and not (shortcut and full.startswith(shortcut)):
                shadow.add(full)
    return shadow


def _dead_relus(ctx: TrainingContext) -> list[tuple[LayerRecord, float]]:
    """ReLU calls whose outputs are 0 at least DEAD_FRACTION of the time, each module once (its first such call)."""
    dead, seen = [], set()
    for record in ctx.run.trace.records:
        fraction = ctx.stats(record).zero_fraction
        if record.type in ("ReLU", "ReLU6") and fraction is not None and fraction >= DEAD_FRACTION:
            if record.name not in seen:
                seen.add(record.name)
                dead.append((record, fraction))
    return dead


def dead_units(ctx: TrainingContext) -> list[Finding]:
    """ReLUs whose outputs are (nearly) all zero, gates saturated at 0 or 1."""
    findings = []
    dead, saturated = _dead_relus(ctx), []
    seen: set[str] = set()
    for record in ctx.run.trace.records:
        stats = ctx.stats(record)
        if stats.saturated_fraction is not None and stats.saturated_fraction >= SATURATED_FRACTION:
            if record.name not in seen:  # a module called twice is listed once
                seen.add(record.name)
                saturated.append((record, stats.saturated_fraction))
    if dead:
        findings.append(Finding(
            "dead_relu", tuple(r.name for r, _ in dead),
            "ReLU outputs that are 0: " + "; ".join(f"{r.name} {f:.1%}" for r, f in dead[:LISTED])
            + (f"; and {len(dead) - LISTED} more" if len(dead) > LISTED else ""),
            "a ReLU passes no gradient where it outputs 0: when nearly all of it does, the layers before it stop "
            "learning",
            "look at what feeds it: a large negative bias (BatchNorm bias, conv bias) or a sign flip; zero the BN bias "
            "(nn.init.zeros_(bn.bias)), use Kaiming init, or nn.LeakyReLU(0.01)",
        ))  # fmt: skip
    if saturated:
        findings.append(Finding(
            "saturated_gate", tuple(r.name for r, _ in saturated),
            "gate outputs at 0 or 1: " + "; ".join(f"{r.name} {f:.1%}" for r, f in saturated[:LISTED]),
            "a sigmoid at 0 or 1 has a derivative near 0: the gate (e.g. squeeze-excitation) neither learns nor "
            "passes gradient to the branch that computes it",
            "initialise the layer before the gate near zero so it starts at 0.5, and check its input's scale",
        ))  # fmt: skip
    return findings


def batch_norm_misuse(ctx: TrainingContext) -> list[Finding]:
    """BatchNorm in eval mode while training; the last BN of each block not zeroed though zero-init was asked."""
    findings = []
    modules = dict(ctx.model.named_modules())
    frozen_params = {p.module for p in ctx.run.params if not p.requires_grad}
    frozen_bn = [name for name, training in ctx.run.training.items()
                 if not training and isinstance(modules.get(name), nn.modules.batchnorm._BatchNorm)
                 and not (frozen_prefix(ctx) and name in frozen_params)]  # fmt: skip  (frozen with its layers: intended)
    if frozen_bn:
        findings.append(Finding(
            "batch_norm_eval", tuple(frozen_bn),
            f"{len(frozen_bn)} BatchNorm layers are in eval mode after model.train(): {listed(frozen_bn)}",
            "in eval mode BatchNorm normalises with its running statistics, not the batch's: at initialisation those "
            "are 0 and 1, so it does not normalise, and its statistics never update",
            "remove the .eval() call (or the train() override) that keeps them in eval mode; to freeze them on purpose, "
            "use torchvision.ops.FrozenBatchNorm2d so the intent is explicit",
        ))  # fmt: skip
    if ctx.zero_init_asked:
        params = {p.module: p for p in ctx.run.params if p.name.endswith("weight")}
        not_zeroed = []
        for last in ctx.last_layers.values():
            if last in params and not params[last].all_zero:
                not_zeroed.append(last)
        if not_zeroed:
            findings.append(Finding(
                "zero_init_missing", tuple(not_zeroed),
                f"zero_init_residual was asked for, but the BatchNorm before these residual adds is not zero: "
                f"{listed(not_zeroed)}",
                "zero-init residual makes each block start as the identity, which lets deep ResNets train with large "
                "batches (Goyal et al. 2017); a block class the init code does not recognise is silently skipped",
                "in the init code, zero the last BN of every block class the model uses: "
                "`nn.init.zeros_(block.bn3.weight)` (Bottleneck) / `block.bn2.weight` (BasicBlock)",
            ))  # fmt: skip
    return findings


def non_finite(ctx: TrainingContext) -> list[Finding]:
    """The first module call whose output, or the gradient reaching it, is not finite (NaN or infinity)."""
    for what, attribute in (("output", "output_rms"), ("gradient", "grad_rms")):
        calls = [r for r in ctx.run.trace.records if not math.isfinite(getattr(ctx.stats(r), attribute) or 0.0)]
        if calls:
            first = calls[-1] if what == "gradient" else calls[0]  # gradients flow backwards: the last call is first
            return [Finding(
                "non_finite", (first.name,), f"the {what} of {first.name or 'the model'} ({first.type}) is not finite "
                f"(NaN or infinity), first of {len(calls)} module calls",
                "a NaN or infinity spreads to every later activation and every gradient: the loss cannot decrease",
                "check that layer's weights and inputs for NaN/inf (an init that divides by zero, a log or sqrt of "
                "zero, an overflow in float16)",
            )]  # fmt: skip
    return []


def gradient_ratio(ctx: TrainingContext) -> list[Finding]:
    """Gradients vanishing or exploding across depth: first-stage vs last-stage gradient RMS."""
    if non_finite(ctx):
        return []  # not a ratio: the non-finite finding names where it starts
    values = [(s.name, ctx.stats(s).grad_rms) for s in ctx.stages if ctx.stats(s).grad_rms]
    if len(values) < 2:
        return []
    (first, g_first), (last, g_last) = values[0], values[-1]
    ratio = g_first / g_last
    if 1 / VANISHING_RATIO <= ratio <= EXPLODING_RATIO:
        return []
    direction = "vanish" if ratio < 1 else "explode"
    limit = f"below 1/{VANISHING_RATIO:g}" if ratio < 1 else f"above {EXPLODING_RATIO:g}"
    return [Finding(
        f"gradients_{direction}", (first, last),
        f"gradient RMS at {first}'s output is {ratio:.3g}x that at {last}'s ({limit}): {_stage_trend(ctx, 'grad_rms')}",
        f"gradients {direction} on their way back to the first stage, so early layers learn "
        + ("far slower" if ratio < 1 else "far faster") + " than late ones",
        "keep the residual adds, a BatchNorm after each conv and Kaiming fan-out init; zero_init_residual helps deep nets",
    )]  # fmt: skip


RULES: tuple[Rule, ...] = (
    non_finite,
    residual_disabled,
    zero_weights,
    init_scale,
    no_gradient,
    dead_units,
    batch_norm_misuse,
    gradient_ratio,
)
"""Run in this order on a step that ran; `step_failed` alone when it did not."""


def diagnose(ctx: TrainingContext) -> list[Finding]:
    """Every finding of the step, in RULES order."""
    if ctx.run.error is not None:
        return step_failed(ctx)
    return [finding for rule in RULES for finding in rule(ctx)]


def block_share(ctx: TrainingContext, block: LayerRecord) -> float | None:
    """The residual branch's share of the block's sum: RMS(main) / (RMS(main) + RMS(shortcut))."""
    add = ctx.adds.get(block.order)
    if add is None or add.main_from is None:
        return None
    by_name = {r.name: r for r in ctx.run.trace.records if r.parent == block.order}
    main = by_name.get(add.main_from)
    main_rms = ctx.stats(main).output_rms if main is not None else None
    if add.shortcut_from is None:
        shortcut_rms = ctx.stats(block).input_rms
    else:
        shortcut = by_name.get(add.shortcut_from)
        shortcut_rms = ctx.stats(shortcut).output_rms if shortcut is not None else None
    if main_rms is None or shortcut_rms is None or main_rms + shortcut_rms == 0:
        return None
    return main_rms / (main_rms + shortcut_rms)


__all__ = ["RULES", "Finding", "ParamStats", "TrainingContext", "diagnose"]
