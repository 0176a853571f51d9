"""Budgets for CI: `--max-params`, `--max-macs`, `--max-acts` and `--max-memory`, declared once, parsed, and a
result checked against them (torch-free: the CLI builds its options from `BUDGETS` before torch is imported)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from resnet_cli.spec import parse_bytes, parse_count


@dataclass(frozen=True)
class Budget:
    """One `--max-FIGURE` option: the figure it bounds, its help and how its value is written."""

    figure: str  # a key of `figures()`: params, macs, acts, memory
    help: str
    parse: Callable[[str, str], int]  # (flag, text) -> the limit; a SpecError names the flag and the valid forms
    in_bytes: bool = False

    @property
    def flag(self) -> str:
        return f"--max-{self.figure}"

    @property
    def parameter(self) -> str:
        """The command parameter's name: max_macs."""
        return self.flag[2:].replace("-", "_")

    @property
    def metavar(self) -> str:
        return "SIZE" if self.in_bytes else "COUNT"


BUDGETS = (
    Budget("params", "Exit 1 when there are more parameters than this: 25M, 25.6M, 25557032.", parse_count),
    Budget("macs", "Exit 1 when one forward pass has more MACs than this, in fvcore's convention as 'MACs (fvcore)' "
                   "shows (FLOPs = 2 x MACs): 4.2G, 4111512576.", parse_count),
    Budget("acts", "Exit 1 when there are more acts (conv and linear output elements) than this: 12M.", parse_count),
    Budget("memory", "Exit 1 when parameter memory + forward activation memory (flops --mode train: the training "
                     "step memory) is above this: 16GiB, 800MB.", parse_bytes, in_bytes=True),
)  # fmt: skip


@dataclass(frozen=True)
class Limit:
    """A budget the user set: the text given ('4.2G') and its value."""

    budget: Budget
    text: str
    value: int


@dataclass(frozen=True)
class Figure:
    """One figure of a result, named as a budget line names it: ('MACs', 4111512576)."""

    measure: str
    value: int


@dataclass(frozen=True)
class Exceeded:
    """A figure above its limit."""

    limit: Limit
    figure: Figure


def parse_limits(given: Mapping[str, str | None]) -> list[Limit]:
    """The budgets set, from {parameter name: text or None}; a SpecError (exit 2) for a malformed value."""
    return [
        Limit(budget, text.strip(), budget.parse(budget.flag, text))
        for budget in BUDGETS
        if (text := given.get(budget.parameter)) is not None
    ]


def figures(result: Any) -> dict[str, Figure]:
    """The figures budgets bound, read from a `summary` (ModelSummary), `flops` (FlopsReport) or
    `flops --mode train` (TrainingReport) result."""
    from resnet_cli.analysis.flops_report import FlopsReport
    from resnet_cli.analysis.summary import ModelSummary
    from resnet_cli.analysis.training import TrainingReport

    forward_memory = "memory (parameters + forward activations)"
    if isinstance(result, ModelSummary):
        totals = result.totals
        return _figures(totals.params, ("MACs", totals.macs), totals.acts,
                        (forward_memory, totals.param_bytes + totals.activation_bytes))  # fmt: skip
    if isinstance(result, FlopsReport):
        count, memory = result.count, result.memory
        return _figures(count.params, ("MACs", count.macs), count.acts,
                        (forward_memory, memory.param_bytes + memory.activation_bytes))  # fmt: skip
    if isinstance(result, TrainingReport):
        forward = result.forward
        return _figures(forward.params, ("forward MACs", forward.macs), forward.acts,
                        ("training step memory", result.memory.total_bytes))  # fmt: skip
    raise TypeError(f"no budget figures for a {type(result).__name__}")


def _figures(params: int, macs: tuple[str, int], acts: int, memory: tuple[str, int]) -> dict[str, Figure]:
    return {"params": Figure("params", params), "macs": Figure(*macs), "acts": Figure("acts", acts),
            "memory": Figure(*memory)}  # fmt: skip


def over_budget(result: Any, limits: list[Limit]) -> list[Exceeded]:
    """The limits `result` is above (a figure equal to its limit is within), in BUDGETS order."""
    if not limits:
        return []
    values = figures(result)
    return [Exceeded(limit, values[limit.budget.figure]) for limit in limits
            if values[limit.budget.figure].value > limit.value]  # fmt: skip
