"""Text and numbers shared by every layer (torch-free): a shape as 1x64x56x56, an exception in one line, bytes in
binary units, counts in 10^9, a share or a saving in percent."""

from __future__ import annotations

from collections.abc import Iterable

MIB = 1024 * 1024


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


def format_bytes(n: int) -> str:
    """Bytes in binary units: '97.49 MiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.2f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def giga(count: float, *, small_to_three_digits: bool = False) -> str:
    """A count in units of 10^9 with two decimals: '4.09'. With `small_to_three_digits`, counts below 10^9 keep
    three significant digits, as the paper prints small nets: '0.0408', not '0.04'."""
    value = count / 1e9
    return f"{value:.3g}" if small_to_three_digits and value < 1 else f"{value:.2f}"


def share_percent(part: float, whole: float) -> float:
    """`part` as a percentage of `whole` (0.0 when `whole` is 0): 25 of 200 -> 12.5."""
    return 100.0 * part / whole if whole else 0.0


def saved_percent(new: float, old: float) -> float | None:
    """The percentage saved going from `old` to `new`, negative when `new` costs more; None when `old` is 0:
    80 after 100 -> 20.0."""
    return (1 - new / old) * 100 if old else None


def plural(count: int, noun: str) -> str:
    """'1 timed step', '2 timed steps': the count with its noun (regular English plural)."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
