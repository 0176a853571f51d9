"""The words of each diagnosis: facts a rule found in, sentences out (what went wrong, and the change that fixes it)."""

from __future__ import annotations

from typing import Any

from torch import nn

from resnet_cli.analysis.diagnosis.report import Diagnosis, Shape, SourceLocation, relative_path
from resnet_cli.analysis.diagnosis.source import keyword_or_position
from resnet_cli.trace import LayerRecord
from resnet_cli.units import shape_text

SHORTCUT_NAMES = ("downsample", "shortcut", "skip", "proj", "projection", "residual")


def _add_fails(block: LayerRecord, broadcast: bool) -> str:
    """How a residual add with mismatched operands went: it failed, or it ran by broadcasting one onto the other."""
    if broadcast:
        return f"The residual add in {_label(block)} runs only by broadcasting, which silently gives a wrong result"
    return f"The residual add in {_label(block)} fails"


def residual_add_mismatch(block: LayerRecord, residual: dict[str, Any], broadcast: bool = False) -> Diagnosis:
    main, shortcut = residual["main"], residual["shortcut"]
    main_from, shortcut_from = residual["main_from"], residual["shortcut_from"]
    entered = block.input_shapes[0] if block.input_shapes else shortcut
    in_ch, out_ch = entered[1], main[1]
    stride = _stride_between(entered, main)
    where = f"{_label(block)}"
    what = []
    if main[1] != shortcut[1]:
        what.append(f"channels {main[1]} vs {shortcut[1]}")
    if main[2:] != shortcut[2:]:
        what.append(f"spatial size {shape_text(main[2:])} vs {shape_text(shortcut[2:])}")
    projection = f"nn.Sequential(nn.Conv2d({in_ch}, {out_ch}, kernel_size=1, stride={stride}, bias=False), nn.BatchNorm2d({out_ch}))"
    if shortcut_from is None:
        summary = (
            f"{_add_fails(block, broadcast)}: the main branch ({_from(main_from)}) gives {shape_text(main)} but the "
            f"shortcut is the block's input unchanged, {shape_text(shortcut)} ({', '.join(what)}). The block changes "
            f"{_changes(entered, main)}, so an identity shortcut cannot be added; it needs a projection."
        )
        fix = f"Give {where} a projection shortcut and add its output instead of the input: {projection}."
    else:
        summary = (
            f"{_add_fails(block, broadcast)}: the main branch ({_from(main_from)}) gives {shape_text(main)} but the "
            f"shortcut {shortcut_from} gives {shape_text(shortcut)} ({', '.join(what)})."
        )
        fix = (
            f"Build {shortcut_from} to map {shape_text(entered)} to {shape_text(main)}: {projection}"
            + (f" (its output channels must equal the main branch's {out_ch}, e.g. planes x expansion)"
               if main[1] != shortcut[1] else "")
            + "."
        )
    return Diagnosis("residual_add_mismatch", summary, fix)


def rounding_shortcut(
    block: LayerRecord, add: Any, pool: Any, size_rule: tuple[int, int] | None, broadcast: bool = False
) -> Diagnosis:
    """The shortcut's pooling layer rounds the other way than the main branch's strided conv (an avg-down shortcut
    in floor mode): `pool` is (the rules.PoolCall, the size with the other rounding); `size_rule` (M, a size
    that runs) when the input's size explains it."""
    call, size = pool
    summary = (
        f"{_add_fails(block, broadcast)}: the main branch ({_from(add.main_from)}) gives "
        f"{shape_text(add.main)} but the shortcut gives {shape_text(add.shortcut)}. {call.label[:-1]}, ceil_mode="
        f"{call.ceil_mode}) turns the {shape_text(call.entered)} map into {shape_text(call.out)}, "
        f"while the main branch's strided conv rounds the other way, to {shape_text(size)}. This depends on the input "
        f"size: the two agree whenever the map entering {block.name} has even sides."
    )
    if size_rule is not None:
        multiple, runs = size_rule
        summary += (f" Input sides that are multiples of {multiple} keep every such map even ({runs}x{runs} and "
                    f"{runs + multiple}x{runs + multiple} run).")
    fix = (
        f"Set ceil_mode={not call.ceil_mode} on {call.name}"
        + (", with count_include_pad=False, as ResNet-D's avg-down shortcut does" if call.average else "")
        + "; it then rounds like the main branch. Or keep the model and use inputs whose sides keep every map even."
    )
    return Diagnosis("residual_add_mismatch", summary, fix)


def conditional_projection(block: LayerRecord, add: Any, others: list[str], built: Any, broadcast: bool = False) -> Diagnosis:
    """The block adds its input unchanged, but other blocks of its class have a projection, built under `if` in
    __init__ (`built`, a source.Assignment): the condition is false here although the shape changes."""
    entered = block.input_shapes[0] if block.input_shapes else add.shortcut
    listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
    where = f"{built.owner}.__init__ ({relative_path(built.file)}:{built.condition_line})"
    summary = (
        f"{_add_fails(block, broadcast)}: the main branch ({_from(add.main_from)}) gives {shape_text(add.main)} but the "
        f"shortcut is the block's input unchanged, {shape_text(add.shortcut)}. Other {block.type} blocks ({listed}) "
        f"have a projection (self.{built.attribute}); this one was built without it, because `if {built.condition}:` "
        f"in {where} is false for it although the block changes {_changes(entered, add.main)}."
    )
    covers = []
    if entered[1] != add.main[1]:
        conv = built.convs[0] if built.convs else None
        pair = (keyword_or_position(conv, "in_channels", 0), keyword_or_position(conv, "out_channels", 1)) if conv else (None, None)
        covers.append(f"{pair[0]} != {pair[1]}" if all(pair) else "<input channels> != <output channels>")
    if entered[2:] != add.main[2:] and "stride" not in (built.condition or ""):
        covers.append("stride != 1")
    fix = (
        f"Make the condition in {where} cover every change of shape: `if {built.condition} or "
        f"{' or '.join(covers)}:`, so every block whose shape changes gets self.{built.attribute}."
    )
    return Diagnosis("residual_add_mismatch", summary, fix)


def shortcut_stride(
    block: LayerRecord, add: Any, main_conv: str, stride: int, expression: str, built: Any, written: str,
    broadcast: bool = False,
) -> Diagnosis:  # fmt: skip
    """The projection exists but strides differently from the main branch's strided conv `main_conv`."""
    where = f"{built.owner}.__init__ ({relative_path(built.file)}:{built.line})"
    summary = (
        f"{_add_fails(block, broadcast)}: the main branch ({_from(add.main_from)}) gives {shape_text(add.main)} but the "
        f"projection {add.shortcut_from} gives {shape_text(add.shortcut)}: it is built with stride {written}, while "
        f"{main_conv} in the same block strides by {stride}."
    )
    fix = (
        f"In {where} build the projection's conv with `stride={expression}`, as {main_conv} is built; every "
        f"{built.owner} is built by that line, so this fixes each downsampling block."
    )
    return Diagnosis("residual_add_mismatch", summary, fix)


def padded_shortcut(
    block: LayerRecord, add: Any, before: int, after: int, location: tuple[str, int] | None, broadcast: bool = False
) -> Diagnosis:
    """An option-A shortcut (subsampled, zero-padded channels) pads `before` + `after` channels, the wrong amount."""
    entered = add.shortcut[1] - before - after
    needed = add.main[1] - entered
    where = f" at {relative_path(location[0])}:{location[1]}" if location else ""
    summary = (
        f"{_add_fails(block, broadcast)}: the main branch ({_from(add.main_from)}) gives "
        f"{shape_text(add.main)} but the zero-padded shortcut{' ' + add.shortcut_from if add.shortcut_from else ''} "
        f"gives {shape_text(add.shortcut)}: it pads {before} + {after} channels onto the input's {entered}, "
        f"where {needed} are needed to reach {add.main[1]}."
    )
    if needed % 2 == 0 and needed >= 0:
        amount = f"{needed // 2} channels on each side"
        if entered * 2 == add.main[1]:
            amount += f" (planes // 4 for planes = {add.main[1]})"
    else:
        amount = f"{needed} channels in all"
    fix = f"Pad {amount} in the F.pad call{where}; the option-A shortcut itself is right and stays parameter-free."
    return Diagnosis("residual_add_mismatch", summary, fix)


def expansion_mismatch(conv_record: LayerRecord, conv: nn.Module, received: int, block: LayerRecord) -> Diagnosis:
    summary = (
        f"{_label(conv_record)} {_conv_call(conv)} expects {conv.in_channels} input channels but receives "
        f"{shape_text(conv_record.input_shapes[0])}: {_label(block)} outputs {received} channels (its last layer sets "
        f"the block's expansion), and the next consumer was built for {conv.in_channels}. A block's output channels "
        f"(planes x expansion) must be the input channels of whatever follows it."
    )
    consumer = conv_record.name.rpartition(".")[0]
    if consumer.rpartition(".")[0] == block.name.rpartition(".")[0] and consumer != block.name:
        # two blocks of one stage: the stage builder gave the later block the wrong in-channels
        fix = (
            f"{block.name} and {consumer} are consecutive blocks of one stage, so the stage builder gives every block "
            f"after the first the wrong input channels: it must pass the previous block's output, planes x expansion "
            f"= {received} (torchvision's _make_layer sets `self.inplanes = planes * block.expansion` after the first "
            f"block), not {conv.in_channels}. Changing {conv_record.name} alone would only move the error to the next block."
        )
    else:
        fix = (
            f"Build the consumer for {received} input channels: {conv_record.name} = "
            f"{_conv_call(conv, in_channels=received)} (and any other layer that takes {block.name}'s output, e.g. the "
            f"next block's shortcut conv); or make {block.name} output {conv.in_channels} channels."
        )
    return Diagnosis("expansion_mismatch", summary, fix)


def conv_channels(
    conv_record: LayerRecord,
    conv: nn.Module,
    received: int,
    producer: LayerRecord | None,
    setter: LayerRecord | None,
    setter_module: nn.Module | None,
    site: Any = None,
    functions: list[str] | None = None,
) -> Diagnosis:
    """`producer` made the tensor the conv received; `setter` (its module `setter_module`) made its channel count;
    `site` (a rules.ConstructorFix, or None) is the line that builds the conv; `functions` the torch calls that made
    the tensor when no module did."""
    source = f"from {_label(producer)}" if producer else (
        f"from torch calls in forward ({', '.join(functions)})" if functions else "from a torch operation in forward (not a module)"
    )
    set_by = ""
    if setter is not None and setter is not producer:
        described = f" {_conv_call(setter_module)}" if isinstance(setter_module, nn.modules.conv._ConvNd) else ""
        set_by = f"; the {received} channels were set by {_label(setter)}{described}"
    summary = (
        f"{_label(conv_record)} {_conv_call(conv)} expects {conv.in_channels} input channels but receives "
        f"{shape_text(conv_record.input_shapes[0])} {source}{set_by}."
    )
    target = setter or producer
    alternative = f", or make {target.name} produce {conv.in_channels} channels" if target is not None else ""
    fix = f"Make {conv_record.name} take {received} channels: {_conv_call(conv, in_channels=received)}{alternative}."
    if site is not None and (site.shared is not None or producer is None):  # fix the line that builds the conv
        fix = _constructor_fix_text(conv_record, site) or fix
    return Diagnosis("conv_channels", summary, fix)


def classifier_mismatch(
    linear_record: LayerRecord,
    linear: nn.Linear,
    source: LayerRecord | None,
    last_block: LayerRecord | None,
    functions: list[str] | None = None,
) -> Diagnosis:
    """`source` made the features the linear received, through the torch calls `functions` (F.adaptive_avg_pool2d,
    Tensor.view) when not directly; `last_block` is the last residual block before it."""
    shape = linear_record.input_shapes[0]
    arriving = shape[-1]
    functions = functions or []
    through = f" through {', '.join(functions)}" if functions else ""
    came = f" from {_label(source)} (output {shape_text(source.output_shape or ())}){through}" if source else ""
    pooled = any("pool" in name or "mean" in name for name in functions)
    summary = (
        f"{_label(linear_record)} Linear(in_features={linear.in_features}, out_features={linear.out_features}) "
        f"expects {linear.in_features} features but receives {shape_text(shape)}{came}."
    )
    fix = f"Use nn.Linear({arriving}, {linear.out_features}) for {linear_record.name}."
    source_shape = source.output_shape if source else None
    if len(shape) > 2 and len(shape) == 4 and shape[2:] == (1, 1):
        summary += f" The features are still {len(shape)}-D: the map was pooled to 1x1 but not flattened."
        fix = (
            f"Flatten before {linear_record.name}: x = torch.flatten(x, 1) (or x.flatten(1)), which gives "
            f"{shape_text((shape[0], shape[1]))}; in_features {linear.in_features} is then "
            + ("right." if linear.in_features == shape[1] else f"wrong too: use nn.Linear({shape[1]}, {linear.out_features}).")
        )
    elif len(shape) > 2:
        summary += f" The features are still {len(shape)}-D: the map was not pooled and flattened before the classifier."
        fix = (
            f"Pool and flatten before {linear_record.name}: x = torch.flatten(nn.AdaptiveAvgPool2d(1)(x), 1), "
            f"then nn.Linear({shape[1]}, {linear.out_features})."
        )
    elif source_shape and len(source_shape) == 4 and source_shape[2] * source_shape[3] > 1 and not pooled:
        channels = source_shape[1]
        summary += (
            f" {arriving} = {channels} x {source_shape[2]} x {source_shape[3]}: the {shape_text(source_shape[2:])} map was "
            f"flattened without being pooled to 1x1."
        )
        fix = (
            f"Pool to 1x1 before flattening (nn.AdaptiveAvgPool2d(1)) and use nn.Linear({channels}, "
            f"{linear.out_features}); or keep the map and use nn.Linear({arriving}, {linear.out_features})."
        )
    elif last_block is not None and last_block.output_shape and last_block.output_shape[1] == arriving:
        summary += (
            f" The last residual block, {_label(last_block)}, outputs {arriving} channels (planes x expansion); "
            f"in_features must equal that."
        )
    return Diagnosis("classifier_mismatch", summary, fix)


def norm_channels(
    record: LayerRecord, norm: nn.Module, built: int, received: int, producer: LayerRecord | None, site: Any
) -> Diagnosis:
    """`producer` made the tensor; `site` (a rules.ConstructorFix, or None) is the line that builds the norm."""
    came = f" from {_label(producer)}, which outputs {received} channels" if producer is not None else ""
    summary = (
        f"{_label(record)} was built for {built} channels ({_norm_call(norm, built)}) but receives "
        f"{shape_text(record.input_shapes[0])}{came}. A norm layer's channel count must be that of the tensor it "
        f"normalises."
    )
    fix = _constructor_fix_text(record, site) or (
        f"Build {record.name} for {received} channels: {_norm_call(norm, received)}."
    )
    return Diagnosis("norm_channels", summary, fix)


def layer_features(
    record: LayerRecord, linear: nn.Linear, received: int, producer: LayerRecord | None, site: Any
) -> Diagnosis:
    """A Linear inside the network (not the classifier) receives `received` features from `producer`."""
    came = f" from {_label(producer)}" if producer is not None else ""
    summary = (
        f"{_label(record)} Linear(in_features={linear.in_features}, out_features={linear.out_features}) expects "
        f"{linear.in_features} features but receives {shape_text(record.input_shapes[0])}{came}: its in_features "
        f"must be the size of what feeds it."
    )
    fix = _constructor_fix_text(record, site) or (
        f"Build {record.name} as nn.Linear({received}, {linear.out_features})."
    )
    return Diagnosis("layer_features", summary, fix)


def cat_mismatch(enclosing: LayerRecord, function: str, shapes: list[Shape], makers: list[str], cause: Any) -> Diagnosis:
    """`function` (torch.cat) in `enclosing` got tensors of `shapes`, made by `makers`; `cause` is a pooling layer
    that makes the odd one out: (the rules.PoolCall, the size with the other rounding), (the pool, the size with
    padding, that padding), or None."""
    listed = "; ".join(f"{shape_text(shape)} from {maker}" for shape, maker in zip(shapes, makers, strict=True))
    stack = "stack" in function
    summary = (
        f"{function} in {_label(enclosing)} " + ("stacks tensors that must have one shape" if stack else
        "joins tensors that must agree in every dimension but the joined one") + f", and they do not: {listed}."
    )  # fmt: skip
    if cause is not None and len(cause) == 3:
        call, size, padding = cause
        summary += (
            f" {call.label} has no padding: it shrinks {shape_text(call.entered)} to {shape_text(call.out)}, where "
            f"the other branch gives {shape_text(size)}."
        )
        fix = f"Give {call.name} padding={padding} (kernel {call.kernel[0]}): it then gives {shape_text(size)}."
    elif cause is not None:
        call, size = cause
        rounds = "rounds up with ceil_mode=True" if call.ceil_mode else "rounds down (ceil_mode=False)"
        summary += (
            f" {call.label} {rounds}: {shape_text(call.entered)} -> {shape_text(call.out)}, where the other branch "
            f"gives {shape_text(size)}."
        )
        fix = f"Make {call.name} round like the other branch: ceil_mode={not call.ceil_mode} gives {shape_text(size)}."
    elif stack and _differ_only_in_channels(shapes):
        joined = (shapes[0][0], sum(s[1] for s in shapes), *shapes[0][2:])
        fix = (
            f"To join the branches along channels use torch.cat([...], dim=1), which gives {shape_text(joined)}; "
            f"torch.stack adds a new dimension and needs every branch to have one shape."
        )
    else:
        fix = (
            f"Make the branches of {enclosing.name or 'the model'} produce the same size in every dimension but the "
            f"joined one (the same stride, padding and kernel on each path)."
        )
    return Diagnosis("cat_mismatch", summary, fix)


def _differ_only_in_channels(shapes: list[Shape]) -> bool:
    return len({len(s) for s in shapes}) == 1 and len(shapes[0]) >= 2 and len({(s[0], *s[2:]) for s in shapes}) == 1


def split_width(conv_record: LayerRecord, conv: nn.Module, received: int, function: Any, total: int | None) -> Diagnosis:
    """`conv` received a `received`-channel piece of a `total`-channel tensor split by `function` (a FunctionRecord)."""
    name = function.name if function is not None else "torch.split"
    where = f" at {relative_path(function.location[0])}:{function.location[1]}" if function and function.location else ""
    pieces = f" of {total} channels" if total else ""
    summary = (
        f"{_label(conv_record)} {_conv_call(conv)} expects {conv.in_channels} input channels but receives "
        f"{shape_text(conv_record.input_shapes[0])}: a {received}-channel piece{pieces} that {name}{where} cut off. "
        f"The split width does not match the width the convs were built for."
    )
    whole = bool(total) and total % conv.in_channels == 0
    count = f" ({total} = {total // conv.in_channels} x {conv.in_channels})" if whole else ""
    if "chunk" in name and whole:
        fix = (
            f"Cut the {total} channels into {total // conv.in_channels} pieces of {conv.in_channels} in the {name} "
            f"call{where} ({name} takes the number of pieces; torch.split takes their width); the convs after it are "
            f"right."
        )
    else:
        fix = (
            f"Split into pieces of {conv.in_channels} channels{count} in the {name} call{where}; the convs after it "
            f"are right."
        )
    return Diagnosis("split_width", summary, fix)


def input_size(
    record: LayerRecord, linear: nn.Linear, shape: Shape, sides: list[int], window: Any, cifar: bool
) -> Diagnosis:
    """The classifier gets other features at `shape`, but the model runs at `sides`; `window` is the fixed-window
    pooling before it (name, kernel, in, out), `cifar` whether the default input met a CIFAR stem."""
    received = record.input_shapes[0][-1]
    runs = ", ".join(f"{s}x{s}" for s in sides)
    summary = (
        f"{_label(record)} expects {linear.in_features} features but receives {shape_text(record.input_shapes[0])} at "
        f"{shape_text(shape[2:])}: the model was written for another input size. It runs at {runs} (of the square "
        f"sizes tried)."
    )
    if window is not None:
        name, kernel, entered, out = window
        summary += (
            f" {name} pools a fixed {_window_text(kernel)} window: it turns the {shape_text(entered[2:])} map into "
            f"{shape_text(out[2:])} here, so {received} = {out[1]} x {shape_text(out[2:])} features arrive."
        )
    if cifar:
        summary += (
            f" --input was not given, so {shape_text(shape)} was used; the first conv is 3x3 with stride 1, a CIFAR "
            f"stem, which suggests 32x32 inputs."
        )
    side = 32 if 32 in sides else sides[0]
    fix = f"Run it at the size it was written for: --input {shape_text((*shape[:2], side, side))}."
    if window is not None:
        fix += (
            f" To accept any size, pool with nn.AdaptiveAvgPool2d(1) (F.adaptive_avg_pool2d(x, 1)) instead of the "
            f"fixed window; {record.name} itself is right."
        )
    return Diagnosis("input_size", summary, fix)


def batch_changed(shape: Shape, output: Shape, op: Any, function: Any, record: LayerRecord | None, sides: list[int]) -> Diagnosis:
    """The pass ran but returned batch `output[0]` for input batch `shape[0]`: `op` (in `function`) folded pixels
    into the batch; `sides` are the square sizes at which the batch is kept."""
    name = function.name if function is not None else op.name
    summary = (
        f"The model runs but returns {shape_text(output)} for a batch of {shape[0]}: {name} in {_label(record)} turns "
        f"{shape_text(op.inputs[0].shape)} into {shape_text(op.output_shapes[0])}, folding what is left of the map into "
        f"the batch dimension (a view(-1, C) whose map is not 1x1 at this input size). Every loss and metric would "
        f"silently compare the wrong samples."
    )
    if sides:
        summary += f" The batch is kept at {', '.join(f'{s}x{s}' for s in sides)} (of the square sizes tried)."
    side = 32 if 32 in sides else sides[0] if sides else 0
    fix = (
        "Flatten per sample: x.view(x.size(0), -1) or torch.flatten(x, 1), so a wrong input size fails loudly at the "
        "classifier"
        + (f"; and run the model at the size it was written for (--input {shape_text((*shape[:2], side, side))})"
           if sides else "")
        + "."
    )
    return Diagnosis("batch_changed", summary, fix)


def tensor_without_device(function: Any, record: LayerRecord, count: int, places: list[tuple[str, int]], device: str) -> Diagnosis:
    """forward made `count` tensors with factory functions and no device=, first `function` in `record`."""
    where = ", ".join(f"{relative_path(f)}:{line}" for f, line in places) or "forward"
    summary = (
        f"{_label(record)} creates a tensor in forward with {function.name}(...) and no device= ({where}). It lands "
        f"on the default device, the CPU: this pass ran on {device}, but on CUDA the next operation fails with "
        f"'Expected all tensors to be on the same device'."
    )
    if count > 1:
        summary += f" {count} such calls ran in this pass."
    kind = function.name.rpartition(".")[2]
    alike = f", or x.new_{kind}(...) / torch.{kind}_like(x)" if kind in ("zeros", "ones", "empty", "full") else ""
    fix = (
        f"Create it where the input is: {function.name}(..., device=x.device, dtype=x.dtype){alike}; or register a "
        f"constant once in __init__ with self.register_buffer(...)."
    )
    return Diagnosis("tensor_without_device", summary, fix)


def _window_text(kernel: Any) -> str:
    if isinstance(kernel, (list, tuple)):
        return shape_text(kernel if len(kernel) > 1 else (kernel[0], kernel[0]))
    return f"{kernel}x{kernel}"


def module_width(
    record: LayerRecord, linear: nn.Linear, received: int, module: LayerRecord, site: Any, maker: LayerRecord | None,
    maker_site: Any,
) -> Diagnosis:  # fmt: skip
    """`linear`, the first layer of `module` (built by `site`), gets `received` features: the module was built for
    another width than the tensor it is applied to, made by `maker` (built by `maker_site`)."""
    made = f" from {_label(maker)}" if maker is not None else ""
    summary = (
        f"{_label(record)} expects {linear.in_features} features but receives {received}: it is the first layer of "
        f"{_label(module)}, which receives {shape_text(module.input_shapes[0])}{made} but was built for "
        f"{linear.in_features} channels."
    )
    where = f"{site.owner}.__init__ ({relative_path(site.file)}:{site.line})"
    size = f" (`{maker_site.text}` there)" if maker_site is not None else ""
    fix = (
        f"In {where} build self.{site.attribute} for the {received} channels it is applied to: `self.{site.attribute} "
        f"= {site.text}` must get the size that builds {maker.name.rpartition('.')[2] if maker else 'its input'}"
        f"{size}, not {linear.in_features}. Every {site.owner} is built by this line."
    )
    return Diagnosis("layer_features", summary, fix)


def _constructor_fix_text(record: LayerRecord, site: Any) -> str | None:
    """'In Block.__init__ (file:line) change `self.x = A` to `self.x = B` ...', or None without a site."""
    if site is None:
        return None
    line = site.site
    where = f"{line.owner}.__init__ ({relative_path(line.file)}:{line.line})"
    change = f"In {where} change `self.{line.attribute} = {line.text}` to `self.{line.attribute} = {site.call}`"
    if site.shared is not None:
        return (
            f"{change}, the size that builds {site.shared.attribute} in the same __init__ (`{site.shared.text}`). "
            f"Every {line.owner} is built by this line, so this fixes each instance, not only {record.name}."
        )
    return (
        f"{change} for {record.name}. Every {line.owner} is built by this line: where instances differ in width, "
        f"write the expression that gives the channels they receive instead of the number."
    )


def _norm_call(norm: nn.Module, channels: int) -> str:
    if isinstance(norm, nn.GroupNorm):
        return f"GroupNorm({norm.num_groups}, {channels})"
    return f"{type(norm).__name__}({channels})"


def missing_attribute(
    owner: str, attribute: str, failing: LayerRecord | None, close: str | None, main_branch: Shape | None
) -> Diagnosis:
    """`owner`'s forward read self.`attribute`; `close` is a similar name it has, `main_branch` the shape its
    children made (for a shortcut's projection)."""
    where = _label(failing) if failing is not None else owner
    summary = (
        f"{owner}.forward reads self.{attribute}, but {owner}.__init__ never sets it, so {where} fails when "
        f"forward reaches that line."
    )
    if close:
        summary += f" Did you mean self.{close}?"
    if attribute in SHORTCUT_NAMES and failing is not None and failing.input_shapes:
        entered, main = failing.input_shapes[0], main_branch
        projection = "nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))"
        here = f"here the main branch maps {shape_text(entered)} to {shape_text(main)}" if main else f"here {shape_text(entered)} enters"
        fix = (
            f"In {owner}.__init__ set self.{attribute}: nn.Identity() when the block keeps the shape (stride 1, "
            f"in_ch == out_ch), else {projection}; {here}"
            + (f", so this one needs nn.Conv2d({entered[1]}, {main[1]}, kernel_size=1, stride="
               f"{_stride_between(entered, main)}, bias=False) + nn.BatchNorm2d({main[1]})." if main and main != entered
               else ", so this one is nn.Identity().")
        )
    else:
        fix = (
            f"Create self.{attribute} in {owner}.__init__ (every attribute forward reads must be set there; "
            f"for an optional layer use nn.Identity())."
        )
    return Diagnosis("missing_attribute", summary, fix)


def dtype_mismatch(record: LayerRecord, param_dtype: str) -> Diagnosis:
    summary = (
        f"{_label(record)} holds {param_dtype} parameters but receives a {record.input_dtypes[0]} input "
        f"({shape_text(record.input_shapes[0])}); a layer computes in one dtype."
    )
    fix = (
        f"Cast the model and its input to one dtype: remove the stray .to(torch.{param_dtype})/.{_cast(param_dtype)}() on "
        f"{record.name or 'the model'}, or call model.to(torch.{record.input_dtypes[0]}) once on the whole model "
        f"(use torch.autocast for mixed precision)."
    )
    return Diagnosis("dtype_mismatch", summary, fix)


def stray_tensor_attributes(record: LayerRecord, stray: dict[str, str], device: str) -> Diagnosis:
    """`stray`: plain tensor attributes (not parameters or buffers) by name, with the device each is on."""
    names = ", ".join(f"self.{a}" for a in stray)
    summary = (
        f"{_label(record)} uses {names}: plain tensor attribute{'s' if len(stray) > 1 else ''} on "
        f"{', '.join(sorted(set(stray.values())))}, with an input on {device}. model.to(device) moves parameters "
        f"and buffers only, so {names} stayed behind (on a GPU this fails the same way)."
    )
    registers = "; ".join(f"self.register_buffer({a!r}, ...)" for a in stray)
    fix = f"Register them as buffers in {record.type}.__init__: {registers} instead of assigning the tensors."
    return Diagnosis("device_mismatch", summary, fix)


def parameter_elsewhere(record: LayerRecord, name: str, held_on: str, device: str) -> Diagnosis:
    summary = (
        f"{_label(record)} holds {name} on {held_on} but receives an input on {device}; "
        f"a layer's parameters and input must be on one device."
    )
    fix = "Move the whole model once with model.to(device) before the forward pass, and create inputs on that device."
    return Diagnosis("device_mismatch", summary, fix)


def input_too_small(
    shape: Shape, record: LayerRecord | None, kernel: Any, fixed_pool: bool, smallest: int | None, function: Any = None
) -> Diagnosis:
    """`record` is where the spatial size reached zero (its module's `kernel`, and whether it is a fixed-size
    pool); `smallest` the smallest square input that runs, when searched; `function` a fixed-window pooling call
    in `record`'s own forward (F.avg_pool2d(x, 4)) that failed, with its kernel as `kernel`."""
    if record is None:
        return Diagnosis("input_too_small", f"The input {shape_text(shape)} is too small for this network.", "Use a larger input.")
    entered = record.input_shapes[0] if record.input_shapes else ()
    if function is not None:
        where = (f"{function.name} with a fixed {_window_text(kernel)} window in {_label(record)} receives "
                 f"{shape_text(function.input_shapes[0])}, which leaves no output pixels")  # fmt: skip
    elif record.finished and record.output_shape is not None:
        where = f"{_label(record)} turns {shape_text(entered)} into {shape_text(record.output_shape)}"
    else:
        kernel_text = f" (kernel {shape_text(kernel if isinstance(kernel, tuple) else (kernel, kernel))})" if kernel else ""
        where = f"{_label(record)}{kernel_text} receives {shape_text(entered)}, which leaves no output pixels"
    summary = f"The input {shape_text(shape)} is too small for this network: {where}; the spatial size reaches zero there."
    if smallest is not None:
        fix = f"Use an input of at least {smallest}x{smallest} (--input {shape_text(shape[:2])}x{smallest}x{smallest})"
    else:
        fix = "Use a larger input"
    if function is not None:
        adaptive = function.name.replace("F.avg_pool2d", "F.adaptive_avg_pool2d").replace("F.max_pool2d", "F.adaptive_max_pool2d")
        fix += f", or pool with {adaptive}(x, 1) instead of the fixed window to accept any size"
    elif fixed_pool and record.name:
        fix += f", or replace the fixed-size {record.type} {record.name} by nn.Adaptive{record.type.replace('2d', '')}2d(1) to accept any size"
    return Diagnosis("input_too_small", summary, fix + ".")


def needs_real_tensors(location: SourceLocation | None, failing: LayerRecord | None) -> Diagnosis:
    where, module = _place(location, failing)
    return Diagnosis(
        "needs_real_tensors",
        f"{module} reads tensor values{where} (.item(), .tolist(), a data-dependent op or a Python `if` on a "
        f"tensor). Meta tensors have shapes but no values, so this cannot run on meta; it is not a shape problem.",
        "Run again with --device cpu (the input is random, so value-dependent branches take one path).",
    )


def sys_exit(location: SourceLocation | None, failing: LayerRecord | None) -> Diagnosis:
    where, module = _place(location, failing)
    return Diagnosis(
        "sys_exit",
        f"{module} calls sys.exit(){where}, which ends whatever program runs the model instead of reporting an "
        f"error; it is not a shape problem.",
        "Raise an exception (ValueError, RuntimeError) with the reason instead of calling sys.exit() in forward.",
    )


def unrecognised(location: SourceLocation | None, failing: LayerRecord | None) -> Diagnosis:
    where, module = _place(location, failing)
    return Diagnosis(
        "unrecognised",
        f"resnet-cli does not recognise this error. It was raised inside {module}{where}; the shapes above are what "
        f"entered that module and what its finished children produced.",
        f"Compare those shapes with what the failing statement{where} expects.",
    )


# --- pieces of sentences ------------------------------------------------------------------------------------------


def _place(location: SourceLocation | None, failing: LayerRecord | None) -> tuple[str, str]:
    """(' at file:line' or '', the failing module's label) for a diagnosis's text."""
    where = f" at {location.file}:{location.line}" if location else ""
    return where, _label(failing) if failing else "the model"


def _label(record: LayerRecord | None) -> str:
    if record is None:
        return "the model"
    return f"{record.name} ({record.type})" if record.name else f"the model ({record.type})"


def _conv_call(conv: nn.Module, in_channels: int | None = None) -> str:
    """Conv2d(64, 128, 3, stride=2, padding=1, bias=False) with the non-default arguments only."""
    k = conv.kernel_size
    parts = [str(in_channels if in_channels is not None else conv.in_channels), str(conv.out_channels),
             str(k[0] if len(set(k)) == 1 else k)]  # fmt: skip
    for attr, default in (("stride", 1), ("padding", 0), ("dilation", 1), ("groups", 1)):
        value = getattr(conv, attr)
        value = value[0] if isinstance(value, tuple) and len(set(value)) == 1 else value
        if value != default:
            parts.append(f"{attr}={value}")
    if conv.bias is None:
        parts.append("bias=False")
    return f"{type(conv).__name__}({', '.join(parts)})"


def _stride_between(entered: Shape, out: Shape) -> int:
    """The stride a projection needs to map `entered` to `out`."""
    if len(entered) < 3 or len(out) < 3 or out[2] == 0:
        return 1
    return max(1, round(entered[2] / out[2]))


def _changes(entered: Shape, out: Shape) -> str:
    parts = []
    if entered[1] != out[1]:
        parts.append(f"channels {entered[1]} -> {out[1]}")
    if entered[2:] != out[2:]:
        parts.append(f"spatial size {shape_text(entered[2:])} -> {shape_text(out[2:])}")
    return " and ".join(parts) or "nothing"


def _from(name: str | None) -> str:
    return f"ending in {name}" if name else "computed in forward"


def _cast(dtype: str) -> str:
    return {"float64": "double", "float16": "half", "bfloat16": "bfloat16", "float32": "float"}.get(dtype, dtype)
