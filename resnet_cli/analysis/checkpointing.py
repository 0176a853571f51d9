"""Gradient checkpointing by segment: which modules are the segments, and running a model with each one wrapped in
`torch.utils.checkpoint` (non-reentrant), left as it was afterwards.

A segment's saved tensors are dropped after its forward and recomputed during backward; what stays is its input
(checkpoint keeps it to re-run the segment) and what the code outside every segment saves.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from torch import nn
from torch.utils.checkpoint import checkpoint

from resnet_cli.analysis.stages import stage_names
from resnet_cli.errors import UserError

CHECKPOINT_CHOICES = ("none", "block", "stage")


def check_checkpoint(choice: str) -> None:
    """Raise a UserError unless `choice` is one --checkpoint knows."""
    if choice not in CHECKPOINT_CHOICES:
        raise UserError(
            f"--checkpoint {choice!r} is not one of {', '.join(CHECKPOINT_CHOICES)} "
            "(none: keep every saved tensor; block or stage: recompute each one during backward)"
        )


def checkpoint_segments(model: nn.Module, choice: str) -> list[str]:
    """Dotted names of the modules `choice` checkpoints: none, each stage, or each block (a stage's children, or,
    when a stage wraps one container as Wide ResNet code's `block1.layer`, that one's; a stage without children is
    its own block). A model without recognisable stages raises a UserError."""
    check_checkpoint(choice)
    if choice == "none":
        return []
    stages = stage_names(model)
    if not stages:
        raise UserError(
            f"--checkpoint {choice}: {type(model).__name__} has no recognisable stages (modules named layer1, stage2, "
            "stages.0, ...) to wrap; use --checkpoint none"
        )
    if choice == "stage":
        return list(stages)
    modules = dict(model.named_modules())
    blocks: list[str] = []
    for stage in stages:
        name, module = stage, modules[stage]
        children = list(module.named_children())
        while len(children) == 1 and isinstance(children[0][1], (nn.Sequential, nn.ModuleList)):
            name, module = f"{name}.{children[0][0]}", children[0][1]
            children = list(module.named_children())
        blocks += [f"{name}.{child}" for child, _ in children] or [stage]
    return blocks


@contextlib.contextmanager
def checkpointed(model: nn.Module, names: list[str]) -> Iterator[nn.Module]:
    """The model with each named module's forward run through `torch.utils.checkpoint` (non-reentrant, RNG state
    not preserved); module hooks still see every call. The modules' own forward is restored on exit."""
    modules = dict(model.named_modules())
    wrapped: list[tuple[nn.Module, object]] = []  # (module, its own instance-level forward, if it had one)
    missing = object()
    try:
        for name in names:
            module = modules[name]
            wrapped.append((module, module.__dict__.get("forward", missing)))
            module.forward = functools.partial(  # type: ignore[method-assign]
                checkpoint, module.forward, use_reentrant=False, preserve_rng_state=False
            )
        yield model
    finally:
        for module, own in wrapped:
            if own is missing:
                del module.forward
            else:
                module.forward = own  # type: ignore[method-assign]
