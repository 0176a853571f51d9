"""Text forms shared by every layer (torch-free): a shape as 1x64x56x56, an exception in one line."""

from __future__ import annotations

from collections.abc import Iterable


def shape_text(shape: Iterable[int]) -> str:
    """(1, 64, 56, 56) -> '1x64x56x56'."""
    return "x".join(str(d) for d in shape)


def first_line(error: BaseException) -> str:
    """The first line of an error's message, or its type's name when the message is empty."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def typed_first_line(error: BaseException) -> str:
    """'ValueError: width must be even', or the type's name alone when the message is empty."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
