"""Checks of the telegraph model's inputs: rates, counts, and the largest count it takes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

DTYPE = torch.float64
"""The dtype of every rate, likelihood and fit."""


def _as_param(value: Any, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=DTYPE)
    if not torch.isfinite(t).all() or (t <= 0).any():
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    return t


MAX_COUNT = 100_000
r"""The largest count the likelihood takes (:func:`log_pmf`, :func:`log_pmf_table`,
:func:`histogram_nll`, and so every fit).

Why a limit: the exact likelihood runs a recurrence down from the largest count, so its cost
grows with that count (about 0.02 ms per count per evaluation, order 2 five times that), and a
fit evaluates it a few hundred times; unbounded, one stray count of 10^7 in a table costs minutes
and gigabytes. Within the fit's box (:data:`~stochgrad.apps.telegraph.fit.BOUNDS`,
:math:`k_{syn} \le 10^4`, ``txburst``'s) a count of :math:`10^5` has probability below
:math:`e^{-10^5}`: such a count is a data error (read counts instead of UMIs, merged barcodes),
not an mRNA number."""


def _too_large(name: str, value: float) -> ValueError:
    return ValueError(
        f"{name} must be at most MAX_COUNT = {MAX_COUNT:,}, got {value:.6g}: the exact "
        "likelihood's cost grows with the largest count, and the telegraph model's box "
        "(k_syn <= 1e4) makes such a count impossible (UMI counts, not read counts, are "
        "expected)"
    )


def _as_counts(n: Any, name: str = "n") -> Tensor:
    try:
        t = torch.as_tensor(n)
    except (RuntimeError, OverflowError, ValueError, TypeError) as exc:  # beyond int64, or text
        if "overflow" not in str(exc).lower():
            raise TypeError(
                f"{name} must hold non-negative integers, got {type(n).__name__}"
            ) from None
        raise _too_large(name, float(np.max(np.asarray(n, dtype=object)))) from None
    if t.dtype == torch.bool:
        raise TypeError(f"{name} must hold non-negative integers, got a bool tensor")
    if not (
        t.is_floating_point()
        or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
    ):
        raise TypeError(f"{name} must hold non-negative integers, got dtype {t.dtype}")
    if t.is_floating_point():
        if not torch.isfinite(t).all() or (t != t.round()).any():
            raise ValueError(f"{name} must hold non-negative integers, got non-integer values")
    if t.numel() and bool((t < 0).any()):
        raise ValueError(f"{name} must hold non-negative integers, got a negative value")
    if t.numel() and float(t.max()) > MAX_COUNT:
        raise _too_large(name, float(t.max()))
    return t.long()
