"""argparse types shared by the ``stochgrad`` command and the applications' subcommands.

>>> positive_int("2e6"), float_list("0,1.5")
(2000000, [0.0, 1.5])
"""

from __future__ import annotations

import argparse
import math

__all__ = ["float_list", "positive_int"]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``2_000_000`` and ``2e6`` accepted)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if not value.is_integer() or value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(value)


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
