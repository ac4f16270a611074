"""Argument checks shared by the core and the applications: one behaviour everywhere.

Every check names the argument and says what was expected. A value of the wrong *type* (a string
where a number belongs, a bool where an int belongs) raises :class:`TypeError`; a value of the
right type outside its range raises :class:`ValueError`. The checks return the value converted to
its plain Python type, so callers can write ``n = check_int("n", n, minimum=1)``.

>>> check_int("steps", 3, minimum=1)
3
>>> check_float("lr", 0.5, minimum=0.0, open_min=True)
0.5
>>> check_int("steps", 0, minimum=1)
Traceback (most recent call last):
...
ValueError: steps must be >= 1, got 0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

__all__ = [
    "all_finite",
    "check_bool",
    "check_callable",
    "check_choice",
    "check_device",
    "check_float",
    "check_int",
    "check_numpy_generator",
    "check_probability",
    "check_seed",
    "check_tensor",
    "check_torch_generator",
]

# torch.Generator.manual_seed takes a 64-bit value; numpy's SeedSequence any non-negative int,
# but one seed must mean the same thing everywhere.
MAX_SEED = 2**63 - 1


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_int(
    name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """``value`` as an ``int`` (numpy integers accepted; bools and floats refused).

    Args:
        name: the argument's name, used in the message.
        value: what the caller passed.
        minimum, maximum: inclusive bounds (``None``: unbounded).

    Raises:
        TypeError: not an integer.
        ValueError: outside ``[minimum, maximum]``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {_type_name(value)} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    open_min: bool = False,
    open_max: bool = False,
) -> float:
    """``value`` as a finite ``float`` (ints and 0-d tensors accepted; bools and strings refused).

    Args:
        name: the argument's name.
        value: what the caller passed.
        minimum, maximum: bounds; inclusive unless ``open_min``/``open_max``.

    Raises:
        TypeError: not a real number.
        ValueError: NaN, infinite, or out of bounds.
    """
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = check_device(name, value).item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {_type_name(value)} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and (value <= minimum if open_min else value < minimum):
        raise ValueError(f"{name} must be {'>' if open_min else '>='} {minimum}, got {value}")
    if maximum is not None and (value >= maximum if open_max else value > maximum):
        raise ValueError(f"{name} must be {'<' if open_max else '<='} {maximum}, got {value}")
    return value


def check_probability(
    name: str, value: Any, *, open_low: bool = False, open_high: bool = False
) -> float:
    """``value`` in ``[0, 1]`` (ends excluded on request)."""
    return check_float(name, value, minimum=0.0, maximum=1.0, open_min=open_low, open_max=open_high)


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices`` (strings)."""
    choices = list(choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {choices}, got {_type_name(value)} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_callable(name: str, value: Any) -> Callable:
    """``value`` if it can be called."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {_type_name(value)} {value!r}")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a ``bool`` (numpy bools accepted; ``0``, ``1`` and strings refused).

    A string such as ``"no"`` is truthy, so accepting anything truthy would turn it into
    ``True``; only real booleans are taken.

    >>> check_bool("hard", True)
    True
    >>> check_bool("hard", "yes")
    Traceback (most recent call last):
    ...
    TypeError: hard must be a bool (True or False), got str 'yes'
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool (True or False), got {_type_name(value)} {value!r}")
    return bool(value)


def check_seed(name: str, value: Any) -> int:
    """A seed: an int in ``[0, 2**63 - 1]`` (what ``torch.Generator.manual_seed`` takes whole).

    >>> check_seed("seed", 2**70)
    Traceback (most recent call last):
    ...
    ValueError: seed must be <= 2**63 - 1 (a seed is an int in [0, 2**63 - 1]), got 1180591620717411303424
    """
    value = check_int(name, value)
    if value < 0 or value > MAX_SEED:
        bound = ">= 0" if value < 0 else "<= 2**63 - 1"
        raise ValueError(
            f"{name} must be {bound} (a seed is an int in [0, 2**63 - 1]), got {value}"
        )
    return value


def check_torch_generator(value: Any, name: str = "generator") -> torch.Generator:
    """``value`` if it is a ``torch.Generator`` (randomness is explicit)."""
    if not isinstance(value, torch.Generator):
        raise TypeError(
            f"{name} must be a torch.Generator (randomness is explicit), got {_type_name(value)}"
        )
    return value


def check_numpy_generator(value: Any, name: str = "generator") -> np.random.Generator:
    """``value`` if it is a ``numpy.random.Generator`` (randomness is explicit)."""
    if not isinstance(value, np.random.Generator):
        raise TypeError(
            f"{name} must be a numpy.random.Generator (randomness is explicit), "
            f"got {_type_name(value)}"
        )
    return value


# ---------------------------------------------------------------------------------------------
# tensors
# ---------------------------------------------------------------------------------------------
def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry of ``t`` is finite: one reduction and one synchronisation, the
    elementwise check only when the sum is not finite (an overflow of finite entries)."""
    total = float(t.detach().sum()) if t.numel() else 0.0
    if math.isfinite(total):
        return True
    return bool(torch.isfinite(t.detach()).all())


def check_device(
    name: str, value: torch.Tensor, device: torch.device | None = None, *, of: str = ""
) -> torch.Tensor:
    """``value`` if it holds data on ``device`` (on any real device when ``None``).

    A tensor on the ``meta`` device holds a shape and no values; a tensor on another device than
    the call's other tensors would fail deep inside torch. Both are refused naming the argument.

    Args:
        name: the argument's name.
        value: a tensor.
        device: the device of the call (that of its other tensors), or ``None``.
        of: what ``device`` belongs to, for the message (``"params"``).

    Raises:
        ValueError: a meta tensor, or a tensor on another device.

    >>> check_device("x", torch.zeros(2, device="meta"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: x must hold values on a real device, got a tensor on the 'meta' device ...
    """
    where = value.device
    if where.type == "meta":
        raise ValueError(
            f"{name} must hold values on a real device, got a tensor on the 'meta' device "
            "(a shape without data)"
        )
    if device is not None and where != device:
        owner = f" (the device of {of})" if of else ""
        raise ValueError(f"{name} must be on {device}{owner}, got a tensor on {where}")
    return value


_KINDS = {
    "float": "a floating-point tensor",
    "real": "a tensor of real numbers (floating-point or integer)",
    "integer": "an integer tensor",
}


def check_tensor(
    name: str,
    value: Any,
    *,
    kind: str = "float",
    device: torch.device | None = None,
    of: str = "",
    finite: bool = True,
) -> torch.Tensor:
    """``value`` if it is a tensor of the right kind, with values, on the call's device.

    Args:
        name: the argument's name.
        value: what the caller passed.
        kind: ``"float"`` (floating point), ``"real"`` (floating point or integer; never bool or
            complex) or ``"integer"`` (integer, not bool).
        device: the device of the call's other tensors (see :func:`check_device`).
        of: what ``device`` belongs to, for the message.
        finite: refuse NaN and infinite entries (one reduction, one synchronisation).

    Raises:
        TypeError: not a tensor, or of another dtype.
        ValueError: a meta tensor, another device, a non-finite entry.

    >>> check_tensor("rewards", torch.tensor([1.0, 2.0]))
    tensor([1., 2.])
    >>> check_tensor("rewards", torch.tensor([True]))
    Traceback (most recent call last):
    ...
    TypeError: rewards must be a floating-point tensor, got dtype torch.bool
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be {_KINDS[kind]}, got {_type_name(value)}")
    dtype = value.dtype
    floating = dtype.is_floating_point
    if kind == "float":
        ok = floating
    else:
        integer = not floating and not dtype.is_complex and dtype != torch.bool
        ok = integer or (kind == "real" and floating)
    if not ok:
        raise TypeError(f"{name} must be {_KINDS[kind]}, got dtype {dtype}")
    check_device(name, value, device, of=of)
    if finite and floating and not all_finite(value):
        bad = int((~torch.isfinite(value.detach())).sum())
        raise ValueError(
            f"{name} must be finite, got {bad} non-finite value(s) out of {value.numel()}"
        )
    return value
