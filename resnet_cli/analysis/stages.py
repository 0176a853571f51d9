"""Stage grouping: a model's calls as stem, stages and head (or per top-level call), with params and MACs each."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

from resnet_cli.analysis.counting import MacCount
from resnet_cli.trace import ModelTrace, parameter_count


@dataclass
class StageCount:
    """One stage of a ResNet (stem, layer1..N, head), a top-level child of another model, or the model's own
    forward (functional operations and parameters of the model itself, when not inside a stem or head)."""

    name: str
    params: int
    macs: int
    macs_conv_linear: int
    output_shape: tuple[int, ...] | None
    modules: list[str] = field(default_factory=list)


OWN_FORWARD = "(own forward)"
_STAGE_NAME = re.compile(r"^((layer|stage|block|res)_?\d+|(layers|stages|blocks|features)\.\d+)$")


def stage_names(model: nn.Module) -> list[str] | None:
    """The model's stages when it is recognisably stem / stages / head: resnet-cli's own `stage_names`, or at least
    two modules the model calls named like layer1, stage2, block3 (torchvision, timm, CIFAR and Wide ResNet code) or
    stages.0, stages.1 (an nn.ModuleList the forward loops over)."""
    names = getattr(model, "stage_names", None)
    if names:
        return list(names)
    candidates = [name for name, _ in model.named_children()]
    for name, child in model.named_children():
        # a container of stages: a ModuleList or ModuleDict, or timm's `stages` / `layers` nn.Sequential
        if isinstance(child, (nn.ModuleList, nn.ModuleDict)) or (isinstance(child, nn.Sequential) and name in ("stages", "layers")):
            candidates += [f"{name}.{index}" for index, _ in child.named_children()]
    found = [name for name in candidates if _STAGE_NAME.match(name)]
    return found if len(found) >= 2 else None


def count_by_stage(model: nn.Module, trace: ModelTrace, count: MacCount) -> list[StageCount]:
    """MACs and params per stage: stem, stages, head when the model has them, else per module the model calls.

    Calls before the first stage are the stem, after the last the head. What the model's own forward computes
    outside those calls (F.avg_pool2d, x @ w), and its own parameters, form the row OWN_FORWARD, the same with
    either counter (fvcore cannot place such operators in time). A call to a module inside another one the model
    also calls (self.backbone.fc after self.backbone) is part of that one's count, as fvcore attributes by name.
    """
    stages_of_model = stage_names(model) or []
    calls = [r for r in trace.records if r.depth == 1]  # the calls the model's forward makes itself
    called = {r.name for r in calls}
    calls = [r for r in calls if not any(r.name.startswith(name + ".") for name in called if name)]
    positions = [i for i, r in enumerate(calls) if r.name in stages_of_model]
    rows: dict[str, StageCount] = {}
    for position, record in enumerate(calls):
        if not positions:
            name = record.name
        elif position < positions[0]:
            name = "stem"
        elif position > positions[-1]:
            name = "head"
        else:
            name = next(calls[i].name for i in range(position, -1, -1) if calls[i].name in stages_of_model)
        entry = rows.setdefault(name, StageCount(name, 0, 0, 0, None))
        if record.call_index == 0:
            entry.params += record.params
            entry.macs += count.by_module.get(record.name, 0)
            entry.macs_conv_linear += count.module_conv_linear_macs(record.name)
            if not record.is_disabled_option:  # an option switched off (final BN of post-activation nets)
                entry.modules.append(record.name)
        entry.output_shape = record.output_shape
    firsts = [r.name for r in calls if r.call_index == 0]
    own = StageCount(
        OWN_FORWARD,
        params=parameter_count(model, recurse=False),
        macs=count.macs - sum(count.by_module.get(name, 0) for name in firsts),
        macs_conv_linear=count.conv_linear_macs - sum(count.module_conv_linear_macs(name) for name in firsts),
        output_shape=trace.records[0].output_shape if trace.records else None,
    )
    if own.params or own.macs:
        rows[OWN_FORWARD] = own
    return list(rows.values())
