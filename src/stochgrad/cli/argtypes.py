"""argparse types of the ``stochgrad`` command: numbers and lists, refused with one clear line.

>>> positive_int("2e6"), float_list("0,1.5"), name_list("a, b")
(2000000, [0.0, 1.5], ['a', 'b'])
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable

__all__ = [
    "choice_list",
    "finite_float",
    "float_list",
    "int_list",
    "name_list",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "probability",
]


def _integer(text: str, minimum: int, what: str) -> int:
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not value.is_integer() or value < minimum or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return int(value)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``2_000_000`` and ``2e6`` accepted)."""
    return _integer(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return _integer(text, 0, "an integer >= 0")


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def float_list(text: str) -> list[float]:
    """argparse type: comma-separated finite numbers, e.g. ``0,1,3``."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(
            f"expected finite numbers separated by commas, got {text!r}"
        )
    return values


def int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers >= 0, e.g. ``0,1,2`` (seeds)."""
    values = [v.strip() for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}")
    return [_integer(v, 0, "integers >= 0 separated by commas") for v in values]


def name_list(text: str) -> list[str]:
    """argparse type: comma-separated names, blanks dropped, order kept, repeats removed."""
    names = list(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    if not names:
        raise argparse.ArgumentTypeError(f"expected names separated by commas, got {text!r}")
    return names


def choice_list(choices: Iterable[str] | Callable[[], Iterable[str]]) -> Callable[[str], list[str]]:
    """argparse type factory: comma-separated names, each one of ``choices``.

    ``choices`` may be a callable, evaluated when an option is parsed (so that the list can come
    from an application module imported only when its command runs).

    >>> choice_list(["score", "pathwise"])("score,pathwise")
    ['score', 'pathwise']
    """

    def parse(text: str) -> list[str]:
        allowed = list(choices() if callable(choices) else choices)
        names = name_list(text)
        unknown = [n for n in names if n not in allowed]
        if unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(map(repr, unknown))}; expected some of {', '.join(allowed)}"
            )
        return names

    parse.__name__ = "names"
    return parse
