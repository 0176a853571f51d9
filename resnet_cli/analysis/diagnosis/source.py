"""Where the user's code builds a layer: the `self.NAME = nn.Layer(...)` line in its owner's __init__, read with ast.

A fix that names the constructor line (and the expression to change) fixes every instance built by it, where a
literal for the failing instance would fix one.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass

from torch import nn

# The constructor argument that sets each layer's input and output size: (position, keyword).
IN_ARGUMENT = {nn.Linear: (0, "in_features"), nn.modules.conv._ConvNd: (0, "in_channels"),
               nn.modules.batchnorm._BatchNorm: (0, "num_features"), nn.GroupNorm: (1, "num_channels")}  # fmt: skip
OUT_ARGUMENT = {nn.Linear: (1, "out_features"), nn.modules.conv._ConvNd: (1, "out_channels"),
                nn.modules.batchnorm._BatchNorm: (0, "num_features"), nn.GroupNorm: (1, "num_channels")}  # fmt: skip


@dataclass(frozen=True)
class Constructor:
    """One `self.attribute = Call(...)` statement of an __init__: where it is and its call, as written."""

    owner: str  # class name of the module whose __init__ it is
    attribute: str
    file: str
    line: int
    call: ast.Call
    text: str  # the call as written, e.g. "nn.BatchNorm2d(in_planes)"

    def argument(self, table: dict[type, tuple[int, str]], layer: nn.Module) -> str | None:
        """The expression passed for the size argument `table` names for `layer`'s type, e.g. 'planes'."""
        spec = next((v for k, v in table.items() if isinstance(layer, k)), None)
        if spec is None:
            return None
        position, keyword = spec
        for kw in self.call.keywords:
            if kw.arg == keyword:
                return ast.unparse(kw.value)
        return ast.unparse(self.call.args[position]) if len(self.call.args) > position else None

    def with_argument(self, table: dict[type, tuple[int, str]], layer: nn.Module, expression: str) -> str:
        """The call as written with the size argument replaced by `expression`."""
        position, keyword = next(v for k, v in table.items() if isinstance(layer, k))
        call = ast.parse(self.text, mode="eval").body
        assert isinstance(call, ast.Call)
        new = ast.parse(expression, mode="eval").body
        for kw in call.keywords:
            if kw.arg == keyword:
                kw.value = new
                return ast.unparse(call)
        if len(call.args) > position:
            call.args[position] = new
        return ast.unparse(call)


@dataclass(frozen=True)
class Assignment:
    """Any `self.attribute = ...` statement of an __init__, the `if` it sits under, and the convs its value builds."""

    owner: str
    attribute: str
    file: str
    line: int
    value: ast.expr
    text: str  # the value as written
    condition: str | None  # the test of the innermost enclosing `if`, as written
    condition_line: int | None
    convs: tuple[ast.Call, ...]  # nn.Conv2d(...) calls inside the value (a Sequential's, `a and nn.Conv2d(...)`)


def constructor(owner: nn.Module | None, attribute: str) -> Constructor | None:
    """The statement of `type(owner).__init__` (or a base class's) that assigns `self.attribute` a call, or None."""
    found = assignment(owner, attribute)
    if found is None or not isinstance(found.value, ast.Call):
        return None
    return Constructor(found.owner, attribute, found.file, found.line, found.value, found.text)


def assignment(owner: nn.Module | None, attribute: str) -> Assignment | None:
    """The statement of `type(owner).__init__` (or a base class's) that assigns `self.attribute`, or None."""
    if owner is None:
        return None
    for cls in type(owner).__mro__:
        init = cls.__dict__.get("__init__")
        if init is None or cls.__module__.startswith("torch."):
            continue
        try:
            lines, first = inspect.getsourcelines(init)
            file = inspect.getsourcefile(init) or ""
        except (OSError, TypeError):
            continue
        source = textwrap.dedent("".join(lines))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        found = _assign_in(tree, attribute, None)
        if found is not None:
            node, condition = found
            convs = tuple(c for c in ast.walk(node.value) if isinstance(c, ast.Call) and _called(c).endswith("Conv2d"))
            test = ast.get_source_segment(source, condition.test) if condition is not None else None
            text = " ".join((ast.get_source_segment(source, node.value) or ast.unparse(node.value)).split())
            return Assignment(cls.__name__, attribute, file, first + node.lineno - 1, node.value, text, test,
                              first + condition.lineno - 1 if condition is not None else None, convs)  # fmt: skip
    return None


def _assign_in(node: ast.AST, attribute: str, condition: ast.If | None) -> tuple[ast.Assign, ast.If | None] | None:
    """The assignment to self.attribute under `node`, with the innermost `if` around it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Assign) and any(
            isinstance(t, ast.Attribute) and t.attr == attribute and isinstance(t.value, ast.Name) and t.value.id == "self"
            for t in child.targets
        ):
            return child, condition
        inner = _assign_in(child, attribute, child if isinstance(child, ast.If) else condition)
        if inner is not None:
            return inner
    return None


def _called(call: ast.Call) -> str:
    """'nn.Conv2d' for nn.Conv2d(...)."""
    return ast.unparse(call.func)


def keyword_or_position(call: ast.Call, keyword: str, position: int) -> str | None:
    """The expression passed as `keyword` (or at `position`) to `call`, as written."""
    for kw in call.keywords:
        if kw.arg == keyword:
            return ast.unparse(kw.value)
    return ast.unparse(call.args[position]) if len(call.args) > position else None


def owner_and_attribute(model: nn.Module, name: str) -> tuple[nn.Module | None, str]:
    """For a dotted module name, the module that holds it and the attribute it is held under."""
    parent, _, attribute = name.rpartition(".")
    try:
        return (model.get_submodule(parent) if parent else model), attribute
    except AttributeError:
        return None, attribute
